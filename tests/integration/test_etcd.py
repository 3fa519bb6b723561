"""etcd cluster checks: leadership, replication, failover, partitions, mutual TLS, concurrency, latency.

They read everything from the inventory through the Cluster model (group ``etcd``; ports and timing from
the role's variables where the inventory overrides them) and talk to etcd from the controller over its JSON
gateway with the pki role's client certificate, so they run unchanged on Molecule containers and on a
staging inventory. Every client operation and fault is recorded in the test's history.

Leader re-election bound: a follower starts an election after a randomized timeout in [T, 2T) where T is
``etcd_election_timeout``; one split vote costs another such round. So a new leader is due within
``ELECTION_FACTOR`` (4) x T, plus ``ELECTION_MARGIN_S`` for detection (status polling over the network) and
the kill command itself (the clock starts when the nemesis is asked to kill). 6 s at etcd's default T = 1 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from gauntlet.bench import Bench, wait_for
from gauntlet.checkers import lost_acknowledged_writes, same_data, single_leader
from gauntlet.checkers.availability import recovery_time
from gauntlet.checkers.leaders import LeaderSample
from gauntlet.clients.base import ClientError, WorkloadRunner
from gauntlet.clients.etcd import EtcdClient, Member, Status, TLSRefused
from gauntlet.cluster import Cluster
from gauntlet.history import History
from gauntlet.nemesis import Nemesis
from gauntlet.pki import foreign_client_cert

pytestmark = pytest.mark.etcd

ELECTION_FACTOR = 4
ELECTION_MARGIN_S = 2.0
# How long a healed or restarted cluster may take to agree on one leader again before a check gives up.
SETTLE_S = 60.0
# A failover writer stops by itself after this long, even when the check that started it failed.
WRITER_MAX_S = 120.0


# -- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client_port(cluster: Cluster) -> int:
    return int(cluster.setting("etcd_client_port", "etcd"))


@pytest.fixture(scope="module")
def members(cluster: Cluster, client_port: int) -> list[Member]:
    return [Member(h.name, h.address, client_port) for h in cluster.group("etcd")]


@pytest.fixture(scope="module")
def etcd(cluster: Cluster, members: list[Member]) -> EtcdClient:
    """A client with the tests' certificate (pki_client_names: gauntlet-client)."""
    crt, key = cluster.client_cert("gauntlet-client")
    return EtcdClient(members, cluster.ca_cert, crt, key, timeout=3.0)


@pytest.fixture(scope="module")
def election_timeout_s(cluster: Cluster) -> float:
    return int(cluster.setting("etcd_election_timeout", "etcd")) / 1000.0


@pytest.fixture
def leader(etcd: EtcdClient) -> str:
    """Wait until every member answers and all follow the same leader (a settled cluster); its name."""
    return wait_for(
        lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, "all etcd members agreeing on one leader"
    )


@pytest.fixture(autouse=True)
def same_data_after(etcd: EtcdClient) -> Iterator[None]:
    """After every check (faults healed): every member's own full listing at one revision is the same; a
    difference fails naming the first differing keys."""
    yield
    members = sorted(etcd.members)
    leader = wait_for(
        lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, "all etcd members agreeing on one leader"
    )
    revision = etcd.revision(leader)
    listings = {
        m: wait_for(
            lambda m=m: etcd.listing_at(m, revision) or {"": ""}, SETTLE_S, 0.3, f"{m} at revision {revision}"
        )
        for m in members
    }
    verdict = same_data({m: {k: v for k, v in kv.items() if k} for m, kv in listings.items()})
    assert verdict, f"etcd members differ at revision {revision}: {verdict.explanation}"


def _key(name: str) -> str:
    return f"/gauntlet/{name}/{uuid.uuid4().hex[:8]}"


def _status_or_none(etcd: EtcdClient, member: str, timeout: float = 1.0) -> Status | None:
    try:
        return etcd.status(member, timeout=timeout)
    except ClientError:
        return None


