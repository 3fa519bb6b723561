"""The Patroni topology at rest: one leader, streaming replicas with bounded lag, HAProxy routing writes to
the leader and reads to the replicas, the statistics page over TLS only and behind authentication."""

from __future__ import annotations

import time

import psycopg
import pytest

from checklib.haproxy import StatsPage, assert_needs_authentication, assert_served_over_tls_only
from checklib.patroni import PatroniCluster
from gauntlet.bench import Bench, wait_for
from gauntlet.checkers import single_leader
from gauntlet.clients.postgres import ensure_table, read_ids
from gauntlet.clients.postgres.sampler import sampling

pytestmark = pytest.mark.patroni


def test_exactly_one_leader_and_members_agree(pg: PatroniCluster) -> None:
    """Exactly one member holds the leader lock, and every member's view of the cluster names the same one."""
    leader = pg.wait_healthy()
    assert pg.leaders() == [leader]
    for name, api in pg.apis.items():
        members = api.cluster()["members"]
        leaders = [m["name"] for m in members if m["role"] in ("leader", "master", "primary")]
        assert leaders == [leader], f"{name} sees leaders {leaders}, expected [{leader}]"
        assert {m["name"] for m in members} == set(pg.by_name), f"{name} sees members {members}"


def test_replicas_stream_from_the_leader(pg: PatroniCluster) -> None:
    """Every replica's WAL receiver streams, and the leader sees one streaming sender per replica (one of
    them synchronous in synchronous mode)."""
    leader = pg.wait_healthy()
    for name in pg.replicas(leader):
        assert pg.streaming(name), f"{name} is not streaming"
        assert pg.psql(name, "SELECT pg_is_in_recovery()") == "t"
    rows = pg.psql(leader, "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1")
    senders = [r.split("|") for r in rows.splitlines()]
    assert sorted(s[0] for s in senders) == sorted(pg.replicas(leader)), senders
    assert all(s[1] == "streaming" for s in senders), senders
    if pg.synchronous_mode:
        assert [s[2] for s in senders].count("sync") == 1, senders


def test_replication_lag_is_bounded(pg: PatroniCluster, table: str, bench: Bench) -> None:
    """A committed row reaches every replica within 5 s, and Patroni reports each replica's lag below
    maximum_lag_on_failover (1 MiB by default)."""
    leader = pg.wait_healthy()
    marker = int(time.time() * 1000) * 1000 + 999
    with pg.lb_endpoint("rw").connect() as conn:
        conn.execute(f"INSERT INTO {table} (id, writer) VALUES (%s, 'lag-probe')", (marker,))
    t0 = time.monotonic()
    for name in pg.replicas(leader):
        wait_for(
            lambda n=name: marker in read_ids(pg.member_endpoint(n), since=marker), 5, 0.05, f"row on {name}"
        )
    bench.record("patroni_replication_visible_all_replicas", time.monotonic() - t0, "s")
    lags = {m["name"]: m.get("lag", 0) for m in pg.apis[leader].cluster()["members"] if m["name"] != leader}
    assert all(isinstance(v, int) and v < 1024 * 1024 for v in lags.values()), lags


@pytest.mark.haproxy
def test_write_on_5000_is_visible_on_every_replica(pg: PatroniCluster, table: str) -> None:
    """A write through HAProxy's read-write port lands on the leader and replicates to every replica."""
    leader = pg.wait_healthy()
    value = int(time.time() * 1000) * 1000 + 998
    with pg.lb_endpoint("rw").connect() as conn:
        row = conn.execute("SELECT inet_server_addr()::text, pg_is_in_recovery()").fetchone()
        assert row is not None
        landed = next((n for n, h in pg.by_name.items() if h.address == row[0].split("/")[0]), row[0])
        assert landed == leader and row[1] is False, (
            f"a write on 5000 lands on {landed} (in recovery: {row[1]}), not on the leader {leader}"
        )
        conn.execute(f"INSERT INTO {table} (id, writer) VALUES (%s, 'rw-probe')", (value,))
    for name in pg.replicas(leader):
        wait_for(
            lambda n=name: value in read_ids(pg.member_endpoint(n), since=value), 10, 0.1, f"row on {name}"
        )


