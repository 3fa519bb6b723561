"""The Patroni topology as checks see it (members, REST APIs, PostgreSQL and HAProxy endpoints, health
waits, diagnostics) and the procedure of one fault under write load, judged from its history."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from typing import Any

from gauntlet.bench import Bench, wait_for
from gauntlet.checkers import lost_acknowledged_writes, single_leader, unavailability_windows
from gauntlet.clients.postgres import (
    Endpoint,
    LeaderSampler,
    PatroniAPI,
    PostgresWorkload,
    read_ids,
)
from gauntlet.cluster import Cluster, Host
from gauntlet.history import History, Op
from gauntlet.nemesis import catalogue

PATRONICTL = "patronictl -c /etc/patroni/config.yml"
# The unit the kill and pause faults act on: Patroni, with PostgreSQL as its child.
SERVICE = "patroni"
# SELECT 1 queries per route in the performance table's latency rows.
SELECT1_QUERIES = 500


@dataclass(frozen=True)
class PoolLimits:
    """The limits of each member's PgBouncer (roles/pgbouncer/defaults/main.yml, or the inventory's)."""

    default_pool_size: int
    max_db_connections: int
    max_client_conn: int
    query_wait_timeout: int


# Each relation of the application database's public schema as "<rows>:<md5 of its rows in text form,
# sorted>" (query_to_xml runs the query on a standby too).
DIGEST_SQL = """
SELECT coalesce(string_agg(c.relname || '=' ||
         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
           false, true, '')))[1]::text || ':' ||
         md5(query_to_xml(format('SELECT t::text AS r FROM %I.%I t ORDER BY 1', n.nspname, c.relname),
           false, false, '')::text),
       ',' ORDER BY c.relname), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = 'public'
