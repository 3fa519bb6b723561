"""Acknowledged writes that a final read does not contain (Jepsen's "lost writes")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gauntlet.history import History


def lost_acknowledged_writes(history: History, final_values: Iterable[Any], f: str = "write") -> list[Any]:
    """Values of ``ok`` writes missing from ``final_values`` (what the store holds after healing).

    Writes with unknown outcome (``info``) may or may not be present, and failed ones must not be: see
    :func:`phantom_writes` for the latter.
    """
    present = set(final_values)
    acked = [o.value for o in history.client_ops() if o.type == "ok" and o.f == f]
    return [v for v in acked if v not in present]


def phantom_writes(history: History, final_values: Iterable[Any], f: str = "write") -> list[Any]:
    """Values present in the store that no client attempted, or whose write definitely failed."""
    attempted_ok_or_unknown = {o.value for o in history.client_ops() if o.f == f and o.type in ("ok", "info")}
    attempted_ok_or_unknown |= {o.value for o in history.client_ops() if o.f == f and o.type == "invoke"} - {
        o.value for o in history.client_ops() if o.f == f and o.type == "fail"
    }
    return [v for v in final_values if v not in attempted_ok_or_unknown]