class Writer:
    """Writes increasing values to one key through the given members in turn until stopped, recording each
    (one process of a bounded :class:`WorkloadRunner`: it stops by itself if a failing test never stops it)."""

    def __init__(self, etcd: EtcdClient, history: History, targets: list[str], key: str) -> None:
        self.etcd, self.history, self.targets, self.key = etcd, history, targets, key
        self.acked: list[str] = []
        self.runner = WorkloadRunner(["writer"], self._step, pause_s=0.05, max_seconds=WRITER_MAX_S)

    def _step(self, process: str, n: int) -> None:
        value = str(n - 1)
        if self.etcd.recorded_put(
            self.history, process, self.targets[(n - 1) % len(self.targets)], self.key, value
        ):
            self.acked.append(value)

    def start(self) -> None:
        self.runner.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.runner.stop(timeout)


# -- steady state ---------------------------------------------------------------------------------------------
def test_members_healthy_and_agree_on_one_leader(cluster: Cluster, etcd: EtcdClient, leader: str) -> None:
    """Every host of group etcd is a started member, answers over TLS, and all follow the same leader."""
    names = {h.name for h in cluster.group("etcd")}
    listed = etcd.member_list(leader)
    assert sorted(listed.values()) == sorted(names), (
        f"member list {listed} is not the etcd group {sorted(names)}"
    )
    samples = []
    for _ in range(5):
        st = etcd.statuses(timeout=3)
        assert all(st.values()), f"members not answering: {[m for m, s in st.items() if s is None]}"
        claims = frozenset(m for m, s in st.items() if s and s.is_leader)
        samples.append(LeaderSample(time.monotonic_ns(), claims))
        assert {s.leader_id for s in st.values() if s} == {next(i for i, n in listed.items() if n == leader)}
        time.sleep(0.2)
    leaders = single_leader(samples)
    assert leaders, leaders
    assert all(len(s.leaders) == 1 for s in samples), f"no leader in some samples: {samples}"


def test_write_through_one_member_is_read_from_every_member(etcd: EtcdClient, history: History) -> None:
    """A write acknowledged by one member is read (linearizably) from every member."""
    key = _key("replication")
    writer = sorted(etcd.members)[0]
    assert etcd.recorded_put(history, "c0", writer, key, "v1"), f"write through {writer} was not acknowledged"
    read_back = []
    for i, m in enumerate(sorted(etcd.members)):
        ok, value = etcd.recorded_get(history, f"r{i}", m, key)
        assert ok and value == "v1", (
            f"linearizable read through {m} returned {value!r} (ok={ok}), wanted 'v1'"
        )
        read_back.append(value)
    # Judged against what the members returned, not against what the test meant to write.
    lost = lost_acknowledged_writes(history, read_back)
    assert lost, lost


