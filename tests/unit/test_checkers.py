"""Checkers on hand-made histories: each has a passing and a failing case."""

import pytest

from checklib.histories import S, build
from gauntlet.checkers import lost_acknowledged_writes, max_staleness, single_leader, unavailability_windows
from gauntlet.checkers.availability import recovery_time
from gauntlet.checkers.leaders import LeaderSample
from gauntlet.checkers.lost_writes import phantom_writes


def test_lost_writes_are_acknowledged_values_missing_from_the_final_read():
    h = build(
        [
            (0, "a", "invoke", "write", 1),
            (1, "a", "ok", "write", 1),
            (1, "a", "invoke", "write", 2),
            (2, "a", "info", "write", 2),
            (2, "a", "invoke", "write", 3),
            (3, "a", "ok", "write", 3),
        ]
    )
    held = lost_acknowledged_writes(h, [1, 3])
    assert held.valid is True and held.evidence == {"lost": [], "acknowledged": 2}
    broken = lost_acknowledged_writes(h, [1])
    assert broken.valid is False and broken.evidence["lost"] == [3] and not broken
    assert "1 of 2 acknowledged writes" in broken.explanation
    assert lost_acknowledged_writes(h, [1, 2, 3]).valid is True  # an unknown write may be present


def test_phantoms_are_values_nobody_wrote_or_whose_write_failed():
    h = build(
        [
            (0, "a", "invoke", "write", 1),
            (1, "a", "fail", "write", 1),
            (1, "a", "invoke", "write", 2),
            (2, "a", "ok", "write", 2),
        ]
    )
    assert phantom_writes(h, [2]).valid is True
    bad = phantom_writes(h, [1, 2, 9])
    assert bad.valid is False and bad.evidence["phantoms"] == [1, 9]


def test_unavailability_window_is_the_gap_between_successes():
    h = build(
        [
            (0, "a", "invoke", "write", 1),
            (0.1, "a", "ok", "write", 1),
            (0.1, "a", "invoke", "write", 2),
            (5.1, "a", "fail", "write", 2),
            (5.1, "a", "invoke", "write", 3),
            (7.1, "a", "ok", "write", 3),
        ]
    )
    windows = unavailability_windows(h, min_gap_s=1)
    assert len(windows) == 1 and abs(windows[0].seconds - 7.0) < 1e-9


def test_recovery_time_counts_only_ops_invoked_after_the_fault():
    h = build(
        [
            (0, "a", "invoke", "write", 1),
            (9, "a", "ok", "write", 1),  # already under way at t=1
            (9, "a", "invoke", "write", 2),
            (12, "a", "ok", "write", 2),
        ]
    )
    assert recovery_time(h, 1 * S) == 11.0
    assert recovery_time(h, 13 * S) is None


def test_single_leader_flags_samples_with_two_leaders():
    good = [LeaderSample(1, frozenset({"pg1"})), LeaderSample(2, frozenset())]
    assert single_leader(good).valid is True
    bad = single_leader([{"time": 3, "leaders": ["pg1", "pg2"]}])
    assert bad.valid is False and bad.evidence["overlaps"][0].leaders == {"pg1", "pg2"}
    # No sample at all proves nothing: unknown, which fails an assert like a broken promise.
    assert single_leader([]).valid is None and not single_leader([])
    # A leader given as a string is one host, never split into its characters.
    with pytest.raises(TypeError):
        single_leader([{"time": 1, "leaders": "pg1"}])


def test_staleness_of_a_read_behind_an_acknowledged_write():
    h = build(
        [
            (0, "w", "invoke", "write", 1, "k"),
            (1, "w", "ok", "write", 1, "k"),
            (1, "w", "invoke", "write", 2, "k"),
            (2, "w", "ok", "write", 2, "k"),
            (5, "r", "invoke", "read", None, "k"),
            (5.5, "r", "ok", "read", 1, "k"),
        ]
    )
    assert abs(max_staleness(h) - 3.0) < 1e-9
    fresh = build(
        [
            (0, "w", "invoke", "write", 1, "k"),
            (1, "w", "ok", "write", 1, "k"),
            (2, "r", "invoke", "read", None, "k"),
            (2.5, "r", "ok", "read", 1, "k"),
        ]
    )
    assert max_staleness(fresh) == 0.0


def _claims(*rounds: tuple[float, set[str]]) -> list[LeaderSample]:
    return [LeaderSample(int(t * 1e9), frozenset(hosts)) for t, hosts in rounds]


def test_single_leader_tolerates_a_documented_overlap_only_within_its_bound():
    """A resumed Patroni leader claims until its next HA cycle: 1 s of two claims is within a 10 s bound; 12 s,
    or any overlap without a bound, is a split brain."""
    short = _claims((0, {"pg1"}), (1, {"pg1", "pg2"}), (1.5, {"pg1", "pg2"}), (2, {"pg2"}))
    within = single_leader(short, tolerate_s=10)
    assert within.valid is True and "within the tolerated 10s" in within.explanation
    [window] = within.evidence["tolerated"]
    assert window.seconds == 1.0 and window.leaders == {"pg1", "pg2"}
    assert single_leader(short).valid is False
    long = _claims((0, {"pg1"}), (1, {"pg1", "pg2"}), (13, {"pg1", "pg2"}), (14, {"pg2"}))
    beyond = single_leader(long, tolerate_s=10)
    assert (
        beyond.valid is False
        and len(beyond.evidence["overlaps"]) == 2
        and "longest 13.0s" in beyond.explanation
    )


def test_an_overlap_that_never_ends_is_judged_to_the_last_sample():
    stuck = _claims((0, {"pg1"}), (1, {"pg1", "pg2"}), (30, {"pg1", "pg2"}))
    assert single_leader(stuck, tolerate_s=10).valid is False
