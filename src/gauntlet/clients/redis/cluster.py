"""Redis Cluster as the checks reach it: slots, ``CLUSTER NODES``, slot owners, and the instances of a
``redis_cluster`` topology."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from gauntlet.clients.redis.connection import TLS, connect
from gauntlet.clients.redis.settings import secret, setting
from gauntlet.cluster import Cluster, Host
from gauntlet.errors import InventoryError

SLOTS = 16384


def key_slot(key: str) -> int:
    """The hash slot of a key (CRC16 of the hash tag or the key, mod 16384), as Redis computes it."""
    from redis.crc import key_slot as _key_slot

    return int(_key_slot(key.encode()))


@dataclass(frozen=True)
class ClusterNode:
    """One node of ``CLUSTER NODES``."""

    node_id: str
    address: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    link: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool({"fail", "fail?"} & self.flags)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def slot_count(self) -> int:
        return sum(b - a + 1 for a, b in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Parse ``CLUSTER NODES`` output (migrating/importing slot markers are ignored)."""
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split("@")[0]
        host, _, port = addr.rpartition(":")
        slots = []
        for s in parts[8:]:
            if s.startswith("["):
                continue
            a, _, b = s.partition("-")
            slots.append((int(a), int(b or a)))
        nodes.append(
            ClusterNode(
                node_id=parts[0],
                address=host,
                port=int(port),
                flags=frozenset(parts[2].split(",")),
                master_id=None if parts[3] == "-" else parts[3],
                link=parts[7],
                slots=tuple(slots),
            )
        )
    return nodes


def slot_owners(nodes: Iterable[ClusterNode]) -> dict[int, ClusterNode]:
    """Slot -> master that serves it (only masters not flagged failing)."""
    owners: dict[int, ClusterNode] = {}
    for n in nodes:
        if not n.is_master or n.failed:
            continue
        for a, b in n.slots:
            for s in range(a, b + 1):
                owners[s] = n
    return owners


class RedisClusterNodes:
    """The instances of a Redis Cluster topology (group ``redis_cluster``), reached as the admin user."""

    def __init__(self, cluster: Cluster, group: str = "redis_cluster", tls: TLS | None = None) -> None:
        self.cluster = cluster
        self.group = group
        self.hosts = cluster.group(group)
        self.ports = [int(p) for p in setting(cluster, "redis_cluster_ports", group)]
        self.replicas = int(setting(cluster, "redis_cluster_replicas", group))
        self.node_timeout_s = int(setting(cluster, "redis_cluster_node_timeout_ms", group)) / 1000
        self.user = str(setting(cluster, "redis_admin_user", group))
        self.password = secret(cluster, "redis_admin_password", group)
        self.tls = tls or TLS.for_cluster(cluster)
        self._conns: dict[str, redis.Redis] = {}
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> list[str]:
        """Every instance as ``address:port``."""
        return [f"{h.address}:{p}" for h in self.hosts for p in self.ports]

    def host_of(self, endpoint: str) -> Host:
        """The inventory host an ``address:port`` endpoint runs on."""
        address = endpoint.rpartition(":")[0]
        for h in self.hosts:
            if h.address == address:
                return h
        raise InventoryError(f"no host of group {self.group} has address {address}")

    def conn(self, endpoint: str, timeout: float = 2.0) -> redis.Redis:
        """A cached admin connection to one instance (not cluster-aware: it sees MOVED replies)."""
        with self._lock:
            if endpoint not in self._conns:
                address, _, port = endpoint.rpartition(":")
                self._conns[endpoint] = connect(
                    address, int(port), self.tls, self.user, self.password, timeout
                )
            return self._conns[endpoint]

    def drop(self, endpoint: str) -> None:
        with self._lock:
            c = self._conns.pop(endpoint, None)
        if c is not None:
            c.close()

    def call(self, endpoint: str, *args: Any) -> Any:
        """One command on one instance; the cached connection is dropped on connection errors."""
        try:
            return self.conn(endpoint).execute_command(*args)  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError):
            self.drop(endpoint)
            raise

    def cluster_info(self, endpoint: str) -> dict[str, str]:
        """``CLUSTER INFO`` of one instance."""
        text = self.call(endpoint, "CLUSTER", "INFO")
        if isinstance(text, dict):
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)

    def nodes(self, endpoint: str) -> list[ClusterNode]:
        """``CLUSTER NODES`` as one instance sees it."""
        text = self.call(endpoint, "CLUSTER", "NODES")
        return parse_cluster_nodes(text if isinstance(text, str) else str(text))

    def views(self, endpoints: Iterable[str] | None = None) -> dict[str, list[ClusterNode]]:
        """The CLUSTER NODES view of every instance that answers."""
        out = {}
        for ep in endpoints if endpoints is not None else self.endpoints:
            try:
                out[ep] = self.nodes(ep)
            except (redis.RedisError, OSError):
                continue
        return out

    def client(self, **kwargs: Any) -> Any:
        """A cluster-aware redis-py client (follows MOVED/ASK, learns the slot map)."""
        from redis.cluster import ClusterNode as PyClusterNode
        from redis.cluster import RedisCluster

        startup = [PyClusterNode(h.address, p) for h in self.hosts for p in self.ports]  # type: ignore[no-untyped-call]
        opts: dict[str, Any] = {
            "startup_nodes": startup,
            "username": self.user,
            "password": self.password,
            "decode_responses": True,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            **self.tls.kwargs(),
        }
        opts.update(kwargs)
        return RedisCluster(**opts)

    def close(self) -> None:
        for ep in list(self._conns):
            self.drop(ep)
