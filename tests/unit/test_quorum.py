"""Quorum knowledge (src/gauntlet/nemesis/quorum.py): who is on a majority side given the dead and the grudge,
and an overlapping schedule answering it step by step."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gauntlet.nemesis import grudge
from gauntlet.nemesis.grudge import pair
from gauntlet.nemesis.quorum import Held, Schedule, components, majority_side

FIVE = ["n1", "n2", "n3", "n4", "n5"]
ALL_PAIRS = [pair(a, b) for a, b in itertools.combinations(FIVE, 2)]


def test_no_fault_everyone_is_on_the_majority_side():
    assert majority_side(FIVE, [], frozenset()) == dict.fromkeys(FIVE, True)


def test_split_majority_serves_minority_refuses():
    cut, _, _ = grudge.split(FIVE, minority=["n1", "n2"])
    assert majority_side(FIVE, [], cut) == {"n1": False, "n2": False, "n3": True, "n4": True, "n5": True}


def test_the_dead_count_towards_the_whole_not_towards_a_side():
    cut, _, _ = grudge.split(FIVE, minority=["n1", "n2"])
    # n3 dead: n4 n5 are 2 of 5, no majority anywhere
    assert majority_side(FIVE, ["n3"], cut) == dict.fromkeys(["n1", "n2", "n4", "n5"], False)
    # two of five dead, no partition: the three left are a majority
    assert majority_side(FIVE, ["n1", "n2"], frozenset()) == dict.fromkeys(["n3", "n4", "n5"], True)
    assert majority_side(FIVE, ["n1", "n2", "n3"], frozenset()) == dict.fromkeys(["n4", "n5"], False)
    with pytest.raises(ValueError, match="not members"):
        majority_side(FIVE, ["x"], frozenset())


def test_ring_and_bridge_stay_connected_through_neighbours():
    assert all(majority_side(FIVE, [], grudge.ring(FIVE)).values())
    cut, middle = grudge.bridge(FIVE)
    assert all(majority_side(FIVE, [], cut).values())
    # the bridge dies: two halves of 2 of 5, neither a majority
    assert majority_side(FIVE, [middle], cut) == dict.fromkeys(set(FIVE) - {middle}, False)


def test_three_nodes_one_isolated():
    assert majority_side(["a", "b", "c"], [], grudge.isolate_one(["a", "b", "c"], "a")) == {
        "a": False,
        "b": True,
        "c": True,
    }


@given(
    dead=st.lists(st.sampled_from(FIVE), unique=True, max_size=5),
    cut=st.sets(st.sampled_from(ALL_PAIRS)),
)
def test_majority_iff_component_holds_more_than_half_and_never_two_majorities(dead, cut):
    cut = frozenset(cut)
    side = majority_side(FIVE, dead, cut)
    live = [n for n in FIVE if n not in dead]
    assert sorted(side) == live
    parts = components(live, cut)
    assert sorted(n for p in parts for n in p) == live  # the components partition the live members
    for p in parts:
        for n in p:
            assert side[n] == (len(p) > len(FIVE) / 2)
        # a component is connected: its members are linked only through uncut pairs among themselves
        for other in parts:
            if other is not p:
                assert all(pair(a, b) in cut for a in p for b in other)
    majorities = [p for p in parts if side[next(iter(p))]]
    assert len(majorities) <= 1


def test_an_overlapping_schedule_answers_per_step():
    s = Schedule(FIVE)
    s.start("kill-2", Held("kill", dead=frozenset({"n1", "n2"})))
    assert s.now.available == ["n3", "n4", "n5"] and s.now.refusing == []
    cut, _, _ = grudge.split(FIVE, minority=["n3", "n2"])
    s.start("split", Held("partition_majority", grudge=cut))
    assert s.now.held == ("kill-2", "split")
    assert s.now.available == [] and s.now.refusing == ["n3", "n4", "n5"]  # n4 n5: 2 of 5
    s.stop("kill-2")
    assert s.now.available == ["n1", "n4", "n5"] and s.now.refusing == ["n2", "n3"]
    s.stop("split")
    assert s.now.available == FIVE
    assert [st.event for st in s.steps] == ["start kill-2", "start split", "stop kill-2", "stop split"]


def test_a_schedule_refuses_what_it_cannot_know():
    s = Schedule(FIVE)
    with pytest.raises(ValueError, match="not members"):
        s.start("k", Held("kill", dead=frozenset({"x"})))
    s.start("k", Held("kill", dead=frozenset({"n1"})))
    with pytest.raises(ValueError, match="already in force"):
        s.start("k", Held("kill"))
    with pytest.raises(ValueError, match="not in force"):
        s.stop("other")
