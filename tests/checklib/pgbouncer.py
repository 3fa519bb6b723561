"""PgBouncer on the Patroni members as checks see it: how many server connections a member's PgBouncer holds
(read from that member's PostgreSQL itself, never through the pool), and bounded batches of concurrent
clients through a pooled endpoint."""

from __future__ import annotations

import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg

from checklib.patroni import PatroniCluster
from gauntlet.clients.postgres import Endpoint, Watchdog

# PgBouncer's server connections as the member's PostgreSQL sees them: sessions of the pooled database
# whose client is the member itself. PgBouncer connects to its own member's address (pgbouncer_server_host,
# Patroni's connect address), so the connection's source is that address, the one this query's own
# connection arrived at (inet_server_addr), or loopback. Clients through HAProxy come from HAProxy's
# address, the checks from the controller's: neither is counted.
SERVER_CONNECTIONS_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
    "AND pid <> pg_backend_pid() "
    "AND client_addr IN (inet_server_addr(), inet '127.0.0.1', inet '::1')"
)


class ServerConnectionSampler:
    """Samples, every ``interval`` s on one member's PostgreSQL (a direct superuser connection), how many
    server connections its PgBouncer holds to ``dbname``; ``peak`` is the most seen at once."""

    def __init__(self, pg: PatroniCluster, member: str, dbname: str, interval: float = 0.02) -> None:
        self.member = member
        self.dbname = dbname
        self.interval = interval
        self.endpoint = pg.superuser_endpoint(member)
        self.samples: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"server-conns-{member}", daemon=True)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self.endpoint.connect()
                    with Watchdog(conn, 5):
                        row = conn.execute(SERVER_CONNECTIONS_SQL, (self.dbname,)).fetchone()
                    self.samples.append(int(row[0]) if row else 0)
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    if conn is not None:
                        with suppress(Exception):
                            conn.close()
                    conn = None
                self._stop.wait(self.interval)
        finally:
            if conn is not None:
                with suppress(Exception):
                    conn.close()

    def __enter__(self) -> ServerConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Batch:
    """What a batch of concurrent clients did: who committed, who failed and why, how long it took."""

    clients: int
    committed: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    connected: int = 0
    seconds: float = 0.0  # from the start signal to the last client's end

    @property
    def unserved(self) -> int:
        return self.clients - len(self.committed)


def concurrent_transactions(
    endpoint: Endpoint,
    clients: int,
    sleep_s: float,
    table: str,
    writer: str,
    id_base: int,
    deadline_s: float,
    connect_parallelism: int = 25,
) -> Batch:
    """``clients`` threads each open a connection through ``endpoint`` (at most ``connect_parallelism`` at a
    time: a connection storm is not what is measured), wait until every one is connected (or failed to),
    then all at once run one transaction: ``SELECT pg_sleep(sleep_s)`` and an insert of id
    ``id_base + i`` by ``writer`` into ``table``. Bounded: every thread gives up by ``deadline_s`` (its
    connection is broken by a watchdog), and the batch returns by then."""
    batch = Batch(clients)
    lock = threading.Lock()
    gate = threading.Semaphore(connect_parallelism)
    start = threading.Event()
    ready = threading.Barrier(clients + 1)
    t_deadline = time.monotonic() + deadline_s

    def fail(i: int, stage: str, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()
        with lock:
            batch.errors[i] = f"{stage}: {type(exc).__name__}: {text[0] if text else ''}"[:300]

    def client(i: int) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            with gate:
                conn = endpoint.connect()
            with lock:
                batch.connected += 1
        except Exception as exc:
            fail(i, "connect", exc)
        finally:
            with suppress(threading.BrokenBarrierError):
                ready.wait(max(0.1, t_deadline - time.monotonic()))
        if conn is None:
            return
        try:
            start.wait(max(0.1, t_deadline - time.monotonic()))
            with Watchdog(conn, max(0.1, t_deadline - time.monotonic())), conn.transaction():
                conn.execute("SELECT pg_sleep(%s)", (sleep_s,))
                conn.execute(f"INSERT INTO {table} (id, writer) VALUES (%s, %s)", (id_base + i, writer))
            with lock:
                batch.committed.append(i)
        except Exception as exc:
            fail(i, "transaction", exc)
        finally:
            with suppress(Exception):
                conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    with suppress(threading.BrokenBarrierError):
        ready.wait(max(0.1, t_deadline - time.monotonic()))
    t0 = time.monotonic()
    start.set()
    for t in threads:
        t.join(max(0.1, t_deadline - time.monotonic()))
    batch.seconds = time.monotonic() - t0
    return batch


def open_connections(
    endpoint: Endpoint, count: int, deadline_s: float, parallelism: int = 10
) -> tuple[list[psycopg.Connection[Any]], dict[int, str]]:
    """Open ``count`` connections through ``endpoint`` and keep them open (``parallelism`` at a time, all
    within ``deadline_s``): the open connections and, per failed one, its error. The caller closes them."""
    conns: list[psycopg.Connection[Any]] = []
    errors: dict[int, str] = {}
    lock = threading.Lock()
    t_deadline = time.monotonic() + deadline_s
    todo = iter(range(count))

    def worker() -> None:
        while time.monotonic() < t_deadline:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                c = endpoint.connect()
            except Exception as exc:
                with lock:
                    errors[i] = str(exc).strip()[:300]
                continue
            with lock:
                conns.append(c)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(parallelism)]
    for t in threads:
        t.start()
    for t in threads:
        # A connection under way at the deadline ends within its connect_timeout: wait for it, so that
        # every connection opened is in the list the caller closes.
        t.join(max(0.1, t_deadline - time.monotonic()) + endpoint.connect_timeout + 2)
    return conns, errors


def pooler_clients(pg: PatroniCluster, member: str) -> list[str]:
    """Every client connection (``STATE peer``) of ``member``'s PgBouncer port, read from the member's own
    socket table over its host connection: PgBouncer has no admin console here, and a console session would
    itself be a client. Every state but TIME-WAIT (no client object is left behind it) counts: a client
    whose peer has gone sits in CLOSE-WAIT until PgBouncer reads from it again, and may hold its
    max_client_conn slot until then. HAProxy's pooled ports and direct clients are both counted; PgBouncer's
    own server connections (to PostgreSQL) are not."""
    host = pg.by_name[member]
    port = int(host.setting("pgbouncer_port"))
    r = host.run(
        ["ss", "-Htn", "state", "connected", "exclude", "time-wait", f"( sport = :{port} )"], timeout=15
    )
    assert r.ok, f"ss on {member} failed (rc {r.rc}): {r.stderr.strip()[:200]}"
    # Columns: State Recv-Q Send-Q Local Peer [Process].
    return [f"{f[0]} {f[4]}" for f in (line.split() for line in r.stdout.splitlines()) if len(f) >= 5]


def close_all(conns: list[psycopg.Connection[Any]]) -> None:
    for c in conns:
        with suppress(Exception):
            c.close()
