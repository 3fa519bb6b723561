"""Failover under write load through HAProxy: kill Patroni+PostgreSQL on the leader, crash the leader host,
pause the leader, isolate it from the network, crash PostgreSQL under a live Patroni, and a planned
switchover. Each is judged from the history: a new leader, writes resume (RTO), no acknowledged write lost
(synchronous mode), never two members claiming the leader lock, the old leader back as a replica."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

import pytest

from checklib.patroni import (
    SERVICE,
    PatroniCluster,
    assert_invariants,
    postgres_gone,
    record_run,
    resumed_claim_bound,
    run_fault,
    run_leader_kill,
)
from gauntlet.bench import Bench
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, catalogue

pytestmark = [pytest.mark.patroni, pytest.mark.haproxy]


# Each fault runs this many times here (default 1); the randomized schedule faults the leader once more with
# every kind, so the RTO medians of the BENCH lines are over at least two runs per fault type.
REPEATS = max(1, int(os.environ.get("GAUNTLET_PATRONI_REPEATS", "1")))

# The faults that take the leader out (down, frozen, cut off), from the catalogue; kill and pause act on the
# patroni unit (SERVICE: PostgreSQL is its child, it goes down, or freezes, with it).
FAILOVER_FAULTS = catalogue.names(outage=True)


@pytest.mark.parametrize("repeat", range(1, REPEATS + 1), ids=lambda r: f"run{r}")
@pytest.mark.parametrize("fault", FAILOVER_FAULTS)
def test_failover_under_fault_loses_no_acknowledged_write(
    fault: str,
    repeat: int,
    pg: PatroniCluster,
    table: str,
    nemesis: Nemesis,
    history: History,
    bench: Bench,
    rto_series: dict[str, list[float]],
) -> None:
    """Fault the leader under load: a new leader is elected, writes through HAProxy resume, no acknowledged
    write is lost (synchronous mode), no split brain, and the old leader rejoins as a replica after heal."""
    if not pg.synchronous_mode:
        pytest.skip(
            "inventory sets patroni_synchronous_mode false: zero loss is only promised in synchronous mode"
        )
    f = catalogue.get(fault)
    run = run_fault(
        pg,
        history,
        fault,
        lambda leader: f.apply(nemesis, leader, service=SERVICE),
        record_name=f.recorded_as,
        during=(lambda leader: postgres_gone(pg, leader)) if fault == "kill" else None,
        claim_overlap_s=resumed_claim_bound(pg, fault),
    )
    record_run(bench, run, "sync")
    if run.rto is not None:
        rto_series.setdefault(fault, []).append(run.rto)
    if run.pg_overlaps:
        bench.record(f"patroni_pg_primary_overlap_rounds_{fault}", len(run.pg_overlaps), "rounds")
    if run.tolerated_claims:
        seconds = max(w.seconds for w in run.tolerated_claims)
        bench.record(f"patroni_resumed_leader_claim_seconds_{fault}", round(seconds, 2), "s")
    assert_invariants(pg, run)
    assert run.new_leader != run.old_leader
    # Patroni's own bound: the lock expires after ttl, the election and HAProxy's checks take a few seconds.
    assert run.rto < pg.ttl + 30, f"writes were down {run.rto:.1f}s (ttl {pg.ttl})"


def test_postgres_crash_with_patroni_alive_restarts_in_place(
    pg: PatroniCluster,
    table: str,
    nemesis: Nemesis,
    history: History,
    bench: Bench,
    rto_series: dict[str, list[float]],
) -> None:
    """SIGKILL PostgreSQL's postmaster on the leader while Patroni lives: Patroni restarts it in place (the
    leader keeps the lock), writes resume within about loop_wait + a restart, nothing acknowledged is lost."""
    f = catalogue.get("postgres_crash")
    run = run_fault(
        pg,
        history,
        f.name,
        lambda leader: f.apply(nemesis, leader),
        record_name=f.recorded_as,
        expect_new_leader=False,
    )
    record_run(bench, run, "sync" if pg.synchronous_mode else "async")
    if run.rto is not None:
        rto_series.setdefault("postgres_crash", []).append(run.rto)
    assert_invariants(pg, run, lossless=pg.synchronous_mode)


def test_planned_switchover_is_fast_and_lossless(
    pg: PatroniCluster,
    table: str,
    nemesis: Nemesis,
    history: History,
    bench: Bench,
    rto_series: dict[str, list[float]],
) -> None:
    """A switchover through the REST API (POST /switchover, with credentials) moves the leader to the
    synchronous standby; writes pause briefly and nothing acknowledged is lost."""
    f = catalogue.get("switchover")

    def switchover(leader: str) -> AbstractContextManager[None]:
        candidate = pg.sync_standby(leader) or pg.replicas(leader)[0]
        return f.apply(nemesis, leader, api=pg.apis[leader], candidate=candidate)

    run = run_fault(pg, history, f.name, switchover, record_name=f.recorded_as)
    record_run(bench, run, "sync" if pg.synchronous_mode else "async")
    if run.rto is not None:
        bench.record("patroni_switchover_seconds", run.rto, "s")
        rto_series.setdefault("switchover", []).append(run.rto)
    assert_invariants(pg, run, lossless=True)
    assert run.new_leader != run.old_leader


def test_async_mode_failover_reports_loss(
    pg: PatroniCluster, table: str, nemesis: Nemesis, history: History, bench: Bench
) -> None:
    """The same kill with synchronous_mode switched off at run time (PATCH /config): failover still works and
    there is no split brain; acknowledged writes may be lost, and how many is reported (not asserted)."""
    was_sync = pg.synchronous_mode
    pg.set_synchronous_mode(False)
    try:
        run = run_leader_kill(pg, history, nemesis, writers=4)
    finally:
        pg.set_synchronous_mode(was_sync)
        pg.wait_healthy()
    bench.record(
        "patroni_writes_lost_async_kill",
        len(run.lost),
        "writes",
        acked=run.acked,
        rto=round(run.rto or -1, 2),
    )
    assert_invariants(pg, run, lossless=False)
