"""The gauntlet.cluster.redis_cluster_layout filter and the CLUSTER NODES parser of the Redis client."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gauntlet.clients.redis import SLOTS, key_slot, parse_cluster_nodes, slot_owners

_spec = importlib.util.spec_from_file_location(
    "gauntlet_redis_cluster_filter",
    Path(__file__).resolve().parents[2] / "plugins" / "filter" / "redis_cluster.py",
)
layout_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layout_module)
layout = layout_module.redis_cluster_layout


def _hosts(n: int) -> tuple[list[str], list[str]]:
    return [f"h{i}" for i in range(n)], [f"10.0.0.{i + 1}" for i in range(n)]


def test_three_hosts_two_ports_one_replica() -> None:
    hosts, addrs = _hosts(3)
    plan = layout(hosts, addrs, [6379, 6380], 1)
    assert [m["endpoint"] for m in plan["masters"]] == ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"]
    pairs = [(r["node"]["endpoint"], r["master"]["endpoint"]) for r in plan["replicas"]]
    assert pairs == [
        ("10.0.0.1:6380", "10.0.0.2:6379"),
        ("10.0.0.2:6380", "10.0.0.3:6379"),
        ("10.0.0.3:6380", "10.0.0.1:6379"),
    ]
    assert plan["same_host_pairs"] == 0


@given(n_hosts=st.integers(2, 6), n_ports=st.integers(1, 4), replicas=st.integers(0, 3))
def test_every_master_gets_its_replicas_on_other_hosts(n_hosts: int, n_ports: int, replicas: int) -> None:
    hosts, addrs = _hosts(n_hosts)
    total = n_hosts * n_ports
    if total % (replicas + 1):
        with pytest.raises(ValueError, match="redis_cluster_replicas"):
            layout(hosts, addrs, list(range(7000, 7000 + n_ports)), replicas)
        return
    plan = layout(hosts, addrs, list(range(7000, 7000 + n_ports)), replicas)
    assert len(plan["masters"]) == total // (replicas + 1)
    per_master = Counter(r["master"]["endpoint"] for r in plan["replicas"])
    assert all(per_master[m["endpoint"]] == replicas for m in plan["masters"])
    used = [m["endpoint"] for m in plan["masters"]] + [r["node"]["endpoint"] for r in plan["replicas"]]
    assert sorted(used) == sorted(i["endpoint"] for i in plan["instances"])
    same = [r for r in plan["replicas"] if r["node"]["host"] == r["master"]["host"]]
    assert len(same) == plan["same_host_pairs"]
    # With fewer replicas per master than hosts, no replica ever shares its master's host.
    if replicas < n_hosts:
        assert not same


NODES = """\
07c3 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460
67ed 10.0.0.2:6379@16379 master - 0 1426238316232 2 connected 5461-10922 [10923->-abc]
292f 10.0.0.3:6379@16379 master,fail - 1426238316232 1426238316232 3 disconnected 10923-16383
e7d1 10.0.0.1:6380@16380 slave 67ed 0 1426238317239 2 connected
"""


def test_parse_cluster_nodes() -> None:
    nodes = parse_cluster_nodes(NODES)
    assert [n.endpoint for n in nodes] == ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", "10.0.0.1:6380"]
    assert nodes[0].is_master and nodes[0].slots == ((0, 5460),) and nodes[0].slot_count() == 5461
    assert nodes[1].slots == ((5461, 10922),)  # the migration marker is not a slot range
    assert nodes[2].failed and nodes[2].link == "disconnected"
    assert nodes[3].master_id == "67ed" and not nodes[3].is_master
    owners = slot_owners(nodes)
    assert len(owners) == 10923 < SLOTS  # the failed master's slots are uncovered


def test_key_slot_hash_tags() -> None:
    assert key_slot("foo") == 12182  # CLUSTER KEYSLOT foo
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers") == key_slot("user1000")
