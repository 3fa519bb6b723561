"""Partition shapes on the custom server, as Jepsen names them (gauntlet.nemesis.grudge), with quorum-aware
verdicts (gauntlet.nemesis.quorum): under a majority/minority split with the leader on the minority side,
the majority side elects a leader and acknowledges writes while every member of the minority refuses or
answers unknown and never acknowledges; ring and bridge (five members or more) must stay safe. Every shape:
at most one leader per term, every history linearizable, and after heal every member applies the same log.
BENCH per shape: seconds to an acknowledged write again (for the split: to a majority leader), writes the
minority refused. And lossy or narrow links: 20 % packet loss on a follower, a bandwidth limit on the
leader (shaping only cluster traffic)."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, ExitStack

import pytest

from checklib.custom import (
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
from gauntlet.bench import Bench, wait_for
from gauntlet.checkers.availability import recovery_time
from gauntlet.clients.base import Fail, Info
from gauntlet.clients.declared import DeclaredClient
from gauntlet.cluster import Cluster, Host
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, grudge
from gauntlet.nemesis.commands import BANDWIDTH_CLASS, QDISC_HANDLE
from gauntlet.nemesis.quorum import Held, Schedule, Step, majority_side

pytestmark = [pytest.mark.custom, pytest.mark.usefixtures("reference_server")]

ELECTION_BOUND_S = 15.0
# Writes each minority member is asked to take while cut off (each must be refused or left unknown).
MINORITY_ATTEMPTS = 5
# The smallest cluster each shape means anything on: a ring of 3 cuts nothing, a bridge of 3 is a split.
NEEDS = {"majority": 3, "ring": 5, "bridge": 5}


@pytest.mark.parametrize("shape", list(NEEDS))
def test_partition_shape_keeps_quorum_promises(
    shape: str, cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """Under the shape: only a side holding a majority acknowledges writes (split: the minority refuses or
    answers unknown, never acknowledges); one leader per term; linearizable; one log after heal."""
    members = sorted(m.name for m in admin.members)
    if len(members) < NEEDS[shape]:
        pytest.skip(f"inventory has {len(members)} members: a {shape} partition needs {NEEDS[shape]}")
    old = leader(cluster, admin).name
    if shape == "majority":  # the hard case: the leader on the minority side
        others = [m for m in members if m != old]
        cut, big, small = grudge.split(members, minority=[old, *others[: (len(members) - 1) // 2 - 1]])
    elif shape == "ring":
        cut, big, small = grudge.ring(members), members, []
    else:
        cut, _middle = grudge.bridge(members)
        big, small = members, []
    serves = majority_side(members, [], cut)
    work = Workload(cluster, history, fresh_keys(f"shape-{shape}", 4)).start()
    accepted_by_minority: list[str] = []
    refused = unknown = 0
    samples: list[dict] = []
    try:
        work.wait_ops(20, 30)
        with nemesis.partition_grudge(cut, f"partition_{shape}", majority=big, minority=small):
            fault = history.faults()[-1]
            if small:
                elected = new_leader(admin, big, old, ELECTION_BOUND_S)
                bench.record(
                    "partition_majority_leader_seconds",
                    round((time.monotonic_ns() - fault.time) / 1e9, 2),
                    "s",
                    shape=shape,
                    members=len(members),
                    leader=elected,
                )
                writer = client(cluster, history).for_process("majority-side")
                for m in big:
                    put_until_ok(writer, fresh_keys(f"shape-{shape}-maj")[0], f"by-{m}", member=m)
                refuser = client(cluster, history, retry_for=0).for_process("minority-side")
                for m in small:
                    assert not serves[m], f"quorum knowledge says minority member {m} serves"
                    for n in range(MINORITY_ATTEMPTS):
                        try:
                            refuser.put(fresh_keys("shape-minority")[0], f"minority-{m}-{n}", member=m)
                            accepted_by_minority.append(f"{m}:{n}")
                        except Fail:
                            refused += 1
                        except Info:
                            unknown += 1
            wait_for(
                lambda: recovery_time(history, fault) is not None, ELECTION_BOUND_S + 15, 0.2, "writes again"
            )
            resumed = recovery_time(history, fault)
            samples += [admin.status(m) for m in members]
        admin.wait_for_ready(60)
        samples += [admin.status(m) for m in members]
    finally:
        counts = work.stop()
    bench.record("partition_writes_resumed_seconds", round(resumed or -1, 2), "s", shape=shape)
    if small:
        bench.record("partition_minority_writes_refused", refused, "writes", shape=shape, unknown=unknown)
    print(f"{shape}: grudge {sorted(cut)}, ops {counts}, minority refused {refused}, unknown {unknown}")
    assert accepted_by_minority == [], f"the minority side acknowledged writes: {accepted_by_minority}"
    assert not small or refused + unknown == MINORITY_ATTEMPTS * len(small)
    wait_for(
        lambda: len({admin.status(m)["last_applied"] for m in members}) == 1,
        30,
        0.2,
        "every member applying the same log",
    )
    split = {t: ls for t, ls in term_leaders(samples).items() if len(ls) > 1}
    assert split == {}, f"two leaders in one term: {split}"
    assert_linearizable(history)


def shaped_bytes(host: Host, peer: Host) -> int:
    """Bytes our bandwidth class on ``host`` has sent (on the device that reaches ``peer``): more than 0 when
    its filters matched the cluster's traffic."""
    dev = f"$(ip -o route get {peer.address} | awk '{{for (i = 1; i < NF; i++) if ($i == \"dev\") print $(i + 1)}}')"
    out = host.run(
        f"tc -s class show dev {dev} classid {QDISC_HANDLE}:{BANDWIDTH_CLASS[1]}", timeout=20
    ).stdout
    sent = [line.split()[1] for line in out.splitlines() if line.strip().startswith("Sent ")]
    return int(sent[0]) if sent else 0


