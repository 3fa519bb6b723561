"""Render the report page from the runs found in a report directory."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gauntlet.history import History
from gauntlet.report.data import METRICS, Run, find_runs
from gauntlet.report.plots import metric_png, timeline_png
from gauntlet.report.promises import NO_FAULT, figures_once, promise_matrix

# At most this many timelines per run: the ones with faults first, then the busiest.
MAX_TIMELINES = 12

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
font-size:.9rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
.passed{color:#2e7d32}.failed,.error{color:#c62828;font-weight:bold}.skipped{color:#777}
.unknown{color:#e65100;font-weight:bold}table.promises td.passed{background:#e8f5e9}
table.promises td.failed,table.promises td.error{background:#ffebee}
.verdict-ok{background:#e8f5e9;padding:.5rem 1rem}.verdict-bad{background:#ffebee;padding:.5rem 1rem}
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}pre{white-space:pre-wrap;font-size:.8rem;margin:0}
"""

# Tells a headless browser (and a person) that every plot decoded: body gets data-images-loaded=N.
JS = """
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img.plot')];
  document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesTotal = imgs.length;
});
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _figure_value(f: dict[str, Any]) -> str:
    v = f.get("value")
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def _chosen_histories(run: Run) -> list[tuple[str, History]]:
    items = list(run.histories.items())
    items.sort(key=lambda kv: (not kv[1].faults(), -len(kv[1].client_ops())))
    return [kv for kv in items if kv[1].client_ops()][:MAX_TIMELINES]


def render_promises(run: Run) -> str:
    """The run's matrix of promises and faults: the first thing the page answers."""
    c = run.counts
    held = run.ok and c["passed"] > 0  # a run that checked nothing held no promise
    said = "every promise held" if held else ("NOTHING CHECKED" if run.ok else "PROMISES BROKEN")
    out = [
        f'<h3><a href="#run-{_e(run.name)}">{_e(run.name)}</a></h3>',
        f'<p class="{"verdict-ok" if held else "verdict-bad"}">{said}: '
        f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped</p>",
    ]
    faults, promises = promise_matrix(run.checks)
    if not promises:
        return "\n".join([*out, render_proof(run)])
    out.append('<table class="promises"><tr><th>promise</th>')
    out.extend(f"<th>{_e(f)}</th>" for f in faults)
    out.append("</tr>")
    for p in promises:
        out.append(f'<tr class="promise"><td>{_e(p.module)}::{_e(p.name)}</td>')
        for f in faults:
            v = p.verdict(f)
            if v is None:
                out.append("<td></td>")
                continue
            msg = "; ".join(ch.message[:200] for ch in p.cells[f] if ch.message)
            out.append(f'<td class="{v}" title="{_e(msg)}">{v}</td>')
        out.append("</tr>")
    out.append("</table>")
    out.append(render_proof(run))
    broken = [ch for ch in run.checks if ch.verdict in ("failed", "error")]
    if broken:
        out.append("<table><tr><th>broken</th><th>why</th></tr>")
        for ch in broken:
            out.append(
                f'<tr class="broken"><td>{_e(ch.name)}</td><td><pre>{_e(ch.message[:600])}</pre></td></tr>'
            )
        out.append("</table>")
    return "\n".join(out)


