"""SSH hosts are reached with the arguments Ansible passes for them, and OpenSSH applies the inventory's own
host-key policy: an unknown host is refused unless the inventory accepts new keys or turns checking off.

The policy tests ask OpenSSH itself (``ssh -G``: no host needed); the loopback tests connect to an sshd of
their own on 127.0.0.1 (skipped where sshd is not installed: ``make setup`` installs it)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_sshd import SSHD, LoopbackSSHD, keygen, loopback_sshd

from gauntlet.cluster import Cluster, Host
from gauntlet.ssh import HostKeyRefused, OpenSSHBackend, SSHFailed, close_control_masters, ssh_settings

ROOT = Path(__file__).resolve().parents[2]
# The machine's own ssh_config must not decide these tests (OpenSSH reads ~ from passwd, not $HOME).
NO_CONFIG = "-F /dev/null"


@pytest.fixture(autouse=True)
def _no_host_key_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ansible's environment switches would override what the inventory says."""
    for name in ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_HOST_KEY_CHECKING", "ANSIBLE_SSH_ARGS"):
        monkeypatch.delenv(name, raising=False)


def settings(**variables: object):  # type: ignore[no-untyped-def]
    variables.setdefault("ansible_ssh_extra_args", NO_CONFIG)
    return ssh_settings("pg1", lambda name, default=None: variables.get(name, default))


