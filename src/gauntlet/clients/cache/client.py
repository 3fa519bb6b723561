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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from gauntlet.clients.base import Fail, record
from gauntlet.clients.cache.database import Database
from gauntlet.clients.cache.values import (
    PATTERNS,
    PREFIX,
    SET_IF_NEWER,
    TABLE,
    CorruptValue,
    Pattern,
    decode,
    encode,
)
from gauntlet.history import History


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
        return int(
            record(
                self.history, self.process, "read", lambda: self._read(key), key=key, returns_value=True
            ).value
        )

    def _read(self, key: str) -> int:
        raw = self.redis_call(lambda r: r.get(PREFIX + key))
        if raw is not None:
            try:
                version, kind = decode(key, raw)
            except CorruptValue as exc:
                self.stats.corrupt.append(str(exc))
                raise
            if kind == "v":
                self.stats.hits += 1
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
        return version

    def _bump(self, key: str) -> int:
        """Increment the row's version in the database; the new version (a missing row: nothing written)."""
        row = (
            self._db()
            .execute(f"UPDATE {TABLE} SET version = version + 1 WHERE key = %s RETURNING version", (key,))
            .fetchone()
        )
        if row is None:
            raise Fail(f"no row {key}")
        return int(row[0])

    def _write(self, key: str) -> int:
        version = self._bump(key)
        if self.pattern == "cache-aside":
            self.redis_call(lambda r: r.delete(PREFIX + key))
        elif self.pattern == "guarded":
            self._set_if_newer(key, version, "t")
        else:
            self._set_if_newer(key, version, "v")
        return version

    def write(self, key: str) -> int:
        """Bump the row's version and invalidate or update the cache (recorded as ``write``, value = the new
        version; acknowledged only once the cache step is done too). -1: no such row."""
        out = record(
            self.history, self.process, "write", lambda: self._write(key), key=key, returns_value=True
        )
        return int(out.value) if out.ok else -1

    def write_db_only(self, key: str) -> int:
        """Bump the row's version without touching the cache (a writer that bypasses it), recorded as
        ``write``: every cached read after it is stale until the TTL ends. -1: no such row."""
        out = record(
            self.history, self.process, "write", lambda: self._bump(key), key=key, returns_value=True
        )
        return int(out.value) if out.ok else -1

    def db_read(self, key: str) -> int:
        """Read the row directly, bypassing the cache (recorded as ``db_read``)."""
        out = record(
            self.history, self.process, "db_read", lambda: self.db_version(key), key=key, returns_value=True
        )
        return int(out.value)
