"""Who the patroni role's pg_hba lets in: by default the cluster's own hosts and the controller, never
0.0.0.0/0, and bad network input stops the role with one line naming the fix.

The real role variables and template (roles/patroni/templates/config.yml.j2) rendered by ansible-playbook on
the controller itself, for an inventory of three members, a load balancer and a cache host whose facts
(default IPv4 addresses) are given, not gathered.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from role_support import ansible_playbook, needs_ansible_playbook, role_tasks_play

pytestmark = needs_ansible_playbook

MEMBERS = {"pg1": "10.0.0.11", "pg2": "10.0.0.12", "pg3": "10.0.0.13"}
BALANCER = {"lb1": "10.0.0.21"}
CACHE = {"cache1": "10.0.0.31"}  # in the inventory, but not a PostgreSQL client
CONTROLLER = "192.0.2.99"


def facts(address: str) -> dict[str, Any]:
    return {"fake_facts": {"default_ipv4": {"address": address}}}


def inventory(tmp_path: Path, balancer_facts: bool = True, **per_member: dict[str, Any]) -> Path:
    """The inventory file: groups postgres, haproxy and redis on local connections. Every member's
    controller address is set to CONTROLLER; ``per_member`` adds variables to one member each (by name), and
    a variable given as None there is left unset."""

    def member(name: str, address: str) -> dict[str, Any]:
        merged = {**facts(address), "patroni_controller_address": CONTROLLER, **per_member.get(name, {})}
        return {k: v for k, v in merged.items() if v is not None}

    hosts = {
        "postgres": {h: member(h, a) for h, a in MEMBERS.items()},
        "haproxy": {h: facts(a) if balancer_facts else {} for h, a in BALANCER.items()},
        "redis": {h: facts(a) for h, a in CACHE.items()},
    }
    data = {
        "all": {
            "vars": {"ansible_connection": "local"},
            "children": {group: {"hosts": members} for group, members in hosts.items()},
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_networks(
    tmp_path: Path, inv: Path, template: bool = False, **extra: object
) -> subprocess.CompletedProcess[str]:
    """The role's network checks on the members (and, with ``template``, its configuration rendered)."""
    play = role_tasks_play(
        tmp_path, "gauntlet.cluster.patroni", "networks", "postgres", "config.yml.j2" if template else ""
    )
    variables = {
        "gauntlet_pki_dir": str(tmp_path / "pki"),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        **extra,
    }
    return ansible_playbook(play, str(inv), variables, check=not template)


LOOPBACK = ["127.0.0.1/32", "::1/128"]


def hostssl_networks(tmp_path: Path, host: str) -> list[str]:
    """The address column of the hostssl lines of ``host``'s rendered pg_hba, in order, once each."""
    config = yaml.safe_load((tmp_path / "rendered" / host).read_text())
    lines = [line.split() for line in config["postgresql"]["pg_hba"]]
    return list(dict.fromkeys(fields[3] for fields in lines if fields[0] == "hostssl"))


def test_default_lets_in_the_cluster_and_the_controller_only(tmp_path: Path) -> None:
    """Every member's pg_hba allows exactly the members, the load balancer and the controller (one /32 each),
    for clients and replication; the cache host and 0.0.0.0/0 are not in it; plain TCP is still rejected.
    On pg1 the controller's address is not set: it is the source address the controller's routing picks
    towards pg1's ansible_host (127.0.0.1 here: loopback answers from 127.0.0.1); extra networks follow.
    Loopback always comes first: Patroni reads its own timeline over a replication connection to localhost
    (without it a demoted leader never rejoins: the CI failure of stop 22)."""
    inv = inventory(
        tmp_path,
        pg1={
            "ansible_host": "127.0.0.1",
            "patroni_controller_address": None,
            "patroni_allowed_networks_extra": ["172.16.0.0/12"],
        },
    )
    r = run_networks(tmp_path, inv, template=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    cluster = [f"{a}/32" for a in [*MEMBERS.values(), *BALANCER.values()]]
    assert hostssl_networks(tmp_path, "pg1") == [*LOOPBACK, *cluster, "172.16.0.0/12"]
    for host in MEMBERS:
        expected = (
            [*LOOPBACK, *cluster, f"{CONTROLLER}/32"] if host != "pg1" else hostssl_networks(tmp_path, "pg1")
        )
        assert hostssl_networks(tmp_path, host) == expected, host
        config = yaml.safe_load((tmp_path / "rendered" / host).read_text())
        hba = config["postgresql"]["pg_hba"]
        for net in expected:
            assert f"hostssl replication replicator {net} scram-sha-256" in hba
            assert f"hostssl all all {net} scram-sha-256" in hba
        assert not [line for line in hba if "0.0.0.0/0" in line and not line.startswith("hostnossl")], hba
        assert not [line for line in hba if "::/0" in line and not line.startswith("hostnossl")], hba
        assert not [line for line in hba if CACHE["cache1"] in line], hba
        assert hba[-2:] == ["hostnossl all all 0.0.0.0/0 reject", "hostnossl all all ::/0 reject"]


def test_bad_network_input_stops_the_role_naming_the_fix(tmp_path: Path) -> None:
    """pg1: entries that are not address/prefix networks, named with the form to use. pg2: a replacement
    list that leaves out members that connect, named (their connections would be refused)."""
    inv = inventory(
        tmp_path,
        pg1={"patroni_allowed_networks_extra": ["10.1.0.0/33", "db.example.com", "10.2.0.0/16"]},
        pg2={"patroni_allowed_networks": ["10.0.0.8/30", "10.0.0.21/32"]},  # .8-.11: of the members, pg1 only
    )
    r = run_networks(tmp_path, inv)
    out = " ".join((r.stdout + r.stderr).split()).replace("''", "'")  # YAML output doubles quotes
    assert r.returncode != 0
    pg1 = out[out.index("fatal: [pg1]") :][:700]
    assert "has entries that are not address/prefix networks: ['10.1.0.0/33', 'db.example.com']" in pg1, pg1
    assert "Write each one as a CIDR (10.0.0.5/32, 10.0.0.0/24, fd00::/64)" in pg1
    pg2 = out[out.index("fatal: [pg2]") :][:700]
    assert (
        "leaves out 10.0.0.12, 10.0.0.13 (of pg2, pg3, members of the play or of patroni_client_groups)"
        in pg2
    )
    assert "fatal: [pg3]" not in out


def test_a_client_host_without_facts_stops_the_role(tmp_path: Path) -> None:
    """The load balancer's facts were not gathered: its address is unknown, and the role says what to do
    instead of leaving HAProxy's clients refused."""
    r = run_networks(tmp_path, inventory(tmp_path, balancer_facts=False))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "patroni: no address for lb1" in out, out[-1500:]
    assert "gather their facts in an earlier play" in out
