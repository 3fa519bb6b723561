"""Citus data distribution: nodes healthy, shards spread over the workers, every row in the shard whose hash
range holds its key (read on the workers themselves, not through the coordinator), reference tables identical
on every node, colocated joins, multi-shard transactions atomic across a worker crash (2PC + recovery),
rebalancing onto a new worker without losing a row, and TLS on the connections between nodes.

Runs against the inventory's groups citus_coordinator, citus_worker and (for the rebalance check) citus_spare.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from psycopg import sql

from checklib.citus import HASH_MAX, HASH_MIN, CitusCluster, Placement, in_thread
from gauntlet.bench import Bench, wait_for
from gauntlet.cluster import Cluster
from gauntlet.history import History
from gauntlet.nemesis import Nemesis

pytestmark = pytest.mark.citus

ROWS = int(os.environ.get("GAUNTLET_CITUS_ROWS", "20000"))
REBALANCE_ROWS = int(os.environ.get("GAUNTLET_CITUS_REBALANCE_ROWS", "50000"))
BENCH_ROWS = int(os.environ.get("GAUNTLET_CITUS_BENCH_ROWS", "5000"))
# The advisory lock the 2PC check holds on one worker to stop a PREPARE half-way (see test_2pc_*).
HOLD_LOCK = 72_011


@pytest.fixture(scope="module")
def citus(cluster: Cluster) -> CitusCluster:
    """The Citus topology, once its nodes accept connections."""
    c = CitusCluster(cluster)
    for h in c.nodes:
        c.wait_ready(h)
    return c


@pytest.fixture(scope="module")
def dist(citus: CitusCluster) -> Iterator[str]:
    """A hash-distributed table with ROWS rows (keys -ROWS/2 .. ROWS/2-1), inserted through the coordinator."""
    t = "gauntlet_dist"
    citus.drop(t)
    with citus.connect() as conn:
        conn.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, payload text NOT NULL)")
        conn.execute(
            "SELECT create_distributed_table(%s, 'id', shard_count => %s, colocate_with => 'none')",
            (t, citus.shard_count),
        )
        conn.execute(
            f"INSERT INTO {t} SELECT g, md5(g::text) FROM generate_series(%s::bigint, %s::bigint) g",
            (-(ROWS // 2), ROWS - ROWS // 2 - 1),
        )
    yield t
    citus.drop(t)


def expected_keys() -> set[int]:
    return set(range(-(ROWS // 2), ROWS - ROWS // 2))


def read_all_shards(citus: CitusCluster, table: str) -> dict[int, list[tuple[int, int]]]:
    """Every shard's rows (key, worker_hash(key)), read on the node that metadata says holds the shard."""
    out: dict[int, list[tuple[int, int]]] = {}
    for p in citus.placements(table):
        out[p.shardid] = citus.shard_rows(table, p)
    return out


