"""The entity-runtime checkers (one owner at a time, an increasing sequence, the singleton's holders, durable
timers) on
good and bad hand-made histories: each is shown red on the bug it names."""

from __future__ import annotations

from typing import Any

from gauntlet.checkers import increasing, one_owner_at_a_time, singleton_holders, timers
from gauntlet.history import History


def _op(
    h: History,
    process: str,
    f: str,
    key: Any,
    value: Any = None,
    *,
    result: Any = None,
    token: int | None = None,
    by: str = "r1",
    shard: int | None = 1,
    kind: str = "ok",
) -> None:
    inv = h.invoke(process, f, value, key)
    extra = {"token": token, "served_by": by, "shard": shard} if token is not None else {}
    h.complete(inv, kind, value=result, **extra)  # type: ignore[arg-type]


def test_a_hand_over_in_order_is_one_owner_at_a_time() -> None:
    h = History()
    _op(h, "c0", "increment", "a", 1, token=5, by="r1")
    _op(h, "c1", "increment", "a", 1, token=9, by="r2")
    _op(h, "c0", "increment", "a", 1, token=9, by="r2")
    v = one_owner_at_a_time(h)
    assert v.valid is True, v
    assert v.figures["handovers"] == 1


def test_a_stale_owner_serving_after_the_new_one_is_caught() -> None:
    h = History()
    _op(h, "c0", "increment", "a", 1, token=5, by="r1")
    _op(h, "c1", "increment", "a", 1, token=9, by="r2")
    _op(h, "c2", "increment", "a", 1, token=5, by="r1")  # invoked after token 9 had served
    v = one_owner_at_a_time(h)
    assert v.valid is False
    assert "stale owner" in v.explanation and "r1" in v.explanation


def test_one_token_served_by_two_runners_is_caught() -> None:
    h = History()
    _op(h, "c0", "increment", "a", 1, token=5, by="r1")
    _op(h, "c1", "increment", "a", 1, token=5, by="r2")
    assert one_owner_at_a_time(h).valid is False


def test_overlapping_operations_of_two_owners_are_not_blamed() -> None:
    h = History()
    old = h.invoke("c0", "increment", 1, "a")
    _op(h, "c1", "increment", "a", 1, token=9, by="r2")
    h.complete(old, "ok", token=5, served_by="r1", shard=1)  # in flight across the hand-over
    assert one_owner_at_a_time(h).valid is True


def test_no_token_is_unknown() -> None:
    h = History()
    _op(h, "c0", "increment", "a", 1)
    assert one_owner_at_a_time(h).valid is None


def test_a_sequence_that_goes_back_is_caught() -> None:
    h = History()
    for n in (1, 2, 3):
        _op(h, "c0", "next-id", "seq", result=n, token=1, shard=None)
    assert increasing(h).valid is True
    _op(h, "c1", "next-id", "seq", result=2, token=1, shard=None)
    v = increasing(h)
    assert v.valid is False and "2 after 3" in v.explanation


def _timers(h: History, record: list[dict[str, Any]]) -> None:
    inv = h.invoke("final", "read_timers", None, "timers")
    h.complete(inv, "ok", value=record)


def test_every_acknowledged_timer_fired_and_no_cancelled_one() -> None:
    h = History()
    _op(h, "c0", "schedule", "t1", 100, result=10.0)
    _op(h, "c0", "schedule", "t2", 100, result=10.0)
    _op(h, "c0", "cancel", "t2")
    _timers(
        h,
        [
            {"id": "t1", "due_at": 10.0, "cancelled": False, "fires": [{"runner": "r1", "at": 10.2}]},
            {"id": "t2", "due_at": 10.0, "cancelled": True, "fires": []},
        ],
    )
    v = timers(h)
    assert v.valid is True, v
    assert v.figures["lateness_p50_s"] == 0.2


def test_a_timer_that_never_fired_is_caught() -> None:
    h = History()
    _op(h, "c0", "schedule", "t1", 100, result=10.0)
    _timers(h, [{"id": "t1", "due_at": 10.0, "cancelled": False, "fires": []}])
    v = timers(h)
    assert v.valid is False and "never fired" in v.explanation


def test_a_timer_fired_after_an_acknowledged_cancel_is_caught() -> None:
    h = History()
    _op(h, "c0", "schedule", "t1", 100, result=10.0)
    _op(h, "c0", "cancel", "t1")
    _timers(h, [{"id": "t1", "due_at": 10.0, "cancelled": True, "fires": [{"runner": "r1", "at": 10.1}]}])
    v = timers(h)
    assert v.valid is False and "after an acknowledged cancel" in v.explanation


def test_duplicates_are_reported_not_judged_and_no_final_read_is_unknown() -> None:
    h = History()
    _op(h, "c0", "schedule", "t1", 100, result=10.0)
    assert timers(h).valid is None
    _timers(
        h, [{"id": "t1", "due_at": 10.0, "fires": [{"runner": "r1", "at": 10.1}, {"runner": "r2", "at": 11}]}]
    )
    v = timers(h)
    assert v.valid is True and v.figures["duplicates"] == 1


def _holders(h: History, record: list[dict[str, Any]]) -> None:
    inv = h.invoke("final", "read_holders", None, "sequencer")
    h.complete(inv, "ok", value=record)


HOLDERS = [
    {"runner": "r1", "token": 5, "acquired_at": 100.0, "first_seq": 1},
    {"runner": "r2", "token": 9, "acquired_at": 112.5, "first_seq": 4},
]


def test_holders_each_within_their_range_are_one_at_a_time() -> None:
    h = History()
    for n in (1, 2, 3):
        _op(h, "c0", "next-id", "seq", result=n, token=5, by="r1", shard=None)
    _op(h, "c0", "next-id", "seq", result=4, token=9, by="r2", shard=None)
    _holders(h, HOLDERS)
    v = singleton_holders(h)
    assert v.valid is True, v
    assert v.figures["holders"] == 2 and v.figures["min_handover_gap_s"] == 12.5


def test_an_old_holder_handing_out_in_its_successors_range_is_caught() -> None:
    h = History()
    _op(h, "c0", "next-id", "seq", result=1, token=5, by="r1", shard=None)
    _op(h, "c1", "next-id", "seq", result=4, token=9, by="r2", shard=None)
    _op(
        h, "c0", "next-id", "seq", result=5, token=5, by="r1", shard=None
    )  # r1 still handing out: two holders
    _holders(h, HOLDERS)
    v = singleton_holders(h)
    assert v.valid is False
    assert "5 by r1 under token 5" in v.explanation and "[1, 4)" in v.explanation


def test_a_holder_missing_from_the_leader_history_or_out_of_order_is_caught() -> None:
    h = History()
    _op(h, "c0", "next-id", "seq", result=7, token=12, by="r3", shard=None)
    _holders(h, HOLDERS)
    assert "token the leader history does not hold" in singleton_holders(h).explanation
    h = History()
    _op(h, "c0", "next-id", "seq", result=1, token=5, by="r1", shard=None)
    _holders(h, [HOLDERS[0], {**HOLDERS[1], "acquired_at": 90.0}])
    v = singleton_holders(h)
    assert v.valid is False and "out of order" in v.explanation


def test_holders_without_the_final_read_or_numbers_are_unknown() -> None:
    h = History()
    _op(h, "c0", "next-id", "seq", result=1, token=5, by="r1", shard=None)
    assert singleton_holders(h).valid is None
    h = History()
    _holders(h, HOLDERS)
    assert singleton_holders(h).valid is None
