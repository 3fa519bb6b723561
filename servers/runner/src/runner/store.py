"""Entity state in PostgreSQL, every write fenced by its shard's token.

``shard_fence`` holds, per shard, the token (etcd create revision) of its newest owner. A new owner raises
it before serving; every write locks the row and applies only while it still holds the writer's token, in
one statement, so a runner that lost its shard -- paused, cut off, or simply late -- cannot write once the
next owner took over. With ``fencing = false`` (a planted defect) writes skip that check.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from runner.config import PostgresConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS shard_fence (shard int PRIMARY KEY, token bigint NOT NULL);
CREATE TABLE IF NOT EXISTS entities (
    kind text NOT NULL, id text NOT NULL, shard int NOT NULL, state jsonb NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS timers (
    id text PRIMARY KEY, shard int NOT NULL, scheduled_at timestamptz NOT NULL, due_at timestamptz NOT NULL,
    cancelled boolean NOT NULL DEFAULT false, fired_at timestamptz, fired_by text);
CREATE INDEX IF NOT EXISTS timers_due ON timers (shard, due_at) WHERE fired_at IS NULL AND NOT cancelled;
CREATE TABLE IF NOT EXISTS timer_fires (
    id text NOT NULL, runner text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS singleton (
    name text PRIMARY KEY, token bigint NOT NULL, holder text NOT NULL, seq bigint NOT NULL);
CREATE TABLE IF NOT EXISTS singleton_history (
    name text NOT NULL, runner text NOT NULL, token bigint NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(), first_seq bigint NOT NULL);
"""
SCHEMA_LOCK = 0x6A756E6E  # advisory lock: runners starting together create the schema once


class Fenced(RuntimeError):
    """The write's token is no longer its shard's: another runner owns it now. Nothing was written."""


class StoreUnavailable(RuntimeError):
    """PostgreSQL could not be reached (``maybe_applied`` False: nothing was sent) or did not answer (the
    write may or may not have happened)."""

    def __init__(self, message: str, maybe_applied: bool = True) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class Store:
    """A small pool of connections to the one PostgreSQL (autocommit; each operation one statement or one
    transaction)."""

    def __init__(self, cfg: PostgresConfig, ca_file: str, fencing: bool) -> None:
        self.fencing = fencing
        params: dict[str, Any] = {
            "host": cfg.host,
            "port": cfg.port,
            "dbname": cfg.dbname,
            "user": cfg.user,
            "password": cfg.password,
            "sslmode": cfg.sslmode,
            "sslrootcert": ca_file or None,
            "connect_timeout": cfg.connect_timeout,
            "options": f"-c statement_timeout={cfg.statement_timeout_ms}",
            "application_name": "gauntlet-runner",
        }
        self._conninfo = make_conninfo(**{k: v for k, v in params.items() if v is not None})
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue(cfg.pool_size)
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True)

    @contextlib.contextmanager
    def conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool; one that failed is closed, not returned."""
        try:
            c = self._idle.get_nowait()
        except queue.Empty:
            try:
                c = self._connect()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(_first_line(exc), maybe_applied=False) from exc
        try:
            yield c
        except psycopg.OperationalError as exc:
            c.close()
            raise StoreUnavailable(_first_line(exc)) from exc
        except BaseException:
            if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                c.close()
            else:
                self._put_back(c)
            raise
        else:
            self._put_back(c)

    def _put_back(self, c: psycopg.Connection[Any]) -> None:
        try:
            self._idle.put_nowait(c)
        except queue.Full:
            c.close()

    def create_schema(self) -> None:
        with self.conn() as c, c.transaction():
            c.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            c.execute(SCHEMA)

    # -- ownership -----------------------------------------------------------------------------------------
    def take_over(self, shard: int, token: int) -> float | None:
        """Raise the shard's fence to ``token`` (a new owner, before it serves): when (PostgreSQL's clock,
        epoch seconds), or None when the fence already holds a token at least as new: someone newer owns it."""
        with self.conn() as c:
            row = c.execute(
                "INSERT INTO shard_fence (shard, token) VALUES (%s, %s) ON CONFLICT (shard) DO UPDATE "
                "SET token = EXCLUDED.token WHERE shard_fence.token < EXCLUDED.token "
                "RETURNING extract(epoch FROM clock_timestamp())::float8",
                (shard, token),
            ).fetchone()
        return float(row[0]) if row is not None else None

    def _fence_cte(self) -> str:
        # Locks the fence row for the statement: a take-over waits for this write, and after it no write
        # with the old token finds its row.
        if self.fencing:
            return "WITH f AS (SELECT 1 FROM shard_fence WHERE shard = %(shard)s AND token = %(token)s FOR UPDATE) "
        return "WITH f AS (SELECT 1) "

    # -- entities ------------------------------------------------------------------------------------------
    def load(self, kind: str, entity: str) -> Any:
        """An entity's state (None when it was never written)."""
        with self.conn() as c:
            row = c.execute(
                "SELECT state FROM entities WHERE kind = %s AND id = %s", (kind, entity)
            ).fetchone()
        return None if row is None else row[0]

    def save(self, kind: str, entity: str, shard: int, token: int, state: Any) -> None:
        """Write an entity's whole state, fenced. :class:`Fenced` when ``token`` no longer owns ``shard``."""
        sql = self._fence_cte() + (
            "INSERT INTO entities (kind, id, shard, state) SELECT %(kind)s, %(id)s, %(shard)s, %(state)s FROM f "
            "ON CONFLICT (kind, id) DO UPDATE SET state = EXCLUDED.state RETURNING 1"
        )
        args = {"kind": kind, "id": entity, "shard": shard, "token": token, "state": Jsonb(state)}
        with self.conn() as c:
            if c.execute(sql, args).fetchone() is None:
                raise Fenced(f"shard {shard}: token {token} was fenced off")

    # -- timers --------------------------------------------------------------------------------------------
    def schedule(self, timer: str, shard: int, token: int, delay_ms: int) -> dict[str, Any] | None:
        """A new timer due ``delay_ms`` from now (PostgreSQL's clock); None when the id is taken."""
        sql = self._fence_cte() + (
            "INSERT INTO timers (id, shard, scheduled_at, due_at) SELECT %(id)s, %(shard)s, clock_timestamp(), "
            "clock_timestamp() + %(delay)s * interval '1 millisecond' FROM f ON CONFLICT (id) DO NOTHING "
            "RETURNING extract(epoch FROM scheduled_at)::float8, extract(epoch FROM due_at)::float8"
        )
        args = {"id": timer, "shard": shard, "token": token, "delay": delay_ms}
        with self.conn() as c:
            row = c.execute(sql, args).fetchone()
            if row is None:
                if self.fencing and not self._holds(c, shard, token):
                    raise Fenced(f"shard {shard}: token {token} was fenced off")
                return None
        return {"id": timer, "scheduled_at": row[0], "due_at": row[1]}

    def holds(self, shard: int, token: int) -> bool:
        """Whether ``token`` still owns ``shard`` (a fenced read's check)."""
        with self.conn() as c:
            return self._holds(c, shard, token)

    def _holds(self, c: psycopg.Connection[Any], shard: int, token: int) -> bool:
        row = c.execute("SELECT token FROM shard_fence WHERE shard = %s", (shard,)).fetchone()
        return row is not None and int(row[0]) == token

    def cancel(self, timer: str, shard: int, token: int) -> str:
        """``cancelled``, ``already-fired``, ``already-cancelled`` or ``unknown`` (no such timer)."""
        sql = self._fence_cte() + (
            "UPDATE timers SET cancelled = true FROM f WHERE id = %(id)s AND fired_at IS NULL AND NOT cancelled "
            "RETURNING 1"
        )
        with self.conn() as c:
            if c.execute(sql, {"id": timer, "shard": shard, "token": token}).fetchone() is not None:
                return "cancelled"
            if self.fencing and not self._holds(c, shard, token):
                raise Fenced(f"shard {shard}: token {token} was fenced off")
            row = c.execute(
                "SELECT fired_at IS NOT NULL, cancelled FROM timers WHERE id = %s", (timer,)
            ).fetchone()
        if row is None:
            return "unknown"
        return "already-fired" if row[0] else "already-cancelled"

    def due_timers(self, shards: list[int], since: dict[int, float] | None = None) -> list[tuple[str, int]]:
        """``(id, shard)`` of the timers of ``shards`` that are due and neither fired nor cancelled; with
        ``since`` (shard -> when this runner took it: the planted defect ``inherit_timers = false``) only those
        scheduled after that."""
        if not shards:
            return []
        due = "fired_at IS NULL AND NOT cancelled AND due_at <= clock_timestamp()"
        with self.conn() as c:
            if since is None:
                rows = c.execute(
                    f"SELECT id, shard FROM timers WHERE shard = ANY(%s) AND {due} ORDER BY due_at LIMIT 200",
                    (shards,),
                ).fetchall()
            else:
                rows = c.execute(
                    "SELECT t.id, t.shard FROM timers t JOIN unnest(%s::int[], %s::float8[]) AS s(shard, since) "
                    f"ON t.shard = s.shard WHERE {due} AND t.scheduled_at >= to_timestamp(s.since) "
                    "ORDER BY due_at LIMIT 200",
                    (shards, [since.get(s, 0.0) for s in shards]),
                ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def fire(self, timer: str, shard: int, token: int, runner: str) -> bool:
        """Fire a due timer once (fenced): mark it fired and record the firing. False when it was cancelled
        or fired meanwhile."""
        sql = self._fence_cte() + (
            ", fired AS (UPDATE timers SET fired_at = clock_timestamp(), fired_by = %(runner)s FROM f "
            "WHERE id = %(id)s AND fired_at IS NULL AND NOT cancelled RETURNING id) "
            "INSERT INTO timer_fires (id, runner) SELECT id, %(runner)s FROM fired RETURNING 1"
        )
        with self.conn() as c:
            return (
                c.execute(sql, {"id": timer, "shard": shard, "token": token, "runner": runner}).fetchone()
                is not None
            )

    def timers(self, timer: str | None = None) -> list[dict[str, Any]]:
        """Timers with every firing (epoch seconds, PostgreSQL's clock): one, or all."""
        where = "WHERE t.id = %s" if timer else ""
        with self.conn() as c:
            rows = c.execute(
                "SELECT t.id, t.shard, extract(epoch FROM t.scheduled_at)::float8, extract(epoch FROM t.due_at)::float8, "
                "t.cancelled, coalesce(json_agg(json_build_object('runner', f.runner, 'at', extract(epoch FROM f.at)::float8) "
                "ORDER BY f.at) FILTER (WHERE f.id IS NOT NULL), '[]') "
                f"FROM timers t LEFT JOIN timer_fires f ON f.id = t.id {where} GROUP BY t.id ORDER BY t.id",
                (timer,) if timer else (),
            ).fetchall()
        return [
            {
                "id": r[0],
                "shard": r[1],
                "scheduled_at": r[2],
                "due_at": r[3],
                "cancelled": r[4],
                "fires": r[5],
            }
            for r in rows
        ]

    # -- the singleton -------------------------------------------------------------------------------------
    def singleton_take_over(self, name: str, token: int, runner: str) -> int | None:
        """Become the singleton's holder with ``token``: its last handed-out sequence number, or None when a
        newer holder already took it. Appends to its leader history."""
        with self.conn() as c, c.transaction():
            row = c.execute(
                "INSERT INTO singleton (name, token, holder, seq) VALUES (%s, %s, %s, 0) ON CONFLICT (name) DO "
                "UPDATE SET token = EXCLUDED.token, holder = EXCLUDED.holder WHERE singleton.token < EXCLUDED.token "
                "RETURNING seq",
                (name, token, runner),
            ).fetchone()
            if row is None:
                return None
            c.execute(
                "INSERT INTO singleton_history (name, runner, token, first_seq) VALUES (%s, %s, %s, %s)",
                (name, runner, token, int(row[0]) + 1),
            )
        return int(row[0])

    def singleton_advance(self, name: str, token: int, seq: int) -> None:
        """Persist the newest sequence number handed out, fenced by the holder's token."""
        if self.fencing:
            sql = "UPDATE singleton SET seq = %s WHERE name = %s AND token = %s RETURNING 1"
            args: tuple[Any, ...] = (seq, name, token)
        else:
            sql = "UPDATE singleton SET seq = %s WHERE name = %s RETURNING 1"
            args = (seq, name)
        with self.conn() as c:
            if c.execute(sql, args).fetchone() is None:
                raise Fenced(f"singleton {name}: token {token} was fenced off")

    def singleton_history(self, name: str) -> list[dict[str, Any]]:
        with self.conn() as c:
            rows = c.execute(
                "SELECT runner, token, extract(epoch FROM acquired_at)::float8, first_seq FROM singleton_history "
                "WHERE name = %s ORDER BY token",
                (name,),
            ).fetchall()
        return [
            {"runner": r[0], "token": int(r[1]), "acquired_at": r[2], "first_seq": int(r[3])} for r in rows
        ]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