# -- failover -------------------------------------------------------------------------------------------------
def test_leader_kill_elects_new_leader_within_bound(
    cluster: Cluster,
    members: list[Member],
    etcd: EtcdClient,
    nemesis: Nemesis,
    history: History,
    bench: Bench,
    election_timeout_s: float,
    leader: str,
) -> None:
    """SIGKILL the leader: the survivors agree on a new leader within the bound and writes resume."""
    bound = ELECTION_FACTOR * election_timeout_s + ELECTION_MARGIN_S
    survivors = [m for m in sorted(etcd.members) if m != leader]
    old_id = etcd.status(leader).member_id
    key = _key("failover")
    # The writer gives up on a request after 1 s (a write stuck with the dead leader), so the write RTO it
    # sees is close to the election time rather than to a long client timeout.
    impatient = EtcdClient(members, cluster.ca_cert, *cluster.client_cert("gauntlet-client"), timeout=1.0)
    writer = Writer(impatient, history, survivors, key)
    samples: list[LeaderSample] = []
    new_leader, elected_at = None, 0
    with nemesis.kill(cluster[leader], "etcd"):
        kill_op = next(o for o in reversed(history.faults()) if o.f == "kill:start")
        writer.start()
        deadline = time.monotonic() + bound + 10  # watch past the bound, so a slow election is still measured
        while time.monotonic() < deadline:
            st = {m: _status_or_none(etcd, m) for m in survivors}
            now = time.monotonic_ns()
            samples.append(LeaderSample(now, frozenset(m for m, s in st.items() if s and s.is_leader)))
            ids = {s.leader_id for s in st.values() if s}
            if len(ids) == 1 and all(st.values()) and 0 not in ids and old_id not in ids:
                new_leader = next(s.member for s in st.values() if s and s.member_id in ids)
                elected_at = now
                break
            time.sleep(0.05)
        assert new_leader, f"survivors {survivors} did not agree on a new leader within {bound + 10:.0f}s"
        elected_s = (elected_at - kill_op.time) / 1e9
        bench.record(
            "etcd_leader_election_seconds",
            elected_s,
            "s",
            election_timeout_ms=int(election_timeout_s * 1000),
            bound_s=bound,
            killed=leader,
            new=new_leader,
        )
        wait_for(
            lambda: recovery_time(history, kill_op) is not None,
            bound,
            0.1,
            "an acknowledged write after the leader was killed",
        )
        writer.stop(10)
    rto = recovery_time(history, kill_op)
    assert rto is not None, "no write invoked after the kill was acknowledged"
    bench.record("etcd_write_recovery_seconds", rto, "s", killed=leader)
    assert elected_s <= bound, (
        f"new leader {new_leader} after {elected_s:.2f}s, over the bound {bound:.1f}s "
        f"({ELECTION_FACTOR} x election timeout {election_timeout_s}s + {ELECTION_MARGIN_S}s)"
    )
    leaders = single_leader(samples)
    assert leaders, leaders
    final = etcd.get(new_leader, key)
    assert final == writer.acked[-1], f"last acknowledged write {writer.acked[-1]!r}, read {final!r}"


def test_restarted_leader_rejoins_with_data(
    cluster: Cluster, etcd: EtcdClient, nemesis: Nemesis, history: History, leader: str
) -> None:
    """Writes made while the leader was down reach it when it comes back, and it follows the new leader."""
    survivors = [m for m in sorted(etcd.members) if m != leader]
    keys = {_key("rejoin"): f"while-{leader}-down-{i}" for i in range(5)}
    with nemesis.kill(cluster[leader], "etcd"):
        for i, (k, v) in enumerate(keys.items()):
            wait_for(
                lambda k=k, v=v, i=i: etcd.recorded_put(history, "c0", survivors[i % 2], k, v),
                SETTLE_S,
                0.2,
                f"a write through {survivors[i % 2]} while {leader} is down",
            )
        assert _status_or_none(etcd, leader) is None, f"{leader} still answers although etcd was killed"
    new = wait_for(
        lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, f"{leader} rejoining and agreeing on a leader"
    )
    read_back = []
    for k, v in keys.items():
        got = wait_for(
            lambda k=k: etcd.get(leader, k, serializable=True), SETTLE_S, 0.2, f"{leader} catching up {k}"
        )
        assert got == v, f"{leader} has {k}={got!r} locally, wanted {v!r}"
        ok, value = etcd.recorded_get(history, "r0", leader, k)
        assert ok and value == v, f"linearizable read through {leader}: {value!r}, wanted {v!r}"
        read_back.append(value)
    lost = lost_acknowledged_writes(history, read_back)  # what the rejoined member returned
    assert lost, lost
    assert new in etcd.members


