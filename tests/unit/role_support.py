"""Run one of the collection's roles with ansible-playbook against the controller itself (role preflight tests).

The play runs on localhost in check mode by default, so nothing could be changed even if a check let bad input
through; other group members are inventory entries only and are never contacted.
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

needs_ansible_playbook = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None, reason="ansible-playbook not installed"
)


def play_for(role: str) -> str:
    """A one-play playbook that applies ``role`` to localhost without gathering facts."""
    return f"- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n    - role: {role}\n"


def ansible_playbook(
    playbook: Path, inventory: str, variables: dict[str, object], check: bool = True, tags: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``playbook`` with this checkout's collection and roles, ``variables`` as extra vars (bounded: 120 s);
    ``tags`` limits the tasks run (tasks tagged ``always``, such as argument-spec validation, still run)."""
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
            *(["--check"] if check else []),
            *(["--tags", tags] if tags else []),
            "-i",
            inventory,
            "-e",
            json.dumps(variables),
            str(playbook),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
