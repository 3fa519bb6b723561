"""Defects that open the Patroni topology's doors wider than the roles do: a member's pg_hba letting in any
address, HAProxy's statistics page in plain HTTP. Each plant waits until the door is open, each undo until it
is closed again, seen from the outside (a host's own startup to PostgreSQL, a plain-HTTP request)."""

from __future__ import annotations

import http.client
import shlex

from gauntlet.bench import wait_for
from gauntlet.clients.postgres.hba_probe import startup_answer
from gauntlet.cluster import Cluster, Host
from gauntlet.nemesis.plants.files import restore, save_and_edit
from gauntlet.nemesis.plants.patroni import (
    HAPROXY_CONFIG,
    HAPROXY_GROUP,
    prepend_pg_hba_line,
    restore_first_pg_hba,
)

#: Hosts of the topology that have no reason to reach PostgreSQL (the cache's, in the default topology).
OUTSIDE_GROUP = "redis"


# -- a member's pg_hba open to every address --------------------------------------------------------------
def _outside_let_in(cluster: Cluster, member: Host) -> bool:
    probe = cluster.group(OUTSIDE_GROUP)[0]
    answer = startup_answer(
        probe,
        member.address,
        int(member.setting("patroni_postgresql_port")),
        str(member.setting("patroni_app_user")),
        str(member.setting("patroni_app_database")),
    )
    return answer.startswith("AUTH")


def pg_hba_open_to_all(cluster: Cluster) -> None:
    """The first member's pg_hba.conf gets ``hostssl all all 0.0.0.0/0`` above the roles' lines: any
    address may try a password over TLS."""
    prepend_pg_hba_line(
        cluster,
        "hostssl all all 0.0.0.0/0 scram-sha-256",
        lambda h: _outside_let_in(cluster, h),
        "letting in a host outside the cluster",
    )


def close_pg_hba(cluster: Cluster) -> None:
    """pg_hba.conf as Patroni wrote it; wait until the host outside the cluster is refused again."""
    restore_first_pg_hba(
        cluster, lambda h: not _outside_let_in(cluster, h), "refusing the outside host again"
    )


# -- HAProxy's statistics page in plain HTTP --------------------------------------------------------------
def _plain_http_answered(lb: Host) -> bool:
    conn = http.client.HTTPConnection(lb.address, int(lb.setting("haproxy_stats_port")), timeout=3)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (http.client.HTTPException, OSError):
        return False
    finally:
        conn.close()


def stats_plain_http(cluster: Cluster) -> None:
    """The statistics listener's bind loses ``ssl crt ...``: the page, and its password, in plain HTTP;
    HAProxy reloaded."""
    for lb in cluster.group(HAPROXY_GROUP):
        cfg = shlex.quote(HAPROXY_CONFIG)
        save_and_edit(lb, HAPROXY_CONFIG, f"sed -i -E 's/^( *bind [^ ]+) ssl crt .*/\\1/' {cfg}")
        lb.run(f"haproxy -c -q -f {cfg} && systemctl reload haproxy", check=True)
    for lb in cluster.group(HAPROXY_GROUP):
        wait_for(
            lambda lb=lb: _plain_http_answered(lb), 30, 0.5, f"{lb.name}'s statistics page in plain HTTP"
        )


def stats_tls_again(cluster: Cluster) -> None:
    """HAProxy's own configuration back; wait until plain HTTP to the statistics page gets no answer."""
    for lb in cluster.group(HAPROXY_GROUP):
        if restore(lb, HAPROXY_CONFIG):
            lb.run("systemctl reload haproxy", check=True)
    for lb in cluster.group(HAPROXY_GROUP):
        wait_for(
            lambda lb=lb: not _plain_http_answered(lb), 30, 0.5, f"{lb.name}'s statistics page on TLS again"
        )
