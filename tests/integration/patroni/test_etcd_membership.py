"""etcd membership changes under the Patroni cluster that uses it as its DCS, under writes to both: a member
replaced the way a lost disk is (stopped, its data directory wiped, then the etcd role converged again: it
removes the old registration and adds the host as a new member), and a rolling restart of every member.
Judged: no acknowledged etcd or PostgreSQL write lost, the replaced member holds every key, etcd has a
leader again within a bound after each change, and Patroni keeps its leader lock throughout (no failover)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checklib.ansible import run_play
from checklib.patroni import PatroniCluster, wait_writes_ok
from gauntlet.bench import Bench, wait_for
from gauntlet.checkers import lost_acknowledged_writes, single_leader
from gauntlet.clients.base import WorkloadRunner
from gauntlet.clients.etcd import EtcdClient, Member
from gauntlet.clients.postgres import PostgresWorkload, read_ids
from gauntlet.cluster import Cluster
from gauntlet.history import History

pytestmark = [pytest.mark.patroni]

# The etcd role on every member, after the facts it derives addresses from (as the topology's playbook).
PLAYBOOK = """
- name: Gather the facts the etcd role derives addresses from
  hosts: etcd
  gather_facts: true
  tasks: []

- name: Converge the etcd members (a member without data rejoins as a new member)
  hosts: etcd
  become: true
  gather_facts: false
  roles:
    - role: gauntlet.cluster.etcd
"""
# A converge of the etcd role on three members takes about a minute here; the bound says it did not hang.
CONVERGE_BOUND_S = 600
# etcd agrees on a leader again within this long after a member is back (a few election timeouts, and the
# new member's catch-up from a snapshot).
SETTLE_S = 60.0
# The writers stop by themselves after this long, even when the check that started them failed.
WRITER_MAX_S = 600.0


@pytest.fixture(scope="module")
def etcd(cluster: Cluster) -> EtcdClient:
    """The tests' etcd client over every member of group etcd (the Patroni DCS)."""
    port = int(cluster.setting("etcd_client_port", "etcd"))
    members = [Member(h.name, h.address, port) for h in cluster.group("etcd")]
    return EtcdClient(members, cluster.ca_cert, *cluster.client_cert("gauntlet-client"), timeout=2.0)


@dataclass
class KeyWriter:
    """One new key per write, through every member in turn (a bounded :class:`WorkloadRunner`), recorded in
    its own history: its values are etcd's, the PostgreSQL workload's history judges ids."""

    etcd: EtcdClient
    prefix: str
    history: History = field(default_factory=History)

    def __post_init__(self) -> None:
        self.members = sorted(self.etcd.members)
        self.runner = WorkloadRunner(["etcd-writer"], self._step, pause_s=0.05, max_seconds=WRITER_MAX_S)

    def _step(self, process: str, n: int) -> None:
        member = self.members[n % len(self.members)]
        self.etcd.recorded_put(self.history, process, member, f"{self.prefix}{n:06d}", f"v{n}")


@contextmanager
def under_writes(pg: PatroniCluster, etcd: EtcdClient, history: History, name: str) -> Iterator[str]:
    """PostgreSQL writes through HAProxy and etcd writes through every member around the block, which gets
    the Patroni leader's name; then every acknowledged write of both is judged present, on every etcd
    member, and Patroni's lock is judged never to have moved."""
    pg_leader = pg.wait_healthy()
    prefix = f"/gauntlet/membership/{name}/{int(time.time())}/"
    keys = KeyWriter(etcd, prefix)
    sampler = pg.sampler().start()
    workload = PostgresWorkload(history, pg.lb_endpoint("rw"), pg.lb_endpoint("ro"), writers=2, readers=1)
    started_ns = time.monotonic_ns()
    try:
        with workload:
            keys.runner.start()
            wait_writes_ok(history, started_ns, 30, n=10)
            try:
                yield pg_leader
            finally:
                keys.runner.stop(15)
            wait_writes_ok(history, time.monotonic_ns(), 30, n=5)
    finally:
        sampler.stop()
    for member in sorted(etcd.members):  # the replaced member too: it caught up from the others
        kv = wait_for(lambda m=member: etcd.get_prefix(m, prefix), 30, 0.5, f"{member} reading {prefix}")
        lost = lost_acknowledged_writes(keys.history, kv.values())
        assert lost, f"etcd member {member}: {lost}"
    assert lost_acknowledged_writes(keys.history, []).evidence["acknowledged"] > 0, (
        "no etcd write was acknowledged"
    )
    pg_lost = lost_acknowledged_writes(history, read_ids(pg.lb_endpoint("rw"), since=workload.id_base))
    assert pg_lost, pg_lost
    claims = single_leader(sampler.leader_samples())
    assert claims, claims
    holders = {h for s in sampler.leader_samples() for h in s.leaders}
    assert holders == {pg_leader}, (
        f"Patroni's leader lock moved during the etcd change: held by {sorted(holders)}"
    )
    assert pg.leaders() == [pg_leader], f"{pg_leader} no longer leads after the etcd change: {pg.leaders()}"


