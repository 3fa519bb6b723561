"""Split-brain check over leader samples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


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


def single_leader(samples: Iterable[LeaderSample | Mapping[str, object]]) -> list[LeaderSample]:
    """Samples in which more than one host claimed leadership (empty list: never two leaders)."""
    bad = []
    for s in samples:
        sample = s if isinstance(s, LeaderSample) else _sample(s)
        if len(sample.leaders) > 1:
            bad.append(sample)
    return bad