def assert_rows_in_their_shards(
    citus: CitusCluster, table: str, placements: list[Placement], expected: set[int]
) -> None:
    """Every row is stored exactly once, in the one shard whose hash range holds its key's hash, and the
    shard ranges tile the hash space; the coordinator's routing agrees for a sample of keys."""
    assert len({p.shardid for p in placements}) == len(placements), (
        f"a shard has two placements: {placements}"
    )
    ranges = sorted((p.minvalue, p.maxvalue) for p in placements)
    assert ranges[0][0] == HASH_MIN and ranges[-1][1] == HASH_MAX, f"ranges do not cover int4: {ranges}"
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert lo == hi + 1, f"shard ranges overlap or leave a gap at {hi}..{lo}"
    where: dict[int, list[int]] = {}
    misplaced = []
    for p in placements:
        for key, h in citus.shard_rows(table, p):
            where.setdefault(key, []).append(p.shardid)
            if not p.minvalue <= h <= p.maxvalue:
                misplaced.append((key, h, p.shardid, p.minvalue, p.maxvalue, p.nodename))
    assert not misplaced, f"{len(misplaced)} rows outside their shard's hash range, e.g. {misplaced[:5]}"
    doubled = {k: s for k, s in where.items() if len(s) > 1}
    assert not doubled, f"{len(doubled)} keys stored in more than one shard, e.g. {list(doubled.items())[:5]}"
    missing = expected - where.keys()
    extra = where.keys() - expected
    assert not missing and not extra, (
        f"{len(missing)} keys missing (e.g. {sorted(missing)[:5]}), {len(extra)} extra"
    )
    # Cross-check the placement against PostgreSQL's own hash function and the coordinator's router.
    sample = sorted(expected)[:: max(1, len(expected) // 50)]
    rows = citus.query(
        "SELECT k, hashint8(k), worker_hash(k), get_shard_id_for_distribution_column(%s::regclass, k) "
        "FROM unnest(%s::bigint[]) k",
        (table, sample),
    )
    for k, pg_hash, citus_hash, shardid in rows:
        assert pg_hash == citus_hash, f"worker_hash({k})={citus_hash} but hashint8({k})={pg_hash}"
        assert where[k] == [shardid], f"key {k}: coordinator routes to shard {shardid}, stored in {where[k]}"


# -- nodes ------------------------------------------------------------------------------------------------------
def test_workers_active_and_healthy(citus: CitusCluster) -> None:
    nodes = citus.registered()
    coord = [n for n in nodes if n["groupid"] == 0]
    assert [n["nodename"] for n in coord] == [citus.node_name(citus.coordinator)], nodes
    wanted = {citus.node_name(w) for w in citus.workers}
    workers = {n["nodename"]: n for n in nodes if n["groupid"] != 0}
    assert wanted <= workers.keys(), f"workers not registered: {wanted - workers.keys()}"
    for name in wanted:
        n = workers[name]
        assert n["isactive"] and n["noderole"] == "primary" and n["shouldhaveshards"], n
    health = citus.query("SELECT from_nodename, to_nodename, result FROM citus_check_cluster_node_health()")
    names = {n["nodename"] for n in nodes}
    pairs = {(a, b) for a, b, _ in health}
    assert pairs == {(a, b) for a in names for b in names}, f"health matrix incomplete: {sorted(pairs)}"
    bad = [(a, b) for a, b, ok in health if ok is not True]
    assert not bad, f"nodes that cannot reach each other (from, to): {bad}"


# -- distribution -----------------------------------------------------------------------------------------------
@pytest.mark.distribution
def test_distributed_table_spreads_shards_over_all_workers(citus: CitusCluster, dist: str) -> None:
    placements = citus.placements(dist)
    assert len({p.shardid for p in placements}) == citus.shard_count
    per_node = Counter(p.nodename for p in placements)
    workers = citus.active_workers()
    assert set(per_node) == workers, f"shards on {dict(per_node)}, active workers {sorted(workers)}"
    lo, hi = citus.shard_count // len(workers), math.ceil(citus.shard_count / len(workers))
    assert all(lo <= n <= hi for n in per_node.values()), (
        f"placements per worker {dict(per_node)} outside [{lo}, {hi}] for {citus.shard_count} shards"
    )
    # The shard tables are where the metadata says, and nowhere else.
    for p in placements:
        for h in citus.nodes:
            present = citus.shard_exists(h, dist, p.shardid)
            assert present == (citus.node_name(h) == p.nodename), (
                f"shard {p.shardid} (metadata: {p.nodename}) {'found' if present else 'missing'} on {h.name}"
            )


@pytest.mark.distribution
def test_each_row_lives_in_the_shard_of_its_hash_range(citus: CitusCluster, dist: str) -> None:
    assert_rows_in_their_shards(citus, dist, citus.placements(dist), expected_keys())


@pytest.mark.distribution
def test_per_shard_counts_sum_to_total(citus: CitusCluster, dist: str) -> None:
    per_shard = {}
    for p in citus.placements(dist):
        q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"{dist}_{p.shardid}"))
        per_shard[p.shardid] = int(citus.query(q, host=citus.host_of(p.nodename))[0][0])
    total = int(citus.query(f"SELECT count(*) FROM {dist}")[0][0])
    assert total == ROWS
    assert sum(per_shard.values()) == total, f"shards hold {sum(per_shard.values())} rows, table {total}"
    assert all(n > 0 for n in per_shard.values()), f"empty shards with {ROWS} keys: {per_shard}"


