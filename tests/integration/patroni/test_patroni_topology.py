"""The Patroni topology at rest: one leader, streaming replicas with bounded lag, HAProxy routing writes to
the leader and reads to the replicas, the statistics page behind authentication."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from base64 import b64encode

import psycopg
import pytest

from checklib.patroni import PatroniCluster, secret_var
from gauntlet.bench import Bench, wait_for
from gauntlet.clients.postgres import read_ids

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
        conn.execute(f"INSERT INTO {table} (id, writer) VALUES (%s, 'rw-probe')", (value,))
    assert row is not None
    assert row[0].split("/")[0] == pg.by_name[leader].address and row[1] is False
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
    """The statistics page answers 401 without credentials and shows both listeners with them."""
    lb = pg.lb
    url = f"http://{lb.address}:{lb.setting('haproxy_stats_port')}/;csv"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url, timeout=5)
    assert denied.value.code == 401
    password = secret_var(pg.cluster, "haproxy_stats_password", "haproxy")
    token = b64encode(f"{lb.setting('haproxy_stats_user')}:{password}".encode())
    req = urllib.request.Request(url, headers={"Authorization": "Basic " + token.decode()})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read().decode()
    assert resp.status == 200
    assert "primary," in body and "replicas," in body
    wrong = urllib.request.Request(
        url, headers={"Authorization": "Basic " + b64encode(b"admin:wrong").decode()}
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(wrong, timeout=5)
    assert bad.value.code == 401
