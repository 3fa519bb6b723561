"""Defects planted in a running Patroni topology (PostgreSQL members, their DCS configuration, HAProxy in
front of them), over each host's own connection. Each plant waits until its defect is in effect, and each
undo until the cluster is as it was: a check that then fails, or passes, judged the defect, not a race."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

import psycopg

from gauntlet.bench import wait_for
from gauntlet.clients.postgres.connection import Endpoint
from gauntlet.cluster import Cluster, Host
from gauntlet.nemesis.plants.files import restore, save_and_edit

PATRONI_GROUP = "postgres"
HAPROXY_GROUP = "haproxy"
# Where the roles put these files (roles/patroni/tasks/service.yml, roles/haproxy/tasks).
PATRONI_CONFIG = "/etc/patroni/config.yml"
HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
# The table a diverged replica gets (only there: it is written while that member is promoted by hand).
DIVERGED_TABLE = "gauntlet_planted_divergence"


def patronictl(cluster: Cluster, args: str, timeout: float = 60) -> str:
    """Run ``patronictl`` on the first member that answers; its stdout."""
    last = ""
    for h in cluster.group(PATRONI_GROUP):
        r = h.run(f"patronictl -c {PATRONI_CONFIG} {args}", timeout=timeout)
        if r.ok:
            return r.stdout
        last = f"{h.name}: {r.stderr.strip() or r.stdout.strip()}"
    raise AssertionError(f"patronictl {args} failed on every member, last {last}")


def members(cluster: Cluster) -> list[dict[str, Any]]:
    """``patronictl list`` as rows (Member, Role, State, ...)."""
    return list(json.loads(patronictl(cluster, "list -f json")))


def psql(host: Host, sql: str, db: str | None = None) -> str:
    """SQL as the superuser over the member's local socket (root maps to it)."""
    port = host.setting("patroni_postgresql_port")
    user = host.setting("patroni_superuser_username")
    dbname = db or "postgres"
    r = host.run(
        [
            "psql",
            "-h",
            "/var/run/postgresql",
            "-p",
            str(port),
            "-U",
            str(user),
            "-d",
            dbname,
            "-XAtq",
            "-c",
            sql,
        ],
        check=True,
        timeout=30,
    )
    return r.stdout.strip()


def primaries(cluster: Cluster) -> list[str]:
    """Members whose PostgreSQL is out of recovery (accepts writes)."""
    out = []
    for h in cluster.group(PATRONI_GROUP):
        try:
            if psql(h, "SELECT pg_is_in_recovery()") == "f":
                out.append(h.name)
        except Exception:
            continue
    return out


def _lock_holder(cluster: Cluster) -> str:
    leaders = [m["Member"] for m in members(cluster) if m.get("Role") == "Leader"]
    assert len(leaders) == 1, f"expected one Patroni leader, patronictl lists {leaders}"
    return str(leaders[0])


def _app_endpoint(cluster: Cluster, host: Host, port: int, **changes: Any) -> Endpoint:
    """The application user's endpoint at ``host:port`` (a member, or HAProxy)."""
    members_ = cluster.group(PATRONI_GROUP)
    ep = Endpoint(
        host.name,
        host.address,
        port,
        str(members_[0].setting("patroni_app_user")),
        cluster.secret("patroni_app_password", PATRONI_GROUP),
        str(members_[0].setting("patroni_app_database")),
        cluster.ca_cert,
    )
    return ep.with_(**changes) if changes else ep


def _in_recovery(ep: Endpoint) -> bool | None:
    try:
        with ep.connect() as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row[0]) if row else None
    except psycopg.Error:
        return None


