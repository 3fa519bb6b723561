"""The custom server cluster under faults: leader kill, follower restart, a partitioned minority, latency, and
a randomized fault schedule (hypothesis). Clients record every operation; each history must be linearizable.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st

from checklib.custom import (
    GROUP,
    Workload,
    assert_linearizable,
    client,
    fresh_keys,
    leader,
    new_leader,
    put_until_ok,
    term_leaders,
    unit,
)
from gauntlet.bench import wait_for
from gauntlet.checkers import linearizable, same_data
from gauntlet.checkers.availability import recovery_time
from gauntlet.clients.base import ClientError, Fail, Info
from gauntlet.clients.declared import DeclaredClient
from gauntlet.cluster import Cluster
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, catalogue

pytestmark = [pytest.mark.custom, pytest.mark.usefixtures("reference_server")]

# Bounds the issue asks for, generous for a 2-CPU machine shared by other work: elections take ~1-2 s here.
ELECTION_BOUND_S = 10.0
RECOVERY_BOUND_S = 15.0


@pytest.fixture(autouse=True)
def cluster_ready_again(admin: DeclaredClient):
    """Every check starts, and leaves, a healthy cluster with one agreed leader; after it, once every member
    applied the same log, every member's own full listing is the same (the first differing keys named)."""
    admin.wait_for_ready(60)
    yield
    admin.wait_for_ready(90)
    names = [m.name for m in admin.members]
    wait_for(
        lambda: len({admin.status(n)["last_applied"] for n in names}) == 1,
        30,
        0.2,
        "every member applying one log",
    )
    verdict = same_data({n: admin.listing(n, retry_for=5.0) for n in names})
    assert verdict, f"members' data differ after the check: {verdict.explanation}"


def test_kill_leader_reelects_within_bound_and_writes_resume(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench
) -> None:
    service = unit(cluster)
    old = leader(cluster, admin)
    survivors = [m.name for m in admin.members if m.name != old.name]
    work = Workload(cluster, history, fresh_keys("kill-leader", 4)).start()
    (marker,) = fresh_keys("kill-leader-marker")
    try:
        work.wait_ops(20, 30)
        with nemesis.kill(old, service):
            # measured from the moment the kill command returned (the nemesis records its start just before)
            killed = history.mark("leader killed", host=old.name)
            elected = new_leader(admin, survivors, old.name, ELECTION_BOUND_S + 5)
            election_s = (time.monotonic_ns() - killed.time) / 1e9
            work.wait_ops(20, RECOVERY_BOUND_S, "operations on the surviving majority")
            rto = recovery_time(history, killed)
            writer = client(cluster, history).for_process("marker")
            put_until_ok(writer, marker, "written-while-old-leader-was-down")
        # the old leader is back: it catches up as a follower
        admin.wait_for_ready(60)
        wait_for(
            lambda: admin.get(marker, member=old.name, stale=True) == "written-while-old-leader-was-down",
            30,
            0.1,
            f"{old.name} catching up after its restart",
        )
    finally:
        counts = work.stop()
    print(
        f"old leader {old.name}, new leader {elected}, election {election_s:.2f}s, write RTO {rto}, ops {counts}"
    )
    bench.record("raftkv_election_seconds_after_leader_kill", election_s, "s", old=old.name, new=elected)
    if rto is not None:
        bench.record("raftkv_write_rto_seconds_after_leader_kill", rto, "s")
    assert election_s <= ELECTION_BOUND_S, f"re-election took {election_s:.1f}s (bound {ELECTION_BOUND_S}s)"
    assert rto is not None and rto <= RECOVERY_BOUND_S, (
        f"writes resumed after {rto}s (bound {RECOVERY_BOUND_S}s)"
    )
    assert_linearizable(history)


def test_restarted_follower_keeps_its_data_and_catches_up(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis
) -> None:
    service = unit(cluster)
    lead = leader(cluster, admin)
    follower = next(h for h in cluster.group(GROUP) if h.name != lead.name)
    kv = client(cluster, history)
    before = fresh_keys("restart-before", 10)
    during = fresh_keys("restart-during", 10)
    for k in before:
        put_until_ok(kv, k, f"v-{k}")
    wait_for(
        lambda: all(admin.get(k, member=follower.name, stale=True) == f"v-{k}" for k in before),
        10,
        0.1,
        f"{follower.name} holding the first writes",
    )
    # 1. Restarted while cut off from every peer: what it serves locally can only come from its own disk.
    with nemesis.isolate(follower), nemesis.restart(follower, service):
        wait_for(lambda: admin.status(follower.name), 30, 0.2, f"{follower.name}'s API after the restart")
        expected = {k: f"v-{k}" for k in before}

        def replayed() -> bool:  # the journal is replayed in the background while the API is already up
            return {k: admin.get(k, member=follower.name, stale=True) for k in before} == expected

        wait_for(
            replayed, 15, 0.2, f"{follower.name} serving its acknowledged data from its own disk, isolated"
        )
        healthy, body = admin.health(follower.name)
        assert not healthy, f"{follower.name} is cut off from every peer yet reports healthy: {body}"
    # Rejoining, it may call an election (pysyncobj has no pre-vote): let the cluster settle first.
    admin.wait_for_ready(60)
    # 2. Down while the others take writes; back, it catches up.
    with nemesis.kill(follower, service):
        for k in during:
            put_until_ok(kv, k, f"v-{k}")
    admin.wait_for_ready(60)
    wait_for(
        lambda: all(admin.get(k, member=follower.name, stale=True) == f"v-{k}" for k in during),
        30,
        0.1,
        f"{follower.name} catching up with the writes it missed",
    )
    for k in before + during:
        assert kv.get(k, member=follower.name) == f"v-{k}"
    assert_linearizable(history)


