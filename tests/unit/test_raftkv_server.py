"""The reference Raft KV server (servers/raftkv) as three local processes, through the harness client:
configuration checks, CRUD, compare-and-set, fail/info classification, durability across a restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gauntlet.bench import wait_for
from gauntlet.checkers import linearizable
from gauntlet.clients.base import Fail
from gauntlet.clients.raftkv import CasMismatch, Member, RaftKVClient
from gauntlet.history import History

SRC = Path(__file__).resolve().parents[2] / "servers" / "raftkv" / "src"
pytest.importorskip("pysyncobj")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _config(node: str, data: Path, ports: dict[str, tuple[int, int]], password: str | None = "s3cret") -> str:
    lines = [
        f'node_id = "{node}"',
        f'data_dir = "{data}"',
        "[listen]",
        f'client = "127.0.0.1:{ports[node][0]}"',
        f'peer = "127.0.0.1:{ports[node][1]}"',
    ]
    for name, (c, p) in ports.items():
        lines += ["[[peers]]", f'id = "{name}"', f'client = "127.0.0.1:{c}"', f'peer = "127.0.0.1:{p}"']
    lines += ["[raft]", "commit_timeout = 2.0"]
    if password:
        lines.append(f'password = "{password}"')
    return "\n".join(lines) + "\n"


def _run(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "raftkv", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class Local:
    def __init__(self, tmp: Path) -> None:
        ports = _free_ports(6)
        self.ports = {f"n{i}": (ports[2 * i], ports[2 * i + 1]) for i in range(3)}
        self.configs = {}
        for n in self.ports:
            path = tmp / f"{n}.toml"
            path.write_text(_config(n, tmp / f"data-{n}", self.ports))
            self.configs[n] = path
        self.procs = {n: _run(c) for n, c in self.configs.items()}

    def members(self) -> list[Member]:
        return [Member(n, f"127.0.0.1:{c}") for n, (c, _) in self.ports.items()]

    def stop(self, n: str) -> None:
        p = self.procs[n]
        p.kill()
        p.wait(10)

    def start(self, n: str) -> None:
        self.procs[n] = _run(self.configs[n])


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    lc = Local(tmp_path)
    yield lc
    for p in lc.procs.values():
        p.kill()
        p.wait(10)


def test_config_errors_say_what_to_fix(tmp_path: Path) -> None:
    ports = {"n0": (1, 2)}
    bad = tmp_path / "bad.toml"
    bad.write_text(_config("n0", tmp_path, ports).replace('node_id = "n0"', 'node_id = "other"'))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run(
        [sys.executable, "-m", "raftkv", "-c", str(bad), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "node_id 'other' is not among the peers" in r.stderr
    nopass = tmp_path / "nopass.toml"
    nopass.write_text(_config("n0", tmp_path, ports, password=None))
    r = subprocess.run(
        [sys.executable, "-m", "raftkv", "-c", str(nopass), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "password" in r.stderr


def test_local_cluster_crud_classification_and_durability(local: Local) -> None:
    history = History()
    kv = RaftKVClient(local.members(), tls=False, timeout=5, retry_for=5, history=history)
    kv.wait_for_ready(30)
    kv.put("a", "1", member="n1")
    assert [kv.get("a", member=n) for n in ("n0", "n1", "n2")] == ["1", "1", "1"]
    kv.cas("a", "1", "2", member="n2")
    with pytest.raises(CasMismatch):
        kv.cas("a", "1", "3", member="n0")
    assert kv.delete("a") is True and kv.get("a") is None
    kv.put("b", "kept")
    # a member alone refuses writes with a definite 503, recorded as fail
    lone = "n0"
    for n in ("n0", "n1", "n2"):
        if n != lone:
            local.stop(n)
    # a stopped member behind a pooled keep-alive connection: reconnecting is refused, so nothing was sent
    with pytest.raises(Fail):
        kv.put("b", "never-sent", member="n1", retry_for=0)
    assert [o.type for o in history.ops if o.value == "never-sent"] == ["invoke", "fail"]
    wait_for(lambda: not kv.health(lone)[0], 15, 0.1, "the lone member noticing it lost the majority")
    with pytest.raises(Fail):
        kv.put("b", "lost", member=lone, retry_for=0)
    assert [o.type for o in history.ops if o.value == "lost"] == ["invoke", "fail"]
    # everyone back: the data survived on disk, the refused write is nowhere
    for n in ("n0", "n1", "n2"):
        if n != lone:
            local.start(n)
    kv.wait_for_ready(30)
    assert [kv.get("b", member=n) for n in ("n0", "n1", "n2")] == ["kept"] * 3
    result = linearizable(history)
    assert result.valid is True, result.report()
