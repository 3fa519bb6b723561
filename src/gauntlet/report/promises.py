"""What the report page answers first: did every promise hold, per topology and fault?

A *promise* is one check function (``test_acknowledged_writes_survive_failover``); its parametrizations
name the fault it was judged under (``[kill]``, ``[isolate-run1]``). The matrix has one row per promise and
one column per fault (``—`` for checks that inject none); a cell is the worst verdict of its runs
(failed over unknown over passed; a skip is shown, never counted as a pass). Figures are listed once each,
labelled with their fault: a series of one sample is one figure, not a median, a p99 and a max.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gauntlet.report.data import Check

#: Column of checks that inject no fault.
NO_FAULT = "—"
# Worst first: the cell of several runs (run1, run2…) shows the worst of them.
_RANK = {"failed": 0, "error": 0, "unknown": 1, "skipped": 2, "passed": 3}
_RUN_SUFFIX = re.compile(r"-run\d+$")
_SERIES_SUFFIX = re.compile(r"_(median|p99|max)$")


@dataclass
class Promise:
    """One row of the matrix: a check function and its verdict under each fault."""

    name: str
    module: str
    cells: dict[str, list[Check]] = field(default_factory=dict)

    def verdict(self, fault: str) -> str | None:
        """The worst verdict of the promise's runs under ``fault`` (None: not judged under it)."""
        checks = self.cells.get(fault)
        if not checks:
            return None
        return min((c.verdict for c in checks), key=lambda v: _RANK.get(v, 0))

    @property
    def held(self) -> bool:
        """Every run of the promise passed (skips aside)."""
        return all(c.verdict in ("passed", "skipped") for cs in self.cells.values() for c in cs)


def _fault_names() -> frozenset[str]:
    from gauntlet.nemesis import catalogue  # the report names faults as the catalogue does

    return frozenset(catalogue.FAULTS)


def split_check_name(name: str, faults: frozenset[str] | None = None) -> tuple[str, str]:
    """``test_x[kill-run1]`` → (``test_x``, ``kill``); ``test_y`` → (``test_y``, NO_FAULT). A parameter that
    names no fault of the catalogue (``[dcs_down]``, ``[guarded]``) stays in the promise's name."""
    base, sep, params = name.partition("[")
    if not sep:
        return base, NO_FAULT
    params = _RUN_SUFFIX.sub("", params.rstrip("]"))
    first, _, rest = params.partition("-")
    if first in (_fault_names() if faults is None else faults):
        return (f"{base}[{rest}]" if rest else base), first
    return (f"{base}[{params}]" if params else base), NO_FAULT


def promise_matrix(checks: list[Check]) -> tuple[list[str], list[Promise]]:
    """The fault columns (no-fault first, then in order of appearance) and the rows, broken ones first."""
    faults: list[str] = []
    rows: dict[tuple[str, str], Promise] = {}
    known = _fault_names()
    for c in checks:
        base, fault = split_check_name(c.name, known)
        module = c.classname.rsplit(".", 1)[-1]
        row = rows.setdefault((module, base), Promise(base, module))
        row.cells.setdefault(fault, []).append(c)
        if fault not in faults:
            faults.append(fault)
    faults.sort(key=lambda f: f != NO_FAULT)  # stable: keeps the order of appearance otherwise
    ordered = sorted(rows.values(), key=lambda p: p.held)  # broken promises first, stable otherwise
    return faults, ordered


def figure_fault(fig: dict[str, Any], faults: list[str]) -> str:
    """The fault a figure was measured under: its ``fault`` context, else a fault name its name ends with."""
    ctx = fig.get("context") or {}
    if ctx.get("fault"):
        return str(ctx["fault"])
    name = _SERIES_SUFFIX.sub("", str(fig.get("name", "")))
    for f in sorted((f for f in faults if f != NO_FAULT), key=len, reverse=True):
        if name.endswith(f"_{f}"):
            return f
    return NO_FAULT


def figures_once(figures: list[dict[str, Any]], faults: list[str]) -> list[dict[str, Any]]:
    """Each figure once, labelled with its fault: an exact repeat (same name, value and context) is
    dropped, and a median/p99/max series of a single sample becomes that one sample."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for fig in figures:
        name = str(fig.get("name", ""))
        ctx = dict(fig.get("context") or {})
        series = _SERIES_SUFFIX.search(name)
        if series and ctx.get("n") == 1:
            name = name[: series.start()]
        key = (name, repr(fig.get("value")), repr(sorted((k, str(v)) for k, v in ctx.items())))
        if key in seen:
            continue
        seen.add(key)
        out.append({**fig, "name": name, "fault": figure_fault({**fig, "name": name}, faults)})
    return out
