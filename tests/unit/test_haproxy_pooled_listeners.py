"""The haproxy role's pooled ports (haproxy_pooled_listeners): off by default, leaving 5000/5001 as they were;
on, 5002 goes to the leader's PgBouncer and 5003 to the replicas', chosen by the same Patroni health checks.

The real role's preflight and roles/haproxy/templates/haproxy.cfg.j2 rendered by ansible-playbook for fake
hosts (test_haproxy_stats_tls.render).
"""

from __future__ import annotations

from pathlib import Path

from role_support import needs_ansible_playbook
from test_haproxy_stats_tls import render, section

pytestmark = needs_ansible_playbook

# The two fake members of test_haproxy_stats_tls.render.
MEMBERS = {"pg1": "127.0.0.1", "pg2": "127.0.0.2"}


def servers(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("server ")]


def checked_servers(port: int) -> list[str]:
    return [f"server {name} {address}:{port} check verifyhost {name}" for name, address in MEMBERS.items()]


def test_pooled_ports_are_off_by_default_and_the_direct_ones_unchanged(tmp_path: Path) -> None:
    r = render(tmp_path, {"lb1": {}})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    config = (tmp_path / "rendered" / "lb1").read_text()
    assert "pooled" not in config
    primary, replicas = section(config, "listen primary"), section(config, "listen replicas")
    assert primary[0] == "bind *:5000" and "http-check send meth GET uri /primary" in primary
    assert replicas[0] == "bind *:5001" and "http-check send meth GET uri /replica" in replicas
    assert servers(primary) == servers(replicas) == checked_servers(5432)


def test_pooled_ports_route_to_pgbouncer_with_the_same_health_checks(tmp_path: Path) -> None:
    """With haproxy_pooled_listeners: 5002 is checked by /primary and 5003 by /replica (round robin), exactly
    as 5000/5001, on the same REST port over verified TLS; their servers are the members at PgBouncer's
    port. 5000/5001 still go to PostgreSQL itself."""
    r = render(tmp_path, {"lb1": {"haproxy_pooled_listeners": True}})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    config = (tmp_path / "rendered" / "lb1").read_text()
    pooled_primary, pooled_replicas = (
        section(config, "listen pooled_primary"),
        section(config, "listen pooled_replicas"),
    )
    primary, replicas = section(config, "listen primary"), section(config, "listen replicas")
    assert pooled_primary[0] == "bind *:5002"
    assert pooled_replicas[0] == "bind *:5003"
    assert pooled_primary[1:] == [
        line for line in primary[1:] if not line.startswith("server ")
    ] + checked_servers(6432)
    assert pooled_replicas[1:] == [
        line for line in replicas[1:] if not line.startswith("server ")
    ] + checked_servers(6432)
    assert "balance roundrobin" in pooled_replicas and "balance roundrobin" not in pooled_primary
    assert servers(primary) == servers(replicas) == checked_servers(5432)


def test_a_pooled_port_on_a_direct_one_stops_the_role(tmp_path: Path) -> None:
    r = render(tmp_path, {"lb1": {"haproxy_pooled_listeners": True, "haproxy_pooled_primary_port": 5000}})
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "haproxy: two listeners on one port (5000, 5001, 7000, 5000, 5003" in out, out[-1500:]
    assert "give each its own port" in out