def test_ansible_cfg_does_not_turn_host_key_checking_off() -> None:
    """ansible.cfg's host_key_checking = False made Ansible pass -o StrictHostKeyChecking=no BEFORE the
    inventory's arguments, and OpenSSH keeps the first value: the inventory's accept-new/yes was ignored."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    for section in ("defaults", "ssh_connection"):
        value = cfg.get(section, "host_key_checking", fallback="true").strip().lower()
        assert value in {"true", "yes", "1", "on"}, f"ansible.cfg [{section}] host_key_checking = {value}"


def test_ansible_variables_are_read_as_ansible_reads_them() -> None:
    s = settings(
        ansible_host="192.0.2.21",
        ansible_port=2222,
        ansible_user="admin",
        ansible_ssh_private_key_file="~/.ssh/staging",
        ansible_ssh_common_args="-o UserKnownHostsFile=/proof/known_hosts -o StrictHostKeyChecking=accept-new",
        ansible_ssh_timeout=4,
    )
    assert (s.host, s.port, s.user, s.timeout) == ("192.0.2.21", 2222, "admin", 4)
    assert s.key_file == os.path.expanduser("~/.ssh/staging")
    assert s.common_args[1::2] == (
        "UserKnownHostsFile=/proof/known_hosts",
        "StrictHostKeyChecking=accept-new",
    )
    assert s.resolved["userknownhostsfile"] == "/proof/known_hosts"


def test_the_inventory_arguments_are_passed_verbatim_after_ansibles_own() -> None:
    """Ansible's order (ssh_args, host-key switch, port, key, auth, user, timeout, common, extra), then ours
    (multiplexing, BatchMode) after, so every value the inventory gives wins."""
    s = settings(
        ansible_host="192.0.2.21",
        ansible_user="admin",
        ansible_ssh_common_args="-o StrictHostKeyChecking=accept-new -o ProxyJump=bastion",
    )
    cmd = s.command("true")
    assert cmd[:7] == ["ssh", "-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o"]
    common = cmd.index("StrictHostKeyChecking=accept-new") - 1
    assert cmd[common : common + 4] == ["-o", "StrictHostKeyChecking=accept-new", "-o", "ProxyJump=bastion"]
    assert cmd.index('User="admin"') < common < cmd.index("BatchMode=yes") < cmd.index("192.0.2.21")
    assert not [a for a in cmd if a.lower() == "stricthostkeychecking=no"]
    assert cmd[-3:] == ["--", "192.0.2.21", "true"]
    assert any(a.startswith("ControlPath=/") for a in cmd)


@pytest.mark.parametrize(
    ("variables", "policy"),
    [
        # The inventory says nothing: OpenSSH's default (ask), which in BatchMode refuses an unknown key.
        ({}, "ask"),
        ({"ansible_host_key_checking": True}, "ask"),
        ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new"}, "accept-new"),
        ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=yes"}, "true"),
        ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}, "false"),
        # Checking turned off explicitly: Ansible's own switch, placed where Ansible places it.
        ({"ansible_host_key_checking": False}, "false"),
        ({"ansible_ssh_host_key_checking": "false"}, "false"),
    ],
)
def test_the_host_key_policy_is_the_inventorys(variables: dict[str, object], policy: str) -> None:
    s = settings(**variables)
    assert s.host_key_policy == policy  # OpenSSH's own reading of the command line (ssh -G)
    assert s.resolved["batchmode"] == "yes"


def test_ssh_failures_say_what_to_do() -> None:
    s = settings(ansible_host="192.0.2.21", ansible_port=2222, ansible_user="admin")
    unknown = s.failure(
        "No ED25519 host key is known for [192.0.2.21]:2222 and you have requested strict checking.\r\n"
        "Host key verification failed.\r\n"
    )
    assert isinstance(unknown, HostKeyRefused) and "\n" not in str(unknown)
    assert str(unknown).startswith("host pg1 (admin@192.0.2.21:2222): refused")
    assert "StrictHostKeyChecking=accept-new" in str(unknown)
    changed = s.failure(
        "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed."
    )
    assert isinstance(changed, HostKeyRefused) and "differs" in str(changed)
    assert "ssh-keygen -R" in str(changed)
    refused = s.failure("ssh: connect to host 192.0.2.21 port 2222: Connection refused\r\n")
    assert isinstance(refused, SSHFailed) and str(refused).endswith("Connection refused")
    assert s.failure("the remote command's own stderr\n") is None  # the command itself exited 255


def test_cluster_ssh_hosts_use_openssh_with_the_inventory_settings(tmp_path: Path) -> None:
    inv = write_inventory(
        tmp_path,
        """
        ansible_user: admin
        ansible_become: true
        ansible_ssh_private_key_file: "{{ inventory_dir }}/id"
        ansible_ssh_common_args: -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/k
        """,
        "192.0.2.11",
    )
    host = Cluster.from_inventory(inv)["h1"]
    s = host.ssh_settings
    assert (s.host, s.user, s.key_file) == ("192.0.2.11", "admin", f"{inv}/id")
    assert s.host_key_policy == "accept-new"
    backend = host.testinfra.backend  # made without connecting (ssh runs on the first command)
    assert isinstance(backend, OpenSSHBackend) and backend.sudo is True


# --- against a loopback sshd ------------------------------------------------------------------------------


def write_inventory(tmp_path: Path, all_vars: str, address: str = "127.0.0.1", port: int = 0) -> Path:
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    body = textwrap.indent(textwrap.dedent(all_vars).strip(), " " * 4)
    port_var = f", ansible_port: {port}" if port else ""
    (inv / "hosts.yml").write_text(
        f"all:\n  vars:\n{body}\n  children:\n    etcd:\n      hosts:\n"
        f"        h1: {{ansible_host: {address}{port_var}}}\n"
    )
    return inv


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    if SSHD is None:
        pytest.skip("sshd is not installed (Debian package openssh-server; `make setup` installs it)")
    with loopback_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
    close_control_masters()


def loopback_inventory(
    tmp_path: Path, sshd: LoopbackSSHD, policy: str = "", **extra: str
) -> tuple[Path, Path]:
    """An inventory of host h1 at the loopback sshd, with known_hosts of the test's own and ``policy``
    (-o arguments in ansible_ssh_common_args); the inventory directory and the known_hosts path."""
    known_hosts = tmp_path / "known_hosts"
    lines = [
        f"ansible_user: {sshd.user}",
        f"ansible_ssh_private_key_file: {sshd.client_key}",
        f"ansible_ssh_common_args: '{policy} -o UserKnownHostsFile={known_hosts}'",
        f"ansible_ssh_extra_args: '{NO_CONFIG} -o IdentitiesOnly=yes'",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return write_inventory(tmp_path, "\n".join(lines), port=sshd.port), known_hosts


def loopback_host(tmp_path: Path, sshd: LoopbackSSHD, policy: str = "", **extra: str) -> tuple[Host, Path]:
    """Host h1 of :func:`loopback_inventory`, through the Cluster model, and its known_hosts path."""
    inv, known_hosts = loopback_inventory(tmp_path, sshd, policy, **extra)
    return Cluster.from_inventory(inv)["h1"], known_hosts


def test_unknown_host_is_refused_when_the_inventory_states_no_policy(
    tmp_path: Path, sshd: LoopbackSSHD
) -> None:
    host, known_hosts = loopback_host(tmp_path, sshd)
    with pytest.raises(HostKeyRefused) as refused:
        host.run("true")
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"host h1 ({sshd.user}@127.0.0.1:{sshd.port})")
    assert "not in known_hosts" in message and "StrictHostKeyChecking=accept-new" in message
    assert not known_hosts.exists() or not known_hosts.read_text().strip()


def test_accept_new_connects_to_an_unknown_host_and_records_it(tmp_path: Path, sshd: LoopbackSSHD) -> None:
    host, known_hosts = loopback_host(tmp_path, sshd, "-o StrictHostKeyChecking=accept-new")
    assert host.run("echo reached").stdout.strip() == "reached"
    assert known_hosts.read_text().split()[1:] == sshd.known_hosts_line().split()[1:]


def test_accept_new_still_refuses_a_changed_key(tmp_path: Path, sshd: LoopbackSSHD) -> None:
    other = keygen(tmp_path / "other_host_key")
    host, known_hosts = loopback_host(tmp_path, sshd, "-o StrictHostKeyChecking=accept-new")
    known_hosts.write_text(sshd.known_hosts_line(other))
    with pytest.raises(HostKeyRefused, match="differs from the one in known_hosts"):
        host.run("true")


def test_a_known_key_connects_under_strict_checking(tmp_path: Path, sshd: LoopbackSSHD) -> None:
    host, known_hosts = loopback_host(tmp_path, sshd, "-o StrictHostKeyChecking=yes")
    known_hosts.write_text(sshd.known_hosts_line())
    assert host.run("true").rc == 0


def test_checking_turned_off_by_the_inventory_accepts_unknown_hosts(
    tmp_path: Path, sshd: LoopbackSSHD
) -> None:
    host, _ = loopback_host(tmp_path, sshd, ansible_host_key_checking="false")
    assert host.run("true").rc == 0


@pytest.mark.skipif(shutil.which("ansible") is None, reason="ansible is not installed")
def test_ansible_itself_refuses_an_unknown_host_the_inventory_checks(
    tmp_path: Path, sshd: LoopbackSSHD
) -> None:
    """The defect end to end: the inventory says StrictHostKeyChecking=yes, the host is unknown, and Ansible
    (with this checkout's ansible.cfg) connected anyway; it must refuse, as the checks do."""
    inv, known_hosts = loopback_inventory(
        tmp_path, sshd, "-o StrictHostKeyChecking=yes", ansible_python_interpreter=sys.executable
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    ping = subprocess.run(
        ["ansible", "-i", str(inv), "h1", "-m", "ansible.builtin.ping"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ping.returncode != 0, f"ansible reached a host whose key is unknown:\n{ping.stdout}"
    assert "host key" in ping.stdout + ping.stderr
    assert not known_hosts.exists() or not known_hosts.read_text().strip()
