"""Redis Cluster data distribution: slot coverage, key placement and MOVED redirects, balance, master
failure and resharding (marker ``distribution``, group ``redis_cluster``)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from checklib.redis import redis_cli
from gauntlet.bench import wait_for
from gauntlet.checkers.lost_writes import lost_acknowledged_writes
from gauntlet.clients.redis import SLOTS, ClusterNode, RedisClusterNodes, key_slot, slot_owners
from gauntlet.clients.redis.writers import ClusterWriters
from gauntlet.cluster import Cluster
from gauntlet.history import History

pytestmark = pytest.mark.distribution

UNIFORM_KEYS = 6000
# Largest relative deviation of a master's key count from its share of the slots (uniform keys). With 6000
# keys a master expects ~2000 (binomial sd ~37, under 2%): 10% is a 5-sigma bound.
SKEW_BOUND = 0.10


@pytest.fixture(scope="module")
def rc(cluster: Cluster) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(cluster)
    wait_healthy(nodes, timeout=60)
    yield nodes
    nodes.close()


def masters_and_replicas(nodes: list[ClusterNode]) -> tuple[list[ClusterNode], list[ClusterNode]]:
    live = [n for n in nodes if not n.failed]
    return [n for n in live if n.is_master and n.slots], [n for n in live if not n.is_master]


def wait_healthy(rc: RedisClusterNodes, timeout: float) -> list[ClusterNode]:
    """Wait until every instance answers, reports cluster_state:ok, and the view has every master with its
    full set of connected replicas and all slots covered."""
    expected = len(rc.endpoints)

    def healthy() -> list[ClusterNode] | None:
        views = rc.views()
        if len(views) != expected:
            return None
        if any(rc.cluster_info(ep).get("cluster_state") != "ok" for ep in views):
            return None
        nodes = next(iter(views.values()))
        masters, replicas = masters_and_replicas(nodes)
        if len(slot_owners(nodes)) != SLOTS or len(replicas) != len(masters) * rc.replicas:
            return None
        if any(n.link != "connected" for n in nodes):
            return None
        return nodes

    return wait_for(
        healthy, timeout, interval=0.5, what="Redis Cluster healthy (all nodes ok, slots covered)"
    )


def test_layout_spreads_masters_and_replicas(rc: RedisClusterNodes) -> None:
    """Masters = instances / (replicas + 1), each with its replicas, and no host holds a master and its own
    replica (losing one host never loses both copies of a slot)."""
    nodes = rc.nodes(rc.endpoints[0])
    masters, replicas = masters_and_replicas(nodes)
    assert len(masters) == len(rc.endpoints) // (rc.replicas + 1) >= 3
    by_id = {n.node_id: n for n in nodes}
    per_master = Counter(r.master_id for r in replicas)
    assert all(per_master[m.node_id] == rc.replicas for m in masters), per_master
    same_host = [
        (r.endpoint, by_id[r.master_id].endpoint) for r in replicas if by_id[r.master_id].address == r.address
    ]
    assert not same_host, f"replicas on the same host as their master: {same_host}"


def test_all_slots_covered_and_every_node_agrees(rc: RedisClusterNodes) -> None:
    """All 16384 slots are served by exactly one master, and every instance has the same slot map."""
    views = rc.views()
    assert len(views) == len(rc.endpoints), f"instances not answering: {set(rc.endpoints) - set(views)}"
    maps = {}
    for ep, nodes in views.items():
        assert rc.cluster_info(ep)["cluster_state"] == "ok", ep
        claimed: Counter[int] = Counter()
        for n in nodes:
            if n.is_master:
                for a, b in n.slots:
                    claimed.update(range(a, b + 1))
        assert set(claimed) == set(range(SLOTS)), f"{ep}: {SLOTS - len(claimed)} slots uncovered"
        assert max(claimed.values()) == 1, f"{ep}: slots claimed twice"
        maps[ep] = {s: n.endpoint for s, n in slot_owners(nodes).items()}
    first = next(iter(maps.values()))
    assert all(m == first for m in maps.values()), "instances disagree about the slot map"
    info = rc.cluster_info(rc.endpoints[0])
    assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == str(SLOTS)


@pytest.fixture(scope="module")
def uniform_keys(rc: RedisClusterNodes) -> dict[str, str]:
    """UNIFORM_KEYS random keys written through the cluster client (the data set of the next checks)."""
    for ep in rc.endpoints:
        with contextlib.suppress(redis.ReadOnlyError):  # replicas follow their master
            rc.call(ep, "FLUSHALL")
    client = rc.client()
    keys = {f"u:{uuid.uuid4().hex}": uuid.uuid4().hex for _ in range(UNIFORM_KEYS)}
    pipe = client.pipeline(transaction=False)
    for k, v in keys.items():
        pipe.set(k, v)
    assert all(pipe.execute())
    client.close()
    return keys


def test_keys_readable_on_owner_and_moved_elsewhere(
    rc: RedisClusterNodes, uniform_keys: dict[str, str]
) -> None:
    """Each key is served by the master owning its slot; every other master (and every replica, without
    READONLY) answers MOVED naming that owner."""
    nodes = rc.nodes(rc.endpoints[0])
    owners = slot_owners(nodes)
    masters, replicas = masters_and_replicas(nodes)
    # The client-side slot function agrees with the server's.
    for k in list(uniform_keys)[:50]:
        assert rc.call(masters[0].endpoint, "CLUSTER", "KEYSLOT", k) == key_slot(k)
    by_owner: dict[str, list[str]] = {}
    for k in uniform_keys:
        by_owner.setdefault(owners[key_slot(k)].endpoint, []).append(k)
    moved_checked = 0
    for node in masters + replicas:
        pipe = rc.conn(node.endpoint).pipeline(transaction=False)
        for k in uniform_keys:
            pipe.get(k)
        replies = pipe.execute(raise_on_error=False)
        for k, reply in zip(uniform_keys, replies, strict=True):
            owner = owners[key_slot(k)]
            if node.node_id == owner.node_id:
                assert reply == uniform_keys[k], f"{k} on its owner {owner.endpoint}: {reply!r}"
            else:
                assert isinstance(reply, redis.exceptions.MovedError), f"{k} on {node.endpoint}: {reply!r}"
                assert reply.slot_id == key_slot(k)
                assert f"{reply.host}:{reply.port}" == owner.endpoint
                moved_checked += 1
    assert moved_checked == len(uniform_keys) * (len(masters) + len(replicas) - 1)


def test_key_count_per_master_within_skew_bound(
    rc: RedisClusterNodes, uniform_keys: dict[str, str], bench
) -> None:
    """Uniform keys spread over the masters in proportion to their slots (within SKEW_BOUND)."""
    nodes = rc.nodes(rc.endpoints[0])
    masters, _ = masters_and_replicas(nodes)
    counts = {m.endpoint: int(rc.call(m.endpoint, "DBSIZE")) for m in masters}
    assert sum(counts.values()) == len(uniform_keys)
    skews = {}
    for m in masters:
        expected = len(uniform_keys) * m.slot_count() / SLOTS
        skews[m.endpoint] = abs(counts[m.endpoint] - expected) / expected
    worst = max(skews.values())
    bench.record(
        "redis_cluster_key_skew_max", round(worst * 100, 2), "%", keys=len(uniform_keys), masters=len(masters)
    )
    assert worst <= SKEW_BOUND, f"key counts {counts} deviate up to {worst:.1%} from the slot shares"


def present_keys(rc: RedisClusterNodes, keys: list[str]) -> set[str]:
    client = rc.client()
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.exists(k)
    found = {k for k, e in zip(keys, pipe.execute(), strict=True) if e}
    client.close()
    return found


def test_killing_a_master_promotes_its_replica(
    rc: RedisClusterNodes, nemesis, history: History, bench
) -> None:
    """Kill a master under writes: its replica takes over its slots within a bound, no slot is left
    uncovered, the data written before survives, and the old master comes back as a replica."""
    nodes = wait_healthy(rc, timeout=60)
    masters, replicas = masters_and_replicas(nodes)
    victim = masters[0]
    heir = next(r for r in replicas if r.master_id == victim.node_id)
    victim_host = rc.host_of(victim.endpoint)
    unit = f"redis-server@{victim.port}"
    # Data written and replicated before the fault must survive it.
    client = rc.client()
    before = {f"pre:{uuid.uuid4().hex}": "x" for _ in range(500)}
    pipe = client.pipeline(transaction=False)
    for k in before:
        pipe.set(k, "x")
    pipe.execute()
    client.close()
    assert rc.call(victim.endpoint, "WAIT", 1, 5000) >= 1, (
        "the replica did not confirm the writes before the kill"
    )
    bound = rc.node_timeout_s * 2 + 15
    others = [ep for ep in rc.endpoints if ep != victim.endpoint]

    with ClusterWriters(rc, history) as writers:
        time.sleep(1.0)
        with nemesis.kill(victim_host, unit):
            t0 = time.monotonic()

            def promoted() -> bool:
                view = rc.views([heir.endpoint]).get(heir.endpoint, [])
                me = next((n for n in view if n.node_id == heir.node_id), None)
                return bool(me and me.is_master and me.slot_count() == victim.slot_count())

            wait_for(promoted, bound, interval=0.2, what=f"replica {heir.endpoint} promoted")
            failover_s = time.monotonic() - t0
            promoted_at = time.monotonic_ns()

            def covered() -> bool:
                views = rc.views(others)
                return len(views) == len(others) and all(
                    len(slot_owners(v)) == SLOTS and rc.cluster_info(ep)["cluster_state"] == "ok"
                    for ep, v in views.items()
                )

            wait_for(covered, bound, interval=0.2, what="all slots covered by live masters")
            covered_s = time.monotonic() - t0
            time.sleep(2.0)  # writes go on against the new master
    bench.record(
        "redis_cluster_failover_seconds", round(failover_s, 3), "s", node_timeout_s=rc.node_timeout_s
    )
    bench.record("redis_cluster_full_coverage_seconds", round(covered_s, 3), "s")
    assert failover_s <= bound

    acked = writers.acked()
    lost = lost_acknowledged_writes(history, present_keys(rc, acked)).evidence["lost"]
    bench.record("redis_cluster_lost_acked_writes_on_master_kill", len(lost), "writes", acked=len(acked))
    victim_slots = {s for a, b in victim.slots for s in range(a, b + 1)}
    followed = [
        o
        for o in history.client_ops()
        if o.type == "ok" and o.f == "write" and o.time > promoted_at and key_slot(o.key) in victim_slots
    ]
    assert followed, "no client write to the failed master's slots succeeded after the promotion"
    missing_before = set(before) - present_keys(rc, list(before))
    assert not missing_before, f"{len(missing_before)} keys replicated before the kill are gone"

    # The old master returns as a replica of its heir.
    def rejoined() -> bool:
        view = rc.views([victim.endpoint]).get(victim.endpoint, [])
        me = next((n for n in view if n.node_id == victim.node_id), None)
        return bool(me and not me.is_master and me.master_id == heir.node_id)

    wait_for(
        rejoined, 60, interval=0.5, what=f"old master {victim.endpoint} back as replica of {heir.endpoint}"
    )
    wait_healthy(rc, timeout=60)
    # Put the layout back (the old master takes its slots over again) for the checks that follow.
    # A manual failover aborts when the replica does not catch up within 5 s (a loaded machine): ask again.
    asked = [0.0]

    def restored() -> bool:
        if next(n for n in rc.nodes(victim.endpoint) if n.node_id == victim.node_id).is_master:
            return True
        if time.monotonic() - asked[0] > 6:
            rc.call(victim.endpoint, "CLUSTER", "FAILOVER")
            asked[0] = time.monotonic()
        return False

    wait_for(restored, 90, interval=0.5, what="layout restored by CLUSTER FAILOVER")
    wait_healthy(rc, timeout=60)


def test_resharding_keeps_every_key(rc: RedisClusterNodes, history: History, bench) -> None:
    """Move 1000 slots between masters with redis-cli --cluster reshard while clients write: every key
    written before and every acknowledged write during the move is still there, at its new owner."""
    nodes = wait_healthy(rc, timeout=60)
    masters, _ = masters_and_replicas(nodes)
    source, target = masters[0], masters[1]
    client = rc.client()
    before = {f"r:{uuid.uuid4().hex}": uuid.uuid4().hex for _ in range(3000)}
    pipe = client.pipeline(transaction=False)
    for k, v in before.items():
        pipe.set(k, v)
    pipe.execute()
    client.close()
    host = rc.host_of(source.endpoint)
    moving = 1000
    with ClusterWriters(rc, history, prefix="rw") as writers:
        t0 = time.monotonic()
        r = redis_cli(
            host,
            rc.password,
            f"--cluster reshard {source.endpoint} --cluster-from {source.node_id} --cluster-to {target.node_id} "
            f"--cluster-slots {moving} --cluster-yes",
            user=rc.user,
            port=source.port,
        )
        reshard_s = time.monotonic() - t0
        time.sleep(1.0)
    assert r.rc == 0, f"reshard failed: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    bench.record("redis_cluster_reshard_seconds", round(reshard_s, 3), "s", slots=moving, keys=len(before))
    after = wait_healthy(rc, timeout=60)
    by_id = {n.node_id: n for n in after}
    assert by_id[source.node_id].slot_count() == source.slot_count() - moving
    assert by_id[target.node_id].slot_count() == target.slot_count() + moving
    client = rc.client()
    pipe = client.pipeline(transaction=False)
    for k in before:
        pipe.get(k)
    values = dict(zip(before, pipe.execute(), strict=True))
    client.close()
    wrong = {k: v for k, v in values.items() if v != before[k]}
    assert not wrong, f"{len(wrong)} keys lost or changed by the reshard, e.g. {list(wrong.items())[:3]}"
    acked = writers.acked()
    assert acked, "no write succeeded during the reshard"
    lost_check = lost_acknowledged_writes(history, present_keys(rc, acked))
    lost = lost_check.evidence["lost"]
    bench.record("redis_cluster_lost_acked_writes_on_reshard", len(lost), "writes", acked=len(acked))
    assert lost_check, f"acknowledged writes lost during the reshard: {lost_check}"
    # Give the slots back evenly for whatever runs next.
    r = redis_cli(
        host,
        rc.password,
        f"--cluster rebalance {source.endpoint} --cluster-yes",
        user=rc.user,
        port=source.port,
    )
    assert r.rc == 0, f"rebalance failed: {r.stdout[-2000:]}"
    wait_healthy(rc, timeout=60)


# Fewer than 3 masters is refused before any change: tests/unit/test_redis_role_preflight.py.
