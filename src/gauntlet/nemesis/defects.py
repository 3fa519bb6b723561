"""Planted defects, next to the fault catalogue: for each, how to plant it in a running topology, how to undo
it, and the check that names it. ``gauntlet prove`` (:mod:`gauntlet.prove`) plants each defect that applies
to a cluster, requires its check to fail for the expected reason, undoes it and requires the check to pass
again: a check counts only once it is known to go red on the bug it names.

A defect is planted one of two ways:

- ``plant`` / ``undo`` change the running cluster (a configuration, a unit, a member's role) before and
  after the check's run, over each host's own connection, as faults do;
- ``patch`` changes a client the check runs (the application's side of a promise: cache-aside that skips
  invalidation, writes confirmed without ``WAIT``). It runs inside the check's pytest process, which the
  prover starts with ``GAUNTLET_PLANTED_DEFECT=<name>`` (the pytest plugin applies it).

The plants themselves are in :mod:`gauntlet.nemesis.plants`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from gauntlet.cluster import Cluster
from gauntlet.nemesis.plants import access, clients, custom, patroni, pgbouncer, runner

#: Set by the prover in the check's environment: the defect whose ``patch`` the pytest plugin applies.
PLANTED_ENV = "GAUNTLET_PLANTED_DEFECT"

Plant = Callable[[Cluster], None]


@dataclass(frozen=True)
class Defect:
    """One defect: what it breaks, how to plant and undo it, which check must catch it and why."""

    name: str
    description: str
    check: str  # pytest node id, relative to the checkout
    reason: str  # a regular expression the failing check's output must match: the expected reason
    groups: tuple[str, ...]  # it applies to clusters that have every one of these groups
    plant: Plant | None = None
    undo: Plant | None = None
    patch: Callable[[], None] | None = None

    def applies_to(self, cluster: Cluster) -> bool:
        """Whether ``cluster`` has what this defect is planted in."""
        return all(cluster.has_group(g) for g in self.groups)


class UnknownDefect(KeyError):
    """A defect name the catalogue does not know; the message names the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