@pytest.mark.distribution
def test_reference_table_identical_on_every_node(citus: CitusCluster) -> None:
    t = "gauntlet_ref"
    citus.drop(t)
    try:
        with citus.connect() as conn:
            conn.execute(f"CREATE TABLE {t} (code int PRIMARY KEY, name text NOT NULL)")
            conn.execute("SELECT create_reference_table(%s)", (t,))
            conn.execute(f"INSERT INTO {t} SELECT g, 'name-' || g FROM generate_series(1, 200) g")
            # A multi-row update and a delete after creation: replicated to every placement in one transaction.
            conn.execute(f"UPDATE {t} SET name = name || '-x' WHERE code % 7 = 0")
            conn.execute(f"DELETE FROM {t} WHERE code % 50 = 0")
        rows = {g: f"name-{g}" + ("-x" if g % 7 == 0 else "") for g in range(1, 201) if g % 50}
        want = hashlib.md5(",".join(f"{k}:{v}" for k, v in sorted(rows.items())).encode()).hexdigest()
        placements = citus.reference_placements(t)
        registered = {
            n["nodename"] for n in citus.registered() if n["isactive"] and n["noderole"] == "primary"
        }
        assert {n for _, n in placements} == registered, f"reference placements {placements}"
        (shardid,) = {s for s, _ in placements}
        digests = {}
        for _, node in placements:
            q = sql.SQL(
                "SELECT md5(string_agg(code || ':' || name, ',' ORDER BY code)), count(*) FROM {}"
            ).format(sql.Identifier(f"{t}_{shardid}"))
            digests[node] = tuple(citus.query(q, host=citus.host_of(node))[0])
        assert set(digests.values()) == {(want, len(rows))}, f"reference copies differ: {digests}"
    finally:
        citus.drop(t)


@pytest.mark.distribution
def test_colocated_join(citus: CitusCluster) -> None:
    customers, orders = "gauntlet_customers", "gauntlet_orders"
    citus.drop(orders, customers)
    n_customers = 400
    try:
        with citus.connect() as conn:
            conn.execute(f"CREATE TABLE {customers} (customer_id bigint PRIMARY KEY, region text NOT NULL)")
            conn.execute(
                f"CREATE TABLE {orders} (customer_id bigint NOT NULL, order_id int NOT NULL, "
                "amount int NOT NULL, PRIMARY KEY (customer_id, order_id))"
            )
            conn.execute(
                "SELECT create_distributed_table(%s, 'customer_id', colocate_with => 'none')", (customers,)
            )
            conn.execute(
                "SELECT create_distributed_table(%s, 'customer_id', colocate_with => %s)", (orders, customers)
            )
            conn.execute(
                f"INSERT INTO {customers} SELECT c, 'r' || (c %% 5) FROM generate_series(1, %s) c",
                (n_customers,),
            )
            conn.execute(
                f"INSERT INTO {orders} SELECT c, o, c * 10 + o FROM generate_series(1, %s) c, "
                "generate_series(1, (c %% 4) + 1) o",
                (n_customers,),
            )
            colocation = conn.execute(
                "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid IN (%s::regclass, %s::regclass)",
                (customers, orders),
            ).fetchone()
            assert colocation == (1,), "the two tables are not colocated"
            join = (
                f"SELECT c.region, count(*), sum(o.amount) FROM {orders} o JOIN {customers} c "
                "USING (customer_id) GROUP BY c.region ORDER BY c.region"
            )
            got = [(r, int(n), int(s)) for r, n, s in conn.execute(join).fetchall()]
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + join).fetchall())
            one = conn.execute(
                f"SELECT c.customer_id, c.region, sum(o.amount) FROM {orders} o JOIN {customers} c "
                "USING (customer_id) WHERE c.customer_id = 42 GROUP BY 1, 2"
            ).fetchall()
        want: dict[str, list[int]] = {}
        for c in range(1, n_customers + 1):
            for o in range(1, c % 4 + 2):
                agg = want.setdefault(f"r{c % 5}", [0, 0])
                agg[0] += 1
                agg[1] += c * 10 + o
        assert got == [(r, n, s) for r, (n, s) in sorted(want.items())]
        assert one == [(42, "r2", sum(420 + o for o in range(1, 42 % 4 + 2)))]
        # Pushed down shard by shard (one task per shard pair), not repartitioned.
        assert f"Task Count: {citus.shard_count}" in plan and "epartition" not in plan, plan
    finally:
        citus.drop(orders, customers)


