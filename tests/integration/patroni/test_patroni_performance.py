"""The performance table suites of this kind keep, as BENCH lines (measured, never asserted): simple-query
latency through HAProxy and on the leader itself, a 1,000-row bulk insert, and how long the replicas take to
replay it. What is asserted is only that each measurement measured something real: every query answered,
every acknowledged row replayed on every replica."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import psycopg
import pytest

from checklib.patroni import SELECT1_QUERIES, PatroniCluster, percentile
from gauntlet.bench import Bench, wait_for

pytestmark = [pytest.mark.patroni, pytest.mark.haproxy]

QUERIES = SELECT1_QUERIES
BULK_ROWS = 1000


def test_simple_queries_answer_through_haproxy_and_on_the_leader(pg: PatroniCluster, bench: Bench) -> None:
    """500 ``SELECT 1`` on one connection through HAProxy's read-write port and 500 on the leader directly:
    every one answers 1; their latencies are the table's first rows."""
    leader = pg.leader()
    for route, ep in (("haproxy", pg.lb_endpoint("rw")), ("leader", pg.member_endpoint(leader))):
        latencies: list[float] = []
        with ep.connect() as conn:
            for _ in range(QUERIES):
                t0 = time.perf_counter()
                row = conn.execute("SELECT 1").fetchone()
                latencies.append(time.perf_counter() - t0)
                assert row == (1,), f"SELECT 1 through {route} answered {row}"
        ms = [s * 1000 for s in latencies]
        bench.record(f"pg_select1_{route}_p50_ms", round(statistics.median(ms), 3), "ms", queries=QUERIES)
        bench.record(f"pg_select1_{route}_p99_ms", round(percentile(ms, 0.99), 3), "ms", queries=QUERIES)


def test_a_bulk_insert_is_replayed_on_every_replica(pg: PatroniCluster, table: str, bench: Bench) -> None:
    """1,000 rows in one COPY through HAProxy: the rows the leader acknowledged are all on every replica once
    its replay reaches the leader's LSN (within 30 s); the insert's time and each replica's catch-up time are
    measured."""
    leader = pg.leader()
    writer = f"bulk-{uuid.uuid4().hex[:8]}"
    base = int(time.time() * 1000) * 1000
    # The replicas' connections are open before the insert: their catch-up time is replay, not TLS set-up.
    replicas = {name: pg.member_endpoint(name).connect() for name in pg.replicas(leader)}
    try:
        with pg.lb_endpoint("rw").connect() as conn:
            t0 = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f"COPY {table} (id, writer) FROM STDIN") as copy:
                for i in range(BULK_ROWS):
                    copy.write_row((base + i, writer))
            acknowledged = conn.execute(
                f"SELECT count(*) FROM {table} WHERE writer = %s", (writer,)
            ).fetchone()
            insert_s = time.perf_counter() - t0
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert acknowledged is not None and lsn is not None
        bench.record("pg_bulk_insert_1000_rows_seconds", round(insert_s, 3), "s", rows=acknowledged[0])
        t_commit = time.monotonic()
        for name, rconn in replicas.items():

            def replayed(rconn: psycopg.Connection[Any] = rconn) -> bool:
                row = rconn.execute(
                    "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0", (lsn[0],)
                ).fetchone()
                return bool(row and row[0])

            wait_for(replayed, 30, 0.02, f"{name} replaying up to the leader's LSN {lsn[0]}")
            lag = time.monotonic() - t_commit
            seen = rconn.execute(f"SELECT count(*) FROM {table} WHERE writer = %s", (writer,)).fetchone()
            bench.record("pg_replication_catch_up_seconds", round(lag, 3), "s", replica=name, rows=BULK_ROWS)
            assert seen == acknowledged, (
                f"{name} replayed up to {lsn[0]} but holds {seen} of the {acknowledged} rows the leader "
                "acknowledged"
            )
    finally:
        for rconn in replicas.values():
            rconn.close()
