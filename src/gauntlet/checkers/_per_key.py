"""What the workload checkers share: the order of history entries, the keys to judge, one verdict over keys.

Entries are ordered by ``(time, index)``: monotonic time first, the history's own order for entries of one
instant (hand-made histories give several entries the same time; a recorded history never reorders them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from gauntlet.checkers.verdict import Verdict, compose, unknown
from gauntlet.history import History, Op

#: Where an entry lies in the history's order; an op that never completed lies after everything.
Position = tuple[float, int]
NEVER: Position = (float("inf"), 0)


def pos(op: Op | None) -> Position:
    """The position of ``op`` in the history's order (:data:`NEVER` for ``None``)."""
    return NEVER if op is None else (op.time, op.index)


def brief(op: Op | None) -> dict[str, Any] | None:
    """The fields of ``op`` a person needs in evidence."""
    if op is None:
        return None
    return {
        "index": op.index,
        "type": op.type,
        "process": op.process,
        "f": op.f,
        "key": op.key,
        "value": op.value,
    }


def pairs_by_key(
    history: History, fs: Iterable[str], key: Any = None
) -> dict[Any, list[tuple[Op, Op | None]]]:
    """Client invoke/completion pairs whose ``f`` is one of ``fs``, grouped by key in order of first
    appearance (only ``key`` when it is not ``None``)."""
    wanted = set(fs)
    grouped: dict[Any, list[tuple[Op, Op | None]]] = {}
    for invoke, done in history.pairs():
        if invoke.f in wanted and (key is None or invoke.key == key):
            grouped.setdefault(invoke.key, []).append((invoke, done))
    return grouped


def judge_keys(
    check: str,
    grouped: dict[Any, list[tuple[Op, Op | None]]],
    judge: Callable[[Any, list[tuple[Op, Op | None]]], Verdict],
    nothing: str,
) -> Verdict:
    """``judge`` each key's pairs; one key's verdict as it is, several composed with
    :func:`~gauntlet.checkers.verdict.compose` and their figures summed. No key at all is unknown
    (``nothing`` says why)."""
    if not grouped:
        return unknown(check, nothing)
    parts = [judge(k, ps) for k, ps in grouped.items()]
    if len(parts) == 1:
        return parts[0]
    totals: dict[str, float] = {}
    for p in parts:
        for name, figure in p.figures.items():
            totals[name] = totals.get(name, 0.0) + figure
    return replace(compose(check, parts), figures=totals)
