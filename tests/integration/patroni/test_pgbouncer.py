"""PgBouncer on every Patroni member (roles/pgbouncer), behind HAProxy's pooled ports: many clients share a
pool that never holds more server connections than the role allows, a failover through the pool loses no
acknowledged write, a client over max_client_conn is refused with PgBouncer's own error, and what the pool
costs per query is measured. Every limit is read from the role's values (the inventory's, else the
defaults), never restated here."""

from __future__ import annotations

import statistics
import time
import uuid

import psycopg
import pytest

from checklib.patroni import (
    SELECT1_QUERIES,
    PatroniCluster,
    assert_invariants,
    percentile,
    postgres_gone,
    run_leader_kill,
)
from checklib.pgbouncer import (
    ServerConnectionSampler,
    close_all,
    concurrent_transactions,
    open_connections,
    pooler_clients,
)
from gauntlet.bench import Bench, wait_for
from gauntlet.history import History
from gauntlet.nemesis import Nemesis

pytestmark = [pytest.mark.pgbouncer]

# 200 clients at once, each holding a server connection for one ~0.3 s transaction: with a pool of 20 they
# are served in about 200 / 20 * 0.3 = 3 s; each gives up after CLIENTS_DEADLINE_S.
CLIENTS = 200
TRANSACTION_SLEEP_S = 0.3
CLIENTS_DEADLINE_S = 90.0
# Opening max_client_conn connections (TLS and SCRAM each) to one PgBouncer must take less than this.
HOLD_DEADLINE_S = 120.0
# The refusal check runs before the failover through the pool: twice in CI, run right after it on the killed
# old leader's PgBouncer, it saw 248 and 249 of 250 served, with no other client socket left on the port by the
# time it reported (something of the failover, cancel requests most likely, still held slots; not reproduced
# in 4 kept runs). It also waits, up to query_wait_timeout plus this margin, for the member's PgBouncer to
# have no client socket at all.
IDLE_POOLER_MARGIN_S = 30.0


def test_concurrent_clients_share_a_pool_bounded_by_max_db_connections(
    pg: PatroniCluster, table: str, bench: Bench
) -> None:
    """200 concurrent clients through HAProxy's pooled read-write port, each one transaction of ~0.3 s
    (pg_sleep, then an insert): every client commits and its row is there, while the leader's PostgreSQL,
    sampled directly (not through the pool), never holds more server connections from its PgBouncer to the
    application database than max_db_connections, and more than one at once (else nothing was pooled
    concurrently)."""
    limits = pg.pool_limits
    assert limits.max_client_conn > CLIENTS, (
        f"pgbouncer_max_client_conn {limits.max_client_conn} leaves no room for {CLIENTS} clients: "
        "the check would measure refusals"
    )
    leader = pg.wait_healthy()
    writer = f"pool-{uuid.uuid4().hex[:8]}"
    id_base = int(time.time() * 1000) * 1000
    with ServerConnectionSampler(pg, leader, pg.app_db) as sampler:
        batch = concurrent_transactions(
            pg.lb_endpoint("rw", pooled=True),
            CLIENTS,
            TRANSACTION_SLEEP_S,
            table,
            writer,
            id_base,
            CLIENTS_DEADLINE_S,
        )
    bench.record(
        "pgbouncer_200_clients_seconds",
        round(batch.seconds, 3),
        "s",
        clients=CLIENTS,
        served=len(batch.committed),
        pool=limits.default_pool_size,
    )
    bench.record(
        "pgbouncer_max_server_connections",
        sampler.peak,
        "connections",
        leader=leader,
        max_db_connections=limits.max_db_connections,
        samples=len(sampler.samples),
    )
    assert sampler.samples, f"the sampler on {leader} read nothing: {sampler.errors[:3]}"
    assert sampler.peak <= limits.max_db_connections, (
        f"PgBouncer on {leader} held {sampler.peak} server connections to {pg.app_db}, more than "
        f"max_db_connections {limits.max_db_connections}"
    )
    assert sampler.peak > 1, (
        f"PgBouncer on {leader} never held more than {sampler.peak} server connection while {CLIENTS} "
        f"clients ran (sampled {len(sampler.samples)} times): nothing was pooled concurrently"
    )
    assert batch.unserved == 0, (
        f"{batch.unserved} of {CLIENTS} clients not served within {CLIENTS_DEADLINE_S:.0f}s "
        f"({batch.connected} connected); first errors: {list(batch.errors.values())[:5]}"
    )
    with pg.lb_endpoint("rw").connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE writer = %s", (writer,)).fetchone()
    assert row == (CLIENTS,), f"{CLIENTS} clients committed, the table holds {row} of their rows"


