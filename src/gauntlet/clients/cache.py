"""A cache in front of PostgreSQL, the way applications build one, recording every read and write.

Rows of ``gauntlet_cache_kv (key, version, payload)`` live in PostgreSQL; writers bump ``version`` (so values
only grow per key, which makes a stale read decidable) and readers go through Redis. Three patterns:

``cache-aside`` (textbook)
    read: ``GET``; on a miss read the row and ``SET`` it with a TTL. write: update the row, then ``DEL``.
    A reader that read the row before a write and fills the cache after that write's ``DEL`` leaves the old
    value cached until the TTL ends: stale reads are possible, bounded by the TTL.
``guarded`` (cache-aside with versioned invalidation)
    write: update the row, then leave a *tombstone* carrying the new version instead of deleting the key.
    Every fill is a set-if-newer (one Lua script), so a late fill with an older version loses against the
    tombstone. After a write is acknowledged (row committed and tombstone set) no read returns an older value
    — as long as the tombstone is not evicted or expired before a late fill arrives.
``write-through``
    write: update the row, then set-if-newer the new value in the cache. Reads fill on a miss, set-if-newer.

Cache values are ``<version>|<kind>|<key>|<payload>`` (kind ``v`` value, ``t`` tombstone); a value with a
version ``n`` ranks ``2n + 1``, a tombstone ``2n``, so a fill of version ``n`` replaces a tombstone of ``n``
but not one of ``n + 1``. Payloads are derived from key and version, so a read can check that what the cache
returned is exactly the row it claims to be.

Every ``read`` and ``write`` is a history operation whose value is the version; ``db_read`` reads the row
directly (for latency comparisons).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
import redis

from gauntlet.cluster import Cluster
from gauntlet.errors import InventoryError
from gauntlet.history import History

TABLE = "gauntlet_cache_kv"
PREFIX = "gauntlet:kv:"
Pattern = Literal["cache-aside", "guarded", "write-through"]
PATTERNS: tuple[Pattern, ...] = ("cache-aside", "guarded", "write-through")

# Set KEYS[1] to ARGV[2] with a TTL of ARGV[3] ms unless the cached entry ranks ARGV[1] or higher.
SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local v, k = string.match(cur, '^(%d+)|(%a)|')
  if v then
    local rank = tonumber(v) * 2 + ((k == 'v') and 1 or 0)
    if rank >= tonumber(ARGV[1]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class CorruptValue(Exception):
    """The cache returned a value that is not the row it names (wrong key, payload or format)."""


def payload(key: str, version: int, size: int = 32) -> str:
    """The payload of a row version: derived from key and version, ``size`` characters."""
    seed = hashlib.sha256(f"{key}:{version}".encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


def encode(key: str, version: int, kind: str = "v", size: int = 32) -> str:
    return f"{version}|{kind}|{key}|{payload(key, version, size) if kind == 'v' else ''}"


def decode(key: str, raw: str) -> tuple[int, str]:
    """(version, kind) of a cached value; raises :class:`CorruptValue` if it is not a value of ``key``."""
    parts = raw.split("|", 3)
    if len(parts) != 4 or not parts[0].isdigit() or parts[1] not in ("v", "t"):
        raise CorruptValue(f"{key}: unparsable cache value {raw[:80]!r}")
    version, kind, k, body = int(parts[0]), parts[1], parts[2], parts[3]
    if k != key:
        raise CorruptValue(f"{key}: the cache returned the value of {k!r}")
    if kind == "v" and body != payload(key, version, len(body)):
        raise CorruptValue(f"{key}: payload does not match version {version}")
    return version, kind


@dataclass(frozen=True)
class Database:
    """The PostgreSQL the cache fronts: a standalone server (group ``postgresql_standalone``) or HAProxy's
    read-write port in front of Patroni (group ``haproxy``), as the application user, with ``verify-full``
    TLS."""

    host: str
    address: str
    port: int
    user: str
    password: str
    dbname: str
    sslrootcert: Path

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> Database:
        """The database endpoint of the topology, from the inventory (and the role defaults) alone.

        Group ``haproxy`` present (the ``default`` topology: Patroni behind HAProxy) → HAProxy's read-write
        port (``haproxy_primary_port``) on the first ``haproxy`` host, as the Patroni application user
        (``patroni_app_*`` of group ``postgres``); else the first host of group ``postgresql_standalone``
        (standalone PostgreSQL, ``postgresql_port`` and ``postgresql_app_*``). ``verify-full`` either way: HAProxy passes
        TLS through, and the pki role puts the load balancer's name in the members' certificates.
        """
        from gauntlet.clients.redis import secret

        if cluster.has_group("haproxy"):
            lb = cluster.group("haproxy")[0]
            v = lambda name: cluster.setting(name, "postgres")  # noqa: E731
            return cls(
                host=lb.name,
                address=lb.address,
                port=int(cluster.setting("haproxy_primary_port", "haproxy")),
                user=str(v("patroni_app_user")),
                password=secret(cluster, "patroni_app_password", "postgres"),
                dbname=str(v("patroni_app_database")),
                sslrootcert=cluster.ca_cert,
            )
        if cluster.has_group("postgresql_standalone"):  # role postgresql, mode standalone
            h = cluster.group("postgresql_standalone")[0]
            v = lambda name: cluster.setting(name, "postgresql_standalone")  # noqa: E731
            return cls(
                host=h.name,
                address=h.address,
                port=int(v("postgresql_port")),
                user=str(v("postgresql_app_user")),
                password=secret(cluster, "postgresql_app_password", "postgresql_standalone"),
                dbname=str(v("postgresql_app_database")),
                sslrootcert=cluster.ca_cert,
            )
        raise InventoryError(
            f"inventory {cluster.source} has no database for the cache: group haproxy (in front of "
            "Patroni, group postgres) or group postgresql_standalone (a standalone PostgreSQL)"
        )

    def connect(self, timeout: int = 3) -> psycopg.Connection:
        """An autocommit connection (each statement its own transaction)."""
        return psycopg.connect(
            host=self.host,
            hostaddr=self.address,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            sslmode="verify-full",
            sslrootcert=str(self.sslrootcert),
            connect_timeout=timeout,
            autocommit=True,
            application_name="gauntlet-cache",
        )

    def setup(self, keys: Iterable[str]) -> None:
        """Create the table if needed and (re)set every key to version 1."""
        with self.connect() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, version bigint NOT NULL, payload text)"
            )
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {TABLE} (key, version, payload) VALUES (%s, 1, %s) "
                    "ON CONFLICT (key) DO UPDATE SET version = 1, payload = EXCLUDED.payload",
                    [(k, payload(k, 1)) for k in keys],
                )

    def versions(self, keys: Iterable[str]) -> dict[str, int]:
        """The current version of each key."""
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT key, version FROM {TABLE} WHERE key = ANY(%s)", (list(keys),)
            ).fetchall()
        return {k: int(v) for k, v in rows}


@dataclass
class CacheStats:
    """What a client saw: hits, misses, fills that lost against a newer entry, corrupt values."""

    hits: int = 0
    misses: int = 0
    tombstones: int = 0
    fills: int = 0
    fills_refused: int = 0
    corrupt: list[str] = field(default_factory=list)


class CacheClient:
    """One application thread's view: a Redis connection (usually to the Sentinel-discovered primary) and a
    database connection, reading and writing through ``pattern``, recording into ``history`` as ``process``.

    ``redis_call(fn)`` runs ``fn(conn)`` against Redis (e.g. :meth:`gauntlet.clients.redis.PrimaryClient.call`).
    ``fill_delay`` holds a reader between its database read and its cache fill (a slow application server,
    a GC pause): the window in which cache-aside's race happens.
    """

    def __init__(
        self,
        history: History,
        process: str,
        redis_call: Callable[[Callable[[redis.Redis], Any]], Any],
        db: Database,
        pattern: Pattern = "cache-aside",
        ttl_s: float = 5.0,
        fill_delay_s: float = 0.0,
        payload_size: int = 32,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
        self.history = history
        self.process = process
        self.redis_call = redis_call
        self.db = db
        self.pattern = pattern
        self.ttl_ms = int(ttl_s * 1000)
        self.fill_delay_s = fill_delay_s
        self.payload_size = payload_size
        self.stats = CacheStats()
        self._conn: psycopg.Connection | None = None

    # -- plumbing ------------------------------------------------------------------------------------------
    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self.db.connect()
        return self._conn

    def _set_if_newer(self, key: str, version: int, kind: str) -> bool:
        rank = 2 * version + (1 if kind == "v" else 0)
        value = encode(key, version, kind, self.payload_size)
        done = self.redis_call(lambda r: r.eval(SET_IF_NEWER, 1, PREFIX + key, rank, value, self.ttl_ms))
        return bool(done)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- operations ----------------------------------------------------------------------------------------
    def db_version(self, key: str) -> int:
        """The row's version, straight from the database."""
        row = self._db().execute(f"SELECT version, payload FROM {TABLE} WHERE key = %s", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return int(row[0])

    def read(self, key: str) -> int:
        """Read ``key`` through the cache (recorded as ``read``); returns the version seen."""
        with self.history.op(self.process, "read", key=key) as out:
            raw = self.redis_call(lambda r: r.get(PREFIX + key))
            if raw is not None:
                try:
                    version, kind = decode(key, raw)
                except CorruptValue as exc:
                    self.stats.corrupt.append(str(exc))
                    raise
                if kind == "v":
                    self.stats.hits += 1
                    out.ok(version)
                    return version
                self.stats.tombstones += 1
            else:
                self.stats.misses += 1
            version = self.db_version(key)
            if self.fill_delay_s:
                time.sleep(self.fill_delay_s)
            if self.pattern == "cache-aside":
                value = encode(key, version, "v", self.payload_size)
                self.redis_call(lambda r: r.set(PREFIX + key, value, px=self.ttl_ms))
                self.stats.fills += 1
            elif self._set_if_newer(key, version, "v"):
                self.stats.fills += 1
            else:
                self.stats.fills_refused += 1
            out.ok(version)
            return version

    def write(self, key: str) -> int:
        """Bump the row's version and invalidate or update the cache (recorded as ``write``, value = the new
        version; acknowledged only once the cache step is done too)."""
        with self.history.op(self.process, "write", key=key) as out:
            row = (
                self._db()
                .execute(f"UPDATE {TABLE} SET version = version + 1 WHERE key = %s RETURNING version", (key,))
                .fetchone()
            )
            if row is None:
                out.fail(f"no row {key}")
                return -1
            version = int(row[0])
            if self.pattern == "cache-aside":
                self.redis_call(lambda r: r.delete(PREFIX + key))
            elif self.pattern == "guarded":
                self._set_if_newer(key, version, "t")
            else:
                self._set_if_newer(key, version, "v")
            out.ok(version)
            return version

    def write_db_only(self, key: str) -> int:
        """Bump the row's version without touching the cache (a writer that bypasses it), recorded as
        ``write``: every cached read after it is stale until the TTL ends."""
        with self.history.op(self.process, "write", key=key) as out:
            row = (
                self._db()
                .execute(f"UPDATE {TABLE} SET version = version + 1 WHERE key = %s RETURNING version", (key,))
                .fetchone()
            )
            version = int(row[0])
            out.ok(version)
            return version

    def db_read(self, key: str) -> int:
        """Read the row directly, bypassing the cache (recorded as ``db_read``)."""
        with self.history.op(self.process, "db_read", key=key) as out:
            version = self.db_version(key)
            out.ok(version)
            return version


class Workload:
    """Threads of :class:`CacheClient` reading and writing a shared key set until stopped."""

    def __init__(
        self,
        make_client: Callable[[str, float], CacheClient],
        keys: list[str],
        readers: int = 4,
        writers: int = 2,
        slow_readers: int = 0,
        slow_delay_s: float = 0.3,
        write_interval_s: float = 0.05,
    ) -> None:
        self.keys = keys
        self.stop = threading.Event()
        self.clients: list[CacheClient] = []
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []
        for i in range(readers):
            delay = slow_delay_s if i < slow_readers else 0.0
            c = make_client(f"r{i}", delay)
            self.clients.append(c)
            self._threads.append(threading.Thread(target=self._loop, args=(c, c.read, i, 0.0), daemon=True))
        for i in range(writers):
            c = make_client(f"w{i}", 0.0)
            self.clients.append(c)
            self._threads.append(
                threading.Thread(
                    target=self._loop, args=(c, c.write, i + 1000, write_interval_s), daemon=True
                )
            )

    def _loop(self, client: CacheClient, op: Callable[[str], int], seed: int, pause: float) -> None:
        n = seed
        while not self.stop.is_set():
            n += 7
            key = self.keys[n % len(self.keys)]
            try:
                op(key)
            except Exception as exc:  # recorded as info by the history; keep going
                self.errors.append(f"{client.process}: {type(exc).__name__}: {exc}")
                time.sleep(0.05)
            if pause:
                time.sleep(pause)
        client.close()

    def run(self, seconds: float) -> None:
        """Run every thread for ``seconds`` and wait for them to stop."""
        for t in self._threads:
            t.start()
        self.stop.wait(seconds)
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def stats(self) -> CacheStats:
        total = CacheStats()
        for c in self.clients:
            for f in ("hits", "misses", "tombstones", "fills", "fills_refused"):
                setattr(total, f, getattr(total, f) + getattr(c.stats, f))
            total.corrupt += c.stats.corrupt
        return total
