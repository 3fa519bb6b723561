"""Staleness of cached reads: how far behind the acknowledged truth a read was."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gauntlet.history import History

NS = 1_000_000_000


@dataclass(frozen=True)
class StaleRead:
    """A read of ``key`` that returned ``value`` although a newer value had been acknowledged
    ``seconds`` before the read was invoked."""

    key: object
    value: object
    newer: object
    seconds: float


def stale_reads(history: History, read_f: str = "read", write_f: str = "write") -> list[StaleRead]:
    """Reads that returned a value older than a write acknowledged (ok) before the read was invoked.

    Values must be increasing per key (writers write a counter or a timestamp), which makes "older"
    decidable without a model: a read is stale when it returned less than the newest value acknowledged
    before it started.
    """
    ops = history.client_ops()
    acked: dict[object, list[tuple[int, Any]]] = defaultdict(list)  # key -> [(ack time, value)]
    for o in ops:
        if o.type == "ok" and o.f == write_f:
            acked[o.key].append((o.time, o.value))
    invokes: dict[str, int] = {}
    stale = []
    for o in ops:
        if o.type == "invoke":
            invokes[o.process] = o.time
            continue
        if o.type != "ok" or o.f != read_f:
            continue
        started = invokes.get(o.process, o.time)
        known = [(t, v) for t, v in acked.get(o.key, []) if t < started]
        if not known:
            continue
        _, newest = max(known, key=lambda tv: tv[1])
        if o.value is None or o.value < newest:
            # staleness: since when had the read's value been superseded?
            superseding = [t for t, v in known if o.value is None or v > o.value]
            stale.append(StaleRead(o.key, o.value, newest, (started - min(superseding)) / NS))
    return stale


def max_staleness(history: History, read_f: str = "read", write_f: str = "write") -> float:
    """The longest time (s) a read lagged behind an acknowledged write; 0.0 when no read was stale."""
    return max((s.seconds for s in stale_reads(history, read_f, write_f)), default=0.0)