def test_a_client_over_max_client_conn_is_refused(pg: PatroniCluster, bench: Bench) -> None:
    """One member's PgBouncer, connected to directly: the first max_client_conn connections, all held open,
    are each served; the next one is refused with PgBouncer's "no more connections allowed
    (max_client_conn)"; once one is closed, a new one is served again. It counts from a PgBouncer with no
    client at all (its socket table, waited for): a slot held by anyone else would be counted as refused."""
    limits = pg.pool_limits
    limit = limits.max_client_conn
    member = pg.replicas(pg.wait_healthy())[0]
    ep = pg.pooler_endpoint(member)
    t0 = time.monotonic()
    wait_for(
        lambda: not pooler_clients(pg, member),
        limits.query_wait_timeout + IDLE_POOLER_MARGIN_S,
        0.5,
        f"PgBouncer on {member} to have no clients before the max_client_conn check",
    )
    bench.record("pgbouncer_idle_wait_seconds", round(time.monotonic() - t0, 2), "s", member=member)
    conns: list[psycopg.Connection[object]] = []
    try:
        conns, errors = open_connections(ep, limit, HOLD_DEADLINE_S)
        if errors or len(conns) != limit:
            sockets = pooler_clients(pg, member)
            raise AssertionError(
                f"PgBouncer on {member} served {len(conns)} of the first {limit} (max_client_conn) "
                f"connections ({len(sockets)} client sockets on its port now, "
                f"{sum(not s.startswith('ESTAB') for s in sockets)} not established); first errors: "
                f"{list(errors.values())[:3]}"
            )
        answered = [c.execute("SELECT 1").fetchone() for c in (conns[0], conns[-1])]
        assert answered == [(1,), (1,)], f"held connections answered {answered}"
        with pytest.raises(psycopg.OperationalError) as refused:
            conns.append(ep.connect())
        assert "no more connections allowed (max_client_conn)" in str(refused.value), (
            f"connection {limit + 1} to PgBouncer on {member} failed otherwise: {refused.value}"
        )
        conns.pop(0).close()

        def served_again() -> bool:
            conns.append(ep.connect())
            return True

        wait_for(served_again, 10, 0.2, f"a connection to PgBouncer on {member} once one was closed")
    finally:
        close_all(conns)


def test_failover_through_pgbouncer_loses_no_acknowledged_write(
    pg: PatroniCluster, table: str, nemesis: Nemesis, history: History, bench: Bench
) -> None:
    """Writers and a reader through HAProxy's pooled ports while Patroni and PostgreSQL are killed on the
    leader: HAProxy moves the pooled port to the new leader's PgBouncer, writes resume through it, no
    acknowledged write is lost (synchronous mode), no split brain, the old leader rejoins."""
    if not pg.synchronous_mode:
        pytest.skip(
            "inventory sets patroni_synchronous_mode false: zero loss is only promised in synchronous mode"
        )
    run = run_leader_kill(
        pg,
        history,
        nemesis,
        during=lambda leader: postgres_gone(pg, leader),
        endpoints=(pg.lb_endpoint("rw", pooled=True), pg.lb_endpoint("ro", pooled=True)),
    )
    if run.rto is not None:
        bench.record(
            "pgbouncer_rto_kill", run.rto, "s", old=run.old_leader, new=run.new_leader, acked=run.acked
        )
    bench.record("pgbouncer_writes_lost_kill", len(run.lost), "writes", acked=run.acked)
    assert run.acked > 0, "no write was acknowledged through the pool"
    assert_invariants(pg, run)
    assert run.new_leader != run.old_leader, f"{run.old_leader} is still the leader after the kill"
    assert run.rto < pg.ttl + 30, f"writes through the pool were down {run.rto:.1f}s (ttl {pg.ttl})"


def test_simple_query_latency_through_pgbouncer(pg: PatroniCluster, bench: Bench) -> None:
    """500 ``SELECT 1`` on one connection through HAProxy's pooled read-write port and 500 through its direct
    one, interleaved in rounds of 50 so that both see the same moment: every one answers 1; their latencies
    are the performance table's PgBouncer row (measured, not asserted)."""
    routes = {"pgbouncer": pg.lb_endpoint("rw", pooled=True), "haproxy": pg.lb_endpoint("rw")}
    latencies: dict[str, list[float]] = {route: [] for route in routes}
    conns = {route: ep.connect() for route, ep in routes.items()}
    try:
        for _ in range(SELECT1_QUERIES // 50):
            for route, conn in conns.items():
                for _ in range(50):
                    t0 = time.perf_counter()
                    row = conn.execute("SELECT 1").fetchone()
                    latencies[route].append(time.perf_counter() - t0)
                    assert row == (1,), f"SELECT 1 through {route} answered {row}"
    finally:
        close_all(list(conns.values()))
    ms = {route: [s * 1000 for s in values] for route, values in latencies.items()}
    direct = {"direct_p50_ms": round(statistics.median(ms["haproxy"]), 3)}
    direct["direct_p99_ms"] = round(percentile(ms["haproxy"], 0.99), 3)
    pooled = ms["pgbouncer"]
    bench.record(
        "pg_select1_pgbouncer_p50_ms",
        round(statistics.median(pooled), 3),
        "ms",
        queries=SELECT1_QUERIES,
        **direct,
    )
    bench.record(
        "pg_select1_pgbouncer_p99_ms",
        round(percentile(pooled, 0.99), 3),
        "ms",
        queries=SELECT1_QUERIES,
        **direct,
    )