# -- partition ------------------------------------------------------------------------------------------------
def test_isolated_member_refuses_linearizable_reads(
    cluster: Cluster,
    etcd: EtcdClient,
    nemesis: Nemesis,
    history: History,
    election_timeout_s: float,
    leader: str,
    bench: Bench,
) -> None:
    """Isolate the leader: the majority elects another and keeps taking writes; the isolated member refuses
    linearizable reads and writes but still serves (stale) serializable reads. After healing, all agree on
    one leader and all have the latest write."""
    victim = leader
    majority = [m for m in sorted(etcd.members) if m != victim]
    key = _key("partition")
    assert etcd.recorded_put(history, "c0", majority[0], key, "before")
    wait_for(
        lambda: etcd.get(victim, key, serializable=True) == "before",
        10,
        0.1,
        f"'before' replicated to {victim}",
    )
    by_term: dict[int, set[str]] = defaultdict(set)

    def sample() -> None:
        for s in etcd.statuses(timeout=1).values():
            if s and s.is_leader:
                by_term[s.raft_term].add(s.member)

    with nemesis.isolate(cluster[victim]):
        bound = ELECTION_FACTOR * election_timeout_s + ELECTION_MARGIN_S + 5
        cut_at = history.faults()[-1].time
        elected = wait_for(
            lambda: next((m for m in majority if (s := _status_or_none(etcd, m)) and s.is_leader), None),
            bound,
            0.05,
            f"a leader among the majority {majority}",
        )
        # Jepsen's majority/minority split on three members, the leader on the minority side (issue 15's BENCH
        # per shape; the five-member shapes run on the Raft KV)
        bench.record(
            "partition_majority_leader_seconds",
            round((time.monotonic_ns() - cut_at) / 1e9, 2),
            "s",
            shape="majority",
            system="etcd",
            members=len(etcd.members),
            leader=elected,
        )
        wait_for(
            lambda: etcd.recorded_put(history, "c1", majority[0], key, "after"),
            bound,
            0.2,
            f"the majority {majority} accepting a write while {victim} is isolated",
        )
        sample()
        ok_lin, value_lin = etcd.recorded_get(history, "r-victim-lin", victim, key)
        ok_ser, value_ser = etcd.recorded_get(history, "r-victim-ser", victim, key, serializable=True)
        victim_write = etcd.recorded_put(history, "c-victim", victim, _key("partition-minority"), "minority")
        ok_major, value_major = etcd.recorded_get(history, "r-majority", majority[1], key)
        sample()
    assert not ok_lin, f"isolated {victim} served a linearizable read ({value_lin!r}) without a quorum"
    assert ok_ser and value_ser == "before", (
        f"isolated {victim} should serve its stale local copy 'before' on a serializable read, got {value_ser!r}"
    )
    bench.record(
        "partition_minority_writes_refused",
        0 if victim_write else 1,
        "writes",
        shape="majority",
        system="etcd",
    )
    assert not victim_write, f"isolated {victim} acknowledged a write without a quorum"
    assert ok_major and value_major == "after", f"majority read {value_major!r}, wanted 'after'"

    wait_for(lambda: etcd.agreed_leader(timeout=2), SETTLE_S, 0.3, "one leader agreed by all after healing")
    sample()
    two = {t: ms for t, ms in by_term.items() if len(ms) > 1}
    assert not two, f"two leaders in the same raft term: {two}"
    got = wait_for(
        lambda: etcd.get(victim, key) == "after", SETTLE_S, 0.2, f"{victim} reading the latest write"
    )
    assert got
    read_back = [etcd.get(m, key, serializable=True) for m in sorted(etcd.members)]
    assert read_back.count("after") == len(read_back), (
        f"members lack the latest write after healing: {read_back}"
    )
    # "before" was overwritten by "after" on the same key: only the last acknowledged write must survive.
    last = [o for o in history.client_ops() if o.type == "ok" and o.f == "write" and o.key == key][-1:]
    lost = lost_acknowledged_writes(History.from_ops(last), read_back) if last else None
    assert lost, lost or "no acknowledged write of the key to judge"


# -- concurrency ----------------------------------------------------------------------------------------------
def test_concurrent_writes_all_readable(
    cluster: Cluster, members: list[Member], etcd: EtcdClient, history: History, bench: Bench, leader: str
) -> None:
    """50 writers at once, through all members: every write is acknowledged and every member reads all."""
    prefix = _key("concurrent") + "/"
    names = sorted(etcd.members)
    # A longer timeout than the shared client's: 50 TLS handshakes at once on a small machine take a while.
    client = EtcdClient(members, cluster.ca_cert, *cluster.client_cert("gauntlet-client"), timeout=15.0)

    def write(i: int) -> bool:
        return client.recorded_put(history, f"w{i}", names[i % len(names)], f"{prefix}{i:02d}", f"value-{i}")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(write, range(50)))
    elapsed = time.monotonic() - start
    bench.record("etcd_concurrent_50_writes_seconds", elapsed, "s", writers=50)
    assert all(results), f"{results.count(False)} of 50 concurrent writes were not acknowledged"
    for m in names:
        kv = etcd.get_prefix(m, prefix)
        assert len(kv) == 50, f"{m} reads {len(kv)} of 50 keys under {prefix}"
        lost = lost_acknowledged_writes(history, kv.values())
        assert lost, f"{m}: {lost}"


