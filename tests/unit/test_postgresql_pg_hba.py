"""Who the postgresql role's pg_hba.conf lets in (standalone: the cache's database, Citus nodes): by default
the hosts of the play, loopback and the controller, never 0.0.0.0/0; an entry that is not a CIDR stops the role.

The role's network checks and roles/postgresql/templates/pg_hba.conf.j2 rendered by ansible-playbook on the
controller itself for three Citus nodes and a cache host whose facts are given, not gathered.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from role_support import ansible_playbook, needs_ansible_playbook, role_tasks_play

pytestmark = needs_ansible_playbook

NODES = {"coord1": "10.0.1.1", "worker1": "10.0.1.2", "worker2": "10.0.1.3"}
CONTROLLER = "192.0.2.98"


def run(tmp_path: Path, template: bool, **node_vars: object) -> subprocess.CompletedProcess[str]:
    """The role's network checks on the Citus nodes (with ``template``: pg_hba.conf rendered too)."""
    node = lambda a: {"fake_facts": {"default_ipv4": {"address": a}}, **node_vars}  # noqa: E731
    data = {
        "all": {
            "vars": {"ansible_connection": "local", "postgresql_controller_address": CONTROLLER},
            "children": {
                "citus_coordinator": {"hosts": {"coord1": node(NODES["coord1"])}},
                "citus_worker": {"hosts": {h: node(NODES[h]) for h in ("worker1", "worker2")}},
                "redis": {"hosts": {"cache1": {"fake_facts": {"default_ipv4": {"address": "10.0.1.9"}}}}},
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(data))
    play = role_tasks_play(
        tmp_path,
        "gauntlet.cluster.postgresql",
        "networks",
        "citus_coordinator:citus_worker",
        "pg_hba.conf.j2" if template else "",
    )
    variables = {"gauntlet_pki_dir": str(tmp_path / "pki"), "gauntlet_secrets_dir": str(tmp_path / "secrets")}
    return ansible_playbook(play, str(tmp_path / "hosts.yml"), variables, check=not template)


def test_default_lets_in_the_play_loopback_and_the_controller_only(tmp_path: Path) -> None:
    r = run(tmp_path, template=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    expected = [f"{a}/32" for a in NODES.values()] + ["127.0.0.1/32", "::1/128", f"{CONTROLLER}/32"]
    for host in NODES:
        lines = [line.split() for line in (tmp_path / "rendered" / host).read_text().splitlines()]
        hostssl = [fields[3] for fields in lines if fields and fields[0] == "hostssl"]
        assert hostssl == expected, host
        rejects = [" ".join(f) for f in lines if f and f[0] == "hostnossl"]
        assert rejects == ["hostnossl all all 0.0.0.0/0 reject", "hostnossl all all ::/0 reject"], rejects


def test_a_bad_cidr_stops_the_role_naming_it(tmp_path: Path) -> None:
    r = run(tmp_path, template=False, postgresql_allowed_networks_extra=["10.0.0.0/8", "samenet"])
    out = " ".join((r.stdout + r.stderr).split()).replace("''", "'")
    assert r.returncode != 0
    assert "has entries that are not address/prefix networks: ['samenet']" in out, out[-1500:]
