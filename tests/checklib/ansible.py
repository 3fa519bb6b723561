"""Run the collection's playbooks (or a play of a check's own) against the inventory under test, as a user
would: ansible-playbook with this checkout's configuration, collection and roles, output captured."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class PlaybookRun:
    """What an ansible-playbook run printed and returned."""

    rc: int
    output: str


def ansible_playbook(
    inventory: str,
    playbook: Path,
    extra_vars: dict[str, Any] | None = None,
    limit: str | None = None,
    timeout: float = 900,
) -> PlaybookRun:
    """ansible-playbook ``playbook`` on ``inventory``, bounded by ``timeout`` seconds."""
    cmd = ["ansible-playbook", "-i", inventory, str(playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if limit:
        cmd += ["--limit", limit]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.environ.get(
            "ANSIBLE_COLLECTIONS_PATH", str(PROJECT / ".cache" / "collections")
        ),
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=PROJECT)
    return PlaybookRun(r.returncode, r.stdout + r.stderr)


def run_play(
    inventory: str, play: str, tmp_path: Path, extra_vars: dict[str, Any] | None = None, timeout: float = 900
) -> PlaybookRun:
    """A check's own play (YAML text), written under ``tmp_path``."""
    path = tmp_path / "play.yml"
    path.write_text(play)
    return ansible_playbook(inventory, path, extra_vars, timeout=timeout)
