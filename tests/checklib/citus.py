"""The Citus topology as the checks see it: the coordinator, the workers, a spare, and direct connections to
each node's PostgreSQL (TLS verified by host name) as the role's user; plus reading shards on the workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from gauntlet.bench import wait_for
from gauntlet.clients.postgres import Endpoint
from gauntlet.cluster import Cluster, Host
from gauntlet.errors import InventoryError

COORDINATOR = "citus_coordinator"
WORKER = "citus_worker"
SPARE = "citus_spare"
HASH_MIN = -(2**31)
HASH_MAX = 2**31 - 1


def secret_var(cluster: Cluster, name: str, group: str) -> str:
    """A password as the role sees it (:meth:`Cluster.secret`)."""
    return cluster.secret(name, group)


@dataclass(frozen=True)
class Placement:
    """One shard placement as the coordinator's metadata records it."""

    shardid: int
    minvalue: int
    maxvalue: int
    nodename: str
    nodeport: int


class CitusCluster:
    """Coordinator, workers and spare of the inventory, and connections to each node as ``citus_user``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.coordinator: Host = cluster.group(COORDINATOR)[0]
        self.workers: list[Host] = cluster.group(WORKER)
        self.spares: list[Host] = cluster.group(SPARE) if cluster.has_group(SPARE) else []
        v = lambda name: cluster.setting(name, COORDINATOR)  # noqa: E731
        self.user = str(v("citus_user"))
        self.password = secret_var(cluster, "citus_password", COORDINATOR)
        self.database = str(v("citus_database"))
        self.pg_version = int(v("citus_postgresql_version"))
        self.shard_count = int(v("citus_shard_count"))
        self.ca = cluster.ca_cert

    # -- nodes ------------------------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Host]:
        """Every host with Citus: coordinator, workers, spares."""
        return [self.coordinator, *self.workers, *self.spares]

    def node_name(self, host: Host) -> str:
        """The name the node is registered under (and that its certificate carries)."""
        return str(host.setting("citus_node_name"))

    def port(self, host: Host) -> int:
        return int(host.setting("citus_port"))

    def host_of(self, nodename: str) -> Host:
        """The inventory host registered under ``nodename``."""
        for h in self.nodes:
            if self.node_name(h) == nodename:
                return h
        raise InventoryError(f"node {nodename} of pg_dist_node is not a host of the inventory")

    def unit(self, host: Host) -> str:
        """The systemd unit of the node's PostgreSQL (Debian cluster <version>/main)."""
        return f"postgresql@{self.pg_version}-{host.var('postgresql_cluster_name', 'main')}"

    # -- connections ------------------------------------------------------------------------------------------
    def endpoint(self, host: Host) -> Endpoint:
        """The node's PostgreSQL, verified by the node's name (sslmode=verify-full, hostaddr=its address)."""
        return Endpoint(
            host=self.node_name(host),
            address=host.address,
            port=self.port(host),
            user=self.user,
            password=self.password,
            dbname=self.database,
            sslrootcert=self.ca,
            connect_timeout=5,
            application_name="gauntlet-citus",
        )

    def connect(
        self, host: Host | None = None, autocommit: bool = True, **override: Any
    ) -> psycopg.Connection[Any]:
        """A connection to a node (the coordinator by default); ``override``: libpq parameters."""
        return self.endpoint(host or self.coordinator).connect(autocommit=autocommit, **override)

    def query(
        self, sql_text: str | sql.Composable, params: Any = None, host: Host | None = None
    ) -> list[Any]:
        """Run one statement on a node in its own connection and return all rows."""
        with self.connect(host) as conn:
            cur = conn.execute(sql_text, params)
            return cur.fetchall() if cur.description else []

    def wait_ready(self, host: Host, timeout: float = 90) -> None:
        """Wait until the node accepts connections and runs queries."""
        wait_for(lambda: self.query("SELECT 1", host=host), timeout, 0.5, f"PostgreSQL on {host.name}")

    # -- metadata ---------------------------------------------------------------------------------------------
    def registered(self) -> list[dict[str, Any]]:
        """pg_dist_node on the coordinator."""
        with self.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                "SELECT nodeid, groupid, nodename, nodeport, isactive, noderole, shouldhaveshards "
                "FROM pg_dist_node ORDER BY nodeid"
            )
            return list(cur.fetchall())

    def active_workers(self) -> set[str]:
        """Names of the registered, active primary nodes that hold shards."""
        return {
            n["nodename"]
            for n in self.registered()
            if n["groupid"] != 0 and n["isactive"] and n["noderole"] == "primary" and n["shouldhaveshards"]
        }

    def placements(self, table: str) -> list[Placement]:
        """Every placement of a table's shards, with the shard's hash range."""
        rows = self.query(
            "SELECT s.shardid, s.shardminvalue::bigint, s.shardmaxvalue::bigint, n.nodename, n.nodeport "
            "FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) "
            "JOIN pg_dist_node n USING (groupid) WHERE s.logicalrelid = %s::regclass ORDER BY s.shardid",
            (table,),
        )
        return [Placement(int(a), int(b), int(c), str(d), int(e)) for a, b, c, d, e in rows]

    def reference_placements(self, table: str) -> list[tuple[int, str]]:
        """(shardid, nodename) of a reference table's placements (no hash range)."""
        rows = self.query(
            "SELECT s.shardid, n.nodename FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) "
            "JOIN pg_dist_node n USING (groupid) WHERE s.logicalrelid = %s::regclass ORDER BY n.nodename",
            (table,),
        )
        return [(int(a), str(b)) for a, b in rows]

    # -- shards read on the workers themselves ----------------------------------------------------------------
    def shard_rows(self, table: str, placement: Placement, key: str = "id") -> list[tuple[int, int]]:
        """(key, worker_hash(key)) of every row stored in one shard table, read on its node directly."""
        shard = sql.Identifier(f"{table}_{placement.shardid}")
        q = sql.SQL("SELECT {k}, worker_hash({k}) FROM {t}").format(k=sql.Identifier(key), t=shard)
        return [(int(k), int(h)) for k, h in self.query(q, host=self.host_of(placement.nodename))]

    def shard_exists(self, host: Host, table: str, shardid: int) -> bool:
        """Whether the node has the shard's table (to_regclass ignores Citus's shard hiding)."""
        rows = self.query("SELECT to_regclass(%s) IS NOT NULL", (f"{table}_{shardid}",), host=host)
        return bool(rows[0][0])

    def prepared_gids(self, host: Host) -> set[str]:
        """Prepared (in-doubt) transactions of the Citus database on a node."""
        rows = self.query(
            "SELECT gid FROM pg_prepared_xacts WHERE database = %s", (self.database,), host=host
        )
        return {str(r[0]) for r in rows}

    def drop(self, *tables: str) -> None:
        """Drop tables through the coordinator (their shards go with them)."""
        with self.connect() as conn:
            for t in tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(t)))


@contextmanager
def in_thread(fn: Any, *args: Any) -> Iterator[dict[str, Any]]:
    """Run ``fn(*args)`` in a thread; the yielded dict gets ``result`` or ``error`` when it ends; ``join``
    waits (bounded by the caller)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    box["thread"] = t
    t.start()
    try:
        yield box
    finally:
        t.join(60)
