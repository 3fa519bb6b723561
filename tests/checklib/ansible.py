"""Run one of the collection's roles against the inventory under test, from a check: ansible-playbook with
this checkout's configuration, collection and roles, output captured."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from gauntlet.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]


def run_playbook(
    cluster: Cluster, playbook: str, tmp_path: Path, extra: dict[str, Any] | None = None, timeout: float = 600
) -> tuple[int, str]:
    """Write ``playbook`` (YAML text) under ``tmp_path`` and run it on the cluster's inventory with ``extra``
    vars: (exit code, stdout + stderr). Bounded by ``timeout`` seconds."""
    play = tmp_path / "play.yml"
    play.write_text(playbook)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.environ.get(
            "ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections")
        ),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    cmd = ["ansible-playbook", "-i", cluster.source, "-e", json.dumps(extra or {}), str(play)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr
