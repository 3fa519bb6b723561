"""The PostgreSQL workload: writers inserting unique ids and readers, recording into a History.

Writers insert unique integer ids (through HAProxy's read-write port in the Patroni topology); every insert
is one history operation ``write`` with the id as value, completed as:

- ``ok``: the server acknowledged the commit (and did not warn that the wait for the synchronous standby was
  cut short: that commit is local only, so it is recorded ``info``);
- ``fail`` (certainly not applied): the connection could not be made, so nothing was sent; or the server
  rejected the statement outright (read-only transaction, constraint or syntax error);
- ``info`` (unknown): the statement was sent but no definite answer came back (connection lost, server
  shut down or terminated the session, cancelled, watchdog timeout). The row may or may not exist.

Readers run ``SELECT`` through the read-only port and are recorded as ``read`` operations. A final read of
all ids (:func:`read_ids`) is what :func:`gauntlet.checkers.lost_acknowledged_writes` judges the writers by.
Both run as bounded :class:`~gauntlet.clients.base.WorkloadRunner` threads.
"""

from __future__ import annotations

import itertools
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg

from gauntlet.clients.base import Fail, Info, Result, WorkloadRunner, record
from gauntlet.clients.postgres.connection import Endpoint, Watchdog, pg_error, short
from gauntlet.history import History

TABLE = "gauntlet_writes"
# Server warnings that turn a successful COMMIT into an unknown outcome: the transaction committed locally
# but the wait for the synchronous standby was cancelled or the session is being terminated.
_UNSAFE_COMMIT_WARNINGS = ("canceling wait for synchronous replication", "terminating connection")
# A workload stops by itself after this long, even when the check that started it failed (a Patroni schedule
# runs for its budget, 300 s by default, plus the heal of its last fault).
WORKLOAD_MAX_S = 1800.0


def ensure_table(endpoint: Endpoint) -> None:
    """Create the writers' table if it does not exist."""
    with endpoint.connect() as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, writer text NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )


def read_ids(endpoint: Endpoint, since: int = 0) -> set[int]:
    """Every id in the writers' table (from ``since`` on): the final read of a check."""
    with endpoint.connect() as conn:
        rows = conn.execute(f"SELECT id FROM {TABLE} WHERE id >= %s", (since,)).fetchall()
    return {int(r[0]) for r in rows}