# -- distributed transactions under a worker crash ---------------------------------------------------------------
@pytest.fixture
def twopc(citus: CitusCluster) -> Iterator[str]:
    """A distributed table whose shards all carry a deferred constraint trigger that takes advisory lock
    HOLD_LOCK: it fires in PREPARE TRANSACTION, so holding the lock on one worker stops that worker's
    PREPARE half-way while the other workers finish theirs."""
    t = "gauntlet_2pc"
    citus.drop(t)
    with citus.connect() as conn:
        conn.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, txn int NOT NULL)")
        conn.execute("SELECT create_distributed_table(%s, 'id', colocate_with => 'none')", (t,))
    fn = (
        "CREATE OR REPLACE FUNCTION gauntlet_hold_prepare() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD_LOCK}); RETURN NULL; END $$"
    )
    # Created on the coordinator, which propagates functions to every node (workers refuse such DDL).
    citus.query(fn)
    by_node: dict[str, list[int]] = {}
    for p in citus.placements(t):
        by_node.setdefault(p.nodename, []).append(p.shardid)
    for node, shards in by_node.items():
        with citus.connect(citus.host_of(node)) as conn:
            conn.execute("SET citus.enable_manual_changes_to_shards TO on")
            for s in shards:
                conn.execute(
                    sql.SQL(
                        "CREATE CONSTRAINT TRIGGER gauntlet_hold AFTER INSERT ON {} DEFERRABLE INITIALLY "
                        "DEFERRED FOR EACH ROW EXECUTE FUNCTION gauntlet_hold_prepare()"
                    ).format(sql.Identifier(f"{t}_{s}"))
                )
    yield t
    citus.drop(t)
    citus.query("DROP FUNCTION IF EXISTS gauntlet_hold_prepare()")


def keys_on(citus: CitusCluster, table: str, nodename: str, n: int, txn: int) -> list[int]:
    """``n`` keys of transaction ``txn`` (txn*1000 + i) whose shards live on ``nodename``."""
    cands = list(range(txn * 1000, txn * 1000 + 1000))
    rows = citus.query(
        "SELECT k FROM unnest(%s::bigint[]) k JOIN pg_dist_placement p "
        "ON p.shardid = get_shard_id_for_distribution_column(%s::regclass, k) JOIN pg_dist_node d USING (groupid) "
        "WHERE d.nodename = %s ORDER BY k LIMIT %s",
        (cands, table, nodename, n),
    )
    return [int(r[0]) for r in rows]


