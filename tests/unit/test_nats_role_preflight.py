"""The nats role refuses bad input before it touches a host, each time with one line naming the fix.

Runs the real role with ansible-playbook against the controller itself in check mode (nothing could be
changed even if a check let the input through) and reads the failure. The other group members are inventory
entries only (the play runs on localhost), so they are never contacted. The sync_interval-on-2.9 refusal
needs the installed server's version and is shown on hosts (the role's README).
"""

from __future__ import annotations

from pathlib import Path

from role_support import ansible_playbook, needs_ansible_playbook, play_for

pytestmark = needs_ansible_playbook


def run_role(tmp_path: Path, members: int, **extra: object) -> tuple[int, str]:
    """Run the nats role on localhost, a member of group nats with ``members`` hosts: (exit code, output)."""
    (tmp_path / "play.yml").write_text(play_for("gauntlet.cluster.nats"))
    others = "\n".join(f"peer{i} ansible_host=192.0.2.{i}" for i in range(1, members))
    (tmp_path / "hosts.ini").write_text(f"localhost ansible_connection=local\n[nats]\nlocalhost\n{others}\n")
    variables = {
        "gauntlet_pki_dir": str(tmp_path / "pki"),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        "gauntlet_address": "192.0.2.100",
        **extra,
    }
    r = ansible_playbook(tmp_path / "play.yml", str(tmp_path / "hosts.ini"), variables)
    return r.returncode, " ".join((r.stdout + r.stderr).split())


def test_an_even_group_is_refused(tmp_path: Path) -> None:
    rc, out = run_role(tmp_path, 2)
    assert rc != 0, out[-2000:]
    assert "group 'nats' has 2 hosts" in out, out[-2000:]
    assert "list 3 or 5 hosts in group nats" in out


def test_a_repeated_port_is_refused(tmp_path: Path) -> None:
    rc, out = run_role(tmp_path, 3, nats_cluster_port=4222)
    assert rc != 0, out[-2000:]
    assert "nats_cluster_port (4222)" in out and "must be three different ports" in out, out[-2000:]


def test_a_bad_sync_interval_is_refused(tmp_path: Path) -> None:
    rc, out = run_role(tmp_path, 3, nats_jetstream_sync_interval="sometimes")
    assert rc != 0, out[-2000:]
    assert "nats_jetstream_sync_interval ('sometimes') a duration" in out, out[-2000:]


def test_good_settings_pass_the_setting_checks(tmp_path: Path) -> None:
    """The same play with valid settings gets past every setting check and stops at the first check that
    needs the whole group in the play: the checks refuse only what they should."""
    rc, out = run_role(tmp_path, 3, nats_jetstream_max_file_store="10G", nats_jetstream_sync_interval="")
    assert rc != 0, out[-2000:]
    assert "must be three different ports" not in out and "a duration" not in out, out[-2000:]
    assert "missing from this play: peer1, peer2" in out, out[-2000:]