@dataclass
class WorkloadStats:
    """Counts of completed operations per type, for logs and bench lines."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, f: str, kind: str) -> None:
        """Count one completed ``f`` operation that ended ``kind``."""
        key = f"{f}:{kind}"
        self.counts[key] = self.counts.get(key, 0) + 1


@dataclass
class _Session:
    """One process's connection, and the server warnings it received during the current statement."""

    conn: psycopg.Connection[Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.conn is not None:
            with suppress(Exception):
                self.conn.close()
        self.conn = None


class PostgresWorkload:
    """Writer and reader threads against PostgreSQL endpoints, recording into a :class:`History`.

    ``writers`` threads insert unique ids through ``write_endpoint`` (one op every ``interval`` seconds each,
    backing off ``backoff`` after a failure); ``readers`` threads run a read through ``read_endpoint``.
    Use as a context manager: threads start on enter and stop on exit.
    """

    def __init__(
        self,
        history: History,
        write_endpoint: Endpoint,
        read_endpoint: Endpoint | None = None,
        writers: int = 2,
        readers: int = 0,
        interval: float = 0.02,
        backoff: float = 0.1,
        op_timeout: float = 10.0,
        id_base: int | None = None,
        max_seconds: float = WORKLOAD_MAX_S,
    ) -> None:
        self.history = history
        self.write_endpoint = write_endpoint
        self.read_endpoint = read_endpoint
        self.n_writers = writers
        self.n_readers = readers if read_endpoint else 0
        self.interval = interval
        self.backoff = backoff
        self.op_timeout = op_timeout
        # Ids unique across runs of a session: the base is the start time in ms, times 1000.
        self.id_base = id_base if id_base is not None else int(time.time() * 1000) * 1000
        self._ids = itertools.count(self.id_base)
        self._id_lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self.stats = WorkloadStats()
        writer_names = [f"w{i}" for i in range(self.n_writers)]
        reader_names = [f"r{i}" for i in range(self.n_readers)]
        for p in writer_names + reader_names:
            self._sessions[p] = _Session()
        self._runners = [
            WorkloadRunner(
                writer_names,
                self._write,
                pause_s=interval,
                backoff_s=backoff,
                max_seconds=max_seconds,
                finish=self._finish,
            ),
            WorkloadRunner(
                reader_names,
                self._read,
                pause_s=interval * 5,
                backoff_s=backoff,
                max_seconds=max_seconds,
                finish=self._finish,
            ),
        ]

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> PostgresWorkload:
        """Start the writer and reader threads."""
        for r in self._runners:
            r.start()
        return self

    def stop(self) -> None:
        """Stop every thread and wait for it (each finishes its current operation, bounded by op_timeout);
        :class:`~gauntlet.clients.base.WorkloadStuck` if one does not stop by then."""
        for r in self._runners:
            r.request_stop()  # both at once: readers need not wait for the writers to stop
        for r in self._runners:
            r.stop(self.op_timeout + 5)

    def __enter__(self) -> PostgresWorkload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _finish(self, process: str) -> None:
        self._sessions[process].close()

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    # -- writers ----------------------------------------------------------------------------------------
    def _connect(self, session: _Session, endpoint: Endpoint) -> psycopg.Connection[Any]:
        """The session's open connection, or a new one (a failure to connect sent nothing: ``fail``)."""
        if session.conn is None or session.conn.closed:
            try:
                session.conn = endpoint.connect()
            except Exception as exc:
                session.conn = None
                raise Fail(f"connect: {short(exc)}") from exc
            session.conn.add_notice_handler(lambda diag: session.warnings.append(diag.message_primary or ""))
        return session.conn

    def _insert(self, process: str, value: int) -> None:
        session = self._sessions[process]
        conn = self._connect(session, self.write_endpoint)
        session.warnings.clear()
        dog = Watchdog(conn, self.op_timeout)
        try:
            with dog:
                conn.execute(f"INSERT INTO {TABLE} (id, writer) VALUES (%s, %s)", (value, process))
        except Exception as exc:
            err = Info(f"no answer within {self.op_timeout:.0f}s") if dog.fired else pg_error(exc)
            if not err.definite or conn.closed or conn.broken:
                session.close()
            raise err from exc
        unsafe = [w for w in session.warnings if w.startswith(_UNSAFE_COMMIT_WARNINGS)]
        if unsafe:
            raise Info(f"committed locally only: {unsafe[0]}")

    def _write(self, process: str, n: int) -> Result:
        value = self._next_id()
        out = record(self.history, process, "write", lambda: self._insert(process, value), value=value)
        self.stats.add("write", out.type)
        return out

    # -- readers ----------------------------------------------------------------------------------------
    def _select(self, process: str) -> dict[str, Any] | None:
        assert self.read_endpoint is not None
        session = self._sessions[process]
        try:
            conn = self._connect(session, self.read_endpoint)
            with Watchdog(conn, self.op_timeout):
                row = conn.execute(f"SELECT count(*), pg_is_in_recovery() FROM {TABLE}").fetchone()
        except Fail:
            raise  # could not connect
        except Exception as exc:  # a read has no effect: any failure is a definite fail
            session.close()
            raise Fail(short(exc)) from exc
        return {"rows": int(row[0]), "replica": bool(row[1])} if row else None

    def _read(self, process: str, n: int) -> Result:
        out = record(
            self.history, process, "read", lambda: self._select(process), returns_value=True, read_only=True
        )
        self.stats.add("read", out.type)
        return out
