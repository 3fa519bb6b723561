"""A counter's reads against the increments around them (Jepsen's counter checker).

History (one key is one counter): ``f="increment"``, ``key=k``, ``value=delta`` (an int, on the invoke and
the ``ok`` completion); ``f="read"``, ``key=k``, the ``ok`` completion's ``value`` is the int read
(``None``, a counter never written, reads as ``initial``; ``"5"`` as 5).
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import Any

from gauntlet.checkers._per_key import Position, brief, judge_keys, pairs_by_key, pos
from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid
from gauntlet.history import History, Op

CHECK = "counter"


def _as_int(value: Any) -> int | None:
    """``value`` as an int (a store may answer ``"5"``); ``None`` if it is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _read(op: Op, initial: int) -> int | None:
    """What a read returned (``None``: a counter never written, so ``initial``)."""
    return initial if op.value is None else _as_int(op.value)


def _prefix(values: list[int]) -> list[int]:
    return [0, *accumulate(values)]


def _judge(key: Any, pairs: list[tuple[Op, Op | None]], initial: int) -> Verdict:
    incs = [(i, d) for i, d in pairs if i.f == "increment" and (d is None or d.type != "fail")]
    attempted = [i for i, _ in pairs if i.f == "increment"]
    reads = [(i, d) for i, d in pairs if i.f == "read" and d is not None and d.type == "ok"]
    acked = sum(1 for _, d in incs if d is not None and d.type == "ok")
    figures = {"reads": float(len(reads)), "increments_acknowledged": float(acked)}
    figures["increments_unknown"] = float(len(incs) - acked)
    where = f"key {key!r}"
    deltas: dict[int, int] = {}
    for i in attempted:
        delta = _as_int(i.value)
        if delta is None:
            return unknown(
                CHECK, f"{where}: increment {i.index} has no whole delta", {"op": brief(i)}, **figures
            )
        deltas[i.index] = delta
    if not reads:
        return unknown(CHECK, f"{where}: nothing was read", {"key": key}, **figures)

    # Definitely applied before a read starts: ok completions, in completion order.
    definite = sorted((pos(d), deltas[i.index]) for i, d in incs if d is not None and d.type == "ok")
    d_at = [p for p, _ in definite]
    d_sum = _prefix([x for _, x in definite])
    d_pos = _prefix([max(0, x) for _, x in definite])
    d_neg = _prefix([min(0, x) for _, x in definite])
    # Possibly applied before a read ends: every increment not failed, in invoke order.
    possible = sorted((pos(i), deltas[i.index]) for i, _ in incs)
    p_at = [p for p, _ in possible]
    p_pos = _prefix([max(0, x) for _, x in possible])
    p_neg = _prefix([min(0, x) for _, x in possible])

    for r_inv, r_done in reads:
        got = _read(r_done, initial)
        if got is None:
            return invalid(
                CHECK,
                f"{where}: read {r_done.index} returned {r_done.value!r}, not a number",
                {"read": brief(r_done)},
                **figures,
            )
        n = bisect_left(d_at, pos(r_inv))
        m = bisect_left(p_at, pos(r_done))
        base = initial + d_sum[n]
        lower = base + p_neg[m] - d_neg[n]
        upper = base + p_pos[m] - d_pos[n]
        if not lower <= got <= upper:
            side = "above the upper" if got > upper else "below the lower"
            concurrent = [
                brief(i)
                for i, d in incs
                if pos(i) < pos(r_done) and not (d is not None and d.type == "ok" and pos(d) < pos(r_inv))
            ]
            return invalid(
                CHECK,
                f"{where}: read {r_done.index} returned {got}, {side} bound of [{lower}, {upper}]",
                {
                    "key": key,
                    "read": brief(r_done),
                    "value": got,
                    "lower": lower,
                    "upper": upper,
                    "read_invoke": brief(r_inv),
                    "concurrent_increments": concurrent[:10],
                },
                **figures,
            )

    if all(x > 0 for x in deltas.values()):
        bad = _decreasing(reads, initial)
        if bad is not None:
            earlier, later = bad
            return invalid(
                CHECK,
                f"{where}: read {later.index} returned {later.value!r} after read {earlier.index} had returned "
                f"{earlier.value!r}, with increments only",
                {"key": key, "earlier": brief(earlier), "later": brief(later)},
                **figures,
            )
    return valid(CHECK, f"{where}: all {len(reads)} reads within their bounds", {"key": key}, **figures)


def _decreasing(reads: list[tuple[Op, Op]], initial: int) -> tuple[Op, Op] | None:
    """A read that returned less than a read which completed before it was invoked, with that read."""
    done = sorted(((pos(d), d) for _, d in reads), key=lambda t: t[0])
    best: Op | None = None
    best_value = 0
    j = 0
    for r_inv, r_done in sorted(reads, key=lambda t: pos(t[0])):
        start: Position = pos(r_inv)
        while j < len(done) and done[j][0] < start:
            value = _read(done[j][1], initial)
            if value is not None and (best is None or value > best_value):
                best, best_value = done[j][1], value
            j += 1
        got = _read(r_done, initial)
        if best is not None and got is not None and got < best_value:
            return best, r_done
    return None


def counter(history: History, *, key: Any = None, initial: int = 0) -> Verdict:
    """Judge every ``ok`` read of a counter (each key, or only ``key``) against the increments around it.

    A read's lower bound is ``initial`` plus the deltas of the increments whose ``ok`` came before the read
    was invoked; its upper bound adds every increment invoked before the read completed that did not end
    ``fail`` (``ok``, ``info`` or never completed: it may have been applied). A negative delta that may have
    been applied lowers the lower bound instead of raising the upper one. Invalid when a read lies outside
    its bounds (evidence: the read, its value, the bounds, the increments concurrent with it), or — when
    every delta is positive — when a read returned less than a read that completed before it was invoked.
    Unknown when nothing was read. Figures: ``reads``, ``increments_acknowledged``, ``increments_unknown``.
    """
    grouped = pairs_by_key(history, ("increment", "read"), key)
    return judge_keys(CHECK, grouped, lambda k, ps: _judge(k, ps, initial), "nothing was read")