def run_2pc(
    citus: CitusCluster, nemesis: Nemesis, history: History, table: str, txn: int, held_on: str, killed: str
) -> tuple[dict[str, object], list[int], set[str]]:
    """Write transaction ``txn`` to two workers through the coordinator and COMMIT it while advisory lock
    HOLD_LOCK is held on ``held_on`` (that worker's PREPARE waits); once the other worker has prepared, kill
    ``killed``'s PostgreSQL, release the lock (if its holder still lives), let the COMMIT return, restart
    ``killed``. Returns the COMMIT outcome, the keys written and the gids the other worker prepared."""
    hold_host, kill_host = citus.host_of(held_on), citus.host_of(killed)
    other = sorted(n for n in citus.active_workers() if n != held_on)[0]
    other_host = citus.host_of(other)
    keys = keys_on(citus, table, held_on, 3, txn) + keys_on(citus, table, other, 3, txn)
    assert len(keys) == 6, f"could not find keys on {held_on} and {other}: {keys}"
    before = citus.prepared_gids(other_host)
    holder = citus.connect(hold_host)
    client = citus.connect(autocommit=False)
    outcome: dict[str, object] = {}
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
        with client.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (id, txn) VALUES (%s, %s)", [(k, txn) for k in keys])
        inv = history.invoke("coordinator", "txn", txn, keys=keys, held_on=held_on, killed=killed)
        with in_thread(client.commit) as box:
            seen = wait_for(lambda: citus.prepared_gids(other_host) - before, 30, 0.1, f"PREPARE on {other}")
            with nemesis.kill(kill_host, citus.unit(kill_host)):
                if hold_host is not kill_host:
                    holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))
                box["thread"].join(60)
                assert not box["thread"].is_alive(), "COMMIT did not return within 60 s"
        citus.wait_ready(kill_host)
        if "error" in box:
            outcome["error"] = box["error"]
            # A failed COMMIT is an unknown outcome to a client; the check decides from the data.
            history.complete(inv, "info", error=f"{type(box['error']).__name__}: {box['error']}")
        else:
            outcome["ok"] = True
            history.complete(inv, "ok")
    finally:
        for c in (holder, client):
            with contextlib.suppress(Exception):
                c.close()
    return outcome, keys, seen


def visible_keys(citus: CitusCluster, table: str, txn: int) -> set[int]:
    return {int(r[0]) for r in citus.query(f"SELECT id FROM {table} WHERE txn = %s", (txn,))}


def recover_and_check_no_leftovers(citus: CitusCluster) -> int:
    """Run Citus's 2PC recovery on the coordinator; afterwards no node holds an in-doubt transaction."""
    recovered = int(citus.query("SELECT recover_prepared_transactions()")[0][0])
    for h in [citus.coordinator, *citus.workers]:
        assert citus.prepared_gids(h) == set(), f"in-doubt transactions left on {h.name} after recovery"
    return recovered


@pytest.mark.distribution
def test_2pc_commit_survives_worker_crash_after_prepare(
    citus: CitusCluster, twopc: str, nemesis: Nemesis, history: History
) -> None:
    """Worker B prepared, worker A still preparing; B dies. A finishes, the coordinator commits: the client
    is told "committed" although B could not be told. After B is back, recovery must commit B's prepared part:
    every row of the transaction visible, none in doubt."""
    a, b = sorted(citus.node_name(w) for w in citus.workers)[:2]
    outcome, keys, seen = run_2pc(citus, nemesis, history, twopc, txn=1, held_on=a, killed=b)
    assert seen, f"{b} never prepared"
    assert outcome.get("ok"), f"COMMIT failed although every worker had prepared: {outcome.get('error')}"
    in_doubt = citus.prepared_gids(citus.host_of(b)) & seen
    recovered = recover_and_check_no_leftovers(citus)
    got = visible_keys(citus, twopc, 1)
    history.mark("after recovery", visible=len(got), recovered=recovered, in_doubt_before=len(in_doubt))
    assert got == set(keys), f"partial commit after recovery: {len(got)} of {len(keys)} rows visible"