"""


def secret_var(cluster: Cluster, name: str, group: str) -> str:
    """A password as the roles see it (:meth:`Cluster.secret`)."""
    return cluster.secret(name, group)


class PatroniCluster:
    """The Patroni topology as the checks see it: members, their REST APIs and PostgreSQL, HAProxy's ports."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.members: list[Host] = cluster.group("postgres")
        self.by_name = {h.name: h for h in self.members}
        v = lambda name: cluster.setting(name, "postgres")  # noqa: E731
        secret = lambda name: secret_var(cluster, name, "postgres")  # noqa: E731
        self.ttl = int(v("patroni_ttl"))
        self.loop_wait = int(v("patroni_loop_wait"))
        self.retry_timeout = int(v("patroni_retry_timeout"))
        self.synchronous_mode = bool(v("patroni_synchronous_mode"))
        self.pg_port = int(v("patroni_postgresql_port"))
        self.rest_port = int(v("patroni_restapi_port"))
        self.ca = cluster.ca_cert
        self.apis = {
            h.name: PatroniAPI(
                h.name,
                h.address,
                self.rest_port,
                self.ca,
                str(v("patroni_restapi_username")),
                secret("patroni_restapi_password"),
                client_cert=cluster.client_cert("gauntlet-client"),
            )
            for h in self.members
        }
        self.app_user = str(v("patroni_app_user"))
        self.app_password = secret("patroni_app_password")
        self.app_db = str(v("patroni_app_database"))
        self.superuser = str(v("patroni_superuser_username"))
        self.superuser_password = secret("patroni_superuser_password")

    @property
    def pool_limits(self) -> PoolLimits:
        """The PgBouncer role's pool limits as the members' inventory sets them (else the role defaults)."""
        v = lambda name: int(self.cluster.setting(name, "postgres"))  # noqa: E731
        return PoolLimits(
            default_pool_size=v("pgbouncer_default_pool_size"),
            max_db_connections=v("pgbouncer_max_db_connections"),
            max_client_conn=v("pgbouncer_max_client_conn"),
            query_wait_timeout=v("pgbouncer_query_wait_timeout"),
        )

    # -- endpoints ------------------------------------------------------------------------------------------
    def member_endpoint(self, name: str, **changes: Any) -> Endpoint:
        """The application user's endpoint on one member, verified by the member's name."""
        h = self.by_name[name]
        ep = Endpoint(name, h.address, self.pg_port, self.app_user, self.app_password, self.app_db, self.ca)
        return ep.with_(**changes) if changes else ep

    @property
    def lb(self) -> Host:
        """The first HAProxy host."""
        return self.cluster.group("haproxy")[0]

    def lb_endpoint(self, port: str = "rw", pooled: bool = False, **changes: Any) -> Endpoint:
        """HAProxy's read-write (5000) or read-only (5001) port, verified by the load balancer's name (the
        members' certificates carry it: TLS passes through HAProxy untouched). ``pooled``: its pooled port
        instead (5002 or 5003, to the members' PgBouncers, which present the same certificates), with
        psycopg's server-side prepared statements off (transaction pooling cannot keep them)."""
        lb = self.lb
        if not pooled:
            p = int(lb.setting("haproxy_primary_port" if port == "rw" else "haproxy_replica_port"))
            ep = Endpoint(lb.name, lb.address, p, self.app_user, self.app_password, self.app_db, self.ca)
            return ep.with_(**changes) if changes else ep
        assert lb.setting("haproxy_pooled_listeners"), (
            f"HAProxy on {lb.name} has no pooled ports: set haproxy_pooled_listeners: true for group haproxy "
            "(the default topology and inventories/staging do)"
        )
        p = int(lb.setting("haproxy_pooled_primary_port" if port == "rw" else "haproxy_pooled_replica_port"))
        ep = Endpoint(
            lb.name,
            lb.address,
            p,
            self.app_user,
            self.app_password,
            self.app_db,
            self.ca,
            prepare_threshold=None,
        )
        return ep.with_(**changes) if changes else ep

    def pooler_endpoint(self, name: str, **changes: Any) -> Endpoint:
        """The application user's endpoint at one member's own PgBouncer (not through HAProxy), verified by
        the member's name."""
        h = self.by_name[name]
        ep = Endpoint(
            name,
            h.address,
            int(h.setting("pgbouncer_port")),
            str(h.setting("pgbouncer_app_user")),
            self.app_password,
            str(h.setting("pgbouncer_database")),
            self.ca,
            prepare_threshold=None,
        )
        return ep.with_(**changes) if changes else ep

    def superuser_endpoint(self, name: str) -> Endpoint:
        """The superuser's endpoint on one member's PostgreSQL itself (database postgres), for observing it."""
        return self.member_endpoint(
            name, user=self.superuser, password=self.superuser_password, dbname="postgres"
        )

    # -- state ----------------------------------------------------------------------------------------------
    def members_state(self, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """/patroni of every reachable member (exceptions leave a member out)."""
        out = {}
        for name, api in self.apis.items():
            if name in exclude:
                continue
            try:
                out[name] = api.status()
            except Exception:
                continue
        return out

    def leaders(self, exclude: tuple[str, ...] = ()) -> list[str]:
        """Members that hold the leader lock and run as primary (/primary = 200)."""
        out = []
        for name, api in self.apis.items():
            if name in exclude:
                continue
            try:
                if api.is_primary(timeout=2):
                    out.append(name)
            except Exception:
                continue
        return out

    def leader(self, timeout: float = 60, exclude: tuple[str, ...] = ()) -> str:
        """The one leader (waits until exactly one member claims it)."""

        def one() -> str | None:
            ls = self.leaders(exclude)
            return ls[0] if len(ls) == 1 else None

        return wait_for(one, timeout, 0.25, "exactly one Patroni leader")

    def replicas(self, leader: str) -> list[str]:
        return [n for n in self.by_name if n != leader]

    def psql(self, name: str, sql: str, check: bool = True, db: str = "postgres") -> str:
        """Run SQL as the superuser on a member over its local socket (root maps to postgres), in ``db``."""
        r = self.by_name[name].run(
            [
                "psql",
                "-h",
                "/var/run/postgresql",
                "-p",
                str(self.pg_port),
                "-U",
                self.superuser,
                "-d",
                db,
                "-XAtq",
                "-c",
                sql,
            ],
            check=check,
        )
        return r.stdout.strip()

    def streaming(self, name: str) -> bool:
        """True when the member's WAL receiver is streaming."""
        try:
            return self.psql(name, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
        except Exception:
            return False

    def healthy(self) -> str | None:
        """The leader's name when the cluster is whole: one leader, every other member a running replica that
        streams, and (synchronous mode) a synchronous standby in place. Else None."""
        ls = self.leaders()
        if len(ls) != 1:
            return None
        leader = ls[0]
        states = self.members_state()
        if len(states) != len(self.members):
            return None
        for name in self.replicas(leader):
            st = states[name]
            if st.get("role") != "replica" or st.get("state") != "running" or not self.streaming(name):
                return None
        if self.synchronous_mode and self.synchronous_mode_configured(leader):
            sync = self.psql(
                leader, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'", check=False
            )
            if sync != "1":
                return None
        return leader

    def synchronous_mode_configured(self, leader: str) -> bool:
        """Whether the DCS configuration has synchronous_mode on now (an operator, or a planted defect, may
        have switched it off at run time: a whole cluster then has no synchronous standby)."""
        code, body = self.apis[leader].get("/config")
        return code != 200 or not isinstance(body, dict) or bool(body.get("synchronous_mode"))

    def wait_healthy(self, timeout: float = 120) -> str:
        return wait_for(
            self.healthy, timeout, 0.5, "a whole Patroni cluster (one leader, replicas streaming)"
        )

    def sync_standby(self, leader: str) -> str | None:
        name = self.psql(leader, "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'")
        return name or None

    # -- data identical on every member -------------------------------------------------------------------
    def digests(self) -> dict[str, dict[str, str]]:
        """Every member's {relation: "<rows>:<md5 of its rows sorted>"} in the application database, read
        from each member itself."""
        out: dict[str, dict[str, str]] = {}
        for name in self.by_name:
            raw = self.psql(name, DIGEST_SQL, db=self.app_db)
            out[name] = dict(item.split("=", 1) for item in raw.split(",") if item)
        return out

    def replayed_to_leader(self, leader: str, timeout: float = 30) -> dict[str, str]:
        """Wait until every replica has replayed the leader's WAL up to its current position (taken once);
        the members that did not within ``timeout`` (or are out of recovery: a second primary replays
        nothing), each with its position in words."""
        lsn = self.psql(leader, "SELECT pg_current_wal_lsn()")
        sql = (
            f"SELECT CASE WHEN pg_is_in_recovery() THEN pg_wal_lsn_diff('{lsn}', "
            "coalesce(pg_last_wal_replay_lsn(), '0/0'))::text ELSE 'primary' END"
        )
        behind: dict[str, str] = {}

        def caught_up() -> bool:
            behind.clear()
            for name in self.replicas(leader):
                state = self.psql(name, sql, check=False)
                if state == "primary":
                    behind[name] = "out of recovery (a second primary)"
                elif not state or float(state) > 0:
                    behind[name] = f"{state or '?'} bytes of WAL behind {leader}'s {lsn}"
            return not behind or all(v.startswith("out of recovery") for v in behind.values())

        with suppress(TimeoutError):
            wait_for(caught_up, timeout, 0.25, f"every replica replayed {leader}'s WAL up to {lsn}")
        return dict(behind)

    def data_differences(self, leader: str, timeout: float = 30) -> dict[str, list[str]]:
        """Once every replica replayed the leader's WAL (or ``timeout`` passed): {member: [what differs]} for
        every member whose data differs from the leader's, relation by relation with the first differing
        rows, or that could not catch up (empty: identical). Writers must have stopped."""
        behind = self.replayed_to_leader(leader, timeout)
        digests = self.digests()
        ref = digests[leader]
        out: dict[str, list[str]] = {}
        for name, d in digests.items():
            bad = sorted(r for r in set(ref) | set(d) if ref.get(r) != d.get(r))
            notes = [f"replay: {behind[name]}"] if name in behind else []
            if bad:
                out[name] = notes + [self._difference(leader, name, r, ref.get(r), d.get(r)) for r in bad]
            elif notes and not notes[0].startswith("replay: out of recovery"):
                out[name] = notes
        if "gauntlet_writes" not in ref:
            out[leader] = ["gauntlet_writes: no such table on the leader (nothing was compared)"]
        return out

    def _difference(self, leader: str, name: str, relation: str, ref: str | None, got: str | None) -> str:
        """One relation's difference in words: the row counts and the first rows one side has and the other
        lacks (the relation's rows are read in full from both: this runs only on a difference)."""
        if ref is None or got is None:
            return f"{relation}: only on {leader if got is None else name}"
        sql = f'SELECT t::text FROM public."{relation}" t ORDER BY 1'
        a = set(self.psql(leader, sql, db=self.app_db, check=False).splitlines())
        b = set(self.psql(name, sql, db=self.app_db, check=False).splitlines())
        only_leader, only_member = sorted(a - b)[:3], sorted(b - a)[:3]
        return (
            f"{relation}: {ref.split(':')[0]} rows on {leader}, {got.split(':')[0]} on {name}; "
            f"first only on {leader}: {only_leader}, first only on {name}: {only_member}"
        )

    def sampler(self) -> LeaderSampler:
        """A split-brain sampler over every member."""
        return LeaderSampler(self.apis.values(), {n: self.member_endpoint(n) for n in self.by_name})

    def set_synchronous_mode(self, on: bool, timeout: float = 60) -> None:
        """Switch synchronous_mode through the REST API and wait until the leader's setting follows."""
        api = self.apis[self.leader()]
        code, body = api.request("PATCH", "/config", {"synchronous_mode": on}, auth=True)
        assert code == 200, f"PATCH /config answered {code}: {body}"

        def applied() -> bool:
            names = self.psql(self.leader(), "SHOW synchronous_standby_names")
            return bool(names) == on

        wait_for(applied, timeout, 0.5, f"synchronous_mode={on} applied on the leader")
        self.synchronous_mode = on

    def diagnostics(self) -> str:
        """patronictl list/history and each member's recent Patroni log."""
        parts = []
        for h in self.members:
            r = h.run(f"{PATRONICTL} list; {PATRONICTL} history", timeout=20)
            if r.ok:
                parts.append(f"== patronictl on {h.name}\n{r.stdout}")
                break
        for h in self.members:
            # Without the tracebacks Python's TLS server logs for every health check that hangs up early.
            r = h.run(
                "journalctl -u patroni -n 2000 --no-pager -o short-precise | grep -vE "
                "'patroni\\[[0-9]+\\]: ( |Traceback|ssl\\.SSL)|Exception happened during processing' | tail -n 120",
                timeout=20,
            )
            parts.append(f"== Patroni log of {h.name}\n{r.stdout}{r.stderr}")
        return "\n".join(parts)


# ---- one fault under load ----------------------------------------------------------------------------------
@dataclass
class FaultRun:
    """What one fault under load produced."""

    fault: str
    old_leader: str
    new_leader: str
    rto: float | None
    lost: list[int]
    acked: int
    split_brain: list[Any]
    pg_overlaps: list[Any]
    tolerated_claims: list[Any]  # OverlapWindow: two leader claims within the bound the fault was given
    differences: dict[str, list[str]]  # members whose data differ from the leader's after heal
    rejoined: bool
    probes: int
    notes: dict[str, Any] = field(default_factory=dict)


def resumed_claim_bound(pg: PatroniCluster, fault: str) -> float:
    """How long two members may both claim the leader lock after ``fault``: 0, except after a pause. A
    SIGSTOPped leader resumes with its old view of the DCS and answers /primary from it until its next HA
    cycle reads the lock and demotes it (at most loop_wait); Patroni closes that window only with a
    watchdog, which container hosts lack. Writes stay safe meanwhile: in synchronous mode the old primary
    cannot commit without the standby that now leads (the lost-writes check holds that)."""
    return float(pg.loop_wait) if catalogue.get(fault).recorded_as == "pause" else 0.0


def fault_start_op(history: History, name: str, after: int = 0) -> Op:
    """The history entry of the most recent start of fault ``name`` (at index >= after)."""
    starts = [o for o in history.faults() if o.f == f"{name}:start" and o.index >= after]
    assert starts, f"no {name} fault recorded in the history"
    return starts[-1]


def wait_writes_ok(history: History, after_ns: int, timeout: float, n: int = 1) -> None:
    """Wait until ``n`` writes invoked after ``after_ns`` have been acknowledged."""

    def enough() -> bool:
        pairs = history.pairs()
        ok = [
            1
            for inv, done in pairs
            if done and done.type == "ok" and done.f == "write" and inv.time >= after_ns
        ]
        return len(ok) >= n

    wait_for(enough, timeout, 0.1, f"{n} acknowledged writes through HAProxy")


def run_fault(
    pg: PatroniCluster,
    history: History,
    name: str,
    fault: Callable[[str], AbstractContextManager[Any]],
    *,
    record_name: str | None = None,
    writers: int = 2,
    hold: float = 0.0,
    expect_new_leader: bool = True,
    during: Callable[[str], None] | None = None,
    claim_overlap_s: float = 0.0,
    endpoints: tuple[Endpoint, Endpoint] | None = None,
) -> FaultRun:
    """Under write load through HAProxy, apply ``fault(leader)`` (recorded in the history as
    ``record_name``, default ``name``): wait for a new leader (unless
    ``expect_new_leader`` is false) and for writes to resume, hold ``hold`` s more, heal, wait for the
    cluster to be whole again, then judge the history: RTO, acknowledged writes lost, split brain (two
    leader claims at once; windows of at most ``claim_overlap_s`` are tolerated and reported), and every
    member's data against the new leader's. ``endpoints``: the (read-write, read-only) endpoints the writers
    and readers use, default HAProxy's direct ports; the final read that judges the writes always goes
    through the direct read-write port."""
    old = pg.wait_healthy()
    started_ns = time.monotonic_ns()
    sampler = pg.sampler().start()
    rw, ro = endpoints or (pg.lb_endpoint("rw"), pg.lb_endpoint("ro"))
    workload = PostgresWorkload(history, rw, ro, writers=writers, readers=1)
    new = old
    try:
        with workload:
            wait_writes_ok(history, started_ns, 30, n=20)
            mark = len(history.ops)
            with fault(old):
                t0 = fault_start_op(history, record_name or name, mark).time
                if during:
                    during(old)
                    history.mark("checked-during-fault")
                if expect_new_leader:
                    new = pg.leader(timeout=pg.ttl + 60, exclude=(old,))
                    history.mark("new-leader", leader=new)
                wait_writes_ok(history, t0, pg.ttl + 60, n=10)
                history.mark("writes-resumed")
                if hold:
                    time.sleep(hold)
            history.mark("healed")
            new = pg.wait_healthy(timeout=120)
            history.mark("whole-again", leader=new)
            wait_writes_ok(history, time.monotonic_ns(), 30, n=10)
    finally:
        sampler.stop()
    t_end = time.monotonic_ns()
    rto = outage(history, t0, t_end)
    final = read_ids(pg.lb_endpoint("rw"), since=workload.id_base)
    lost_check = lost_acknowledged_writes(history, final)
    leader_check = single_leader(sampler.leader_samples(), tolerate_s=claim_overlap_s)
    differences = pg.data_differences(new)
    states = pg.members_state()
    # The old leader is back: as a streaming replica after a failover, or still the leader when it kept it.
    if new == old:
        rejoined = states.get(old, {}).get("role") in ("master", "primary") and pg.leaders() == [old]
    else:
        rejoined = states.get(old, {}).get("role") == "replica" and pg.streaming(old)
    return FaultRun(
        fault=name,
        old_leader=old,
        new_leader=new,
        rto=rto,
        lost=list(lost_check.evidence["lost"]),
        acked=int(lost_check.evidence["acknowledged"]),
        split_brain=list(leader_check.evidence["overlaps"]),
        pg_overlaps=sampler.pg_primary_overlaps(),
        tolerated_claims=list(leader_check.evidence["tolerated"]),
        differences=differences,
        rejoined=rejoined,
        probes=sampler.answered(),
        notes={"stats": dict(workload.stats.counts)},
    )


def run_leader_kill(pg: PatroniCluster, history: History, nemesis: Any, **options: Any) -> FaultRun:
    """:func:`run_fault` with the catalogue's ``kill`` of Patroni (and so PostgreSQL) on the leader."""
    kill = catalogue.get("kill")
    return run_fault(
        pg,
        history,
        kill.name,
        lambda leader: kill.apply(nemesis, leader, service=SERVICE),
        record_name=kill.recorded_as,
        **options,
    )


def outage(history: History, t_start: int, t_end: int) -> float | None:
    """The RTO clients saw for a fault: the longest gap between two acknowledged writes that overlaps the
    fault's span [t_start, t_end] (monotonic ns). ``None`` when no write was acknowledged after t_start."""
    oks = [o.time for o in history.client_ops() if o.type == "ok" and o.f == "write"]
    if not any(t > t_start for t in oks):
        return None
    gaps = [w.seconds for w in unavailability_windows(history) if w.end >= t_start and w.start <= t_end]
    return max(gaps, default=0.0)


def assert_invariants(pg: PatroniCluster, run: FaultRun, lossless: bool = True) -> None:
    """What every fault must leave true."""
    assert run.probes > 0, "the split-brain sampler never got an answer"
    assert run.split_brain == [], f"two members claimed the leader lock at once: {run.split_brain[:5]}"
    if lossless:
        assert run.lost == [], f"{len(run.lost)} acknowledged writes lost: {run.lost[:20]}"
    assert run.rto is not None, "writes never resumed after the fault"
    assert run.rejoined, f"the old leader {run.old_leader} did not come back as a streaming replica"
    assert not run.differences, f"members' data differ from the leader {run.new_leader}'s: {run.differences}"


def postgres_gone(pg: PatroniCluster, host: str) -> None:
    """Killing the patroni unit must take PostgreSQL with it (no orphan primary left running)."""
    h = pg.by_name[host]
    wait_for(
        lambda: not h.run("pgrep -u postgres -x postgres").stdout.strip(),
        10,
        0.2,
        f"PostgreSQL gone on {host}",
    )
    assert not h.run("pgrep -u postgres -f /usr/bin/patroni").stdout.strip(), f"Patroni still runs on {host}"


def record_run(bench: Bench, run: FaultRun, mode: str) -> None:
    """Bench lines of one fault run."""
    if run.rto is not None:
        bench.record(
            f"patroni_rto_{run.fault}", run.rto, "s", mode=mode, old=run.old_leader, new=run.new_leader
        )
    bench.record(f"patroni_writes_lost_{run.fault}", len(run.lost), "writes", mode=mode, acked=run.acked)


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
