"""Cache coherence through a Patroni failover (the ``default`` topology: Redis + Sentinel in front of Patroni
through HAProxy; markers ``coherence`` and ``haproxy``, so it is skipped where either side is missing).

Application threads read through the cache and write through it with the guarded pattern (update the row
through HAProxy's read-write port, then invalidate with a versioned tombstone) while the Patroni leader is
killed or its host crashed. Afterwards the history is judged against the database's final state:

* no cache read returned a value from a write the database lost (:func:`gauntlet.checkers.coherence.cache_loss`),
  and no acknowledged write was lost (synchronous mode);
* no read returned a value older than a write acknowledged before it started (the guarded pattern's promise);
* once the fault is healed, every key read through the cache converges to the database's value within the
  TTL — the staleness a failover leaves behind (unknown-outcome writes that committed without their
  invalidation) is measured and bounded by the TTL.
"""

from __future__ import annotations

import time
import uuid

import pytest

from checklib.patroni import PatroniCluster, fault_start_op, outage, wait_writes_ok
from checklib.redis import CacheEnv
from gauntlet.bench import Bench, wait_for
from gauntlet.checkers.coherence import cache_loss
from gauntlet.checkers.staleness import max_staleness, stale_reads
from gauntlet.clients.cache import PREFIX, Workload, decode
from gauntlet.cluster import Cluster
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, catalogue

pytestmark = [pytest.mark.coherence, pytest.mark.haproxy]

TTL_S = 5.0
# Upper bound of one workload (fault, failover, heal, rejoin): the threads stop then whatever happened.
WORKLOAD_MAX_S = 240.0

# From the catalogue: kill (Patroni and PostgreSQL SIGKILLed, kept down), crash (the whole host, its etcd
# member too). Both act on the Patroni leader; kill on its patroni unit.
FAULTS = ["kill", "crash"]
SERVICE = "patroni"


@pytest.fixture(scope="module")
def pg(cluster: Cluster) -> PatroniCluster:
    return PatroniCluster(cluster)


def cache_view(env: CacheEnv, keys: list[str]) -> dict[str, tuple[int, str] | None]:
    """What the cache holds for each key right now: (version, kind ``v``/``t``) or None."""
    conn = env.admin(env.master_host())
    try:
        raw = conn.mget([PREFIX + k for k in keys])
    finally:
        conn.close()
    return {k: decode(k, r) if r is not None else None for k, r in zip(keys, raw, strict=True)}


@pytest.mark.parametrize("fault", FAULTS)
def test_cache_never_serves_a_write_the_database_lost(
    fault: str, env: CacheEnv, pg: PatroniCluster, nemesis: Nemesis, history: History, bench: Bench
) -> None:
    """Guarded cache-aside under a Patroni leader kill/crash: no read of a lost write, no acknowledged write
    lost, no stale read, and the cache converges to the database within the TTL after the failover."""
    old = pg.wait_healthy()
    env.wait_healthy()
    keys = [f"fo-{fault}-{uuid.uuid4().hex[:6]}-{i}" for i in range(8)]
    env.db.setup(keys)
    w = Workload(
        lambda process, delay: env.cache_client(history, process, "guarded", TTL_S, delay),
        keys,
        readers=4,
        writers=2,
        slow_readers=1,
        slow_delay_s=0.3,
        write_interval_s=0.05,
        max_seconds=WORKLOAD_MAX_S,
    )
    started = time.monotonic_ns()
    w.start()
    new = old
    try:
        wait_writes_ok(history, started, 30, n=20)
        mark = len(history.ops)
        f = catalogue.get(fault)
        with f.apply(nemesis, old, service=SERVICE):
            t_fault = fault_start_op(history, f.recorded_as, mark).time
            new = pg.leader(timeout=pg.ttl + 60, exclude=(old,))
            history.mark("new-leader", leader=new)
            wait_writes_ok(history, t_fault, pg.ttl + 60, n=10)
            history.mark("writes-resumed")
        history.mark("healed")
        healed = time.monotonic()
        pg.wait_healthy(timeout=120)
        history.mark("whole-again")
        wait_writes_ok(history, time.monotonic_ns(), 30, n=10)
    finally:
        w.stop(timeout=60)  # WorkloadStuck if a thread is still running then
    t_end = time.monotonic_ns()

    final = env.db.versions(keys)
    verdict = cache_loss(history, final)  # its .verdict() is asserted below
    stale = stale_reads(history)
    worst = max_staleness(history)
    rto = outage(history, t_fault, t_end)
    cached = cache_view(env, keys)
    behind = {k: (c[0], final[k]) for k, c in cached.items() if c and c[1] == "v" and c[0] < final[k]}
    stats = w.stats()
    bench.record(f"coherence_failover_rto_{fault}", round(rto or -1.0, 3), "s", old=old, new=new)
    bench.record(
        f"coherence_failover_lost_reads_{fault}",
        len(verdict.lost_reads),
        "reads",
        reads=verdict.reads,
        acked_writes=verdict.acked_writes,
    )
    bench.record(f"coherence_failover_writes_lost_{fault}", len(verdict.lost_writes), "writes")
    bench.record(
        f"coherence_failover_max_staleness_{fault}_seconds", round(worst, 3), "s", stale_reads=len(stale)
    )
    bench.record(f"coherence_failover_entries_behind_db_{fault}", len(behind), "keys", ttl_s=TTL_S)

    # After the failover every key, read through the cache, reaches the database's value within the TTL
    # (an entry left behind by a write whose invalidation never ran expires then).
    probe = env.cache_client(history, "probe", "guarded", TTL_S)
    try:
        t0 = time.monotonic()
        wait_for(
            lambda: all(probe.read(k) == final[k] for k in keys),
            TTL_S + 5,
            0.1,
            f"every cached key equal to the database within the {TTL_S}s TTL",
        )
        converged = time.monotonic() - t0
    finally:
        probe.close()
    bench.record(
        f"coherence_failover_converged_{fault}_seconds",
        round(converged, 3),
        "s",
        since_heal=round(time.monotonic() - healed, 1),
    )

    assert verdict.reads > 100 and verdict.acked_writes > 30, (
        f"workload too small to judge: {verdict.reads} reads, {verdict.acked_writes} writes: {w.errors[:3]}"
    )
    assert not stats.corrupt, f"the cache served wrong data: {stats.corrupt[:3]}"
    assert not verdict.lost_reads, (
        f"{len(verdict.lost_reads)} reads served a write the database lost: {verdict.lost_reads[:5]}"
    )
    assert not [k for k, c in cached.items() if c and c[0] > final[k]], (
        f"the cache still holds versions the database lost: {cached} vs {final}"
    )
    if pg.synchronous_mode:
        assert not verdict.lost_writes, f"acknowledged writes lost: {verdict.lost_writes[:10]}"
    assert not stale, f"{len(stale)} stale reads (older than an acknowledged write): {stale[:3]}"
    assert rto is not None, "writes through the cache never resumed after the failover"
    assert new != old, f"no failover happened: {old} is still the leader"
