"""Acknowledged writes that a final read does not contain (Jepsen's "lost writes"), and phantoms.

Values compare by type as well as by value (``1``, ``1.0`` and ``True`` are three values to a store, one to
Python's ``==``). What the store holds can be given per key (a mapping key → value, or key → several
values): then a write is matched on its key and value, so one value written to two keys cannot hide the
loss of one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gauntlet.checkers.linearizable import freeze
from gauntlet.checkers.verdict import Verdict, invalid, valid
from gauntlet.history import History


def _typed(value: Any) -> tuple[str, Any]:
    return type(value).__name__, freeze(value)


def _present(final_values: Iterable[Any] | Mapping[Any, Any]) -> tuple[bool, set[Any]]:
    """(per key?, the typed values or (key, typed value) pairs the store holds)."""
    if isinstance(final_values, Mapping):
        pairs = set()
        for key, held in final_values.items():
            for v in held if isinstance(held, list | tuple | set | frozenset) else [held]:
                pairs.add((freeze(key), _typed(v)))
        return True, pairs
    return False, {_typed(v) for v in final_values}


def lost_acknowledged_writes(
    history: History, final_values: Iterable[Any] | Mapping[Any, Any], f: str = "write"
) -> Verdict:
    """Valid when every ``ok`` write is in ``final_values`` (what was read back from the store after
    healing — never the values the test meant to write). Evidence: ``lost`` (values, or (key, value) pairs
    when the store is given per key, in history order), ``acknowledged`` (how many ``ok`` writes were judged).

    Writes with unknown outcome (``info``) may or may not be present, and failed ones must not be: see
    :func:`phantom_writes` for the latter.
    """
    per_key, present = _present(final_values)
    acked = [o for o in history.client_ops() if o.type == "ok" and o.f == f]
    if per_key:
        lost: list[Any] = [(o.key, o.value) for o in acked if (freeze(o.key), _typed(o.value)) not in present]
    else:
        lost = [o.value for o in acked if _typed(o.value) not in present]
    evidence = {"lost": lost, "acknowledged": len(acked)}
    check = f"lost_acknowledged_{f}s"
    if lost:
        return invalid(
            check,
            f"{len(lost)} of {len(acked)} acknowledged {f}s missing from the store: {lost[:10]!r}",
            evidence,
        )
    return valid(check, f"all {len(acked)} acknowledged {f}s are in the store", evidence)


def phantom_writes(history: History, final_values: Iterable[Any], f: str = "write") -> Verdict:
    """Valid when the store holds no value that no client attempted, or all of whose attempts definitely
    failed (a retry whose outcome is unknown may have written it). Evidence: ``phantoms``."""
    maybe_written: set[tuple[str, Any]] = set()
    for invoke, done in history.pairs():
        if invoke.f == f and (done is None or done.type in ("ok", "info")):
            maybe_written.add(_typed(invoke.value))
            if done is not None and done.value is not None:
                maybe_written.add(_typed(done.value))
    phantoms = [v for v in final_values if _typed(v) not in maybe_written]
    if phantoms:
        return invalid(
            f"phantom_{f}s",
            f"{len(phantoms)} values in the store nobody wrote: {phantoms[:10]!r}",
            {"phantoms": phantoms},
        )
    return valid(f"phantom_{f}s", "every value in the store was written by a client")