def render_proof(run: Run) -> str:
    """The planted-defect proof: defect, the check that names it, caught or not, restored, seconds."""
    if not run.proof:
        return ""
    caught = sum(1 for r in run.proof if r.get("caught"))
    ok = caught == len(run.proof) and all(r.get("restored") for r in run.proof)
    out = [
        f'<p class="{"verdict-ok" if ok else "verdict-bad"}">Planted-defect proof: {caught} of '
        f"{len(run.proof)} planted defects caught by the check that names them"
        f"{'' if ok else ' (caught must equal planted)'}</p>",
        "<table class='proof'><tr><th>defect</th><th>check</th><th>caught</th><th>passes again</th>"
        "<th>seconds</th><th>why</th></tr>",
    ]
    for r in run.proof:
        cls = "passed" if r.get("caught") and r.get("restored") else "failed"
        out.append(
            f'<tr class="{cls}"><td>{_e(r["defect"])}</td><td>{_e(r["check"])}</td>'
            f"<td>{'caught' if r.get('caught') else 'MISSED'}</td><td>{'yes' if r.get('restored') else 'NO'}</td>"
            f"<td>{r.get('seconds', 0):.0f}</td><td><pre>{_e(str(r.get('detail', ''))[:300])}</pre></td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def render_run(run: Run) -> str:
    """One run's detail, in the order a reader asks: timelines, figures (once each, with their fault),
    every check with its time, the hosts."""
    parts = [f'<section id="run-{_e(run.name)}"><h2>{_e(run.name)}</h2>']
    faults, _ = promise_matrix(run.checks)
    chosen = _chosen_histories(run)
    if chosen:
        parts.append(
            "<h3>Timelines</h3><p>Each dot is a completed client operation (green ok, red failed, "
            "orange unknown) on its client's lane; grey bands are faults. Below: latency of each "
            "operation over time.</p>"
        )
        for name, h in chosen:
            png = timeline_png(h, name)
            n_ops = len(h.client_ops()) // 2
            parts.append(
                f'<figure><img class="plot" alt="timeline of {_e(name)}" src="data:image/png;base64,{png}">'
                f"<figcaption>{_e(name)}: {n_ops} operations, {len(h.faults())} fault events</figcaption></figure>"
            )
    metrics = run.metrics()
    if any(metrics.values()):
        parts.append(
            "<h3>Figures</h3><p>Measured by the checks (BENCH lines) or derived from their histories; "
            "not asserted unless a check says so.</p>"
        )
        for key, title, _ in METRICS:
            figs = metrics[key]
            if not figs:
                parts.append(
                    f'<p class="metric-missing" data-metric="{key}">{_e(title)}: no figure in this run.</p>'
                )
                continue
            png = metric_png(title, figs)
            parts.append(
                f'<figure class="metric" data-metric="{key}"><img class="plot" alt="{_e(title)}" '
                f'src="data:image/png;base64,{png}"><figcaption>{_e(title)}: {len(figs)} figures</figcaption></figure>'
            )
    if run.figures:
        parts.append(
            '<table class="figures"><tr><th>fault</th><th>figure</th><th>value</th>'
            "<th>unit</th><th>context</th></tr>"
        )
        for f in sorted(
            figures_once(run.figures, faults), key=lambda f: (f["fault"] != NO_FAULT, f["fault"])
        ):
            ctx = ", ".join(f"{k}={v}" for k, v in sorted((f.get("context") or {}).items()) if k != "fault")
            parts.append(
                f'<tr class="figure"><td>{_e(f["fault"])}</td><td>{_e(f["name"])}</td>'
                f"<td>{_e(_figure_value(f))}</td><td>{_e(f.get('unit', ''))}</td><td>{_e(ctx)}</td></tr>"
            )
        parts.append("</table>")
    if run.checks:
        parts.append(
            "<h3>Checks</h3><table><tr><th>check</th><th>verdict</th><th>seconds</th><th>detail</th></tr>"
        )
        for ch in run.checks:
            parts.append(
                f'<tr class="check"><td>{_e(ch.classname.rsplit(".", 1)[-1])}::{_e(ch.name)}</td>'
                f'<td class="{ch.verdict}">{ch.verdict}</td><td>{ch.seconds:.1f}</td>'
                f"<td><pre>{_e(ch.message[:600])}</pre></td></tr>"
            )
        parts.append("</table>")
    if run.topology:
        parts.append(
            "<h3>Topology</h3><table><tr><th>host</th><th>groups</th><th>address</th><th>connection</th>"
            "<th>versions</th></tr>"
        )
        for h in run.topology.get("hosts", []):
            versions = ", ".join(f"{k} {v}" for k, v in sorted((h.get("packages") or {}).items()))
            parts.append(
                f"<tr><td>{_e(h['name'])}</td><td>{_e(', '.join(h.get('groups', [])))}</td>"
                f"<td>{_e(h.get('address', h.get('error', '')))}</td><td>{_e(h.get('connection', ''))}</td>"
                f"<td>{_e(versions)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)


def build_report(report_dir: str | Path, title: str = "gauntlet.cluster run") -> Path:
    """Write ``<report_dir>/index.html`` from every run found there; return its path."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    runs = find_runs(report_dir)
    body = [f"<h1>{_e(title)}</h1>", f"<p>Written {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.</p>"]
    if not runs:
        body.append("<p>No run found in this directory: nothing was tested.</p>")
    else:
        held = all(r.ok and r.counts["passed"] > 0 for r in runs)
        body.append(
            f'<h2 class="{"verdict-ok" if held else "verdict-bad"}">'
            f"{'Every promise held' if held else 'Not every promise held'}</h2>"
            "<p>One row per promise (a check), one column per fault it was judged under; "
            "the cell is the worst verdict of its runs. Details per run below.</p>"
        )
        body.extend(render_promises(r) for r in runs)
    body.extend(render_run(r) for r in runs)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{CSS}</style>"
        f"<script>{JS}</script></head><body>{''.join(body)}</body></html>"
    )
    out = report_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out