def agreed_leader(etcd: EtcdClient, what: str) -> float:
    """Seconds until every member answers and follows one leader."""
    t0 = time.monotonic()
    wait_for(
        lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, f"etcd members agreeing on a leader {what}"
    )
    return time.monotonic() - t0


def test_a_replaced_etcd_member_rejoins_with_every_key_and_patroni_keeps_its_lock(
    pg: PatroniCluster, etcd: EtcdClient, table: str, history: History, bench: Bench, tmp_path: Path
) -> None:
    """A member loses its data (stopped, data directory wiped); converging the etcd role again replaces it
    (old registration removed, the host added as a new member): it rejoins, holds every acknowledged key,
    and neither etcd nor PostgreSQL loses an acknowledged write; Patroni's leader never changes."""
    cluster = pg.cluster
    data_dir = str(cluster.setting("etcd_data_dir", "etcd"))
    etcd_leader = wait_for(lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, "a settled etcd cluster")
    with under_writes(pg, etcd, history, "replace") as pg_leader:
        # A follower of etcd on a Patroni replica's host: the member most like a lost disk in production.
        target = next(n for n in sorted(etcd.members) if n != etcd_leader and n != pg_leader)
        peer = next(n for n in sorted(etcd.members) if n != target)
        old_ids = set(etcd.member_list(peer))
        host = cluster[target]
        host.run(f"systemctl stop etcd && rm -rf {data_dir}", check=True, timeout=60)
        history.mark("etcd-member-wiped", host=target)
        t0 = time.monotonic()
        run = run_play(cluster.source, PLAYBOOK, tmp_path, timeout=CONVERGE_BOUND_S)
        converge_s = time.monotonic() - t0
        assert run.rc == 0, f"the etcd role did not replace {target}:\n{run.output[-3000:]}"
        history.mark("etcd-member-replaced", host=target)
        settle_s = agreed_leader(etcd, f"after {target} was replaced")
        members = etcd.member_list(peer)
        assert len(members) == len(etcd.members), (
            f"etcd has {len(members)} members after the replace: {members}"
        )
        new_ids = set(members) - old_ids
        assert len(new_ids) == 1 and members[next(iter(new_ids))] == target, (
            f"{target} is not registered as a new member: before {sorted(old_ids)}, after {members}"
        )
        assert etcd.status(target).member_id in new_ids
    bench.record("etcd_member_replace_converge_seconds", round(converge_s, 1), "s", member=target)
    bench.record("etcd_member_replace_leader_seconds", round(settle_s, 2), "s", member=target)


def test_a_rolling_restart_of_every_etcd_member_loses_nothing_and_patroni_keeps_its_lock(
    pg: PatroniCluster, etcd: EtcdClient, table: str, history: History, bench: Bench
) -> None:
    """Every etcd member restarted in turn (followers first, the leader last), each back and agreeing on a
    leader before the next: no acknowledged write lost in etcd or PostgreSQL, Patroni's leader unchanged."""
    etcd_leader = wait_for(lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, "a settled etcd cluster")
    order = [*sorted(n for n in etcd.members if n != etcd_leader), etcd_leader]
    settle: dict[str, float] = {}
    with under_writes(pg, etcd, history, "rolling"):
        for name in order:
            pg.cluster[name].run("systemctl restart etcd", check=True, timeout=60)
            history.mark("etcd-member-restarted", host=name)
            settle[name] = agreed_leader(etcd, f"after {name} restarted")
    for name, seconds in settle.items():
        bench.record("etcd_rolling_restart_leader_seconds", round(seconds, 2), "s", member=name)
    assert max(settle.values()) <= SETTLE_S
