"""Partition shapes (src/gauntlet/nemesis/grudge.py) on 3 and 5 nodes, and the grudge as the nemesis applies it:
each host drops exactly the peers it must not reach, both ways, undone on exit, recorded in the history, and
no rule ever names the controller's address."""

from __future__ import annotations

import re

import pytest
from test_catalogue import FakeCluster, FakeHost

from gauntlet.errors import FaultError
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, grudge
from gauntlet.nemesis.grudge import pair

FIVE = ["n1", "n2", "n3", "n4", "n5"]
THREE = ["n1", "n2", "n3"]
# Where the controller talks to the hosts from (the podman bridge's gateway, or the SSH client's address).
CONTROLLER = "10.0.0.254"


def reach(nodes: list[str], cut: grudge.Grudge) -> dict[str, set[str]]:
    return grudge.reaches(nodes, cut)


# -- the shapes, pure ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nodes", [THREE, FIVE])
def test_isolate_one_cuts_the_node_from_everyone_and_nothing_else(nodes):
    cut = grudge.isolate_one(nodes, "n2")
    r = reach(nodes, cut)
    assert r["n2"] == set()
    for n in nodes:
        if n != "n2":
            assert r[n] == set(nodes) - {n, "n2"}


@pytest.mark.parametrize(("nodes", "sizes"), [(THREE, (2, 1)), (FIVE, (3, 2)), (FIVE[:4], (3, 1))])
def test_split_leaves_one_strict_majority_cut_from_the_minority(nodes, sizes):
    for seed in range(20):
        cut, big, small = grudge.split(nodes, seed=seed)
        assert (len(big), len(small)) == sizes
        assert sorted(big + small) == sorted(nodes)
        r = reach(nodes, cut)
        for n in big:
            assert r[n] == set(big) - {n}
        for n in small:
            assert r[n] == set(small) - {n}


def test_split_is_the_same_for_one_seed_and_varies_over_seeds():
    assert grudge.split(FIVE, seed=42) == grudge.split(FIVE, seed=42)
    assert len({tuple(grudge.split(FIVE, seed=s)[2]) for s in range(30)}) > 1


def test_split_with_named_sides_and_bad_sides_refused():
    cut, big, small = grudge.split(FIVE, minority=["n4", "n1"])
    assert big == ["n2", "n3", "n5"] and small == ["n1", "n4"]
    assert cut == grudge.complete([big, small])
    with pytest.raises(ValueError, match="holds 1 to 2 of them, not 3"):
        grudge.split(FIVE, minority=["n1", "n2", "n3"])
    with pytest.raises(ValueError, match="not among"):
        grudge.split(FIVE, minority=["n9"])
    with pytest.raises(ValueError, match="at least 3"):
        grudge.split(["n1", "n2"])


def test_ring_on_5_every_node_reaches_exactly_its_two_neighbours():
    order = ["n3", "n1", "n5", "n2", "n4"]
    r = reach(order, grudge.ring(order))
    for i, n in enumerate(order):
        assert r[n] == {order[i - 1], order[(i + 1) % 5]}, n
    assert len(grudge.ring(order)) == 5  # 10 pairs, 5 of them neighbours


def test_ring_on_3_is_refused_it_would_cut_nothing():
    with pytest.raises(ValueError, match="ring of 3 nodes cuts nothing"):
        grudge.ring(THREE)


@pytest.mark.parametrize("nodes", [THREE, FIVE])
def test_bridge_reaches_all_and_the_halves_do_not_reach_each_other(nodes):
    cut, middle = grudge.bridge(nodes)
    assert middle == nodes[len(nodes) // 2]
    r = reach(nodes, cut)
    assert r[middle] == set(nodes) - {middle}
    left, right = nodes[: len(nodes) // 2], nodes[len(nodes) // 2 + 1 :]
    assert len(left) == len(right) == len(nodes) // 2
    for a in left:
        assert r[a] == (set(left) - {a}) | {middle}
    for b in right:
        assert r[b] == (set(right) - {b}) | {middle}


def test_bridge_via_a_named_node():
    cut, middle = grudge.bridge(FIVE, via="n1")
    assert middle == "n1"
    r = reach(FIVE, cut)
    assert r["n1"] == {"n2", "n3", "n4", "n5"}
    assert r["n2"] == {"n1", "n3"} and r["n4"] == {"n1", "n5"}


def test_grudges_are_symmetric_pairs_and_names_are_checked():
    assert pair("b", "a") == ("a", "b")
    with pytest.raises(ValueError):
        pair("a", "a")
    with pytest.raises(ValueError, match="named twice"):
        grudge.ring(["n1", "n2", "n1", "n3"])
    assert grudge.drops(THREE, frozenset({pair("n1", "n3")})) == {"n1": ["n3"], "n2": [], "n3": ["n1"]}


# -- the grudge on hosts ---------------------------------------------------------------------------------------
def five() -> tuple[Nemesis, FakeCluster, History]:
    cluster = FakeCluster(5)
    history = History()
    return Nemesis(cluster, history), cluster, history  # type: ignore[arg-type]


ADDRESS = re.compile(r"\b\d+\.\d+\.\d+\.\d+\b")


def _rule_addresses(commands: list[str]) -> set[str]:
    return {a for c in commands for a in ADDRESS.findall(c)}


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: n.partition_majority(seed=3),
        lambda n: n.partition_ring(),
        lambda n: n.partition_bridge(),
        lambda n: n.isolate("n1"),
        lambda n: n.partition(["n1", "n2"], ["n4"]),
        lambda n: n.loss("n1", 20),
        lambda n: n.bandwidth("n1", 256),
    ],
    ids=["majority", "ring", "bridge", "isolate", "partition", "loss", "bandwidth"],
)
def test_rules_name_cluster_peers_only_never_the_controller(shape):
    n, cluster, _ = five()
    with shape(n):
        pass
    named = _rule_addresses([c for h in cluster.hosts.values() for c in h.commands])
    assert named and named <= {h.address for h in cluster.hosts.values()}
    assert CONTROLLER not in named


def test_partition_grudge_drops_each_hosts_peers_both_ways_undoes_and_records():
    n, cluster, history = five()
    cut = grudge.ring(FIVE)
    with n.partition_grudge(cut, "partition_ring"):
        started = {name: list(h.commands) for name, h in cluster.hosts.items()}
    for name, h in cluster.hosts.items():
        peers = {cluster[p].address for p in grudge.drops(FIVE, cut)[name]}
        starts = [c for c in started[name] if "-A GAUNTLET" in c]
        assert len(starts) == 1
        for addr in peers:
            assert f"-A GAUNTLET -s {addr} " in starts[0] and f"-A GAUNTLET -d {addr} " in starts[0]
        assert len(re.findall(r"-A GAUNTLET", starts[0])) == 2 * len(peers)
        undone = h.commands[len(started[name]) :]
        assert len(undone) == 1 and "gauntlet-heal-partition_ring-" in undone[0]
    faults = history.faults()
    assert [o.f for o in faults] == ["partition_ring:start", "partition_ring:stop"]
    assert faults[0].value == {"grudge": [list(p) for p in sorted(cut)]}


def test_an_empty_grudge_and_the_controller_itself_are_refused():
    n, cluster, _ = five()
    with pytest.raises(FaultError, match="cuts nothing"):
        n.partition_grudge(frozenset())
    cluster.hosts["ctl"] = FakeHost("ctl", CONTROLLER, connection="local")
    with pytest.raises(FaultError, match="connection local: it is the controller"), n.isolate("n1"):
        pass
    assert not any(h.commands for h in cluster.hosts.values())
