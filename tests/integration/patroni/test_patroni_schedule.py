"""A randomized fault schedule (hypothesis) under write load: every fault kind once on the leader, plus random
extra faults (at least one on a replica), in a random order, one at a time, each healed before the next,
within a time budget. Throughout: never two members claiming the leader lock, writes resume after every
fault, and (synchronous mode) no acknowledged write lost. The leader faults add RTO samples per fault type
(the medians of the BENCH lines are over these and the failover checks' runs).

Bounds: GAUNTLET_SCHEDULE_FAULTS faults (default 6, at least 4), GAUNTLET_SCHEDULE_BUDGET seconds (default
300) after which the remaining faults are skipped. Replay a schedule with ``--hypothesis-seed``.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from checklib.patroni import PatroniCluster, fault_start_op, outage, resumed_claim_bound, wait_writes_ok
from gauntlet.bench import Bench
from gauntlet.checkers import lost_acknowledged_writes, single_leader
from gauntlet.clients.postgres import PostgresWorkload, read_ids
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, catalogue

pytestmark = [pytest.mark.patroni, pytest.mark.haproxy, pytest.mark.slow]

N_FAULTS = max(4, int(os.environ.get("GAUNTLET_SCHEDULE_FAULTS", "6")))
BUDGET_S = float(os.environ.get("GAUNTLET_SCHEDULE_BUDGET", "300"))

# The catalogue's faults that take a member out (down, frozen, cut off): on the leader, each forces a failover.
KINDS = sorted(catalogue.names(outage=True))
SERVICE = "patroni"  # kill and pause act on the patroni unit (PostgreSQL goes, or freezes, with it)

# One step: (fault, target: the leader or the n-th replica, seconds to hold it after writes resumed).
HOLD = st.floats(min_value=0.5, max_value=4.0)
STEP = st.tuples(st.sampled_from(KINDS), st.sampled_from(["leader", "replica0", "replica1"]), HOLD)


@st.composite
def schedules(draw: st.DrawFn, n: int) -> list[tuple[str, str, float]]:
    """Every fault kind once on the leader, ``n - len(KINDS)`` random steps, in a random order. At least one
    step hits a replica (this also rules out hypothesis's first, simplest example: all on the leader, in sorted order)."""
    steps = [(kind, "leader", draw(HOLD)) for kind in KINDS]
    extra = max(0, n - len(steps))
    steps += draw(st.lists(STEP, min_size=extra, max_size=extra))
    order = draw(st.permutations(range(len(steps))))
    return [steps[i] for i in order]


@settings(
    max_examples=1,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example costs minutes of real faults
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@given(schedule=schedules(N_FAULTS).filter(lambda s: any(t != "leader" for _, t, _ in s)))
def test_random_fault_schedule_keeps_the_invariants(
    schedule: list[tuple[str, str, float]],
    pg: PatroniCluster,
    table: str,
    nemesis: Nemesis,
    history: History,
    bench: Bench,
    rto_series: dict[str, list[float]],
) -> None:
    """Every fault of the schedule is healed before the next; the invariants hold over the whole run."""
    print(f"schedule: {schedule}")
    pg.wait_healthy()
    sampler = pg.sampler().start()
    workload = PostgresWorkload(history, pg.lb_endpoint("rw"), pg.lb_endpoint("ro"), writers=2, readers=1)
    started = time.monotonic()
    executed: list[str] = []
    try:
        with workload:
            wait_writes_ok(history, time.monotonic_ns(), 30, n=20)
            for kind, target, hold in schedule:
                if time.monotonic() - started > BUDGET_S:
                    break
                leader = pg.wait_healthy(timeout=120)
                victim = leader if target == "leader" else pg.replicas(leader)[int(target[-1])]
                fault = catalogue.get(kind)
                mark = len(history.ops)
                history.mark("schedule-step", fault=kind, target=target, host=victim)
                with fault.apply(nemesis, victim, service=SERVICE):
                    t0 = fault_start_op(history, fault.recorded_as, mark).time
                    if victim == leader:
                        pg.leader(timeout=pg.ttl + 60, exclude=(victim,))
                    wait_writes_ok(history, t0, pg.ttl + 60, n=5)
                    time.sleep(hold)
                pg.wait_healthy(timeout=120)
                t_end = time.monotonic_ns()
                if victim == leader:
                    rto = outage(history, t0, t_end)
                    if rto is not None:
                        rto_series.setdefault(kind, []).append(rto)
                executed.append(f"{kind}:{target}")
            wait_writes_ok(history, time.monotonic_ns(), 30, n=10)
    finally:
        sampler.stop()
    final = read_ids(pg.lb_endpoint("rw"), since=workload.id_base)
    healed = pg.wait_healthy(timeout=120)
    differences = pg.data_differences(healed)
    lost_check = lost_acknowledged_writes(history, final)
    lost = lost_check.evidence["lost"]
    bench.record(
        "patroni_schedule_faults",
        len(executed),
        "faults",
        seconds=round(time.monotonic() - started),
        lost=len(lost),
    )
    print(f"executed: {executed}")
    assert executed, "the budget allowed no fault at all"
    assert sampler.answered() > 0
    # A resumed leader's stale claim is bounded by one HA cycle (checklib.patroni.resumed_claim_bound).
    bound = max((resumed_claim_bound(pg, e.split(":")[0]) for e in executed), default=0.0)
    leaders = single_leader(sampler.leader_samples(), tolerate_s=bound)
    assert not differences, (
        f"members' data differ from the leader {healed}'s after the schedule: {differences}"
    )
    assert leaders, leaders
    if pg.synchronous_mode:
        assert lost_check, lost_check
