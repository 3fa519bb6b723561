"""Acknowledged writes that a final read does not contain (Jepsen's "lost writes"), and phantoms."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gauntlet.checkers.verdict import Verdict, invalid, valid
from gauntlet.history import History


def lost_acknowledged_writes(history: History, final_values: Iterable[Any], f: str = "write") -> Verdict:
    """Valid when every ``ok`` write's value is in ``final_values`` (what was read back from the store after
    healing — never the values the test meant to write). Evidence: ``lost`` (values, in history order),
    ``acknowledged`` (how many ``ok`` writes were judged).

    Writes with unknown outcome (``info``) may or may not be present, and failed ones must not be: see
    :func:`phantom_writes` for the latter.
    """
    present = set(final_values)
    acked = [o.value for o in history.client_ops() if o.type == "ok" and o.f == f]
    lost = [v for v in acked if v not in present]
    evidence = {"lost": lost, "acknowledged": len(acked)}
    if lost:
        return invalid(
            f"lost_acknowledged_{f}s",
            f"{len(lost)} of {len(acked)} acknowledged {f}s missing from the store: {lost[:10]!r}",
            evidence,
        )
    return Verdict(
        f"lost_acknowledged_{f}s", True, f"all {len(acked)} acknowledged {f}s are in the store", evidence
    )


def phantom_writes(history: History, final_values: Iterable[Any], f: str = "write") -> Verdict:
    """Valid when the store holds no value that no client attempted, or whose write definitely failed.
    Evidence: ``phantoms`` (values, in the order of ``final_values``)."""
    ops = history.client_ops()
    attempted_ok_or_unknown = {o.value for o in ops if o.f == f and o.type in ("ok", "info")}
    attempted_ok_or_unknown |= {o.value for o in ops if o.f == f and o.type == "invoke"} - {
        o.value for o in ops if o.f == f and o.type == "fail"
    }
    phantoms = [v for v in final_values if v not in attempted_ok_or_unknown]
    if phantoms:
        return invalid(
            f"phantom_{f}s",
            f"{len(phantoms)} values in the store nobody wrote: {phantoms[:10]!r}",
            {"phantoms": phantoms},
        )
    return valid(f"phantom_{f}s", "every value in the store was written by a client")
