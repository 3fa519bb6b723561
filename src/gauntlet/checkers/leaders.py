"""Split-brain check over leader samples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaderSample:
    """At monotonic time ``time`` (ns), the hosts that claimed to be leader / accept writes."""

    time: int
    leaders: frozenset[str]


def single_leader(samples: Iterable[LeaderSample | Mapping[str, object]]) -> list[LeaderSample]:
    """Samples in which more than one host claimed leadership (empty list: never two leaders)."""
    bad = []
    for s in samples:
        sample = s if isinstance(s, LeaderSample) else LeaderSample(int(s["time"]), frozenset(s["leaders"]))  # type: ignore[arg-type]
        if len(sample.leaders) > 1:
            bad.append(sample)
    return bad
