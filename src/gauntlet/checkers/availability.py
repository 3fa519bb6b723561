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
    #: The outage lasted to the end of the history: ``end`` is its last operation, not a success.
    open: bool = False

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / NS


def unavailability_windows(history: History, f: str = "write", min_gap_s: float = 0.0) -> list[Window]:
    """Gaps between consecutive successful completions of ``f`` longer than ``min_gap_s``, and the outage
    that lasts to the end of the history (from the last success, or the first operation when none
    succeeded, to the last completion of ``f``: an ``open`` window).

    The gap is measured between the completion times of two successful ops in a row, which is what a
    client perceives as "writes were down". Pass the longest window (or the one spanning a fault) as RTO.
    """
    ops = [o for o in history.client_ops() if o.f == f]
    oks = sorted(o.time for o in ops if o.type == "ok")
    windows = []
    for prev, nxt in pairwise(oks):
        if (nxt - prev) / NS > min_gap_s:
            windows.append(Window(prev, nxt))
    last = max((o.time for o in ops if o.type != "invoke"), default=None)
    begin = oks[-1] if oks else min((o.time for o in ops), default=None)
    if last is not None and begin is not None and last > begin and (last - begin) / NS > min_gap_s:
        windows.append(Window(begin, last, open=True))
    return windows


def recovery_time(history: History, fault_start: Op | int, f: str = "write") -> float | None:
    """Seconds from a fault's start to the first successful ``f`` after which no ``f`` failed: the RTO of
    that fault. ``None`` if no op succeeded after the last failure (the service never came back for good in
    the history). Only ops invoked after the fault count, so a slow op already under way does not hide the
    outage; failures (``fail`` or unknown ``info``) after a lucky success push recovery past them.
    """
    t0 = fault_start.time if isinstance(fault_start, Op) else fault_start
    completions = [
        done for invoke, done in history.pairs() if done is not None and invoke.f == f and invoke.time >= t0
    ]
    completions.sort(key=lambda o: o.time)
    last_failure = max((o.time for o in completions if o.type != "ok"), default=None)
    for o in completions:
        if o.type == "ok" and (last_failure is None or o.time > last_failure):
            return (o.time - t0) / NS
    return None
