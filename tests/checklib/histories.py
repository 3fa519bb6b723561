"""Hand-made histories for the checkers' unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gauntlet.history import History, Op

S = 1_000_000_000


def build(entries: Iterable[tuple[Any, ...]]) -> History:
    """A history from ``(time_s, process, type, f, value[, key])`` tuples, in order."""
    ops = []
    for i, e in enumerate(entries):
        t, p, typ, f, v, *k = e
        ops.append(Op(index=i, type=typ, process=p, f=f, value=v, key=k[0] if k else None, time=int(t * S)))
    return History.from_ops(ops)
