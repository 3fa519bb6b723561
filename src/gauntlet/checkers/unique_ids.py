"""Ids handed out by a sequence are unique (Jepsen's unique-ids checker).

History (one key is one sequence): ``f="next-id"``, ``key=name``; the ``ok`` completion's ``value`` is the id
handed out (an int or a str: ids compare as ``str``, so ``7`` and ``"7"`` are one id).
"""

from __future__ import annotations

from typing import Any

from gauntlet.checkers._per_key import judge_keys, pairs_by_key
from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid
from gauntlet.history import History, Op

CHECK = "unique_ids"
#: How many duplicated ids evidence lists.
SHOWN = 20


def _judge(key: Any, pairs: list[tuple[Op, Op | None]]) -> Verdict:
    got: dict[str, list[dict[str, Any]]] = {}
    for _, done in pairs:
        if done is not None and done.type == "ok":
            got.setdefault(str(done.value), []).append({"index": done.index, "process": done.process})
    where = f"key {key!r}"
    handed = sum(len(v) for v in got.values())
    duplicated = {i: ops for i, ops in got.items() if len(ops) > 1}
    figures = {"ids": float(handed), "distinct": float(len(got)), "duplicated": float(len(duplicated))}
    if not handed:
        return unknown(CHECK, f"{where}: no id was handed out", {"key": key}, **figures)
    if duplicated:
        shown = dict(list(duplicated.items())[:SHOWN])
        return invalid(
            CHECK,
            f"{where}: {len(duplicated)} of {len(got)} ids handed out more than once: {list(shown)[:10]!r}",
            {"key": key, "duplicates": shown, "duplicated_count": len(duplicated)},
            **figures,
        )
    return valid(CHECK, f"{where}: all {handed} ids distinct", {"key": key}, **figures)


def unique_ids(history: History, *, key: Any = None) -> Verdict:
    """Valid when no id was handed out twice by one sequence (each key, or only ``key``).

    Invalid otherwise; evidence ``duplicates``: id → the ``ok`` completions (``index``, ``process``) that got
    it, first 20 ids. Unknown when no ``next-id`` ended ``ok``. Figures: ``ids``, ``distinct``,
    ``duplicated``.
    """
    grouped = pairs_by_key(history, ("next-id",), key)
    return judge_keys(CHECK, grouped, _judge, "no id was handed out")
