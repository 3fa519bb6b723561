"""Helpers shared by the Redis checks (cache topology and Redis Cluster)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauntlet.cluster import CommandResult, Host

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class PlaybookRun:
    """What an ansible-playbook run printed and returned."""

    rc: int
    output: str


def run_playbook(
    inventory: str,
    playbook: str,
    extra_vars: dict[str, Any] | None = None,
    limit: str | None = None,
    timeout: float = 900,
) -> PlaybookRun:
    """Run one of the collection's playbooks against the inventory under test, as a user would."""
    cmd = ["ansible-playbook", "-i", inventory, str(PROJECT / "playbooks" / playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if limit:
        cmd += ["--limit", limit]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / ".cache" / "collections"),
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=PROJECT)
    return PlaybookRun(r.returncode, r.stdout + r.stderr)


def redis_cli(
    host: Host, password: str, args: str, user: str = "admin", port: int = 6379, timeout: int = 300
) -> CommandResult:
    """Run redis-cli on a Redis host over TLS with the host's own certificate, as the admin user.

    The password goes through the environment (not the command line shown in errors).
    """
    cli = (
        "redis-cli --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt "
        f"--key /etc/redis/tls/redis.key --user {shlex.quote(user)} --no-auth-warning -p {port} {args}"
    )
    host.put("/root/.gauntlet-rediscli-auth", password, mode="0600")
    return host.run(
        f"REDISCLI_AUTH=$(cat /root/.gauntlet-rediscli-auth) timeout {timeout} {cli}; "
        "rc=$?; rm -f /root/.gauntlet-rediscli-auth; exit $rc"
    )
