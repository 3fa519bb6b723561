"""PostgreSQL workload client (psycopg 3) and Patroni REST API client, recording into a History.

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
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from base64 import b64encode
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gauntlet.checkers.leaders import LeaderSample
from gauntlet.history import History

log = logging.getLogger(__name__)

TABLE = "gauntlet_writes"
# Server warnings that turn a successful COMMIT into an unknown outcome: the transaction committed locally
# but the wait for the synchronous standby was cancelled or the session is being terminated.
_UNSAFE_COMMIT_WARNINGS = ("canceling wait for synchronous replication", "terminating connection")
# SQLSTATE classes that mean "the statement was rejected, nothing was applied".
_DEFINITE_SQLSTATE_CLASSES = ("22", "23", "25", "28", "3D", "42")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, with full certificate verification.

    ``host`` is the name the server certificate must carry (libpq ``host``, used for ``verify-full``);
    ``address`` is where to connect (libpq ``hostaddr``): the controller cannot resolve container names.
    """

    host: str
    address: str
    port: int
    user: str
    password: str
    dbname: str
    sslrootcert: str | Path
    sslmode: str = "verify-full"
    connect_timeout: int = 3
    application_name: str = "gauntlet"

    def conninfo(self, **override: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg.connect`."""
        kw: dict[str, Any] = {
            "host": self.host,
            "hostaddr": self.address,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "sslrootcert": str(self.sslrootcert),
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
            # Notice a dead peer within seconds rather than the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 2,
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": 5000,
        }
        kw.update(override)
        return kw

    def with_(self, **changes: Any) -> Endpoint:
        """A copy with some fields changed (another port, user or database)."""
        return replace(self, **changes)

    def connect(self, autocommit: bool = True, **override: Any) -> psycopg.Connection[Any]:
        """Open a connection (TLS verified as configured)."""
        return psycopg.connect(autocommit=autocommit, **self.conninfo(**override))


def is_definite(exc: BaseException) -> bool:
    """True when an error raised *after* sending a statement still proves nothing was applied."""
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction | pgerrors.UniqueViolation):
        return True
    if isinstance(exc, psycopg.OperationalError):
        return False  # lost connection, shutdown, cancel: unknown
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.DatabaseError) and state[:2] in _DEFINITE_SQLSTATE_CLASSES


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


class _Watchdog:
    """Breaks a connection whose operation outlives ``timeout`` (shuts its socket down from outside), so a
    client never hangs on a paused or unreachable server; the blocked call then raises (``info``)."""

    def __init__(self, conn: psycopg.Connection[Any], timeout: float) -> None:
        self._timer = threading.Timer(timeout, self._fire, args=(conn,))
        self._timer.daemon = True
        self.fired = False

    def _fire(self, conn: psycopg.Connection[Any]) -> None:
        self.fired = True
        with suppress(Exception):
            fd = conn.pgconn.socket
            s = socket.socket(fileno=socket.dup(fd))
            try:
                s.shutdown(socket.SHUT_RDWR)
            finally:
                s.close()

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


@dataclass
class WorkloadStats:
    """Counts of completed operations per type, for logs and bench lines."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, f: str, kind: str) -> None:
        key = f"{f}:{kind}"
        self.counts[key] = self.counts.get(key, 0) + 1


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
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = WorkloadStats()

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> PostgresWorkload:
        """Start the writer and reader threads."""
        for i in range(self.n_writers):
            self._spawn(self._writer, f"w{i}")
        for i in range(self.n_readers):
            self._spawn(self._reader, f"r{i}")
        return self

    def stop(self) -> None:
        """Stop every thread and wait for it (each finishes its current operation, bounded by op_timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(self.op_timeout + 5)

    def __enter__(self) -> PostgresWorkload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, args=(name,), name=f"pg-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._ids)

    # -- writers ----------------------------------------------------------------------------------------
    def _writer(self, process: str) -> None:
        conn: psycopg.Connection[Any] | None = None
        warnings: list[str] = []

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            warnings.append(diag.message_primary or "")

        while not self._stop.is_set():
            value = self._next_id()
            kind = "ok"
            with self.history.op(process, "write", value) as out:
                if conn is None or conn.closed:
                    try:
                        conn = self.write_endpoint.connect()
                        conn.add_notice_handler(on_notice)
                    except Exception as exc:  # nothing was sent: certainly not applied
                        conn = None
                        out.fail(f"connect: {_short(exc)}")
                        kind = "fail"
                if conn is not None:
                    warnings.clear()
                    try:
                        with _Watchdog(conn, self.op_timeout) as dog:
                            conn.execute(
                                f"INSERT INTO {TABLE} (id, writer) VALUES (%s, %s)", (value, process)
                            )
                        unsafe = [w for w in warnings if w.startswith(_UNSAFE_COMMIT_WARNINGS)]
                        if unsafe:
                            out.info(f"committed locally only: {unsafe[0]}")
                            kind = "info"
                    except Exception as exc:
                        if dog.fired:
                            out.info(f"no answer within {self.op_timeout:.0f}s")
                            kind = "info"
                        elif is_definite(exc):
                            out.fail(_short(exc))
                            kind = "fail"
                        else:
                            out.info(_short(exc))
                            kind = "info"
                        if not is_definite(exc) or conn.closed or conn.broken:
                            with suppress(Exception):
                                conn.close()
                            conn = None
            self.stats.add("write", kind)
            self._stop.wait(self.interval if kind == "ok" else self.backoff)
        if conn is not None:
            with suppress(Exception):
                conn.close()

    # -- readers ----------------------------------------------------------------------------------------
    def _reader(self, process: str) -> None:
        assert self.read_endpoint is not None
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            kind = "ok"
            with self.history.op(process, "read") as out:
                try:
                    if conn is None or conn.closed:
                        conn = self.read_endpoint.connect()
                    with _Watchdog(conn, self.op_timeout):
                        row = conn.execute(f"SELECT count(*), pg_is_in_recovery() FROM {TABLE}").fetchone()
                    out.ok({"rows": int(row[0]), "replica": bool(row[1])} if row else None)
                except Exception as exc:  # a read has no effect: any failure is a definite fail
                    out.fail(_short(exc))
                    kind = "fail"
                    with suppress(Exception):
                        if conn is not None:
                            conn.close()
                    conn = None
            self.stats.add("read", kind)
            self._stop.wait(self.interval * 5 if kind == "ok" else self.backoff)
        if conn is not None:
            with suppress(Exception):
                conn.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# ---- Patroni REST API -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatroniAPI:
    """One member's Patroni REST API over TLS (verified against the cluster CA), with basic auth for the
    endpoints that change things."""

    name: str
    address: str
    port: int
    ca: str | Path
    username: str | None = None
    password: str | None = None
    timeout: float = 3.0
    # Client certificate and key presented to the API (Patroni asks for one on its unsafe endpoints when
    # restapi.verify_client is optional or required).
    client_cert: tuple[str | Path, str | Path] | None = None

    def _context(self, with_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if with_cert and self.client_cert:
            ctx.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return ctx

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: bool = False,
        timeout: float | None = None,
        cert: bool = True,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request (``auth``: send basic auth; ``cert``: present the
        client certificate, if any)."""
        conn = http.client.HTTPSConnection(
            self.address, self.port, context=self._context(cert), timeout=timeout or self.timeout
        )
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.username:
            token = b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw

    def get(self, path: str, timeout: float | None = None) -> tuple[int, Any]:
        return self.request("GET", path, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """GET /patroni (role, state, timeline, xlog positions)."""
        code, body = self.get("/patroni")
        if not isinstance(body, dict):
            raise RuntimeError(f"{self.name}: /patroni answered {code}: {body!r}")
        return body

    def is_primary(self, timeout: float | None = None) -> bool:
        """True when the member holds the leader lock and runs as primary (what HAProxy routes writes by)."""
        return self.get("/primary", timeout=timeout)[0] == 200

    def cluster(self) -> dict[str, Any]:
        """GET /cluster: every member with role, state, lag, timeline."""
        code, body = self.get("/cluster")
        if not isinstance(body, dict):
            raise RuntimeError(f"{self.name}: /cluster answered {code}: {body!r}")
        return body


# ---- split-brain sampler ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberSample:
    """What one member said at ``time`` (monotonic ns): Patroni's leader claim and PostgreSQL's role."""

    time: int
    host: str
    patroni_primary: bool | None  # /primary answered 200 (None: no answer in time)
    pg_primary: bool | None  # pg_is_in_recovery() was false (None: no answer in time)


class LeaderSampler:
    """Samples every member every ``interval`` s in a background thread, concurrently and with timeouts, and
    keeps what each said. A member whose previous probe is still hanging (a paused process) is left out of
    that round rather than blocking the others.

    ``leader_samples()`` gives, per round, the members whose Patroni claimed the leader lock (/primary = 200:
    the claim HAProxy routes writes by) for :func:`gauntlet.checkers.single_leader`;
    ``pg_primary_overlaps()`` the rounds where more than one PostgreSQL was out of recovery.
    """

    def __init__(
        self,
        apis: Iterable[PatroniAPI],
        endpoints: dict[str, Endpoint],
        interval: float = 0.25,
        timeout: float = 1.5,
    ) -> None:
        self.apis = list(apis)
        self.endpoints = endpoints
        self.interval = interval
        self.timeout = timeout
        self.samples: list[MemberSample] = []
        self.rounds: list[list[MemberSample]] = []
        self._busy: dict[str, threading.Lock] = {a.name: threading.Lock() for a in self.apis}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _probe(self, api: PatroniAPI, slot: list[MemberSample]) -> None:
        lock = self._busy[api.name]
        if not lock.acquire(blocking=False):
            return  # still hanging on this member from an earlier round
        try:
            t = time.monotonic_ns()
            patroni: bool | None
            pg: bool | None
            try:
                patroni = api.is_primary(timeout=self.timeout)
            except Exception:
                patroni = None
            try:
                ep = self.endpoints[api.name]
                with ep.connect(connect_timeout=2) as conn, _Watchdog(conn, self.timeout + 1):
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                pg = (not row[0]) if row else None
            except Exception:
                pg = None
            slot.append(MemberSample(t, api.name, patroni, pg))
        finally:
            lock.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            slot: list[MemberSample] = []
            threads = [threading.Thread(target=self._probe, args=(a, slot), daemon=True) for a in self.apis]
            for t in threads:
                t.start()
            for t in threads:
                t.join(self.timeout * 2 + 1)
            with self._lock:
                self.rounds.append(list(slot))
                self.samples.extend(slot)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def start(self) -> LeaderSampler:
        self._thread = threading.Thread(target=self._loop, name="leader-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(self.timeout * 3 + 2)

    def __enter__(self) -> LeaderSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def leader_samples(self) -> list[LeaderSample]:
        """One :class:`LeaderSample` per round: the members whose Patroni claimed leadership."""
        with self._lock:
            rounds = list(self.rounds)
        return [
            LeaderSample(min(s.time for s in r), frozenset(s.host for s in r if s.patroni_primary))
            for r in rounds
            if r
        ]

    def pg_primary_overlaps(self) -> list[LeaderSample]:
        """Rounds in which more than one PostgreSQL answered that it is not in recovery."""
        with self._lock:
            rounds = list(self.rounds)
        out = []
        for r in rounds:
            prim = frozenset(s.host for s in r if s.pg_primary)
            if len(prim) > 1:
                out.append(LeaderSample(min(s.time for s in r), prim))
        return out

    def answered(self) -> int:
        """How many member probes got an answer from Patroni (a sampler that never answers proves nothing)."""
        with self._lock:
            return sum(1 for s in self.samples if s.patroni_primary is not None)


@contextmanager
def sampling(sampler: LeaderSampler) -> Iterator[LeaderSampler]:
    """Run a sampler around a block."""
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
