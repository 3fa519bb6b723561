"""Render the report page from the runs found in a report directory.

The page is the Jinja2 template ``templates/report.html.j2``, rendered with autoescape on: a check's name,
its message, a figure or a host fact is whatever a run left on disk, so it is text, never markup. This
module turns each run into the plain values the template lays out (formatting, order, truncation).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from gauntlet.history import History
from gauntlet.report.data import METRICS, Run, find_runs
from gauntlet.report.plots import metric_png, timeline_png
from gauntlet.report.promises import NO_FAULT, Promise, figures_once, promise_matrix

# At most this many timelines per run: the ones with faults first, then the busiest.
MAX_TIMELINES = 12
TEMPLATE = "report.html.j2"


@cache
def environment() -> jinja2.Environment:
    """The template environment: the package's templates, autoescaped, an unknown name an error."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gauntlet.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _figure_value(f: dict[str, Any]) -> str:
    v = f.get("value")
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def _chosen_histories(run: Run) -> list[tuple[str, History]]:
    items = list(run.histories.items())
    items.sort(key=lambda kv: (not kv[1].faults(), -len(kv[1].client_ops())))
    return [kv for kv in items if kv[1].client_ops()][:MAX_TIMELINES]


def _held(run: Run) -> bool:
    return run.ok and run.counts["passed"] > 0  # a run that checked nothing held no promise


def proof_view(run: Run) -> dict[str, Any] | None:
    """The planted-defect proof: defect, the check that names it, caught or not, restored, seconds."""
    if not run.proof:
        return None
    caught = sum(1 for r in run.proof if r.get("caught"))
    rows = [
        {
            "defect": r["defect"],
            "check": r["check"],
            "caught": bool(r.get("caught")),
            "restored": bool(r.get("restored")),
            "seconds": r.get("seconds", 0),
            "detail": str(r.get("detail", ""))[:300],
        }
        for r in run.proof
    ]
    return {"caught": caught, "ok": caught == len(rows) and all(r["restored"] for r in rows), "rows": rows}


def _promise_rows(faults: list[str], promises: list[Promise]) -> list[dict[str, Any]]:
    """One row per promise, one cell per fault column (verdict None: not judged under that fault)."""
    return [
        {
            "module": p.module,
            "name": p.name,
            "cells": [
                {
                    "verdict": p.verdict(f),
                    "message": "; ".join(ch.message[:200] for ch in p.cells.get(f, []) if ch.message),
                }
                for f in faults
            ],
        }
        for p in promises
    ]


def _panels(run: Run) -> list[dict[str, Any]]:
    """The figure panels (png None: no figure of that kind); none at all for a run without figures."""
    metrics = run.metrics()
    if not any(metrics.values()):
        return []
    return [
        {
            "key": key,
            "title": title,
            "png": metric_png(title, metrics[key]) if metrics[key] else None,
            "count": len(metrics[key]),
        }
        for key, title, _ in METRICS
    ]


def _figure_rows(run: Run, faults: list[str]) -> list[dict[str, Any]]:
    """Each figure once with its fault, the no-fault ones first."""
    once = sorted(figures_once(run.figures, faults), key=lambda f: (f["fault"] != NO_FAULT, f["fault"]))
    return [
        {
            "fault": f["fault"],
            "name": f["name"],
            "value": _figure_value(f),
            "unit": f.get("unit", ""),
            "context": ", ".join(
                f"{k}={v}" for k, v in sorted((f.get("context") or {}).items()) if k != "fault"
            ),
        }
        for f in once
    ]


def _host_rows(run: Run) -> list[dict[str, Any]] | None:
    """The hosts of topology.json (None: the run wrote none)."""
    if not run.topology:
        return None
    return [
        {
            "name": h["name"],
            "groups": ", ".join(h.get("groups", [])),
            "address": h.get("address", h.get("error", "")),
            "connection": h.get("connection", ""),
            "versions": ", ".join(f"{k} {v}" for k, v in sorted((h.get("packages") or {}).items())),
        }
        for h in run.topology.get("hosts", [])
    ]


def run_view(run: Run) -> dict[str, Any]:
    """What the template shows of one run: its promise matrix first, then its detail."""
    held = _held(run)
    faults, promises = promise_matrix(run.checks)
    return {
        "name": run.name,
        "counts": run.counts,
        "held": held,
        "said": "every promise held" if held else ("NOTHING CHECKED" if run.ok else "PROMISES BROKEN"),
        "faults": faults,
        "promises": _promise_rows(faults, promises),
        "proof": proof_view(run),
        "broken": [
            {"name": ch.name, "message": ch.message[:600]}
            for ch in run.checks
            if ch.verdict in ("failed", "error")
        ],
        "timelines": [
            {
                "name": name,
                "png": timeline_png(h, name),
                "ops": len(h.client_ops()) // 2,
                "faults": len(h.faults()),
            }
            for name, h in _chosen_histories(run)
        ],
        "panels": _panels(run),
        "figures": _figure_rows(run, faults),
        "checks": [
            {
                "module": ch.classname.rsplit(".", 1)[-1],
                "name": ch.name,
                "verdict": ch.verdict,
                "seconds": ch.seconds,
                "message": ch.message[:600],
            }
            for ch in run.checks
        ],
        "hosts": _host_rows(run),
    }


def render_page(runs: list[Run], title: str, written: datetime) -> str:
    """The whole page of ``runs`` (self-contained: plots embedded as PNG data)."""
    template = environment().get_template(TEMPLATE)
    return template.render(
        title=title,
        written=f"{written:%Y-%m-%d %H:%M UTC}",
        held=all(_held(r) for r in runs),
        runs=[run_view(r) for r in runs],
    )


def build_report(report_dir: str | Path, title: str = "gauntlet.cluster run") -> Path:
    """Write ``<report_dir>/index.html`` from every run found there; return its path."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    out = report_dir / "index.html"
    out.write_text(render_page(find_runs(report_dir), title, datetime.now(UTC)), encoding="utf-8")
    return out