def test_isolated_minority_refuses_writes_majority_serves_and_heal_converges(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench
) -> None:
    """The leader itself is cut off (the hard case: it was the one accepting writes)."""
    old = leader(cluster, admin)
    majority = [m.name for m in admin.members if m.name != old.name]
    work = Workload(cluster, history, fresh_keys("partition", 4)).start()
    majority_keys = fresh_keys("partition-majority", len(majority))
    (minority_key,) = fresh_keys("partition-minority")
    accepted_by_minority: list[str] = []
    samples: list[dict] = []
    try:
        work.wait_ops(20, 30)
        with nemesis.isolate(old):
            isolate = f"{catalogue.get('isolate').recorded_as}:start"
            fault = [f for f in history.faults() if f.f == isolate][-1]
            elected = new_leader(admin, majority, old.name, ELECTION_BOUND_S + 5)
            bench.record(
                "raftkv_election_seconds_after_leader_isolation",
                (time.monotonic_ns() - fault.time) / 1e9,
                "s",
            )
            writer = client(cluster, history).for_process("majority")
            for m, k in zip(majority, majority_keys, strict=True):
                put_until_ok(writer, k, f"accepted-by-{m}", member=m)
            refuser = client(cluster, history, retry_for=0).for_process("minority")
            attempt = iter(range(10_000))

            def refused() -> bool:
                n = next(attempt)
                try:
                    refuser.put(minority_key, f"minority-{n}", member=old.name)
                except Fail:
                    return True  # a definite refusal: 503, no majority
                except Info:
                    return False  # still waiting for a commit that cannot come
                accepted_by_minority.append(f"minority-{n}")
                return False

            wait_for(refused, 20, 0.2, f"the isolated {old.name} refusing writes")
            for n in range(5):
                with pytest.raises(Fail):
                    refuser.put(minority_key, f"refused-{n}", member=old.name)
            healthy, body = admin.health(old.name)
            assert not healthy, f"isolated {old.name} reports healthy: {body}"
            work.wait_ops(20, RECOVERY_BOUND_S, "operations on the majority side")
            samples += [admin.status(m.name) for m in admin.members]
        # healed: one leader, everyone converges
        admin.wait_for_ready(60)
        samples += [admin.status(m.name) for m in admin.members]
    finally:
        counts = work.stop()
    print(f"isolated {old.name}, majority leader {elected}, ops {counts}")
    assert accepted_by_minority == [], f"the isolated minority acknowledged writes: {accepted_by_minority}"
    for m in admin.members:
        for k, writer_member in zip(majority_keys, majority, strict=True):
            wait_for(
                lambda m=m, k=k, w=writer_member: (
                    admin.get(k, member=m.name, stale=True) == f"accepted-by-{w}"
                ),
                30,
                0.1,
                f"{m.name} converging on {k}",
            )
    wait_for(
        lambda: len({admin.status(m.name)["last_applied"] for m in admin.members}) == 1,
        30,
        0.2,
        "every member applying the same log",
    )
    split = {t: ls for t, ls in term_leaders(samples).items() if len(ls) > 1}
    assert split == {}, f"two leaders in one term: {split}"
    assert_linearizable(history)


def test_latency_on_the_leader_still_serves(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench
) -> None:
    lead = leader(cluster, admin)
    kv = client(cluster, history).for_process("timed")
    keys = fresh_keys("latency", 2)

    def timed_writes(tag: str, n: int = 15) -> list[float]:
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            put_until_ok(kv, keys[i % 2], f"{tag}-{i}")
            out.append(time.perf_counter() - t0)
        return out

    baseline = timed_writes("before")
    work = Workload(cluster, history, fresh_keys("latency-load", 3), workers=3).start()
    try:
        with nemesis.latency(lead, 200):
            delayed = timed_writes("during")
            work.wait_ops(20, 30, "operations with 200 ms on the leader")
            still_leader = admin.agreed_leader()
    finally:
        counts = work.stop()
    before_ms, during_ms = statistics.median(baseline) * 1000, statistics.median(delayed) * 1000
    print(
        f"write latency median {before_ms:.0f} ms -> {during_ms:.0f} ms with 200 ms on {lead.name}; ops {counts}"
    )
    bench.record("raftkv_write_latency_ms_median", before_ms, "ms", fault="none")
    bench.record(
        "raftkv_write_latency_ms_median_200ms_on_leader",
        during_ms,
        "ms",
        fault="latency 200ms",
        host=lead.name,
    )
    # the fault was real (replication crosses the delayed link) and the cluster kept serving through it
    assert during_ms - before_ms >= 100, f"latency was not in effect ({before_ms:.0f} -> {during_ms:.0f} ms)"
    assert still_leader is not None, "members disagreed on the leader under latency"
    assert_linearizable(history)


