"""Cluster model from inventories: groups, rendered vars, connections, and clear errors on bad input."""

import textwrap

import pytest

from gauntlet.cluster import Cluster
from gauntlet.errors import GroupMissing, InventoryError


def write_inventory(tmp_path, hosts_yml, group_vars=None):
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(textwrap.dedent(hosts_yml))
    for name, text in (group_vars or {}).items():
        (inv / "group_vars" / f"{name}.yml").write_text(textwrap.dedent(text))
    return inv


HOSTS = """
all:
  children:
    etcd:
      hosts:
        etcd1: {ansible_connection: containers.podman.podman}
        etcd2: {ansible_connection: podman}
    postgres:
      hosts:
        pg1: {ansible_host: 192.0.2.10, ansible_user: admin, ansible_become: true}
"""


def test_groups_hosts_and_connections(tmp_path):
    c = Cluster.from_inventory(write_inventory(tmp_path, HOSTS))
    assert [h.name for h in c.group("etcd")] == ["etcd1", "etcd2"]
    assert c.groups() == {"etcd": ["etcd1", "etcd2"], "postgres": ["pg1"]}
    assert c["etcd1"].connection == "podman" and c["etcd2"].connection == "podman"
    assert c["pg1"].connection == "ssh"
    assert c["pg1"].address == "192.0.2.10"  # SSH hosts: ansible_host, never asked over the network
    assert c["etcd1"].services == ["etcd"] and c["pg1"].services == ["patroni", "pgbouncer"]


def test_group_vars_are_rendered_like_ansible_does(tmp_path):
    inv = write_inventory(
        tmp_path,
        HOSTS,
        {
            "all": """
            gauntlet_pki_dir: "{{ inventory_dir | dirname }}/pki"
            gauntlet_secrets_dir: "{{ inventory_dir | dirname }}/secrets"
            etcd_client_port: 2379
            secret: "{{ lookup('ansible.builtin.password', gauntlet_secrets_dir + '/s', length=16) }}"
            """,
            "etcd": "etcd_client_port: 12379\n",
        },
    )
    c = Cluster.from_inventory(inv)
    assert c.pki_dir == tmp_path / "pki"
    assert c.var("etcd_client_port", group="etcd") == 12379
    assert c["pg1"].var("etcd_client_port") == 2379
    # The generated secret is the same for every host and every reader, as for the roles.
    assert (
        c["etcd1"].var("secret") == c["pg1"].var("secret") == (tmp_path / "secrets" / "s").read_text().strip()
    )


def test_missing_group_is_a_skip_reason_not_a_crash(tmp_path):
    c = Cluster.from_inventory(write_inventory(tmp_path, HOSTS))
    with pytest.raises(GroupMissing, match="has no hosts in group 'redis'"):
        c.group("redis")
    assert not c.has_group("redis")


def test_missing_inventory_says_what_to_pass(tmp_path):
    with pytest.raises(InventoryError, match="does not exist: pass --inventory"):
        Cluster.from_inventory(tmp_path / "nope")


def test_empty_inventory_says_how_to_check_it(tmp_path):
    (tmp_path / "hosts.yml").write_text("all: {}\n")
    with pytest.raises(InventoryError, match="has no hosts"):
        Cluster.from_inventory(tmp_path / "hosts.yml")


def test_missing_pki_dir_names_the_variable(tmp_path):
    c = Cluster.from_inventory(write_inventory(tmp_path, HOSTS))
    with pytest.raises(InventoryError, match="gauntlet_pki_dir"):
        _ = c.ca_cert


def test_certificates_not_yet_issued_say_to_run_the_playbook(tmp_path):
    inv = write_inventory(tmp_path, HOSTS, {"all": 'gauntlet_pki_dir: "{{ inventory_dir | dirname }}/pki"\n'})
    c = Cluster.from_inventory(inv)
    with pytest.raises(InventoryError, match="run the playbook"):
        _ = c.ca_cert


def test_unsupported_connection_is_named(tmp_path):
    inv = write_inventory(tmp_path, "all:\n  hosts:\n    w1: {ansible_connection: winrm}\n")
    c = Cluster.from_inventory(inv)
    with pytest.raises(InventoryError, match="winrm"):
        _ = c["w1"].connection


def test_role_defaults_are_read_from_the_roles_below_the_inventory(tmp_path):
    """A variable the inventory does not set is the default of a role the host's groups run (rendered);
    the inventory's value wins; a host whose roles do not define it gets none."""
    inv = write_inventory(tmp_path, HOSTS, {"etcd": "etcd_peer_port: 12380\n"})
    c = Cluster.from_inventory(inv)
    assert c.setting("etcd_client_port", "etcd") == 2379  # roles/etcd/defaults/main.yml
    assert c.setting("etcd_peer_port", "etcd") == 12380  # the inventory's group_vars win
    assert c["pg1"].setting("patroni_postgresql_data_dir") == "/var/lib/postgresql/15/main"  # rendered
    assert c["pg1"].var("etcd_client_port") is None  # pg1 runs no etcd role: no etcd default
    with pytest.raises(InventoryError, match="nor by the roles it runs"):
        c["etcd1"].setting("patroni_ttl")


def test_services_are_the_units_the_roles_declare(tmp_path):
    """<role>_units of the roles a host runs, with the playbooks' role parameters (redis_mode: cluster)."""
    hosts = HOSTS + "    redis_cluster:\n      hosts:\n        rc1: {ansible_connection: podman}\n"
    c = Cluster.from_inventory(write_inventory(tmp_path, hosts))
    assert c["rc1"].services == ["redis-server@6379", "redis-server@6380"]


class _RecordingBackend:
    """Stands in for a testinfra host: records the command string Host.run builds."""

    def __init__(self):
        self.commands = []

    def run(self, cmd):
        self.commands.append(cmd)
        return type("R", (), {"rc": 0, "stdout": "", "stderr": ""})()


def test_host_run_has_a_default_timeout_and_keeps_a_callers_own(tmp_path):
    from gauntlet import cluster as cluster_mod

    host = Cluster.from_inventory(write_inventory(tmp_path, HOSTS))["etcd1"]
    backend = _RecordingBackend()
    host.__dict__["testinfra"] = backend  # the cached_property's slot: no container is reached
    default = int(cluster_mod.DEFAULT_COMMAND_TIMEOUT)
    assert (
        host.run("systemctl is-active etcd").command == f"timeout {default} sh -c 'systemctl is-active etcd'"
    )
    assert host.run(["echo", "a b"], timeout=7).command == "timeout 7 sh -c 'echo '\"'\"'a b'\"'\"''"
    assert host.run("sleep 1000", timeout=0).command == "sleep 1000"  # 0: explicitly no limit
    assert backend.commands[0].startswith(f"timeout {default} ")
