"""The workload checkers (counter, set, unique ids, same data everywhere): each passes a good history and
fails every bad one it names; nothing executed is unknown. Histories are recorded with the real
:class:`~gauntlet.history.History` (invoke, then complete), as the clients record them."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gauntlet.checkers import counter, same_data, set_full, unique_ids
from gauntlet.history import History


def done(h: History, process: str, f: str, value=None, key="k", *, type="ok", result=None):
    """One operation invoked and completed at once (sequential)."""
    return h.complete(h.invoke(process, f, value, key), type, value=result)


# -- counter -------------------------------------------------------------------------------------------------


def test_counter_good_history_is_valid():
    h = History()
    done(h, "a", "increment", 1)
    done(h, "b", "increment", 2)
    done(h, "a", "read", result=3)
    done(h, "b", "increment", 5, type="info")  # may or may not have been applied
    done(h, "a", "read", result=3)
    done(h, "a", "read", result=8)
    v = counter(h)
    assert v.valid is True, v
    assert v.check == "counter"
    assert dict(v.figures) == {"reads": 3, "increments_acknowledged": 2, "increments_unknown": 1}


def test_counter_concurrent_increment_widens_the_bounds():
    h = History()
    inc = h.invoke("a", "increment", 4, "k")
    read = h.invoke("b", "read", None, "k")
    h.complete(read, "ok", value=4)  # the increment may have landed before the read
    h.complete(inc, "ok")
    read2 = h.invoke("b", "read", None, "k")
    h.complete(read2, "ok", value=4)
    assert counter(h).valid is True


def test_counter_read_above_the_upper_bound_is_invalid():
    h = History()
    done(h, "a", "increment", 1)
    done(h, "b", "increment", 2, type="fail")  # certainly not applied
    bad = done(h, "a", "read", result=3)
    v = counter(h)
    assert v.valid is False and not v
    assert v.evidence["read"]["index"] == bad.index
    assert (v.evidence["value"], v.evidence["lower"], v.evidence["upper"]) == (3, 1, 1)
    assert "above the upper" in v.explanation


def test_counter_read_below_the_lower_bound_is_invalid():
    h = History()
    done(h, "a", "increment", 1)
    done(h, "a", "increment", 1)
    done(h, "b", "read", result=1)
    v = counter(h, initial=0)
    assert v.valid is False
    assert (v.evidence["value"], v.evidence["lower"], v.evidence["upper"]) == (1, 2, 2)
    assert "below the lower" in v.explanation


def test_counter_decreasing_read_with_increments_only_is_invalid():
    h = History()
    inc = h.invoke("a", "increment", 5, "k")  # unknown outcome: 0 and 5 both lie within the bounds
    first = done(h, "b", "read", result=5)
    second = done(h, "c", "read", result=0)
    h.complete(inc, "info", error="timeout")
    v = counter(h)
    assert v.valid is False
    assert (v.evidence["earlier"]["index"], v.evidence["later"]["index"]) == (first.index, second.index)


def test_counter_decrease_is_fine_with_a_negative_delta():
    h = History()
    inc = h.invoke("a", "increment", 5, "k")
    dec = h.invoke("d", "increment", -5, "k")
    done(h, "b", "read", result=5)
    done(h, "c", "read", result=0)
    h.complete(inc, "info", error="timeout")
    h.complete(dec, "info", error="timeout")
    assert counter(h).valid is True


def test_counter_judges_each_key_and_composes():
    h = History()
    done(h, "a", "increment", 1, key="x")
    done(h, "a", "read", key="x", result=1)
    done(h, "a", "increment", 1, key="y")
    done(h, "a", "read", key="y", result=7)
    assert counter(h).valid is False
    assert counter(h, key="x").valid is True
    assert counter(h, key="y").valid is False
    assert counter(h).figures["reads"] == 2 and len(counter(h).parts) == 2


def test_counter_nothing_read_is_unknown():
    h = History()
    assert counter(h).valid is None
    done(h, "a", "increment", 1)
    done(h, "a", "read", type="fail")
    v = counter(h)
    assert v.valid is None and "nothing was read" in v.explanation


def test_counter_read_of_a_counter_never_written_is_initial():
    h = History()
    done(h, "a", "read", result=None)
    assert counter(h, initial=0).valid is True
    done(h, "a", "increment", 2)
    done(h, "a", "read", result="2")  # a store answering with a string
    assert counter(h).valid is True
    done(h, "a", "read", result="two")
    assert counter(h).valid is False


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 10), st.none()), max_size=40), st.integers(-100, 100))
def test_counter_sequential_history_with_a_correct_model_is_always_valid(steps, initial):
    h = History()
    model = initial
    for i, delta in enumerate(steps):
        process = f"p{i % 3}"
        if delta is None:
            done(h, process, "read", result=model)
        else:
            done(h, process, "increment", delta)
            model += delta
    done(h, "p0", "read", result=model)
    v = counter(h, initial=initial)
    assert v.valid is True, v


# -- set -----------------------------------------------------------------------------------------------------


def test_set_good_history_is_valid():
    h = History()
    done(h, "a", "add", "x")
    done(h, "b", "add", "y")
    done(h, "c", "add", "z", type="fail")
    done(h, "a", "read", result=["x", "y"])
    v = set_full(h)
    assert v.valid is True, v
    assert v.check == "set"
    assert v.figures["lost"] == 0 and v.figures["unexpected"] == 0


def test_set_lost_acknowledged_add_is_invalid():
    h = History()
    done(h, "a", "add", "x")
    done(h, "b", "add", "y")
    done(h, "a", "read", result=["x"])
    v = set_full(h)
    assert v.valid is False
    assert v.evidence["lost"] == ["y"] and v.evidence["lost_count"] == 1


def test_set_unexpected_element_is_invalid():
    h = History()
    done(h, "a", "add", "x")
    done(h, "a", "read", result=["x", "ghost"])
    v = set_full(h)
    assert v.valid is False
    assert v.evidence["unexpected"] == ["ghost"] and v.evidence["lost"] == []


def test_set_info_add_present_is_fine_and_counted_recovered():
    h = History()
    done(h, "a", "add", "x")
    done(h, "b", "add", "maybe", type="info")
    done(h, "a", "read", result=["x", "maybe"])
    v = set_full(h)
    assert v.valid is True
    assert v.figures["recovered"] == 1 and v.figures["adds_unknown"] == 1
    h2 = History()
    done(h2, "b", "add", "maybe", type="info")
    done(h2, "a", "read", result=[])  # absent is fine too
    assert set_full(h2).valid is True


def test_set_stale_earlier_read_is_reported_but_only_the_final_read_decides():
    h = History()
    done(h, "a", "add", "x")
    stale = done(h, "b", "read", result=[])  # a lagging follower
    done(h, "a", "read", result=["x"])
    v = set_full(h)
    assert v.valid is True
    assert v.figures["stale_reads"] == 1 and v.evidence["stale"] == [{"read": stale.index, "missing": ["x"]}]


def test_set_add_concurrent_with_the_final_read_may_be_missing():
    h = History()
    add = h.invoke("a", "add", "x", "k")
    read = h.invoke("b", "read", None, "k")
    h.complete(add, "ok")
    h.complete(read, "ok", value=[])
    assert set_full(h).valid is True


def test_set_without_final_read_is_unknown():
    h = History()
    assert set_full(h).valid is None
    done(h, "a", "add", "x")
    done(h, "a", "read", type="info")
    assert set_full(h).valid is None


# -- unique ids ----------------------------------------------------------------------------------------------


def test_unique_ids_distinct_ids_are_valid():
    h = History()
    done(h, "a", "next-id", key="seq", result=1)
    done(h, "b", "next-id", key="seq", result=2)
    done(h, "a", "next-id", key="seq", type="info")
    done(h, "a", "next-id", key="other", result=1)  # another sequence may hand out the same id
    v = unique_ids(h)
    assert v.valid is True, v
    assert v.figures["ids"] == 3


def test_unique_ids_duplicated_across_two_processes_is_invalid():
    h = History()
    first = done(h, "a", "next-id", key="seq", result=7)
    done(h, "b", "next-id", key="seq", result=8)
    second = done(h, "c", "next-id", key="seq", result="7")  # compared as str
    v = unique_ids(h)
    assert v.valid is False and v.check == "unique_ids"
    assert v.evidence["duplicates"] == {
        "7": [{"index": first.index, "process": "a"}, {"index": second.index, "process": "c"}]
    }


def test_unique_ids_nothing_handed_out_is_unknown():
    h = History()
    assert unique_ids(h).valid is None
    done(h, "a", "next-id", key="seq", type="fail")
    assert unique_ids(h).valid is None


# -- same data everywhere ------------------------------------------------------------------------------------


def test_same_data_equal_listings_are_valid():
    v = same_data({"n1": {"a": 1, "b": [1, 2]}, "n2": {"b": [1, 2], "a": 1}, "n3": {"a": 1, "b": [1, 2]}})
    assert v.valid is True and v.check == "same_data_everywhere"
    assert dict(v.figures) == {"members": 3, "keys": 2}


def test_same_data_members_differing_in_one_key_is_invalid():
    v = same_data({"n1": {"a": 1, "b": 2}, "n2": {"a": 1, "b": 3}, "n3": {"a": 1}}, check="redis_same")
    assert v.valid is False and v.check == "redis_same"
    assert v.evidence["differing"] == {"b": {"n1": 2, "n2": 3}}
    assert v.evidence["absent"] == {"b": ["n3"]}
    assert v.evidence["missing_members"] == []
    assert same_data({"n1": {"a": 1}, "n2": {"a": True}}).valid is False  # 1 is not True


def test_same_data_member_that_did_not_answer_is_invalid():
    v = same_data({"n1": {"a": 1}, "n2": None, "n3": {"a": 1}})
    assert v.valid is False
    assert v.evidence["missing_members"] == ["n2"] and v.evidence["differing"] == {}


def test_same_data_no_member_is_unknown():
    assert same_data({}).valid is None
