"""The network filters (plugins/filter/networks.py) the roles build pg_hba from: what is a CIDR, one-host
networks, coverage, addresses from inventory or facts, and the controller's own source address."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "gauntlet_networks_filter", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "networks.py"
)
assert _spec is not None and _spec.loader is not None
networks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(networks)


def test_only_address_slash_prefix_is_a_network() -> None:
    entries = [
        "10.0.0.0/24",
        "10.0.0.5/24",
        "fd00::/64",
        "10.0.0.5",
        "10.0.0.0/33",
        "db.example.com",
        "all",
        "",
    ]
    assert networks.invalid_networks(entries) == ["10.0.0.5", "10.0.0.0/33", "db.example.com", "all", ""]


def test_host_networks_are_one_host_each_in_order_once() -> None:
    assert networks.host_networks(["10.0.0.2", "", None, "fd00::1", "10.0.0.1", "10.0.0.2"]) == [
        "10.0.0.2/32",
        "fd00::1/128",
        "10.0.0.1/32",
    ]
    with pytest.raises(ValueError, match="'pg1' is not an IP address"):
        networks.host_networks(["pg1"])


def test_uncovered_addresses_are_outside_every_network() -> None:
    nets = ["10.0.0.0/30", "fd00::/64", "not-a-network"]
    assert networks.uncovered_addresses(["10.0.0.3", "10.0.0.4", "fd00::9", "fd01::1", "x"], nets) == [
        "10.0.0.4",
        "fd01::1",
        "x",
    ]


def test_host_addresses_prefer_the_inventory_then_the_facts() -> None:
    hostvars = {
        "pg1": {"patroni_address": "10.9.0.1", "ansible_facts": {"default_ipv4": {"address": "10.0.0.1"}}},
        "pg2": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.2"}}},
        "lb1": {"ansible_facts": {}},
    }
    assert networks.host_addresses(["pg1", "pg2", "lb1"], hostvars, "patroni_address") == {
        "pg1": "10.9.0.1",
        "pg2": "10.0.0.2",
        "lb1": "",
    }
    assert networks.host_addresses(["pg1"], hostvars) == {"pg1": "10.0.0.1"}


def test_the_controller_source_address_is_its_route_to_the_first_ip() -> None:
    """Names (a container's) are passed over; loopback is answered from loopback; no IP at all: empty."""
    assert networks.controller_source_address(["pgha1", "127.0.0.1"]) == "127.0.0.1"
    assert networks.controller_source_address(["127.0.0.1", "::1"]) == "127.0.0.1"  # the first IP only
    assert networks.controller_source_address(["pgha1", ""]) == ""
