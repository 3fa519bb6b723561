"""The patroni role refuses bad input before it touches a host: broken timing rule, missing certificates.

Runs the real role with ansible-playbook against the controller itself in check mode (so that nothing could
be changed even if a check let the input through) and reads the failure message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: gauntlet.cluster.patroni
"""

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None, reason="ansible-playbook not installed"
)


def run_role(tmp_path: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    pki = tmp_path / "pki"
    variables = {
        "gauntlet_pki_dir": str(pki),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        "patroni_address": "127.0.0.1",
        "patroni_etcd_hosts": ["127.0.0.1:2379"],
        "patroni_ttl": 20,
        "patroni_loop_wait": 1,
        "patroni_retry_timeout": 3,
        **extra,
    }
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [
            "ansible-playbook",
            "--check",
            "-i",
            "localhost,",
            "-e",
            json.dumps(variables),
            str(tmp_path / "play.yml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
