"""Filter ``gauntlet.cluster.redis_cluster_layout``: which Redis Cluster instance is a master and which
replica follows which master, decided before the cluster is created so that it is the same on every run.

Instances are ordered port-major (every host's first port, then every host's second port…), the first
``masters`` of them are masters, and each replica is given a master on another host whenever one exists.
With 3 hosts x 2 ports and 1 replica this puts one master on every host and the replica of each master on
the next host, so no host holds a master and its own replica.
"""

from __future__ import annotations

from typing import Any


def redis_cluster_layout(
    hosts: list[str], addresses: list[str], ports: list[int], replicas: int
) -> dict[str, Any]:
    """Plan a cluster over ``hosts`` (inventory names) reached at ``addresses`` with ``ports`` each.

    Returns ``{"masters": [inst…], "replicas": [{"node": inst, "master": inst}…], "instances": [inst…],
    "same_host_pairs": n}`` where ``inst`` is ``{"host", "address", "port", "endpoint"}``.
    Raises ``ValueError`` (with the fix) when the instance count is not a multiple of ``replicas + 1``.
    """
    if len(hosts) != len(addresses):
        raise ValueError(f"{len(hosts)} hosts but {len(addresses)} addresses")
    nodes = [{"host": str(h), "address": str(a)} for h, a in zip(hosts, addresses, strict=True)]
    replicas = int(replicas)
    ports = [int(p) for p in ports]
    instances = [
        {"host": n["host"], "address": n["address"], "port": p, "endpoint": f"{n['address']}:{p}"}
        for p in ports
        for n in nodes
    ]
    if replicas < 0:
        raise ValueError(f"redis_cluster_replicas must be >= 0, not {replicas}")
    if not instances or len(instances) % (replicas + 1):
        raise ValueError(
            f"{len(instances)} instances ({len(nodes)} hosts x {len(ports)} ports) cannot be split into groups of "
            f"1 master + {replicas} replicas: change redis_cluster_ports, redis_cluster_replicas or the hosts"
        )
    n_masters = len(instances) // (replicas + 1)
    masters = instances[:n_masters]
    followers = instances[n_masters:]
    load = {m["endpoint"]: 0 for m in masters}
    plan = []
    pairs_same_host = 0
    for r in followers:
        # Masters with room left (each takes exactly `replicas`), preferring masters on other hosts.
        candidates = [m for m in masters if load[m["endpoint"]] < replicas]
        other_host = [m for m in candidates if m["host"] != r["host"]]
        pool = other_host or candidates
        host_order = [n["host"] for n in nodes]
        start = host_order.index(r["host"])

        def rank(
            m: dict[str, Any], r: dict[str, Any] = r, start: int = start, order: list[str] = host_order
        ) -> tuple[int, ...]:
            # Fewest replicas already on r's host, then least loaded, then nearest host after r's.
            on_host = sum(1 for p in plan if p["master"] is m and p["node"]["host"] == r["host"])
            distance = (order.index(m["host"]) - start) % len(order)
            return (on_host, load[m["endpoint"]], distance, masters.index(m))

        chosen = min(pool, key=rank)
        load[chosen["endpoint"]] += 1
        if chosen["host"] == r["host"]:
            pairs_same_host += 1
        plan.append({"node": r, "master": chosen})
    return {"masters": masters, "replicas": plan, "instances": instances, "same_host_pairs": pairs_same_host}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"redis_cluster_layout": redis_cluster_layout}
