"""Synchronous mode with every replica gone. With ``synchronous_mode_strict`` a commit on the leader waits
for a synchronous standby: nothing is acknowledged until a replica returns, then the waiting commit
completes. Without it Patroni drops the synchronous standby and writes go on asynchronously: the promise
that no acknowledged write is lost on failover is suspended until a standby is back (reported). And what
HAProxy's read-only port does with no replica left: it serves nobody (it never sends reads to the leader)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psycopg
import pytest

from checklib.patroni import PatroniCluster
from gauntlet.bench import Bench, wait_for
from gauntlet.nemesis import Nemesis, catalogue

pytestmark = [pytest.mark.patroni, pytest.mark.haproxy]


def fresh_id() -> int:
    """An id no earlier check wrote: time-based like the workloads' (whose own ranges start later)."""
    return int(time.time() * 1000) * 1000


def set_strict(pg: PatroniCluster, on: bool, timeout: float = 30) -> None:
    """synchronous_mode_strict through the REST API (dynamic configuration), waited for in /config."""
    api = pg.apis[pg.leader()]
    code, body = api.request("PATCH", "/config", {"synchronous_mode_strict": on}, auth=True)
    assert code == 200, f"PATCH /config answered {code}: {body}"
    wait_for(
        lambda: api.get("/config")[1].get("synchronous_mode_strict", False) is on,
        timeout,
        0.5,
        f"synchronous_mode_strict={on} in the DCS",
    )


@contextmanager
def every_replica_down(pg: PatroniCluster, nemesis: Nemesis, leader: str) -> Iterator[None]:
    """Patroni (and so PostgreSQL) killed on every replica; started again on exit. Waits until the leader
    streams to nobody."""
    kill = catalogue.get("kill")
    with ExitStack() as stack:
        for name in pg.replicas(leader):
            stack.enter_context(kill.apply(nemesis, pg.by_name[name], service="patroni"))
        wait_for(
            lambda: pg.psql(leader, "SELECT count(*) FROM pg_stat_replication", check=False) == "0",
            30,
            0.5,
            f"no replica streaming from {leader}",
        )
        yield


def sync_waiters(pg: PatroniCluster, leader: str) -> int:
    """Backends on the leader waiting for a synchronous standby to confirm their commit."""
    out = pg.psql(leader, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'", check=False)
    return int(out) if out.isdigit() else 0


def test_strict_mode_acknowledges_nothing_without_a_replica_and_resumes_when_one_returns(
    pg: PatroniCluster, table: str, nemesis: Nemesis, bench: Bench
) -> None:
    """synchronous_mode_strict on, every replica down: a write through HAProxy reaches the leader and waits
    there for a synchronous standby (never acknowledged meanwhile); when a replica is back, it completes."""
    if not pg.synchronous_mode:
        pytest.skip("inventory sets patroni_synchronous_mode false: nothing to degrade")
    leader = pg.wait_healthy()
    set_strict(pg, True)
    result: dict[str, object] = {}
    row = fresh_id()

    def write() -> None:
        try:
            with pg.lb_endpoint("rw").connect(connect_timeout=5) as conn:
                conn.execute("INSERT INTO gauntlet_writes (id, writer) VALUES (%s, 'strict')", (row,))
            result["ok"] = time.monotonic()
        except psycopg.Error as exc:
            result["error"] = str(exc).strip()

    try:
        with every_replica_down(pg, nemesis, leader):
            writer = threading.Thread(target=write, daemon=True)
            started = time.monotonic()
            writer.start()
            # The commit reached the leader and waits for a standby: a refusal because the leader is down
            # would not show here.
            wait_for(
                lambda: sync_waiters(pg, leader) >= 1, 20, 0.25, f"a commit waiting on {leader} (SyncRep)"
            )
            writer.join(pg.loop_wait + 5)  # a whole HA cycle: Patroni keeps the standby requirement
            assert writer.is_alive() and not result, f"acknowledged or refused without a standby: {result}"
            assert pg.leaders() == [leader], "the leader lost its lock while waiting for a standby"
            blocked_s = time.monotonic() - started
        # A replica is back (on exit every one is started again): the waiting commit completes.
        writer.join(pg.ttl + 60)
        assert "ok" in result, f"the waiting write did not complete after a replica returned: {result}"
        bench.record("patroni_strict_write_blocked_seconds", round(blocked_s, 1), "s")
        bench.record(
            "patroni_strict_write_completed_after_replica_seconds",
            round(float(result["ok"]) - started, 1),  # type: ignore[arg-type]
            "s",
        )
        assert pg.psql(leader, f"SELECT count(*) FROM gauntlet_writes WHERE id = {row}", db=pg.app_db) == "1"
    finally:
        set_strict(pg, False)
        pg.wait_healthy(timeout=120)


def test_without_strict_mode_writes_go_on_asynchronously_and_the_read_only_port_serves_nobody(
    pg: PatroniCluster, table: str, nemesis: Nemesis, bench: Bench
) -> None:
    """synchronous_mode on, strict off, every replica down: Patroni drops the synchronous standby within
    an HA cycle or two and writes are acknowledged again (asynchronously: no zero-loss promise until a
    standby returns); HAProxy's read-only port has no server and does not fall back to the leader."""
    if not pg.synchronous_mode:
        pytest.skip("inventory sets patroni_synchronous_mode false: nothing to degrade")
    leader = pg.wait_healthy()
    assert pg.psql(leader, "SHOW synchronous_standby_names"), "synchronous mode without a synchronous standby"
    with every_replica_down(pg, nemesis, leader):
        started = time.monotonic()
        wait_for(
            lambda: pg.psql(leader, "SHOW synchronous_standby_names", check=False) == "",
            2 * pg.loop_wait + 20,
            0.5,
            f"Patroni on {leader} dropping the synchronous standby",
        )
        fallback_s = time.monotonic() - started
        with pg.lb_endpoint("rw").connect(connect_timeout=5, options="-c statement_timeout=10000") as conn:
            conn.execute("INSERT INTO gauntlet_writes (id, writer) VALUES (%s, 'async')", (fresh_id(),))
        assert sync_waiters(pg, leader) == 0

        def read_only_refused() -> bool:
            try:
                with pg.lb_endpoint("ro").connect(connect_timeout=3) as conn:
                    in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                assert in_recovery and in_recovery[0], "HAProxy's read-only port sent a client to the leader"
                return False
            except psycopg.OperationalError:
                return True

        wait_for(read_only_refused, 20, 0.5, "HAProxy's read-only port refusing with no replica up")
        bench.record("patroni_async_fallback_seconds", round(fallback_s, 1), "s")
        print(
            f"strict off: with no replica, {leader} dropped its synchronous standby after {fallback_s:.1f}s and "
            "acknowledged writes on its own (asynchronously): until a standby returns, a failover may lose them"
        )
    healed = pg.wait_healthy(timeout=120)
    assert pg.psql(healed, "SHOW synchronous_standby_names"), (
        "no synchronous standby after the replicas returned"
    )