@pytest.mark.parametrize("fault", ["loss", "bandwidth"])
def test_lossy_or_narrow_links_keep_the_cluster_serving_and_safe(
    fault: str, cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """20 % of the packets between a follower and its peers dropped, or the leader's egress to its peers
    held to 256 kbit/s (only cluster traffic: the check's own client is not shaped): the cluster keeps
    acknowledging operations and every history stays linearizable."""
    lead = leader(cluster, admin)
    follower = next(h for h in cluster.group("custom_server") if h.name != lead.name)
    target = follower if fault == "loss" else lead
    work = Workload(cluster, history, fresh_keys(f"net-{fault}", 4)).start()
    try:
        work.wait_ops(20, 30)
        t0 = time.monotonic()
        with nemesis.loss(target, 20) if fault == "loss" else nemesis.bandwidth(target, 256):
            work.wait_ops(50, 60, f"operations with {fault} on {target.name}")
            held_s = time.monotonic() - t0
            if fault == "bandwidth":
                peer = next(h for h in cluster.group("custom_server") if h.name != target.name)
                assert shaped_bytes(target, peer) > 0, (
                    f"our bandwidth class on {target.name} shaped no traffic"
                )
    finally:
        counts = work.stop()
    bench.record(f"raftkv_50_ops_under_{fault}_seconds", round(held_s, 2), "s", host=target.name)
    print(f"{fault} on {target.name}: 50 ops in {held_s:.1f}s, ops {counts}")
    assert_linearizable(history)


# Writes each refusing member is asked to take at one step of the overlapping schedule (each waits up to the
# server's commit timeout before it answers unknown, so few are enough to show it never acknowledges).
REFUSAL_ATTEMPTS = 2


def test_overlapping_faults_acknowledge_only_where_a_connected_majority_lives(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """Faults pile up on five members, and at every step the schedule's quorum knowledge
    (gauntlet.nemesis.quorum.Schedule) decides what is required: two followers killed (three of five live: a
    majority, must serve); then the leader cut off from the other two live ones (no side holds three of five:
    every live member must refuse or answer unknown); then the killed two back (four of five connected: they
    serve, the cut-off old leader refuses); then the partition healed (all serve). A write acknowledged where
    no connected majority lives is a split brain; a majority side that never acknowledges within the bound is
    unavailability. Plus one leader per term, a linearizable history, and one log after heal."""
    members = sorted(m.name for m in admin.members)
    if len(members) < 5:
        pytest.skip(f"inventory has {len(members)} members: two of five down needs five")
    service = unit(cluster)
    old = leader(cluster, admin).name
    down = [m for m in members if m != old][:2]
    schedule = Schedule(members)
    in_force: dict[str, AbstractContextManager[None]] = {}
    writer = client(cluster, history).for_process("majority-side")
    refuser = client(cluster, history, retry_for=0).for_process("refused-side")
    acknowledged_without_majority: list[str] = []
    samples: list[dict] = []
    refused = unknown = 0

    def start(fault_id: str, fault: AbstractContextManager[None], held: Held) -> Step:
        fault.__enter__()
        in_force[fault_id] = fault
        return schedule.start(fault_id, held)

    def stop(fault_id: str) -> Step:
        in_force.pop(fault_id).__exit__(None, None, None)
        return schedule.stop(fault_id)

    def judge(step: Step) -> None:
        nonlocal refused, unknown
        t0 = time.monotonic()
        for m in step.available:
            put_until_ok(
                writer, fresh_keys("overlap-maj")[0], f"by-{m}", timeout=ELECTION_BOUND_S + 15, member=m
            )
        if step.available:
            bench.record(
                "overlap_majority_acknowledged_seconds",
                round(time.monotonic() - t0, 2),
                "s",
                step=step.event,
                serving=step.available,
            )
        for m in step.refusing:
            for n in range(REFUSAL_ATTEMPTS):
                try:
                    refuser.put(fresh_keys("overlap-min")[0], f"{step.event}-{m}-{n}", member=m)
                    acknowledged_without_majority.append(f"{step.event}: {m}")
                except Fail:
                    refused += 1
                except Info:
                    unknown += 1
            # a refusal counts only from a member that is up: its status must answer
            samples.append(admin.status(m))
        samples.extend(admin.status(m) for m in step.available)
        print(f"{step.event}: dead {sorted(step.dead)}, serve {step.available}, refuse {step.refusing}")

    try:
        kills = ExitStack()
        for m in down:
            kills.enter_context(nemesis.kill(m, service))
        in_force["kill-two"] = kills
        judge(schedule.start("kill-two", Held("kill", dead=frozenset(down))))
        cut = grudge.isolate_one(members, old)
        step = start(
            "isolate-leader", nemesis.partition_grudge(cut, "isolate_leader"), Held("isolate", grudge=cut)
        )
        assert step.available == [], f"quorum knowledge says {step.available} serve with 2 of 5 connected"
        judge(step)
        step = stop("kill-two")
        assert old in step.refusing and len(step.available) == 4, step
        judge(step)
        judge(stop("isolate-leader"))
    finally:
        for fault_id in reversed(list(in_force)):
            in_force.pop(fault_id).__exit__(None, None, None)
    admin.wait_for_ready(60)
    bench.record("overlap_refused_without_majority", refused, "writes", unknown=unknown)
    assert acknowledged_without_majority == [], (
        f"writes acknowledged where no connected majority lives: {acknowledged_without_majority}"
    )
    assert refused + unknown == REFUSAL_ATTEMPTS * sum(len(s.refusing) for s in schedule.steps)
    wait_for(
        lambda: len({admin.status(m)["last_applied"] for m in members}) == 1,
        30,
        0.2,
        "every member applying the same log",
    )
    split = {t: ls for t, ls in term_leaders(samples).items() if len(ls) > 1}
    assert split == {}, f"two leaders in one term: {split}"
    assert_linearizable(history)