@pytest.mark.distribution
def test_2pc_rollback_everywhere_when_worker_crashes_during_prepare(
    citus: CitusCluster, twopc: str, nemesis: Nemesis, history: History
) -> None:
    """Worker A prepared, worker B still preparing; B dies. The PREPARE on B failed, so the transaction must
    abort everywhere: the client gets an error and, after recovery, no row of it exists on any node."""
    a, b = sorted(citus.node_name(w) for w in citus.workers)[:2]
    outcome, keys, seen = run_2pc(citus, nemesis, history, twopc, txn=2, held_on=b, killed=b)
    assert seen, f"{a} never prepared"
    assert "error" in outcome, "COMMIT succeeded although a worker died before it prepared"
    recovered = recover_and_check_no_leftovers(citus)
    history.mark("after recovery", recovered=recovered)
    assert visible_keys(citus, twopc, 2) == set(), "rows of the aborted transaction are visible"
    for p in citus.placements(twopc):
        q = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier(f"{twopc}_{p.shardid}"))
        kept = citus.query(q, (keys,), host=citus.host_of(p.nodename))
        assert not kept, f"shard {p.shardid} on {p.nodename} kept rows of the aborted transaction: {kept}"


# -- TLS between nodes -----------------------------------------------------------------------------------------
@pytest.mark.tls
def test_inter_node_connections_use_tls(citus: CitusCluster, dist: str) -> None:
    for h in citus.nodes:
        conninfo = citus.query("SHOW citus.node_conninfo", host=h)[0][0]
        assert "sslmode=verify-full" in conninfo and "sslrootcert=" in conninfo, f"{h.name}: {conninfo}"
    coord_addr = citus.coordinator.address
    with citus.connect(autocommit=False) as conn:
        # Touch every shard in one transaction: the coordinator keeps a connection open to every worker.
        assert conn.execute(f"SELECT count(*) FROM {dist}").fetchone() == (ROWS,)
        for w in citus.workers:
            rows = citus.query(
                "SELECT a.application_name, s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s "
                "USING (pid) WHERE a.client_addr = %s::inet AND a.usename = %s",
                (coord_addr, citus.user),
                host=w,
            )
            internal = [r for r in rows if str(r[0]).startswith("citus_internal")]
            assert internal, f"no connection from the coordinator on {w.name}: {rows}"
            plain = [r for r in rows if not r[1]]
            assert not plain, f"connections from the coordinator without TLS on {w.name}: {plain}"
            assert {r[2] for r in rows} <= {"TLSv1.2", "TLSv1.3"}, rows
        conn.rollback()
    # And a node cannot even open a plain connection to another (hostnossl ... reject).
    w = citus.workers[0]
    r = citus.coordinator.run(
        "su postgres -c \"psql -w -Atc 'select 1' "
        f"'host={citus.node_name(w)} port={citus.port(w)} dbname={citus.database} user={citus.user} sslmode=disable'\""
    )
    assert r.rc != 0 and ("no encryption" in r.stderr or "pg_hba.conf" in r.stderr), (r.rc, r.stderr)


