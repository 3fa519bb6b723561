"""Redis over TLS as the checks reach it: connections, credentials, Sentinel discovery, a primary-following
client, and Redis Cluster helpers (slots, owners, MOVED).

Every connection verifies the server certificate against the cluster CA (hosts are reached by address; their
certificates carry the address as an IP SAN) and presents the tests' client certificate, because the role
requires client certificates by default. redis-py's own retries are switched off: one call is one attempt,
so that a history records what the server did, not what a retry loop hid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gauntlet.cluster import Cluster, Host
from gauntlet.errors import InventoryError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors after which the outcome of a command is unknown (it may have been applied).
UNKNOWN_OUTCOME = (redis.ConnectionError, redis.TimeoutError)
SLOTS = 16384


def setting(cluster: Cluster, name: str, group: str) -> Any:
    """A role setting as the hosts of ``group`` see it: the inventory's value, else the role default."""
    return cluster.setting(name, group)


def secret(cluster: Cluster, name: str, group: str) -> str:
    """A password as the roles see it: the inventory's value if it sets one, else the secret the role default
    generated (``<gauntlet_secrets_dir>/<name without _password>``, ansible's password lookup)."""
    value = cluster.var(name, None, group=group)
    if value:
        return str(value)
    secrets_dir = cluster.var("gauntlet_secrets_dir", None, group=group)
    path = Path(str(secrets_dir)) / name.removesuffix("_password") if secrets_dir else None
    if not path or not path.exists():
        raise InventoryError(f"{name} is not set in the inventory and no generated secret exists at {path}")
    return path.read_text().split()[0]


def user_password(cluster: Cluster, user: str, group: str = "redis") -> str:
    """The password of a Redis ACL user: the admin (``redis_admin_password``) or one of ``redis_users``."""
    if user == setting(cluster, "redis_admin_user", group):
        return secret(cluster, "redis_admin_password", group)
    for u in cluster.var("redis_users", [], group=group) or []:
        if u.get("name") == user:
            return str(u["password"])
    raise InventoryError(
        f"Redis user {user!r} is neither redis_admin_user nor in redis_users of group {group}"
    )


@dataclass(frozen=True)
class TLS:
    """Files for a TLS connection: the CA to verify servers with, and the client certificate (or none)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    check_hostname: bool = True

    @classmethod
    def for_cluster(cls, cluster: Cluster, client: str | None = "gauntlet-client") -> TLS:
        """The cluster CA and the tests' client certificate (``client=None``: no client certificate)."""
        if client is None:
            return cls(cluster.ca_cert)
        cert, key = cluster.client_cert(client)
        return cls(cluster.ca_cert, cert, key)

    def kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.cert) if self.cert else None,
            "ssl_keyfile": str(self.key) if self.key else None,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": self.check_hostname,
        }


def connect(
    address: str,
    port: int,
    tls: TLS | None,
    user: str | None,
    password: str | None,
    timeout: float = 2.0,
    **kwargs: Any,
) -> redis.Redis:
    """A redis-py client for one server, without retries (``tls=None``: plain text)."""
    return redis.Redis(
        host=address,
        port=port,
        username=user,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **(tls.kwargs() if tls else {}),
        **kwargs,
    )


# -- Sentinel ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MasterView:
    """What one Sentinel says about the monitored master."""

    sentinel: str
    address: str
    port: int
    epoch: int
    flags: frozenset[str]
    replicas: int
    other_sentinels: int

    @property
    def usable(self) -> bool:
        """The Sentinel considers the master up (not subjectively or objectively down)."""
        return not ({"s_down", "o_down", "disconnected"} & self.flags)

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)


def freshest(views: Iterable[MasterView]) -> MasterView | None:
    """The usable view with the highest config epoch (None when no Sentinel considers a master up)."""
    return max((v for v in views if v.usable), key=lambda v: v.epoch, default=None)