def test_cut_off_follower_serves_no_stale_read(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis
) -> None:
    """A follower cut off from its peers while the majority acknowledges a new value: an ordinary read of
    that key on the cut-off member (recorded in the history) must not return the old value. It fails or
    times out (it cannot order the read without the majority); the history stays linearizable."""
    lead = leader(cluster, admin)
    follower = next(h for h in cluster.group(GROUP) if h.name != lead.name)
    (key,) = fresh_keys("cut-off-read")
    kv = client(cluster, history).for_process("writer")
    put_until_ok(kv, key, "old", member=lead.name)
    wait_for(
        lambda: admin.get(key, member=follower.name, stale=True) == "old", 10, 0.05, "the follower's copy"
    )
    # one attempt, bounded: the server's commit_timeout (3 s) answers 504 before the client gives up
    reader = client(cluster, history, retry_for=0, timeout=5.0).for_process("cut-off-reader")
    with nemesis.isolate(follower):
        put_until_ok(kv, key, "new", member=lead.name)  # acknowledged by the majority
        try:
            seen: str | None = reader.get(key, member=follower.name)
            outcome = f"answered {seen!r}"
        except ClientError as exc:
            outcome = f"{'refused' if exc.definite else 'no answer'}: {exc}"
    print(f"the cut-off {follower.name}'s read of {key}: {outcome}")
    result = linearizable(history)
    assert result.valid is True, (
        f"the cut-off {follower.name} served a stale read ({outcome}) after the majority acknowledged "
        f"'new':\n{result.report()}"
    )


# -- randomized fault schedules ------------------------------------------------------------------------------
# The catalogue's faults a schedule draws, each with the members it may hit ("<fault>-<role>").
ROLES = {
    "kill": ("leader", "follower"),
    "pause": ("leader",),
    "isolate": ("leader", "follower"),
    "crash": ("follower",),
    "latency": ("leader",),
}
FAULTS = [f"{catalogue.get(name).name}-{role}" for name, roles in ROLES.items() for role in roles]
LATENCY_MS = 200
# Bounded in count (examples, 2-3 faults each, each held 1-3 s) and in wall time: once the budget is spent,
# the remaining examples are not started (each running example is itself bounded by its waits' timeouts).
EXAMPLES = int(os.environ.get("GAUNTLET_CUSTOM_FAULT_EXAMPLES", "4"))
BUDGET_S = float(os.environ.get("GAUNTLET_CUSTOM_FAULT_BUDGET_S", "150"))
_budget: dict[str, float] = {}


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # no shrinking: each example costs real fault time; the history is the evidence
    suppress_health_check=list(HealthCheck),
)
@given(
    schedule=st.lists(st.tuples(st.sampled_from(FAULTS), st.floats(1.0, 3.0)), min_size=2, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_random_fault_schedule_histories_are_linearizable(
    cluster: Cluster, admin: DeclaredClient, request: pytest.FixtureRequest, schedule, seed
) -> None:
    """A few faults, each held 1-3 s and healed, under a recorded read/write/cas workload: the history of
    every example must be linearizable (each is kept under report/histories/)."""
    started = _budget.setdefault("start", time.monotonic())
    if time.monotonic() - started > BUDGET_S:
        print(f"schedule {schedule} not run: the {BUDGET_S:.0f}s budget of randomized schedules is spent")
        reject()
    service = unit(cluster)
    report = Path(request.config.getoption("--report-dir")) / "histories"
    history = History(report / f"custom_random_faults_{seed}_{int(time.time())}.jsonl")
    nemesis = Nemesis(cluster, history)
    history.mark("schedule", faults=[f for f, _ in schedule], seed=seed)
    print(f"schedule {schedule} seed {seed}")
    work = Workload(cluster, history, fresh_keys("random", 3), workers=4, seed=seed).start()
    try:
        admin.wait_for_ready(60)
        work.wait_ops(10, 30)
        for fault, hold in schedule:
            lead = leader(cluster, admin, 60)
            follower = next(h for h in cluster.group(GROUP) if h.name != lead.name)
            kind, role = fault.rsplit("-", 1)
            target = lead if role == "leader" else follower
            with catalogue.get(kind).apply(nemesis, target, service=service, ms=LATENCY_MS):
                time.sleep(hold)  # the fault's duration is the point here, not a wait for a condition
            healed = time.monotonic()
            admin.wait_for_ready(90)
            history.mark(
                "ready again", fault=fault, host=target.name, seconds=round(time.monotonic() - healed, 2)
            )
            work.wait_ops(5, 30, f"operations after {fault}")
    finally:
        nemesis.heal()
        counts = work.stop()
        history.close()
    result = linearizable(history)
    print(f"ops {dict(counts)}; {result.report().splitlines()[0]}")
    assert result.valid is True, f"schedule {schedule}:\n{result.report()}"
