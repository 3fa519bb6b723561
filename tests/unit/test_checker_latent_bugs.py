"""Latent checker bugs of issue 12, one test each: every one failed on the checkers before their fix."""

from checklib.histories import build
from gauntlet.checkers import lost_acknowledged_writes, single_leader, unavailability_windows
from gauntlet.checkers.availability import recovery_time
from gauntlet.checkers.leaders import LeaderSample
from gauntlet.checkers.lost_writes import phantom_writes


def test_the_same_value_on_two_keys_does_not_hide_a_lost_write():
    h = build(
        [
            (0, "a", "invoke", "write", "x", "k1"),
            (1, "a", "ok", "write", "x", "k1"),
            (1, "b", "invoke", "write", "x", "k2"),
            (2, "b", "ok", "write", "x", "k2"),
        ]
    )
    verdict = lost_acknowledged_writes(h, {"k1": "x"})  # the store holds k1 only: k2's write is lost
    assert verdict.valid is False and verdict.evidence["lost"] == [("k2", "x")]
    assert lost_acknowledged_writes(h, {"k1": "x", "k2": "x"}).valid is True


def test_values_compare_by_type_as_well_as_by_value():
    h = build([(0, "a", "invoke", "write", 1), (1, "a", "ok", "write", 1)])
    assert lost_acknowledged_writes(h, [True]).valid is False  # 1 == True in Python, not in a store
    assert lost_acknowledged_writes(h, [1]).valid is True


def test_a_retried_value_whose_retry_never_completed_is_no_phantom():
    h = build(
        [
            (0, "a", "invoke", "write", 7),
            (1, "a", "fail", "write", 7),  # the first attempt certainly failed...
            (1, "b", "invoke", "write", 7),  # ...the retry's outcome is unknown (never completed)
        ]
    )
    assert phantom_writes(h, [7]).valid is True
    assert (
        phantom_writes(build([(0, "a", "invoke", "write", 7), (1, "a", "fail", "write", 7)]), [7]).valid
        is False
    )


def test_an_outage_lasting_to_the_end_of_the_history_is_a_window():
    h = build(
        [
            (0, "a", "invoke", "write", 1),
            (1, "a", "ok", "write", 1),
            (1, "a", "invoke", "write", 2),
            (9, "a", "fail", "write", 2),  # writes never came back
        ]
    )
    windows = unavailability_windows(h, min_gap_s=1)
    assert len(windows) == 1 and windows[0].seconds == 8.0 and windows[0].open


def test_recovery_is_when_failures_stop_not_the_first_success():
    h = build(
        [
            (0, "a", "invoke", "write", 1),
            (2, "a", "ok", "write", 1),  # one lucky success...
            (2, "a", "invoke", "write", 2),
            (5, "a", "fail", "write", 2),  # ...but failures go on
            (5, "a", "invoke", "write", 3),
            (8, "a", "ok", "write", 3),
            (8, "a", "invoke", "write", 4),
            (9, "a", "ok", "write", 4),
        ]
    )
    assert recovery_time(h, 0) == 8.0


def test_leader_samples_taken_at_the_same_time_are_merged():
    samples = [LeaderSample(5, frozenset({"pg1"})), LeaderSample(5, frozenset({"pg2"}))]
    verdict = single_leader(samples)
    assert verdict.valid is False and verdict.evidence["overlaps"][0].leaders == {"pg1", "pg2"}
