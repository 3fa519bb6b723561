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


@dataclass(frozen=True)
class OverlapWindow:
    """A run of consecutive samples that each saw more than one leader: from the first of them to the next
    sample that saw one at most (or to the last of them, when none came after), in ns."""

    start: int
    end: int
    leaders: frozenset[str]  # every host that claimed during the window
    samples: tuple[LeaderSample, ...]

    @property
    def seconds(self) -> float:
        """How long the window lasted, as far as the samples can tell."""
        return (self.end - self.start) / 1e9


def overlap_windows(judged: list[LeaderSample]) -> list[OverlapWindow]:
    """The windows of ``judged`` (sorted by time) in which more than one host claimed leadership."""
    windows: list[OverlapWindow] = []
    run: list[LeaderSample] = []
    for sample in [*judged, None]:
        if sample is not None and len(sample.leaders) > 1:
            run.append(sample)
            continue
        if run:
            end = sample.time if sample is not None else run[-1].time
            leaders = frozenset().union(*(r.leaders for r in run))
            windows.append(OverlapWindow(run[0].time, end, leaders, tuple(run)))
            run = []
    return windows


def single_leader(samples: Iterable[LeaderSample | Mapping[str, object]], tolerate_s: float = 0.0) -> Verdict:
    """Valid when no sample has more than one host claiming leadership, or, with ``tolerate_s``, when every
    window of such samples lasted at most that long (a bound the system documents, e.g. a resumed Patroni
    leader's stale claim until its next HA cycle). Evidence: ``overlaps`` (the offending samples,
    :class:`LeaderSample`, of windows beyond the bound), ``tolerated`` (the :class:`OverlapWindow` within it),
    ``samples`` (how many were judged — none is *unknown*)."""
    by_time: dict[int, set[str]] = {}
    for s in samples:  # samples taken at the same time are one observation: two single leaders are two
        sample = s if isinstance(s, LeaderSample) else _sample(s)
        by_time.setdefault(sample.time, set()).update(sample.leaders)
    judged = [LeaderSample(t, frozenset(ls)) for t, ls in sorted(by_time.items())]
    windows = overlap_windows(judged)
    tolerated = [w for w in windows if tolerate_s > 0 and w.seconds <= tolerate_s]
    beyond = [w for w in windows if w not in tolerated]
    overlaps = [s for w in beyond for s in w.samples]
    evidence = {"overlaps": overlaps, "tolerated": tolerated, "samples": len(judged)}
    if overlaps:
        first = beyond[0]
        bound = (
            f" (longest {max(w.seconds for w in beyond):.1f}s, {tolerate_s:g}s tolerated)"
            if tolerate_s
            else ""
        )
        return invalid(
            "single_leader",
            f"{len(overlaps)} of {len(judged)} samples saw more than one leader{bound}, first {sorted(first.leaders)}",
            evidence,
        )
    if not judged:
        return unknown("single_leader", "no leader sample was taken", evidence)
    if tolerated:
        return valid(
            "single_leader",
            f"{len(tolerated)} overlap window(s) of at most {max(w.seconds for w in tolerated):.1f}s, within the "
            f"tolerated {tolerate_s:g}s, in {len(judged)} samples",
            evidence,
        )
    return valid("single_leader", f"one leader at most in all {len(judged)} samples", evidence)