# -- latency --------------------------------------------------------------------------------------------------
def test_latency_on_one_member_slows_its_linearizable_reads(
    cluster: Cluster, etcd: EtcdClient, nemesis: Nemesis, history: History, bench: Bench, leader: str
) -> None:
    """Delay one follower's packets to its peers by 200 ms: its linearizable reads (a round trip to the
    leader) slow down by about that much, its serializable reads (local) do not, writes elsewhere go on."""
    delay_ms = 200
    follower = next(m for m in sorted(etcd.members) if m != leader)
    other = next(m for m in sorted(etcd.members) if m not in (leader, follower))
    key = _key("latency")
    assert etcd.recorded_put(history, "c0", leader, key, "x")

    def timed(serializable: bool, expect: str = "x", n: int = 8) -> float:
        samples = []
        for _ in range(n):
            t = time.monotonic()
            assert etcd.get(follower, key, serializable=serializable) == expect
            samples.append((time.monotonic() - t) * 1000)
        return statistics.median(samples)

    base_lin, base_ser = timed(False), timed(True)
    with nemesis.latency(cluster[follower], delay_ms):
        fault = next(o for o in reversed(history.faults()) if o.f == "latency:start")
        slow_lin, slow_ser = timed(False), timed(True)
        assert etcd.recorded_put(history, "c1", other, key, "y"), (
            f"write through {other} failed under latency"
        )
    after_lin = timed(False, expect="y")
    mechanism = (fault.value or {}).get("mechanism")
    bench.record(
        "etcd_linearizable_read_ms_under_latency",
        slow_lin,
        "ms",
        delay_ms=delay_ms,
        mechanism=mechanism,
        baseline_ms=round(base_lin, 1),
    )
    assert slow_lin - base_lin >= 0.75 * delay_ms, (
        f"linearizable reads through {follower} took {slow_lin:.0f} ms under {delay_ms} ms latency "
        f"({mechanism}), baseline {base_lin:.0f} ms: the delay did not apply"
    )
    assert slow_ser < base_ser + delay_ms / 2, (
        f"serializable (local) reads through {follower} slowed to {slow_ser:.0f} ms: the delay hit client traffic"
    )
    assert after_lin < base_lin + delay_ms / 2, (
        f"reads still slow after the fault was undone: {after_lin:.0f} ms"
    )


# -- TLS ------------------------------------------------------------------------------------------------------
def _refused_at_tls(exc: ClientError) -> bool:
    """The connection died at the TLS layer: a handshake failure, or (TLS 1.3, where the server checks the
    client's certificate after the client's side of the handshake is done) an alert, EOF or reset on the
    first record."""
    text = str(exc).lower()
    return isinstance(exc, TLSRefused) or any(w in text for w in ("tls", "ssl", "reset", "eof"))


def _served(etcd: EtcdClient, history: History, member: str, key: str) -> None:
    """The certified client is served by ``member`` (and ``key`` is absent): a refusal next to it is the
    member's choice, not a member that is down (which refuses everyone and would pass a refusal check)."""
    ok, value = etcd.recorded_get(history, "r0", member, key)
    assert ok, f"{member} does not serve the certified client: the refusal next to it would prove nothing"
    assert value is None, f"{member}: {key} already holds {value!r}"


def _refusal(call: Callable[[], object], accepted: str) -> ClientError:
    """The error ``call`` got; fails the check with ``accepted`` if it got an answer."""
    try:
        call()
    except ClientError as exc:
        return exc
    pytest.fail(accepted)


