"""What the report shows of a cluster: hosts, groups, addresses and the versions of what they run."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gauntlet.cluster import Cluster, Host

# Packages whose installed version the report lists, when a host has them.
PACKAGES = (
    "etcd-server",
    "postgresql-15",
    "patroni",
    "haproxy",
    "redis-server",
    "redis-sentinel",
    "postgresql-15-citus",
)


def describe_host(host: Host) -> dict[str, Any]:
    """Name, groups, connection, address and installed package versions of one host."""
    info: dict[str, Any] = {"name": host.name, "groups": sorted(host.groups), "connection": host.connection}
    try:
        info["address"] = host.address
        r = host.run("dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(PACKAGES) + " 2>/dev/null")
        info["packages"] = dict(
            line.split(" ", 1) for line in r.stdout.splitlines() if " " in line and line.split(" ", 1)[1]
        )
        # Patroni comes from PyPI by default (its own virtualenv), so dpkg does not know it.
        if "patroni" not in info["packages"]:
            p = host.run("command -v patroni >/dev/null && patroni --version 2>/dev/null", timeout=20)
            words = p.stdout.split()
            if p.ok and len(words) >= 2:
                info["packages"]["patroni"] = words[-1]
    except Exception as exc:  # a host that is down still belongs in the table
        info["error"] = str(exc)
    return info


def write_topology(cluster: Cluster, path: Path) -> dict[str, Any]:
    """Write (once per report directory and inventory) the topology the report's first table shows."""
    if path.exists():
        existing: dict[str, Any] = json.loads(path.read_text())
        if existing.get("inventory") == cluster.source:
            return existing
    with ThreadPoolExecutor(max_workers=8) as pool:
        hosts = list(pool.map(describe_host, cluster.hosts.values()))
    data = {"inventory": cluster.source, "groups": cluster.groups(), "hosts": hosts}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return data
