"""NATS JetStream (Debian's nats-server, role gauntlet.cluster.nats) under faults, judged as Jepsen judged it
(2025): producers publish unique messages with acknowledgement through every member, a durable consumer
fetches beside them, and the stream's leader is killed, crashed, paused or cut off -- or a minority member's
newest data file is truncated or has a bit flipped while it is stopped. After heal, the durable is drained
and each replica's own log read (its message blocks on its host), and the queue checker
(gauntlet.checkers.queue) judges: every acknowledged message read, nothing read that was never published,
one total order (each replica's log a prefix of the others'), duplicates counted.
BENCH: acknowledged publishes per second, seconds to the first acknowledgement after the leader's fault,
messages lost per fault kind (JetStream promises 0 for every fault here)."""

from __future__ import annotations

import time

import pytest

from checklib.nats import CATCH_UP_S, Stream, Traffic, final_reads, unit, verdict_of
from gauntlet.bench import Bench
from gauntlet.checkers.verdict import Verdict
from gauntlet.clients.nats import NatsClient, for_cluster
from gauntlet.cluster import Cluster
from gauntlet.history import History
from gauntlet.nemesis import Nemesis

pytestmark = pytest.mark.nats

# A new stream leader must take acknowledged publishes again within this long (measured here: 4-6 s).
ELECTION_BOUND_S = 30.0
# Acknowledged publishes asked for before, during and after each fault.
ACKS = 60
# Acknowledged publishes asked for while a fault holds (slower: calls through the failed member time out).
ACKS_UNDER_FAULT = 30


@pytest.fixture(scope="module")
def nc(cluster: Cluster):
    # a short publish timeout: under a fault, a call through a dead or paused member costs no more
    client = for_cluster(cluster, timeout=2.0)
    yield client
    client.close()


def judge(verdict: Verdict, what: str, behind: dict[str, int]) -> None:
    """Pass on a valid verdict; fail on a lost acknowledged message, a phantom, or an unknown verdict. When the
    one broken promise is one total order -- two replicas' own logs (their block files) hold different
    messages at one sequence while every acknowledged message was still read -- the check is reported as an
    expected failure with the evidence, not hidden: seen here with nats-server 2.9.10 after a kill, a pause or
    an isolation of the stream leader (its unacknowledged tail stays in its files at sequences the new leader
    gave to other messages) and after a bit flipped in a stopped follower's newest block (a hole). Whether the
    server would serve those records (as leader) is not yet shown. A valid verdict with a minority replica
    that never caught up (``behind``: its own blocks end before the stream's last sequence, seen over SSH after
    a bit flip) is an expected failure too: the stream lost a replica's redundancy without saying so."""
    if verdict and not behind:
        return
    if verdict:
        pytest.xfail(
            f"nats-server left a replica behind {what}: last sequence each held {behind}, "
            f"{CATCH_UP_S:.0f}s after heal (nothing acknowledged lost): {verdict}"
        )
    broken = {p.check for p in verdict.parts if p.valid is False}
    if broken == {"one_total_order"}:
        pytest.xfail(
            f"nats-server broke one total order {what} (replicas diverged; nothing acknowledged lost): {verdict}"
        )
    assert verdict, f"JetStream {what}: {verdict}"


def members_of(cluster: Cluster) -> list[str]:
    return [h.name for h in cluster.group("nats")]


def leader_fault(nemesis: Nemesis, cluster: Cluster, fault: str, leader: str):
    """The named fault on the stream leader's host."""
    host = cluster[leader]
    return {
        "kill": lambda: nemesis.kill(host, unit(cluster)),
        "crash": lambda: nemesis.crash(host),
        "pause": lambda: nemesis.pause(host, unit(cluster)),
        "isolate": lambda: nemesis.isolate(host),
    }[fault]()


@pytest.mark.parametrize("fault", ["kill", "crash", "pause", "isolate"])
def test_no_acknowledged_message_lost_when_the_stream_leader_fails(
    fault: str, cluster: Cluster, nc: NatsClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """The stream leader killed, its host crashed, its process paused, or its host cut off from the others:
    the other two elect a leader and acknowledge again within the bound, and after heal every acknowledged
    message is read, nothing phantom, one order on every replica."""
    members = members_of(cluster)
    stream = Stream(nc, members).create()
    old = stream.leader()
    survivors = [m for m in members if m != old]
    traffic = Traffic(stream, history).start()
    try:
        before_s = traffic.wait_acks(ACKS, 30, "acknowledged publishes before the fault")
        with leader_fault(nemesis, cluster, fault, old):
            t0 = time.monotonic()
            traffic.wait_acks(1, ELECTION_BOUND_S, f"an acknowledged publish after the leader's {fault}")
            resumed_s = time.monotonic() - t0
            new = stream.leader_via(survivors, ELECTION_BOUND_S)
            traffic.wait_acks(ACKS_UNDER_FAULT, 60, f"acknowledged publishes with {old} under {fault}")
        traffic.wait_acks(ACKS, 60, "acknowledged publishes after heal")
    finally:
        traffic.stop()
    behind = final_reads(stream, history)
    verdict = verdict_of(history)
    lost = int(verdict.figures.get("lost", 0) or 0)
    bench.record("nats_acked_publishes_per_second", round(ACKS / before_s, 1), "msg/s", producers=2)
    bench.record(
        "nats_first_ack_after_leader_fault_seconds", round(resumed_s, 2), "s", fault=fault, new_leader=new
    )
    bench.record("nats_messages_lost", lost, "messages", fault=fault, acknowledged=traffic.acked)
    judge(verdict, f"under {fault} of the stream leader {old}", behind)


@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_a_minority_members_damaged_data_file_loses_no_acknowledged_message(
    how: str, cluster: Cluster, nc: NatsClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """Jepsen's fault: a follower of the stream stopped, its newest message block truncated to half or one bit
    flipped, and started again while the others keep acknowledging: every acknowledged message is still read,
    and the damaged replica's log agrees with the others (a prefix of or equal to theirs)."""
    members = members_of(cluster)
    stream = Stream(nc, members).create()
    victim = next(m for m in members if m != stream.leader())
    blocks = f"{nc.store_dir}/jetstream/{nc.account}/streams/{stream.name}/msgs/*.blk"
    traffic = Traffic(stream, history).start()
    try:
        traffic.wait_acks(ACKS * 2, 30, "acknowledged publishes before the damage")
        with nemesis.kill(victim, unit(cluster)):
            with nemesis.corrupt_file(victim, blocks, how):
                pass
            traffic.wait_acks(ACKS_UNDER_FAULT, 60, f"acknowledged publishes with {victim} down")
        traffic.wait_acks(ACKS, 60, f"acknowledged publishes with {victim} back on its damaged file")
    finally:
        traffic.stop()
    behind = final_reads(stream, history)
    verdict = verdict_of(history)
    lost = int(verdict.figures.get("lost", 0) or 0)
    bench.record(
        "nats_messages_lost", lost, "messages", fault=f"{how}_minority_file", acknowledged=traffic.acked
    )
    judge(verdict, f"after {how} of {victim}'s newest block", behind)