class Sentinels:
    """The Sentinels of a topology, asked over TLS as the Sentinel admin user."""

    def __init__(self, cluster: Cluster, tls: TLS | None = None, timeout: float = 1.0) -> None:
        self.cluster = cluster
        self.hosts: list[Host] = cluster.group("sentinel")
        self.port = int(setting(cluster, "redis_sentinel_port", "sentinel"))
        self.name = str(setting(cluster, "redis_sentinel_master_name", "sentinel"))
        self.user = str(setting(cluster, "redis_sentinel_admin_user", "sentinel"))
        self.password = secret(cluster, "redis_sentinel_admin_password", "sentinel")
        self.tls = tls or TLS.for_cluster(cluster)
        self.timeout = timeout
        self._clients: dict[str, redis.Redis] = {}
        self._lock = threading.Lock()

    def client(self, host: Host) -> redis.Redis:
        """A (cached) connection to the Sentinel on ``host``."""
        with self._lock:
            if host.name not in self._clients:
                self._clients[host.name] = connect(
                    host.address, self.port, self.tls, self.user, self.password, timeout=self.timeout
                )
            return self._clients[host.name]

    def view(self, host: Host) -> MasterView:
        """``SENTINEL MASTER <name>`` on one Sentinel (raises when it cannot be asked)."""
        m = self.client(host).sentinel_master(self.name)
        return MasterView(
            sentinel=host.name,
            address=str(m["ip"]),
            port=int(m["port"]),
            epoch=int(m.get("config-epoch", 0)),
            flags=frozenset(str(m.get("flags", "")).split(",")),
            replicas=int(m.get("num-slaves", 0)),
            other_sentinels=int(m.get("num-other-sentinels", 0)),
        )

    def views(self, hosts: Iterable[Host] | None = None) -> list[MasterView]:
        """The views of every Sentinel that answers (silently skipping those that do not)."""
        out = []
        for h in hosts if hosts is not None else self.hosts:
            try:
                out.append(self.view(h))
            except (redis.RedisError, OSError) as exc:
                log.debug("sentinel %s: %s", h.name, exc)
                self.drop(h)
        return out

    def drop(self, host: Host) -> None:
        """Forget a cached connection (after an error)."""
        with self._lock:
            c = self._clients.pop(host.name, None)
        if c is not None:
            c.close()

    def master(self, hosts: Iterable[Host] | None = None) -> MasterView | None:
        """The master as the freshest Sentinel sees it: the highest config epoch among answering Sentinels
        that consider it up. A Sentinel cut off from the others still names the old master with the old
        epoch, so asking all of them (not just the first, as most clients do) follows a failover at once."""
        return freshest(self.views(hosts))

    def close(self) -> None:
        for h in self.hosts:
            self.drop(h)


class PrimaryClient:
    """A client of the current Redis primary, found through the Sentinels.

    It re-discovers the primary after any connection error or READONLY reply, and every ``refresh`` seconds
    in any case (so it leaves a primary that was cut off from its peers even while that primary still answers).
    """

    def __init__(
        self,
        sentinels: Sentinels,
        user: str,
        password: str,
        tls: TLS | None = None,
        timeout: float = 1.0,
        refresh: float = 1.0,
    ) -> None:
        self.sentinels = sentinels
        self.user = user
        self.password = password
        self.tls = tls or sentinels.tls
        self.timeout = timeout
        self.refresh = refresh
        self._client: redis.Redis | None = None
        self.endpoint: tuple[str, int] | None = None
        self._discovered_at = 0.0
        self.switches: list[tuple[float, tuple[str, int]]] = []  # (monotonic time, endpoint) on every change

    def _discover(self) -> None:
        view = self.sentinels.master()
        if view is None:
            raise redis.ConnectionError("no Sentinel names a usable master")
        self._discovered_at = time.monotonic()
        if view.endpoint != self.endpoint or self._client is None:
            self.close()
            self.endpoint = view.endpoint
            self.switches.append((time.monotonic(), view.endpoint))
            self._client = connect(
                view.address, view.port, self.tls, self.user, self.password, timeout=self.timeout
            )

    def client(self) -> redis.Redis:
        """The connection to the primary (discovering it when needed)."""
        if self._client is None or time.monotonic() - self._discovered_at > self.refresh:
            self._discover()
        assert self._client is not None
        return self._client

    def call(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(conn)`` once against the primary; on a connection error or READONLY, forget the primary
        (the next call rediscovers it) and re-raise: the caller records the outcome."""
        conn = self.client()
        try:
            return fn(conn)
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            self.close()
            raise

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._discovered_at = 0.0


# -- plain helpers ----------------------------------------------------------------------------------------
def info(conn: redis.Redis, section: str) -> dict[str, Any]:
    """``INFO <section>`` as a dict."""
    return conn.info(section)


def role(conn: redis.Redis) -> list[Any]:
    """``ROLE``: ``["master", offset, replicas]`` or ``["slave", host, port, state, offset]``."""
    return list(conn.execute_command("ROLE"))


@dataclass
class RedisNodes:
    """The Redis hosts of a Sentinel-managed topology, reached as the admin user."""

    cluster: Cluster
    group: str = "redis"
    tls: TLS | None = None
    hosts: list[Host] = field(init=False)

    def __post_init__(self) -> None:
        self.hosts = self.cluster.group(self.group)
        self.port = int(setting(self.cluster, "redis_port", self.group))
        self.user = str(setting(self.cluster, "redis_admin_user", self.group))
        self.password = secret(self.cluster, "redis_admin_password", self.group)
        self.tls = self.tls or TLS.for_cluster(self.cluster)
        self.by_address = {h.address: h for h in self.hosts}

    def admin(self, host: Host, timeout: float = 2.0) -> redis.Redis:
        """An admin connection to the Redis of ``host``."""
        return connect(host.address, self.port, self.tls, self.user, self.password, timeout=timeout)

    def roles(self) -> dict[str, list[Any] | None]:
        """Host name -> ROLE reply (None when it does not answer)."""
        out: dict[str, list[Any] | None] = {}
        for h in self.hosts:
            c = self.admin(h, timeout=1.0)
            try:
                out[h.name] = role(c)
            except (redis.RedisError, OSError):
                out[h.name] = None
            finally:
                c.close()
        return out


# -- Redis Cluster ----------------------------------------------------------------------------------------
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
            return self.conn(endpoint).execute_command(*args)
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

        startup = [PyClusterNode(h.address, p) for h in self.hosts for p in self.ports]
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
