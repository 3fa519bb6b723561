"""The patroni role refuses bad input before it touches a host: broken timing rule, missing certificates,
members that disagree on passwords, a DCS that does not answer.

Runs the real role with ansible-playbook against the controller itself in check mode (so that nothing could
be changed even if a check let the input through) and reads the failure message.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from role_support import ansible_playbook, needs_ansible_playbook, play_for

PLAYBOOK = play_for("gauntlet.cluster.patroni")

pytestmark = needs_ansible_playbook


def run_role(
    tmp_path: Path,
    inventory: str = "localhost,",
    write_play: bool = True,
    check: bool = True,
    **extra: object,
) -> subprocess.CompletedProcess[str]:
    """Run the patroni role (fast timings, a local DCS address) with ``extra`` variables on top."""
    if write_play:
        (tmp_path / "play.yml").write_text(PLAYBOOK)
    variables = {
        "gauntlet_pki_dir": str(tmp_path / "pki"),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        "patroni_address": "127.0.0.1",
        "patroni_etcd_hosts": ["127.0.0.1:2379"],
        "patroni_ttl": 20,
        "patroni_loop_wait": 1,
        "patroni_retry_timeout": 3,
        **extra,
    }
    return ansible_playbook(tmp_path / "play.yml", inventory, variables, check=check)


def test_broken_timing_rule_fails_with_what_to_fix(tmp_path: Path) -> None:
    """loop_wait + 2 * retry_timeout > ttl stops the role at its first task, naming the knobs."""
    r = run_role(tmp_path, patroni_ttl=20, patroni_loop_wait=10, patroni_retry_timeout=10)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "loop_wait + 2 * retry_timeout <= ttl" in out
    assert "= 30 > patroni_ttl=20" in out
    assert "Install Patroni" not in out


def test_missing_certificate_fails_naming_the_file(tmp_path: Path) -> None:
    """Without the pki role's files the role stops before installing anything, naming the missing file."""
    r = run_role(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"{tmp_path}/pki/hosts/localhost.crt does not exist on the controller" in out.replace("\n", " ")
    assert "run the gauntlet.cluster.pki role" in out.replace("\n", " ")
    assert "Install Patroni" not in out


def test_members_with_different_passwords_fail_before_anything_runs(tmp_path: Path) -> None:
    """Two members of one play with different replication passwords: stopped at the preflight, naming it."""
    (tmp_path / "play.yml").write_text(PLAYBOOK.replace("hosts: localhost", "hosts: all"))
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n"
        "    m1: {ansible_connection: local, patroni_replication_password: first-password-1}\n"
        "    m2: {ansible_connection: local, patroni_replication_password: other-password-2}\n"
    )
    r = run_role(tmp_path, inventory=str(tmp_path / "hosts.yml"), write_play=False)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "must be the same on every member (m1, m2)" in out
    assert "first-password-1" not in out and "other-password-2" not in out
    assert "Install Patroni" not in out


def test_dcs_down_fails_naming_the_endpoints(tmp_path: Path) -> None:
    """The DCS check (tasks/dcs.yml, run before Patroni is configured) against an endpoint where nothing
    listens fails within its timeout, naming the endpoints and what to do."""
    from gauntlet.pki import foreign_client_cert

    tls = tmp_path / "tls"
    _ca, crt, key = foreign_client_cert(tls)
    shutil.copy(crt, tls / "server.crt")
    shutil.copy(key, tls / "server.key")
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - name: Run the DCS check of the role\n"
        "      ansible.builtin.include_role:\n        name: gauntlet.cluster.patroni\n        tasks_from: dcs\n"
    )
    r = run_role(
        tmp_path,
        write_play=False,
        check=False,
        patroni_tls_dir=str(tls),
        patroni_etcd_hosts=["127.0.0.1:9", "127.0.0.1:2"],
        patroni_dcs_check_timeout=3,
    )
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "The DCS is not available: no etcd endpoint of 127.0.0.1:9, 127.0.0.1:2 answered healthy" in out
    assert "Start etcd" in out
