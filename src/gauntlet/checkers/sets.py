"""A grow-only set's reads against the adds around them (Jepsen's set checker).

History (one key is one set): ``f="add"``, ``key=k``, ``value=element`` (a str); ``f="read"``, ``key=k``, the
``ok`` completion's ``value`` is the whole set as a list (``None`` counts as empty). Elements compare as
``str``: stores answer with strings. (The module is ``sets``, not ``set``, so as not to shadow the builtin.)
"""

from __future__ import annotations

from typing import Any

from gauntlet.checkers._per_key import brief, judge_keys, pairs_by_key, pos
from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid
from gauntlet.history import History, Op

CHECK = "set"
#: How many elements (or stale reads) evidence lists.
SHOWN = 20


def _elements(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, list | tuple | set | frozenset):
        return {str(v) for v in value}
    return {str(value)}


def _judge(key: Any, pairs: list[tuple[Op, Op | None]]) -> Verdict:
    adds = [(i, d) for i, d in pairs if i.f == "add"]
    reads = [(i, d) for i, d in pairs if i.f == "read" and d is not None and d.type == "ok"]
    acked = sorted(((pos(d), str(i.value)) for i, d in adds if d is not None and d.type == "ok"))
    maybe = {str(i.value) for i, d in adds if d is None or d.type == "info"}
    attempted = {str(i.value) for i, _ in adds}
    where = f"key {key!r}"
    figures = {
        "reads": float(len(reads)),
        "adds_acknowledged": float(len(acked)),
        "adds_unknown": float(sum(1 for _, d in adds if d is None or d.type == "info")),
    }
    if not reads:
        return unknown(CHECK, f"{where}: no final read", {"key": key}, **figures)
    final_inv, final = max(reads, key=lambda t: pos(t[1]))
    held = _elements(final.value)

    stale: list[dict[str, Any]] = []
    stale_elements = 0
    for r_inv, r_done in reads:
        if r_done is final:
            continue
        known = {e for p, e in acked if p < pos(r_inv)}
        missing = known - _elements(r_done.value)
        if missing:
            stale_elements += len(missing)
            stale.append({"read": r_done.index, "missing": sorted(missing)[:SHOWN]})

    before_final = {e for p, e in acked if p < pos(final_inv)}
    lost = sorted(before_final - held)
    unexpected = sorted(held - attempted)
    recovered = (maybe - {e for _, e in acked}) & held
    figures.update(
        lost=float(len(lost)),
        unexpected=float(len(unexpected)),
        recovered=float(len(recovered)),
        stale_reads=float(len(stale)),
        stale_elements=float(stale_elements),
    )
    evidence = {
        "key": key,
        "final_read": {**(brief(final) or {}), "value": sorted(held)[:SHOWN], "size": len(held)},
        "lost": lost[:SHOWN],
        "lost_count": len(lost),
        "unexpected": unexpected[:SHOWN],
        "unexpected_count": len(unexpected),
        "stale": stale[:SHOWN],
    }
    if lost or unexpected:
        what = []
        if lost:
            what.append(f"{len(lost)} acknowledged adds lost: {lost[:10]!r}")
        if unexpected:
            what.append(f"{len(unexpected)} elements nobody added: {unexpected[:10]!r}")
        return invalid(CHECK, f"{where}: final read {final.index}: " + "; ".join(what), evidence, **figures)
    note = f" ({len(stale)} earlier reads stale)" if stale else ""
    return valid(
        CHECK,
        f"{where}: final read {final.index} holds all {len(before_final)} acknowledged adds{note}",
        evidence,
        **figures,
    )


def set_full(history: History, *, key: Any = None) -> Verdict:
    """Judge a set (each key, or only ``key``) by its final read: its last ``ok`` read by completion time.

    Invalid when an add that completed ``ok`` before the final read was invoked is missing from it
    (``lost``), or the final read holds an element no add attempted (``unexpected``). An add whose outcome
    is unknown (``info`` or never completed) may or may not be there; present, it counts as ``recovered``.
    Every other ``ok`` read is checked too: an element acknowledged before it was invoked and missing from it
    makes it ``stale``. Stale reads are reported (figures ``stale_reads``, ``stale_elements``; evidence
    ``stale``) but do not make the verdict invalid: a read served by a follower may lag behind the leader
    (or a partitioned member answer from its own old state) without the set having lost anything; the final
    read is taken after the faults healed, when every member must have caught up, so only there is a
    missing element a loss. No ``ok`` read is unknown. Evidence: ``lost`` and ``unexpected`` (first 20) and
    their counts.
    """
    grouped = pairs_by_key(history, ("add", "read"), key)
    return judge_keys(CHECK, grouped, _judge, "no final read")
