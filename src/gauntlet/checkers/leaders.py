"""Split-brain check over leader samples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid


@dataclass(frozen=True)
class LeaderSample:
    """At monotonic time ``time`` (ns), the hosts that claimed to be leader / accept writes."""

    time: int
    leaders: frozenset[str]


def _sample(d: Mapping[str, object]) -> LeaderSample:
    """A sample from its JSON form: a time in ns and the hosts that claimed leadership."""
    t, leaders = d["time"], d["leaders"]
    if not isinstance(t, int | float | str) or not isinstance(leaders, list | tuple | set | frozenset):
        raise TypeError(f"a leader sample needs a time and a list of leaders, got {dict(d)!r}")
    return LeaderSample(int(t), frozenset(str(x) for x in leaders))


def single_leader(samples: Iterable[LeaderSample | Mapping[str, object]]) -> Verdict:
    """Valid when no sample has more than one host claiming leadership. Evidence: ``overlaps`` (the
    offending samples, :class:`LeaderSample`), ``samples`` (how many were judged — none is *unknown*)."""
    by_time: dict[int, set[str]] = {}
    for s in samples:  # samples taken at the same time are one observation: two single leaders are two
        sample = s if isinstance(s, LeaderSample) else _sample(s)
        by_time.setdefault(sample.time, set()).update(sample.leaders)
    judged = [LeaderSample(t, frozenset(ls)) for t, ls in sorted(by_time.items())]
    overlaps = [s for s in judged if len(s.leaders) > 1]
    evidence = {"overlaps": overlaps, "samples": len(judged)}
    if overlaps:
        first = overlaps[0]
        return invalid(
            "single_leader",
            f"{len(overlaps)} of {len(judged)} samples saw more than one leader, first {sorted(first.leaders)}",
            evidence,
        )
    if not judged:
        return unknown("single_leader", "no leader sample was taken", evidence)
    return valid("single_leader", f"one leader at most in all {len(judged)} samples", evidence)
