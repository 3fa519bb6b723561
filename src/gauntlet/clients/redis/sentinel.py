"""Redis Sentinel as the checks reach it: what each Sentinel says about the master, a primary-following
client, and the Redis hosts of a Sentinel-managed topology."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from gauntlet.clients.redis.connection import TLS, connect, role
from gauntlet.clients.redis.settings import secret, setting
from gauntlet.cluster import Cluster, Host

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        if not isinstance(m, dict):  # redis-py answers a dict; anything else is a protocol surprise
            raise RuntimeError(f"SENTINEL MASTER {self.name} on {host.name} answered {m!r}")
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
