"""Defects planted in the PgBouncer of a Patroni member (roles/pgbouncer), over the host's own connection.
The plant waits until PgBouncer has re-read its configuration, the undo until it has and its pool is back
within the role's limit: a check that then fails, or passes, judged the defect, not a race."""

from __future__ import annotations

import shlex

from gauntlet.bench import wait_for
from gauntlet.cluster import Cluster, Host
from gauntlet.nemesis.plants.files import restore, save_and_edit
from gauntlet.nemesis.plants.patroni import PATRONI_GROUP, members, psql

# Where the role writes PgBouncer's configuration (roles/pgbouncer/vars/main.yml: pgbouncer_config).
PGBOUNCER_CONFIG = "/etc/pgbouncer/pgbouncer.ini"
# The pool the defect gives the leader's PgBouncer: far over the role's max_db_connections, so that a batch
# of concurrent clients gets as many server connections as it asks for.
UNBOUNDED_POOL = 300
# What PgBouncer logs on each SIGHUP (1.18): the count of these lines tells that a reload was read.
_RELOAD_LINE = "got SIGHUP, re-reading config"


def _reloads(host: Host) -> int:
    r = host.run(
        f"journalctl -u pgbouncer -o cat --no-pager | grep -c {shlex.quote(_RELOAD_LINE)} || true", timeout=30
    )
    return int(r.stdout.strip() or 0)


def _reload(host: Host) -> None:
    """``systemctl reload pgbouncer`` (SIGHUP) and wait until PgBouncer logged that it re-read its file."""
    before = _reloads(host)
    host.run("systemctl reload pgbouncer", check=True, timeout=30)
    wait_for(
        lambda: _reloads(host) > before, 30, 0.3, f"PgBouncer on {host.name} re-reading its configuration"
    )


def _server_connections(host: Host) -> int:
    """The server connections the member's PgBouncer holds to the pooled database (PostgreSQL's view)."""
    db = str(host.setting("pgbouncer_database"))
    # PgBouncer connects to its own member: its connections come from one of the member's addresses.
    addresses = [*host.run("hostname -I", check=True, timeout=30).stdout.split(), "127.0.0.1", "::1"]
    listed = ", ".join(f"inet {_literal(a)}" for a in addresses)
    return int(
        psql(
            host,
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = {_literal(db)} "
            f"AND backend_type = 'client backend' AND client_addr IN ({listed})",
        )
        or 0
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _leader(cluster: Cluster) -> Host:
    """The member holding the leader lock (patronictl list)."""
    leaders = [m["Member"] for m in members(cluster) if m.get("Role") == "Leader"]
    assert len(leaders) == 1, f"expected one Patroni leader, patronictl lists {leaders}"
    return cluster[str(leaders[0])]


def pool_unbounded(cluster: Cluster) -> None:
    """The leader's PgBouncer gets default_pool_size and max_db_connections of UNBOUNDED_POOL (its file
    edited, the original kept to restore), reloaded."""
    leader = _leader(cluster)
    edit = (
        f"sed -i -E 's/^(default_pool_size|max_db_connections) = .*/\\1 = {UNBOUNDED_POOL}/' "
        f"{PGBOUNCER_CONFIG}"
    )
    save_and_edit(leader, PGBOUNCER_CONFIG, edit)
    _reload(leader)


def pool_bounded_again(cluster: Cluster) -> None:
    """Every member's PgBouncer file as the role rendered it (the one planted is put back), reloaded; waits
    until the pool PgBouncer kept from the defect is back within max_db_connections."""
    for h in cluster.group(PATRONI_GROUP):
        if restore(h, PGBOUNCER_CONFIG):
            _reload(h)
            limit = int(h.setting("pgbouncer_max_db_connections"))
            wait_for(
                lambda h=h, limit=limit: _server_connections(h) <= limit,
                60,
                0.5,
                f"PgBouncer on {h.name} holding at most {limit} server connections again",
            )
