"""The podman connection with pipelining (plugins/connection/podman.py): one ``podman exec -i`` per module,
no ``podman mount`` until a file is transferred."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader, init_plugin_loader

ROOT = Path(__file__).resolve().parents[2]

# Resolve the short name "podman" (what Molecule's inventory says) as Ansible does with the directory on its
# connection plugin path (.config/molecule/config.yml): it must be ours, not containers.podman's.
init_plugin_loader()
connection_loader.add_directory(str(ROOT / "plugins/connection"))


class Recorder:
    """Stands in for the podman binary: records each call (the commands are what is under test)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []

    def __call__(
        self, cmd: Any, cmd_args: Any = None, in_data: Any = None, use_container_id: bool = True
    ) -> Any:
        self.calls.append((cmd, cmd_args, in_data))
        return 0, b"/nonexistent/node1\n" if cmd == "mount" else b"", b""


def connection() -> Any:
    ctx = PlayContext()
    ctx.remote_addr = "node1"
    conn = connection_loader.get("podman", ctx, None)
    conn.set_options()
    conn._podman = Recorder()
    return conn


def test_the_short_name_podman_resolves_to_this_plugin() -> None:
    assert connection().transport == "gauntlet.cluster.podman"


def test_pipelining_is_on_and_a_module_goes_over_stdin_with_exec_i() -> None:
    conn = connection()
    assert conn.has_pipelining and conn.get_option("pipelining")
    conn.exec_command("/bin/sh -c '/usr/bin/python3 && sleep 0'", in_data=b"module")
    assert conn._podman.calls == [
        (["exec", "-i"], ["/bin/sh", "-c", "/usr/bin/python3 && sleep 0"], b"module")
    ]


def test_a_command_without_input_keeps_plain_exec_and_no_mount() -> None:
    conn = connection()
    conn.exec_command("echo ~")
    assert conn._podman.calls == [(["exec"], ["echo", "~"], None)]


def test_the_container_is_mounted_once_on_the_first_file_transfer(tmp_path: Path) -> None:
    conn = connection()
    src = tmp_path / "f"
    src.write_text("x")
    for dest in ("/root/f", "/root/g"):
        # The fake mount point does not exist, so the copy itself fails; only the mount calls matter here.
        with contextlib.suppress(Exception):
            conn.put_file(str(src), dest)
    assert [c for c in conn._podman.calls if c[0] == "mount"] == [("mount", None, None)]