# -- benchmarks ----------------------------------------------------------------------------------------------------
@pytest.mark.distribution
def test_distributed_insert_throughput(citus: CitusCluster, bench: Bench) -> None:
    """Rows/s of single-row INSERTs (pipelined, one transaction) through the coordinator into a distributed
    table, and into a plain table on one node. Measured, not asserted (beyond every row arriving)."""
    t_dist, t_plain = "gauntlet_bench_dist", "gauntlet_bench_plain"
    plain_host = citus.workers[0]
    citus.drop(t_dist)
    citus.query(f"DROP TABLE IF EXISTS {t_plain}", host=plain_host)
    ddl = "CREATE TABLE {} (id bigint PRIMARY KEY, payload text NOT NULL)"
    rows = [(i, f"payload-{i}") for i in range(BENCH_ROWS)]
    try:
        with citus.connect() as conn:
            conn.execute(ddl.format(t_dist))
            conn.execute("SELECT create_distributed_table(%s, 'id')", (t_dist,))
        citus.query(ddl.format(t_plain), host=plain_host)
        rates = {}
        for name, host, table in (("citus", citus.coordinator, t_dist), ("plain", plain_host, t_plain)):
            # No TCP user timeout: a pipelined bulk insert may keep the server's receive window full for
            # longer than the 5 s the default endpoint allows on a busy machine.
            with citus.connect(host, autocommit=False, tcp_user_timeout=0) as conn:
                start = time.perf_counter()
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} (id, payload) VALUES (%s, %s)", rows)
                conn.commit()
                rates[name] = BENCH_ROWS / (time.perf_counter() - start)
            assert citus.query(f"SELECT count(*) FROM {table}", host=host)[0][0] == BENCH_ROWS
        bench.record(
            "citus_distributed_insert_rows_per_s",
            round(rates["citus"]),
            "rows/s",
            rows=BENCH_ROWS,
            via=citus.coordinator.name,
            shards=citus.shard_count,
        )
        bench.record(
            "citus_plain_table_insert_rows_per_s",
            round(rates["plain"]),
            "rows/s",
            rows=BENCH_ROWS,
            node=plain_host.name,
        )
        bench.record(
            "citus_distributed_vs_plain_insert_ratio", round(rates["citus"] / rates["plain"], 3), "x"
        )
    finally:
        citus.drop(t_dist)
        citus.query(f"DROP TABLE IF EXISTS {t_plain}", host=plain_host)


# -- rebalance (last: it changes the cluster's membership and undoes that at the end) ---------------------------
@pytest.mark.distribution
def test_rebalance_after_adding_worker_keeps_every_row(citus: CitusCluster, bench: Bench) -> None:
    if not citus.spares:
        pytest.skip("inventory has no group citus_spare (a prepared, unregistered worker to add)")
    spare = citus.spares[0]
    name, port = citus.node_name(spare), citus.port(spare)
    t = "gauntlet_rebalance"

    def remove_spare() -> None:
        if any(n["nodename"] == name for n in citus.registered()):
            with citus.connect() as conn:
                conn.execute("SELECT citus_drain_node(%s, %s)", (name, port))
                conn.execute("SELECT citus_remove_node(%s, %s)", (name, port))

    remove_spare()
    citus.drop(t)
    try:
        with citus.connect() as conn:
            conn.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, payload text NOT NULL)")
            conn.execute("SELECT create_distributed_table(%s, 'id', colocate_with => 'none')", (t,))
            conn.execute(
                f"INSERT INTO {t} SELECT g, md5(g::text) FROM generate_series(1, %s) g", (REBALANCE_ROWS,)
            )
            digest = f"SELECT count(*), sum(id), md5(string_agg(payload, '' ORDER BY id)) FROM {t}"
            before = conn.execute(digest).fetchone()
            old = {p.shardid: p.nodename for p in citus.placements(t)}
            conn.execute("SELECT citus_add_node(%s, %s)", (name, port))
            start = time.perf_counter()
            conn.execute("SELECT rebalance_table_shards(%s)", (t,))
            elapsed = time.perf_counter() - start
            conn.execute("CALL citus_cleanup_orphaned_resources()")
            after = conn.execute(digest).fetchone()
        placements = citus.placements(t)
        moved = {p.shardid for p in placements if old[p.shardid] != p.nodename}
        on_spare = [p.shardid for p in placements if p.nodename == name]
        bench.record(
            "citus_rebalance_seconds",
            round(elapsed, 3),
            "s",
            rows=REBALANCE_ROWS,
            shards_moved=len(moved),
            shards=len(placements),
        )
        assert on_spare, f"rebalance moved nothing onto {name}: {Counter(p.nodename for p in placements)}"
        assert after == before, f"table changed by the rebalance: {before} -> {after}"
        assert_rows_in_their_shards(citus, t, placements, set(range(1, REBALANCE_ROWS + 1)))
        for s in moved:  # the old copies are gone once cleanup ran
            assert not citus.shard_exists(citus.host_of(old[s]), t, s), f"shard {s} still on {old[s]}"
    finally:
        citus.drop(t)
        remove_spare()
