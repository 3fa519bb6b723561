"""Helpers shared by the Redis checks (cache topology and Redis Cluster)."""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass

import redis

from gauntlet.bench import wait_for
from gauntlet.clients.cache import CacheClient, Database, Pattern
from gauntlet.clients.redis import PrimaryClient, RedisNodes, Sentinels, user_password
from gauntlet.cluster import Cluster, CommandResult, Host
from gauntlet.history import History


def redis_cli(
    host: Host, password: str, args: str, user: str | None = None, port: int | None = None, timeout: int = 300
) -> CommandResult:
    """Run redis-cli on a Redis host over TLS with the host's own certificate, as the admin user.

    ``user`` and ``port`` default to the host's ``redis_admin_user`` and ``redis_port`` (inventory, else the
    redis role's defaults). The password goes through the environment (not the command line shown in errors).
    """
    tls = host.setting("redis_tls_dir")
    user = user or str(host.setting("redis_admin_user"))
    port = port or int(host.setting("redis_port"))
    cli = (
        f"redis-cli --tls --cacert {tls}/ca.crt --cert {tls}/redis.crt "
        f"--key {tls}/redis.key --user {shlex.quote(user)} --no-auth-warning -p {port} {args}"
    )
    host.put("/root/.gauntlet-rediscli-auth", password, mode="0600")
    return host.run(
        f"REDISCLI_AUTH=$(cat /root/.gauntlet-rediscli-auth) timeout {timeout} {cli}; "
        "rc=$?; rm -f /root/.gauntlet-rediscli-auth; exit $rc"
    )


@dataclass
class CacheEnv:
    """The cache topology as the checks see it: Sentinels, Redis hosts (admin), the database, the app user."""

    cluster: Cluster
    sentinels: Sentinels
    nodes: RedisNodes
    db: Database
    app_user: str = "app"

    @classmethod
    def load(cls, cluster: Cluster) -> CacheEnv:
        return cls(cluster, Sentinels(cluster), RedisNodes(cluster), Database.for_cluster(cluster))

    @property
    def app_password(self) -> str:
        return user_password(self.cluster, self.app_user)

    def primary_client(
        self, user: str | None = None, timeout: float = 1.0, refresh: float = 1.0
    ) -> PrimaryClient:
        """A client that follows the primary through the Sentinels (as the app user by default)."""
        user = user or self.app_user
        return PrimaryClient(
            self.sentinels, user, user_password(self.cluster, user), timeout=timeout, refresh=refresh
        )

    def cache_client(
        self,
        history: History,
        process: str,
        pattern: Pattern,
        ttl_s: float,
        fill_delay_s: float = 0.0,
        payload_size: int = 32,
    ) -> CacheClient:
        """A cache client with its own Redis and database connections."""
        primary = self.primary_client()
        return CacheClient(
            history,
            process,
            primary.call,
            self.db,
            pattern=pattern,
            ttl_s=ttl_s,
            fill_delay_s=fill_delay_s,
            payload_size=payload_size,
        )

    def master_host(self) -> Host:
        view = self.sentinels.master()
        if view is None:
            raise AssertionError("no Sentinel names a usable master")
        return self.nodes.by_address[view.address]

    def admin(self, host: Host) -> redis.Redis:
        return self.nodes.admin(host)

    def wait_healthy(self, timeout: float = 90) -> Host:
        """Wait until every Sentinel names the same master, sees the others, and that master has every other
        Redis host as an online replica; return the master's host."""
        n_redis, n_sentinels = len(self.nodes.hosts), len(self.sentinels.hosts)

        def healthy() -> Host | None:
            views = self.sentinels.views()
            if len(views) != n_sentinels or len({v.endpoint for v in views}) != 1:
                return None
            if any(not v.usable or v.other_sentinels != n_sentinels - 1 for v in views):
                return None
            master = self.nodes.by_address.get(views[0].address)
            if master is None:
                return None
            conn = self.admin(master)
            try:
                repl = conn.info("replication")
            finally:
                conn.close()
            online = [
                k
                for k, v in repl.items()
                if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
            ]
            return master if repl.get("role") == "master" and len(online) == n_redis - 1 else None

        return wait_for(
            healthy, timeout, interval=0.5, what="cache topology healthy (one master, all replicas online)"
        )

    def key_values(self, host: Host, pattern: str) -> dict[str, str]:
        """Every key matching ``pattern`` on ``host`` (a replica answers SCAN and GET too), with its value."""
        conn = self.admin(host)
        try:
            return {
                str(k): str(v)
                for k in conn.scan_iter(match=pattern, count=1000)
                if (v := conn.get(k)) is not None
            }
        finally:
            conn.close()

    def replica_differences(self, pattern: str, timeout: float = 30) -> dict[str, list[str]]:
        """Once every replica's replication offset reached the primary's (or ``timeout`` passed): {replica:
        [the first keys matching ``pattern`` whose value differs from the primary's, or that one side lacks]}
        (empty: identical). Writers must have stopped."""
        master = self.master_host()
        conn = self.admin(master)
        try:
            target = int(conn.info("replication")["master_repl_offset"])
        finally:
            conn.close()
        replicas = [h for h in self.nodes.hosts if h.name != master.name]

        def offset(host: Host) -> int:
            c = self.admin(host)
            try:
                return int(c.info("replication").get("slave_repl_offset", -1))
            finally:
                c.close()

        with contextlib.suppress(TimeoutError):
            wait_for(lambda: all(offset(h) >= target for h in replicas), timeout, 0.25, "replicas caught up")
        ref = self.key_values(master, pattern)
        out: dict[str, list[str]] = {}
        if not ref:
            out[master.name] = [f"no key matching {pattern} on the primary (nothing compared)"]
        for h in replicas:
            got = self.key_values(h, pattern)
            bad = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
            if bad:
                out[h.name] = [f"{k}: {ref.get(k)!r} on {master.name}, {got.get(k)!r} here" for k in bad[:5]]
                out[h.name] += [f"{len(bad)} keys differ in all"] if len(bad) > 5 else []
        return out

    def flush_prefix(self, pattern: str) -> None:
        """Delete every key matching ``pattern`` on the master."""
        conn = self.admin(self.master_host())
        try:
            batch = []
            for k in conn.scan_iter(match=pattern, count=1000):
                batch.append(k)
                if len(batch) >= 500:
                    conn.unlink(*batch)
                    batch = []
            if batch:
                conn.unlink(*batch)
        finally:
            conn.close()
