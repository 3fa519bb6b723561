"""The custom server cluster at rest: it forms with one leader, serves CRUD on every member, reads its own
writes everywhere, takes concurrent load, and keeps its data across restarts. Every client operation is
recorded and each check ends with a linearizability verdict over its history.

Runs against any server speaking the reference server's HTTP API (servers/raftkv): see docs/custom_server.md.
"""

from __future__ import annotations

import threading
import time

import pytest

from checklib.custom import (
    GROUP,
    assert_linearizable,
    client,
    fresh_keys,
    leader,
    term_leaders,
    unit,
)
from gauntlet.bench import wait_for
from gauntlet.checkers import linearizable, single_leader
from gauntlet.clients.declared import CasMismatch, DeclaredClient
from gauntlet.cluster import Cluster
from gauntlet.history import History

pytestmark = [pytest.mark.custom, pytest.mark.usefixtures("reference_server")]


def test_cluster_forms_with_one_leader(cluster: Cluster, admin: DeclaredClient) -> None:
    members = [h.name for h in cluster.group(GROUP)]
    first = leader(cluster, admin)
    samples = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        statuses = [admin.status(m) for m in members]
        samples.append(
            {
                "time": time.monotonic_ns(),
                "leaders": [s["node_id"] for s in statuses if s["state"] == "leader"],
            }
        )
        assert {(s.get("leader") or {}).get("id") for s in statuses} == {first.name}, statuses
        assert all(s["has_quorum"] and s["ready"] for s in statuses), statuses
        assert {m["id"] for m in statuses[0]["members"]} == set(members)
        time.sleep(0.2)
    leaders = single_leader(samples)
    assert leaders, leaders
    assert all(s["leaders"] == [first.name] for s in samples)
    terms = {admin.status(m)["term"] for m in members}
    assert len(terms) == 1, f"members disagree on the term at rest: {terms}"


def test_crud_through_every_member(cluster: Cluster, admin: DeclaredClient, history: History) -> None:
    kv = client(cluster, history)
    for m in kv.members:
        (key,) = fresh_keys(f"crud-{m.name}")
        assert kv.get(key, member=m.name) is None
        kv.put(key, "one", member=m.name)
        assert kv.get(key, member=m.name) == "one"
        kv.cas(key, "one", "two", member=m.name)
        with pytest.raises(CasMismatch) as mismatch:
            kv.cas(key, "one", "three", member=m.name)
        assert mismatch.value.current == "two"
        assert kv.get(key, member=m.name) == "two"
        kv.delete(key, member=m.name)
        assert kv.get(key, member=m.name) is None
        kv.cas(key, None, "created", member=m.name)  # create-if-absent
        assert kv.get(key, member=m.name) == "created"
    assert_linearizable(history)


def test_read_after_write_on_every_member(cluster: Cluster, admin: DeclaredClient, history: History) -> None:
    kv = client(cluster, history)
    names = [m.name for m in kv.members]
    for writer in names:
        (key,) = fresh_keys(f"raw-{writer}")
        value = f"from-{writer}"
        kv.put(key, value, member=writer)
        # linearizable reads: immediately visible on every member, no waiting
        for reader in names:
            assert kv.get(key, member=reader) == value, (
                f"{reader} did not see the write acknowledged by {writer}"
            )
        # local (stale) reads converge too, and quickly
        for reader in names:
            wait_for(
                lambda r=reader, k=key, v=value: kv.get(k, member=r, stale=True) == v,
                5,
                0.05,
                f"{reader}'s local copy of {key}",
            )
    assert_linearizable(history)


def test_fifty_concurrent_operations_all_succeed_and_are_visible(
    cluster: Cluster, admin: DeclaredClient, history: History
) -> None:
    kv = client(cluster, history)
    keys = fresh_keys("concurrent", 50)
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def one(i: int) -> None:
        c = kv.for_process(f"c{i}")
        member = kv.members[i % len(kv.members)].name
        barrier.wait()
        try:
            c.put(keys[i], f"value-{i}", member=member)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [], f"{len(errors)} of 50 concurrent writes failed: {errors[:3]}"
    for m in kv.members:
        reader = kv.for_process(f"reader-{m.name}")
        for i, key in enumerate(keys):
            assert reader.get(key, member=m.name) == f"value-{i}"
    assert_linearizable(history)


def test_full_cluster_restart_keeps_every_acknowledged_write(
    cluster: Cluster, admin: DeclaredClient, history: History
) -> None:
    """All members restart at once: the data can only come back from each member's own disk."""
    kv = client(cluster, history)
    keys = fresh_keys("durable", 20)
    for i, key in enumerate(keys):
        kv.put(key, f"kept-{i}")
    service = unit(cluster)
    hosts = cluster.group(GROUP)
    threads = [
        threading.Thread(target=h.run, args=(f"systemctl restart {service}",), kwargs={"check": True})
        for h in hosts
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    admin.wait_for_ready(60)
    for m in kv.members:
        for i, key in enumerate(keys):
            assert kv.get(key, member=m.name) == f"kept-{i}", f"{m.name} lost {key} across a full restart"
    assert_linearizable(history)


def test_election_safety_at_most_one_leader_per_term(cluster: Cluster, admin: DeclaredClient) -> None:
    samples = [admin.status(m.name) for m in admin.members for _ in range(3)]
    split = {t: ls for t, ls in term_leaders(samples).items() if len(ls) > 1}
    assert split == {}, f"two leaders in one term: {split}"


def test_bench_ops_per_second_and_checker_time(
    cluster: Cluster, admin: DeclaredClient, history: History, bench
) -> None:
    """2,000 operations (reads, writes, compare-and-sets) from 8 recorded clients through every member."""
    kv = client(cluster, history)
    keys = fresh_keys("bench", 8)
    per_worker = 250
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        c = kv.for_process(f"b{i}")
        last: dict[str, str | None] = {}
        for n in range(per_worker):
            key = keys[(i + n) % len(keys)]
            try:
                if n % 5 in (0, 1):
                    last[key] = c.get(key)
                elif n % 5 in (2, 3):
                    c.put(key, f"b{i}-{n}")
                    last[key] = f"b{i}-{n}"
                else:
                    c.cas(key, last.get(key), f"b{i}-{n}")
                    last[key] = f"b{i}-{n}"
            except CasMismatch as exc:
                last[key] = exc.current
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.perf_counter() - t0
    assert errors == [], f"{len(errors)} operations failed at rest: {errors[:3]}"
    ops = 8 * per_worker
    bench.record(
        "raftkv_ops_per_second", ops / elapsed, "ops/s", clients=8, ops=ops, mix="40r/40w/20cas", tls="mTLS"
    )
    t1 = time.perf_counter()
    result = linearizable(history)
    checked = time.perf_counter() - t1
    bench.record("linearizable_check_2000_ops_seconds", checked, "s", source="raftkv history", keys=len(keys))
    assert result.valid is True, result.report()