@pytest.mark.haproxy
def test_5001_goes_to_replicas_and_refuses_writes(pg: PatroniCluster, table: str) -> None:
    """HAProxy's read-only port reaches replicas only (round robin over them) and a write there is refused."""
    leader = pg.wait_healthy()
    replica_addrs = {pg.by_name[n].address for n in pg.replicas(leader)}
    seen: set[str] = set()

    def both_replicas_seen() -> bool:
        # HAProxy may still be raising a just-rejoined replica: keep connecting (bounded) until both answered.
        with pg.lb_endpoint("ro").connect() as conn:
            addr, recovery = conn.execute("SELECT inet_server_addr()::text, pg_is_in_recovery()").fetchone()
        assert recovery is True, f"5001 reached a primary at {addr}"
        seen.add(addr.split("/")[0])
        return seen == replica_addrs

    wait_for(both_replicas_seen, 20, 0.2, f"5001 reaching every replica {sorted(replica_addrs)}")
    assert seen == replica_addrs, f"5001 reached {seen}, replicas are {replica_addrs}"
    with pg.lb_endpoint("ro").connect() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute(f"INSERT INTO {table} (id, writer) VALUES (1, 'ro-probe')")


@pytest.mark.haproxy
def test_stats_page_needs_authentication(pg: PatroniCluster) -> None:
    """The statistics page (over TLS verified by the load balancer's name, unless the inventory turns it off)
    answers 401 without credentials and with wrong ones, and shows both listeners with the role's."""
    assert_needs_authentication(StatsPage.of(pg.cluster, pg.lb))


@pytest.mark.haproxy
@pytest.mark.tls
def test_stats_page_is_served_over_tls_only(pg: PatroniCluster) -> None:
    """The statistics page's port speaks TLS with a certificate from the cluster CA for the load balancer's
    name (another name, or a client that trusts only the system CAs, fails verification), and a plain-HTTP
    request to it gets no HTTP answer, so the stats password never crosses the network in clear. The refusal
    is judged only after TLS was served on that same port: a HAProxy that is down cannot pass it."""
    stats = StatsPage.of(pg.cluster, pg.lb)
    if not stats.tls:
        pytest.skip(
            f"inventory {pg.cluster.source} sets haproxy_stats_tls: false for {stats.name} (plain HTTP)"
        )
    assert_served_over_tls_only(stats)


def test_at_most_one_member_accepts_writes(pg: PatroniCluster) -> None:
    """No split brain at rest, sampled: for 12 rounds (every 0.25 s) every member's Patroni leader claim and
    its PostgreSQL's own role are read; in no round do two members claim the lock, or two PostgreSQL servers
    accept writes (a primary promoted behind Patroni's back shows in the second)."""
    pg.leader()  # one lock holder to begin with (not wait_healthy: a second primary must be judged, not waited out)
    sampler = pg.sampler()
    with sampling(sampler):
        wait_for(lambda: len(sampler.rounds) >= 12, 30, 0.1, "12 sampling rounds")
    claims = single_leader(sampler.leader_samples())
    writable = single_leader(sampler.pg_leader_samples())
    assert sampler.answered() > 0, "no member answered the sampler"
    assert claims, f"Patroni: {claims}"
    assert writable, f"PostgreSQL accepting writes: {writable}"
    assert any(s.leaders for s in sampler.pg_leader_samples()), "no PostgreSQL accepted writes in any round"


def test_every_member_holds_identical_data(pg: PatroniCluster) -> None:
    """After writes through HAProxy have replicated (every replica replayed the leader's WAL), every member
    holds the same rows in every table of the application database as the leader: compared relation by
    relation (row count and md5 of the sorted rows), read back from each member itself. A difference is
    named (member, relation, counts, the first rows one side lacks)."""
    leader = pg.leader()
    ep = pg.lb_endpoint("rw")
    wait_for(lambda: ensure_table(pg.member_endpoint(leader)) or True, 30, 0.5, "the writers' table")
    base = int(time.time() * 1000) * 1000
    with ep.connect() as conn:
        for i in range(50):
            conn.execute(
                "INSERT INTO gauntlet_writes (id, writer) VALUES (%s, 'identical-data')", (base + i,)
            )
    # Writes stopped; every replica replays up to the leader's position, then each relation is compared.
    differ = pg.data_differences(leader)
    assert not differ, f"members' data differ from the leader {leader}'s: {differ}"