_PATRONI = "tests/integration/patroni"
_RUNNERS = "tests/integration/test_runners.py"
# the runners topology: the runner (custom_server), the etcd its shard leases live in, its PostgreSQL
_RUNNER_GROUPS = ("custom_server", "etcd", "postgresql_standalone")
DEFECTS: dict[str, Defect] = {
    d.name: d
    for d in [
        Defect(
            "patroni_async_replication",
            "synchronous_mode switched off in the DCS: the leader acknowledges commits no replica has",
            f"{_PATRONI}/test_patroni_failover.py::"
            "test_failover_under_fault_loses_no_acknowledged_write[isolate_from_peers-run1]",
            r"acknowledged writes lost",
            ("postgres", "haproxy"),
            plant=patroni.synchronous_mode_off,
            undo=patroni.synchronous_mode_on,
        ),
        Defect(
            "haproxy_rw_to_replica",
            "HAProxy's read-write port health-checks /replica: writes are routed to a replica",
            f"{_PATRONI}/test_patroni_topology.py::test_write_on_5000_is_visible_on_every_replica",
            r"a write on 5000 lands on",
            ("postgres", "haproxy"),
            plant=patroni.rw_port_to_replicas,
            undo=patroni.restore_haproxy,
        ),
        Defect(
            "postgres_plain_text",
            "one PostgreSQL member accepts plain-text connections (pg_hba: host before hostnossl reject)",
            f"{_PATRONI}/test_patroni_tls.py::test_postgresql_refuses_plain_connections",
            r"accepted a plain-text connection",
            ("postgres",),
            plant=patroni.accept_plain_text,
            undo=patroni.restore_pg_hba,
        ),
        Defect(
            "postgres_open_to_all",
            "one PostgreSQL member lets any address try a password (pg_hba: hostssl 0.0.0.0/0 above the roles' lines)",
            f"{_PATRONI}/test_patroni_tls.py::test_hosts_outside_the_cluster_are_refused_by_pg_hba",
            r"let in \S+ \(\S+\), outside the cluster",
            # A host outside PostgreSQL's clients to be let in: the cache's (the default topology).
            ("postgres", access.OUTSIDE_GROUP),
            plant=access.pg_hba_open_to_all,
            undo=access.close_pg_hba,
        ),
        Defect(
            "haproxy_stats_plain_http",
            "HAProxy's statistics page (and its password) in plain HTTP: its bind without `ssl crt`",
            f"{_PATRONI}/test_patroni_topology.py::test_stats_page_is_served_over_tls_only",
            r"does not serve TLS",
            ("postgres", "haproxy"),
            plant=access.stats_plain_http,
            undo=access.stats_tls_again,
        ),
        Defect(
            "patroni_two_primaries",
            "Patroni paused and a replica promoted by hand: two members accept writes at once",
            f"{_PATRONI}/test_patroni_topology.py::test_at_most_one_member_accepts_writes",
            r"more than one leader",
            ("postgres",),
            plant=patroni.promote_a_replica,
            undo=patroni.reinit_promoted_replica,
        ),
        Defect(
            "patroni_replica_data_changed",
            "a replica's rows changed behind replication (promoted by hand under pause, a row updated there)",
            f"{_PATRONI}/test_patroni_topology.py::test_every_member_holds_identical_data",
            r"members' data differ",
            ("postgres",),
            plant=patroni.change_a_replica_row,
            undo=patroni.reinit_promoted_replica,
        ),
        Defect(
            "pgbouncer_pool_unbounded",
            "the leader's PgBouncer with default_pool_size and max_db_connections of 300: its pool takes as many "
            "server connections as its clients ask for",
            f"{_PATRONI}/test_pgbouncer.py::"
            "test_concurrent_clients_share_a_pool_bounded_by_max_db_connections",
            r"server connections to \S+, more than max_db_connections",
            ("postgres", "haproxy"),
            plant=pgbouncer.pool_unbounded,
            undo=pgbouncer.pool_bounded_again,
        ),
        Defect(
            "redis_no_wait",
            "writes counted as confirmed by a replica without WAIT (the write_wait writers skip WAIT)",
            "tests/integration/test_sentinel.py::test_sentinel_failover_under_writes[isolate]",
            r"writes confirmed by WAIT 1 were lost",
            ("redis", "sentinel"),
            patch=clients.writes_confirmed_without_wait,
        ),
        Defect(
            "cache_no_invalidation",
            "cache-aside that skips the invalidation on write (the row changes, the cached entry stays)",
            "tests/integration/test_cache.py::test_no_read_older_than_an_acknowledged_write[guarded]",
            r"stale reads",
            ("redis",),
            patch=clients.cache_aside_without_invalidation,
        ),
        Defect(
            "raftkv_local_reads",
            "the Raft KV serving local reads ([raft] read_mode = local): a cut-off member answers stale values",
            "tests/integration/test_custom_faults.py::test_cut_off_follower_serves_no_stale_read",
            r"served a stale read",
            ("custom_server",),
            plant=custom.local_reads,
            undo=custom.linearizable_reads,
        ),
        Defect(
            "raftkv_local_ids",
            "the Raft KV handing out /next-id from each member's own counter ([raft] id_mode = local)",
            "tests/integration/test_declared_api.py::test_declared_workload_holds_under_a_fault[unique_ids]",
            r"unique_ids: invalid",
            ("custom_server",),
            plant=custom.local_ids,
            undo=custom.replicated_ids,
        ),
        Defect(
            "raftkv_local_writes",
            "the Raft KV acknowledging a PUT it cannot commit ([raft] write_mode = local): a member without a "
            "majority acknowledges writes",
            "tests/integration/test_custom_network_faults.py::"
            "test_overlapping_faults_acknowledge_only_where_a_connected_majority_lives",
            r"writes acknowledged where no connected majority lives",
            ("custom_server",),
            plant=custom.local_writes,
            undo=custom.replicated_writes,
        ),
        Defect(
            "raftkv_no_client_cert",
            "a server that accepts clients without a certificate ([tls] client_auth = optional)",
            "tests/integration/test_custom_tls.py::test_client_without_certificate_is_refused",
            r"accepted a client without a certificate",
            ("custom_server",),
            plant=custom.optional_client_certs,
            undo=custom.required_client_certs,
        ),
        Defect(
            "runner_no_fencing",
            "the entity runtime's writes skipping the fencing-token check ([runner] fencing = false): a runner "
            "that lost its shard's lease still writes over the new owner's state",
            f"{_RUNNERS}::test_no_acknowledged_increment_lost_when_a_stale_owner_writes",
            r"lost acknowledged increments|served by a stale owner after a newer one had served",
            _RUNNER_GROUPS,
            plant=runner.no_fencing,
            undo=runner.config_restored,
        ),
        Defect(
            "runner_timers_not_inherited",
            "the entity runtime's new shard owner firing only the timers scheduled after it took the shard "
            "([runner] inherit_timers = false): a dead runner's pending timers never fire",
            f"{_RUNNERS}::test_every_timer_fires_even_when_its_runner_dies",
            r"acknowledged timers never fired",
            _RUNNER_GROUPS,
            plant=runner.timers_not_inherited,
            undo=runner.config_restored,
        ),
        Defect(
            "runner_state_in_memory",
            "the entity runtime keeping entity state in memory only, never reading it back from PostgreSQL "
            "([runner] durable_state = false): a restarted runner starts every counter from nothing",
            f"{_RUNNERS}::test_state_survives_a_restart_of_every_runner",
            r"below the lower bound",
            _RUNNER_GROUPS,
            plant=runner.state_in_memory,
            undo=runner.config_restored,
        ),
    ]
}


def get(name: str) -> Defect:
    """The defect called ``name``; :class:`UnknownDefect` (naming the known ones) if there is none."""
    try:
        return DEFECTS[name]
    except KeyError:
        raise UnknownDefect(
            f"unknown defect {name!r}; the catalogue has: {', '.join(sorted(DEFECTS))}"
        ) from None


def names(cluster: Cluster | None = None) -> list[str]:
    """Defect names in catalogue order: all, or those that apply to ``cluster``."""
    return [d.name for d in DEFECTS.values() if cluster is None or d.applies_to(cluster)]


def apply_planted_patch() -> str | None:
    """In a check's process: apply the ``patch`` of the defect ``$GAUNTLET_PLANTED_DEFECT`` names (the
    prover sets it); return its name, or None when no defect is planted or it has no patch."""
    name = os.environ.get(PLANTED_ENV)
    if not name:
        return None
    defect = get(name)
    if defect.patch is None:
        return None
    defect.patch()
    return name