@pytest.mark.tls
def test_client_without_certificate_is_refused(
    cluster: Cluster, members: list[Member], etcd: EtcdClient, history: History
) -> None:
    """A client that trusts the cluster CA but presents no certificate is served by no member, and its
    writes do not happen; each member serves the certified client first."""
    anonymous = EtcdClient(members, cluster.ca_cert, None, None)
    for m in members:
        key = _key("tls-anonymous")
        _served(etcd, history, m.name, key)
        err = _refusal(
            partial(anonymous.put, m.name, key, "anonymous"),
            f"{m.name} accepted a client without a certificate",
        )
        assert _refused_at_tls(err), f"{m.name} refused, but not at the TLS layer: {err}"
        ok, value = etcd.recorded_get(history, "r0", m.name, key)
        assert ok and value is None, f"the anonymous write through {m.name} happened: {key}={value!r}"


@pytest.mark.tls
def test_client_with_foreign_ca_certificate_is_refused(
    cluster: Cluster, members: list[Member], etcd: EtcdClient, history: History, tmp_path: Path
) -> None:
    """A client certificate with the right common name but from another CA is refused (its writes do not
    happen); and a client that trusts only that other CA refuses the members' certificates. Each member
    serves the certified client first."""
    foreign_ca, crt, key = foreign_client_cert(tmp_path)
    impostor = EtcdClient(members, cluster.ca_cert, crt, key)
    suspicious = EtcdClient(members, foreign_ca, *cluster.client_cert("gauntlet-client"))
    for m in members:
        k = _key("tls-foreign")
        _served(etcd, history, m.name, k)
        err = _refusal(
            partial(impostor.put, m.name, k, "impostor"),
            f"{m.name} accepted a client certificate from a foreign CA",
        )
        assert _refused_at_tls(err), f"{m.name} refused, but not at the TLS layer: {err}"
        ok, value = etcd.recorded_get(history, "r0", m.name, k)
        assert ok and value is None, f"the foreign-CA write through {m.name} happened: {k}={value!r}"
        distrust = _refusal(
            partial(suspicious.get, m.name, k),
            f"{m.name}'s certificate was trusted by a client of another CA",
        )
        assert isinstance(distrust, TLSRefused), f"{m.name}: not refused at the TLS layer: {distrust}"


PEER_PROBE = r"""
import http.client, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 4:
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
try:
    c = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
    c.request("GET", "/version")
    r = c.getresponse()
    print(r.status, r.read().decode()[:200])
except Exception as e:
    print("REFUSED", type(e).__name__, e)
    sys.exit(3)
"""


@pytest.mark.tls
def test_peer_port_requires_a_member_certificate(cluster: Cluster) -> None:
    """The raft port serves a member presenting its own certificate from its own address, and nobody else:
    not a member without a certificate, not the controller holding a member's certificate."""
    hosts = cluster.group("etcd")
    a, b = hosts[0], hosts[1]
    port = int(cluster.setting("etcd_peer_port", "etcd"))
    tls = str(cluster.setting("etcd_tls_dir", "etcd"))
    ca, crt, key = f"{tls}/ca.crt", f"{tls}/server.crt", f"{tls}/server.key"
    served = a.run(["python3", "-c", PEER_PROBE, b.address, str(port), ca, crt, key])
    assert served.rc == 0 and served.stdout.startswith("200"), f"{a.name} -> {b.name}:{port}: {served.stdout}"
    anonymous = a.run(["python3", "-c", PEER_PROBE, b.address, str(port), ca])
    assert anonymous.rc == 3, f"{b.name}:{port} served a peer without a certificate: {anonymous.stdout}"
    # From the controller with a's certificate: the address does not match the certificate's IP SANs.
    a_crt, a_key = cluster.host_cert(a.name)
    stolen = subprocess.run(
        [
            sys.executable,
            "-c",
            PEER_PROBE,
            b.address,
            str(port),
            str(cluster.ca_cert),
            str(a_crt),
            str(a_key),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stolen.returncode == 3, (
        f"{b.name}:{port} served {a.name}'s certificate from another address: {stolen.stdout}"
    )
