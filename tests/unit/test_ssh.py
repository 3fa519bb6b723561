"""SSH hosts reach a staging machine with the inventory's own SSH settings (no host needed)."""

import configparser
import os
import textwrap
from pathlib import Path

import paramiko
import pytest

from gauntlet.cluster import Cluster
from gauntlet.ssh import InventorySSHBackend, SSHSettings, _AcceptNew, ssh_options, ssh_settings

ROOT = Path(__file__).resolve().parents[2]


def test_ansible_cfg_does_not_turn_host_key_checking_off():
    """ansible.cfg's host_key_checking = False made Ansible pass -o StrictHostKeyChecking=no BEFORE the
    inventory's arguments, and OpenSSH keeps the first value: the inventory's accept-new/yes was ignored."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    for section in ("defaults", "ssh_connection"):
        value = cfg.get(section, "host_key_checking", fallback="true").strip().lower()
        assert value in {"true", "yes", "1", "on"}, f"ansible.cfg [{section}] host_key_checking = {value}"


def settings(**variables):
    return ssh_settings("pg1", lambda name, default=None: variables.get(name, default))


def test_ssh_options_first_value_wins_and_other_arguments_are_ignored():
    opts = ssh_options(
        "-C -o StrictHostKeyChecking=accept-new -oUserKnownHostsFile='/tmp/k h' -o 'ConnectTimeout 5' "
        "-i key -o StrictHostKeyChecking=no"
    )
    assert opts == {
        "stricthostkeychecking": "accept-new",
        "userknownhostsfile": "'/tmp/k h'".strip("'"),
        "connecttimeout": "5",
    }


def test_defaults_keep_the_previous_behaviour():
    s = settings()
    assert (s.host, s.port, s.user, s.key_file) == ("pg1", 22, None, None)
    assert s.host_key_policy == "warn"
    assert s.known_hosts == [os.path.expanduser("~/.ssh/known_hosts")]
    assert s.proxy_command is None and s.connect_timeout == 10


def test_ansible_variables_and_common_args_are_read():
    s = settings(
        ansible_host="192.0.2.21",
        ansible_port=2222,
        ansible_user="admin",
        ansible_ssh_private_key_file="~/.ssh/staging",
        ansible_ssh_common_args="-o UserKnownHostsFile=/proof/known_hosts -o StrictHostKeyChecking=accept-new",
        ansible_ssh_extra_args="-o ConnectTimeout=4",
    )
    assert (s.host, s.port, s.user) == ("192.0.2.21", 2222, "admin")
    assert s.key_file == os.path.expanduser("~/.ssh/staging")  # paramiko does not expand ~ itself
    assert s.known_hosts == ["/proof/known_hosts"]
    assert s.host_key_policy == "accept-new"
    assert s.connect_timeout == 4


@pytest.mark.parametrize(
    ("variables", "policy"),
    [
        ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}, "off"),
        ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=yes"}, "strict"),
        ({"ansible_host_key_checking": False}, "off"),
        ({"ansible_ssh_host_key_checking": "true"}, "warn"),
        # The -o option is more specific than the variable, as for ssh itself.
        (
            {"ansible_host_key_checking": False, "ansible_ssh_extra_args": "-o StrictHostKeyChecking=yes"},
            "strict",
        ),
    ],
)
def test_host_key_policy(variables, policy):
    assert settings(**variables).host_key_policy == policy


def test_proxy_jump_becomes_a_proxy_command_with_the_same_host_key_options():
    s = settings(
        ansible_host="10.0.0.5",
        ansible_ssh_common_args="-o ProxyJump=bastion.example -o UserKnownHostsFile=/k",
    )
    assert s.proxy_command == "ssh -o userknownhostsfile=/k -W 10.0.0.5:22 bastion.example"
    s = settings(
        ansible_host="h", ansible_port=2200, ansible_ssh_common_args="-o 'ProxyCommand=nc -x p %h %p'"
    )
    assert s.proxy_command == "nc -x p h 2200"


def test_accept_new_trusts_an_unknown_key_for_the_connection_without_writing_known_hosts(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    client = paramiko.SSHClient()
    client.get_host_keys().load(str(kh))
    key = paramiko.ECDSAKey.generate()
    _AcceptNew().missing_host_key(client, "192.0.2.11", key)
    assert client.get_host_keys().lookup("192.0.2.11")[key.get_name()] == key
    assert kh.read_text() == ""
    backend = InventorySSHBackend(SSHSettings(host="192.0.2.11", port=2222, user="admin"))
    assert (backend.host.name, backend.host.port, backend.host.user) == ("192.0.2.11", "2222", "admin")


def test_cluster_ssh_hosts_use_the_inventory_settings(tmp_path):
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yml").write_text(
        textwrap.dedent(
            """
            all:
              vars:
                ansible_user: admin
                ansible_become: true
                ansible_ssh_private_key_file: "{{ inventory_dir }}/id"
                ansible_ssh_common_args: -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/k
              children:
                etcd:
                  hosts:
                    etcd1: {ansible_host: 192.0.2.11}
            """
        )
    )
    host = Cluster.from_inventory(inv)["etcd1"]
    s = host.ssh_settings
    assert (s.host, s.user, s.key_file, s.host_key_policy) == (
        "192.0.2.11",
        "admin",
        f"{inv}/id",
        "accept-new",
    )
    backend = host.testinfra.backend  # made without connecting (the connection opens on the first command)
    assert isinstance(backend, InventorySSHBackend) and backend.sudo is True
