"""Unavailability windows (the RTO a client saw): gaps without a successful operation."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from gauntlet.history import History, Op

NS = 1_000_000_000


@dataclass(frozen=True)
class Window:
    """A span (monotonic ns) in which no operation ``f`` succeeded."""

    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / NS


def unavailability_windows(history: History, f: str = "write", min_gap_s: float = 0.0) -> list[Window]:
    """Gaps between consecutive successful completions of ``f`` longer than ``min_gap_s``.

    The gap is measured between the completion times of two successful ops in a row, which is what a
    client perceives as "writes were down". Pass the longest window (or the one spanning a fault) as RTO.
    """
    oks = sorted(o.time for o in history.client_ops() if o.type == "ok" and o.f == f)
    windows = []
    for prev, nxt in pairwise(oks):
        if (nxt - prev) / NS > min_gap_s:
            windows.append(Window(prev, nxt))
    return windows


def recovery_time(history: History, fault_start: Op | int, f: str = "write") -> float | None:
    """Seconds from a fault's start to the first successful ``f`` that was *invoked* after it, minus nothing:
    the RTO of that fault. ``None`` if no such op succeeded (the service never came back in the history).

    Only ops invoked after the fault count, so a slow op that was already under way does not hide the outage.
    """
    t0 = fault_start.time if isinstance(fault_start, Op) else fault_start
    invoked_after: set[tuple[str, int]] = set()
    open_invokes: dict[str, Op] = {}
    for o in history.client_ops():
        if o.type == "invoke":
            open_invokes[o.process] = o
            continue
        inv = open_invokes.pop(o.process, None)
        if inv is None or inv.time < t0 or o.f != f:
            continue
        invoked_after.add((o.process, inv.index))
        if o.type == "ok":
            return (o.time - t0) / NS
    return None