# -- synchronous replication off ------------------------------------------------------------------------
def _sync_standbys(cluster: Cluster) -> int:
    leader = cluster[_lock_holder(cluster)]
    return int(psql(leader, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") or 0)


def synchronous_mode_off(cluster: Cluster) -> None:
    """Switch synchronous_mode off in the DCS (as an operator's ``patronictl edit-config`` would)."""
    patronictl(cluster, "edit-config --force -s synchronous_mode=false")
    wait_for(lambda: _sync_standbys(cluster) == 0, 60, 0.5, "the leader replicating asynchronously")


def synchronous_mode_on(cluster: Cluster) -> None:
    """Switch synchronous_mode back on; wait for a synchronous standby."""
    patronictl(cluster, "edit-config --force -s synchronous_mode=true")
    wait_for(lambda: _sync_standbys(cluster) == 1, 60, 0.5, "a synchronous standby again")


# -- HAProxy's read-write port to the replicas ----------------------------------------------------------
def _rw_lands_on_replica(cluster: Cluster, want: bool) -> bool:
    for lb in cluster.group(HAPROXY_GROUP):
        ep = _app_endpoint(cluster, lb, int(lb.setting("haproxy_primary_port")))
        if _in_recovery(ep) is not want:
            return False
    return True


def rw_port_to_replicas(cluster: Cluster) -> None:
    """The read-write listener health-checks ``/replica`` instead of ``/primary``; HAProxy reloaded."""
    for lb in cluster.group(HAPROXY_GROUP):
        save_and_edit(
            lb,
            HAPROXY_CONFIG,
            f"sed -i '0,/uri \\/primary/s//uri \\/replica/' {HAPROXY_CONFIG} && systemctl reload haproxy",
        )
    wait_for(lambda: _rw_lands_on_replica(cluster, True), 60, 0.5, "HAProxy's rw port landing on a replica")


def restore_haproxy(cluster: Cluster) -> None:
    """HAProxy's own configuration back; wait until its read-write port lands on the leader again."""
    for lb in cluster.group(HAPROXY_GROUP):
        if restore(lb, HAPROXY_CONFIG):
            lb.run("systemctl reload haproxy", check=True)
    wait_for(lambda: _rw_lands_on_replica(cluster, False), 60, 0.5, "HAProxy's rw port on the leader again")


# -- a member that accepts plain text -------------------------------------------------------------------
def _plain_text_accepted(cluster: Cluster, host: Host) -> bool:
    ep = _app_endpoint(cluster, host, int(host.setting("patroni_postgresql_port")), sslmode="disable")
    return _in_recovery(ep) is not None


def prepend_pg_hba_line(cluster: Cluster, line: str, took: Callable[[Host], bool], what: str) -> None:
    """The first member's pg_hba.conf gets ``line`` above the roles' lines (the original kept to restore),
    reloaded; waits (30 s) until ``took(member)`` says the change is seen from outside."""
    h = cluster.group(PATRONI_GROUP)[0]
    hba = psql(h, "SHOW hba_file")
    save_and_edit(h, hba, f"sed -i {shlex.quote('1i ' + line)} {shlex.quote(hba)}")
    psql(h, "SELECT pg_reload_conf()")
    wait_for(lambda: took(h), 30, 0.5, f"{h.name} {what}")


def restore_first_pg_hba(cluster: Cluster, undone: Callable[[Host], bool], what: str) -> None:
    """The first member's pg_hba.conf as Patroni wrote it, reloaded; waits (30 s) until ``undone(member)``."""
    h = cluster.group(PATRONI_GROUP)[0]
    hba = psql(h, "SHOW hba_file")
    if restore(h, hba):
        psql(h, "SELECT pg_reload_conf()")
    wait_for(lambda: undone(h), 30, 0.5, f"{h.name} {what}")


def accept_plain_text(cluster: Cluster) -> None:
    """The first member's pg_hba.conf gets a ``host`` line (any transport) above ``hostnossl ... reject``."""
    prepend_pg_hba_line(
        cluster,
        "host all all 0.0.0.0/0 scram-sha-256",
        lambda h: _plain_text_accepted(cluster, h),
        "accepting plain text",
    )


def restore_pg_hba(cluster: Cluster) -> None:
    """pg_hba.conf as Patroni wrote it; wait until plain text is refused again."""
    restore_first_pg_hba(cluster, lambda h: not _plain_text_accepted(cluster, h), "refusing plain text again")


# -- a second primary, and a replica whose data changed behind replication ------------------------------
def _replica(cluster: Cluster) -> Host:
    leader = _lock_holder(cluster)
    return next(h for h in cluster.group(PATRONI_GROUP) if h.name != leader)


def promote_a_replica(cluster: Cluster) -> None:
    """Patroni paused (maintenance mode: it no longer corrects roles), then a replica promoted by hand:
    two PostgreSQL primaries accept writes, only one of them holds the leader lock."""
    target = _replica(cluster)
    patronictl(cluster, "pause --wait")
    psql(target, "SELECT pg_promote(true, 30)")
    wait_for(lambda: target.name in primaries(cluster), 30, 0.5, f"{target.name} promoted")


def change_a_replica_row(cluster: Cluster) -> None:
    """A replica promoted by hand under pause (:func:`promote_a_replica`) and a table written there only."""
    promote_a_replica(cluster)
    leader = _lock_holder(cluster)
    (rogue,) = [n for n in primaries(cluster) if n != leader]
    db = str(cluster[rogue].setting("patroni_app_database"))
    psql(
        cluster[rogue],
        f"CREATE TABLE {DIVERGED_TABLE} (id int PRIMARY KEY); INSERT INTO {DIVERGED_TABLE} VALUES (1)",
        db=db,
    )


def _whole(cluster: Cluster) -> bool:
    rows = members(cluster)
    leader = [m for m in rows if m.get("Role") == "Leader"]
    replicas = [m for m in rows if m.get("Role") != "Leader"]
    return (
        len(leader) == 1
        and len(rows) == len(cluster.group(PATRONI_GROUP))
        and all(m.get("State") == "streaming" for m in replicas)
        and primaries(cluster) == [leader[0]["Member"]]
    )


def reinit_promoted_replica(cluster: Cluster) -> None:
    """Stop the hand-promoted member's PostgreSQL, resume Patroni, and rebuild that member from the leader
    (``patronictl reinit``): every member streams from the one leader again."""
    leader = _lock_holder(cluster)
    rogues = [n for n in primaries(cluster) if n != leader]
    bin_dir = cluster.group(PATRONI_GROUP)[0].setting("patroni_postgresql_bin_dir")
    for name in rogues:
        h = cluster[name]
        data = h.setting("patroni_postgresql_data_dir")
        h.run(f"runuser -u postgres -- {bin_dir}/pg_ctl stop -m fast -w -D {data}", timeout=60)
    patronictl(cluster, "resume --wait")
    scope = str(cluster.group(PATRONI_GROUP)[0].setting("patroni_cluster_name"))
    for name in rogues:
        patronictl(cluster, f"reinit {scope} {name} --force --wait", timeout=180)
    wait_for(lambda: _whole(cluster), 180, 1.0, "every member streaming from the one leader again")
