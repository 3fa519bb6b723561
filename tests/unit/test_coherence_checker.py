"""The cache-loss checker on hand-made histories: a clean failover, a lost write served by the cache, a
version issued twice, and unknown writes that prove nothing either way."""

from gauntlet.checkers.coherence import cache_loss
from gauntlet.history import History, Op

S = 1_000_000_000


def build(entries):
    """entries: (time_s, process, type, f, value, key)."""
    return History.from_ops(
        [
            Op(index=i, type=t, process=p, f=f, value=v, key=k, time=int(ts * S))
            for i, (ts, p, t, f, v, k) in enumerate(entries)
        ]
    )


def test_clean_history_passes():
    h = build(
        [
            (0, "w", "invoke", "write", None, "a"),
            (1, "w", "ok", "write", 2, "a"),
            (2, "r", "invoke", "read", None, "a"),
            (3, "r", "ok", "read", 2, "a"),
            (3, "w", "invoke", "write", None, "a"),
            (4, "w", "info", "write", None, "a"),  # unknown: committed (final is 3) or not
            (5, "r", "invoke", "read", None, "a"),
            (6, "r", "ok", "read", 3, "a"),
        ]
    )
    v = cache_loss(h, {"a": 3})
    assert v.ok and v.reads == 2 and v.acked_writes == 1
    assert v.verdict().valid is True and v.verdict().evidence["reads"] == 2


def test_read_above_the_final_version_is_a_lost_write_served():
    h = build(
        [
            (0, "w", "invoke", "write", None, "a"),
            (1, "w", "info", "write", None, "a"),  # committed on the old leader only
            (2, "r", "invoke", "read", None, "a"),
            (3, "r", "ok", "read", 2, "a"),  # the cache served it
        ]
    )
    v = cache_loss(h, {"a": 1})
    assert v.verdict().valid is False and not v.verdict()
    assert not v.ok and [(r.key, r.value, r.final) for r in v.lost_reads] == [("a", 2, 1)]
    assert v.lost_writes == []  # nothing acknowledged was lost


def test_version_issued_again_reveals_the_read_of_the_lost_one():
    h = build(
        [
            (0, "w", "invoke", "write", None, "a"),
            (1, "w", "info", "write", None, "a"),  # version 2, lost in the failover
            (2, "r", "invoke", "read", None, "a"),
            (3, "r", "ok", "read", 2, "a"),  # saw the lost version 2
            (4, "w", "invoke", "write", None, "a"),
            (5, "w", "ok", "write", 2, "a"),  # the new leader issues 2 again
        ]
    )
    v = cache_loss(h, {"a": 2})
    assert [(r.value, r.why.split()[0]) for r in v.lost_reads] == [(2, "read")]


def test_acknowledged_write_lost_or_acknowledged_twice():
    h = build(
        [
            (0, "w", "invoke", "write", None, "a"),
            (1, "w", "ok", "write", 2, "a"),
            (1, "w", "invoke", "write", None, "a"),
            (2, "w", "ok", "write", 2, "a"),
            (2, "w", "invoke", "write", None, "b"),
            (3, "w", "ok", "write", 5, "b"),
        ]
    )
    v = cache_loss(h, {"a": 2, "b": 4})
    assert sorted(v.lost_writes) == [("a", 2), ("b", 5)]
