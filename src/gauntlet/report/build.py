"""Render the report page from the runs found in a report directory."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

from gauntlet.history import History
from gauntlet.report.data import METRICS, Run, find_runs
from gauntlet.report.plots import metric_png, timeline_png

# At most this many timelines per run: the ones with faults first, then the busiest.
MAX_TIMELINES = 12
# Figures shown in the headline table, by name fragment (all figures are listed per run below).
HEADLINE = ("rto", "lost", "staleness", "lag", "election", "switchover", "failover")

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
font-size:.9rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
.passed{color:#2e7d32}.failed,.error{color:#c62828;font-weight:bold}.skipped{color:#777}
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


def _figure_value(f: dict) -> str:
    v = f.get("value")
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def _chosen_histories(run: Run) -> list[tuple[str, History]]:
    items = list(run.histories.items())
    items.sort(key=lambda kv: (not kv[1].faults(), -len(kv[1].client_ops())))
    return [kv for kv in items if kv[1].client_ops()][:MAX_TIMELINES]


def render_run(run: Run) -> str:
    parts = [f'<section id="run-{_e(run.name)}"><h2>{_e(run.name)}</h2>']
    c = run.counts
    verdict = "verdict-ok" if run.ok else "verdict-bad"
    parts.append(
        f'<p class="{verdict}">{c["passed"]} passed, {c["failed"]} failed, {c["error"]} errors, '
        f"{c['skipped']} skipped</p>"
    )
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
            '<h3>All figures</h3><table class="figures"><tr><th>figure</th><th>value</th>'
            "<th>unit</th><th>context</th></tr>"
        )
        for f in run.figures:
            ctx = ", ".join(f"{k}={v}" for k, v in sorted((f.get("context") or {}).items()))
            parts.append(
                f'<tr class="figure"><td>{_e(f["name"])}</td><td>{_e(_figure_value(f))}</td>'
                f"<td>{_e(f.get('unit', ''))}</td><td>{_e(ctx)}</td></tr>"
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
    parts.append("</section>")
    return "\n".join(parts)


def build_report(report_dir: str | Path, title: str = "gauntlet.cluster run") -> Path:
    """Write ``<report_dir>/index.html`` from every run found there; return its path."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    runs = find_runs(report_dir)
    headline = [(r.name, f) for r in runs for f in r.figures if any(k in f["name"] for k in HEADLINE)]
    body = [f"<h1>{_e(title)}</h1>", f"<p>Written {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.</p>"]
    if not runs:
        body.append("<p>No run found in this directory: nothing was tested.</p>")
    body.append("<table><tr><th>run</th><th>passed</th><th>failed</th><th>errors</th><th>skipped</th></tr>")
    for r in runs:
        c = r.counts
        body.append(
            f'<tr><td><a href="#run-{_e(r.name)}">{_e(r.name)}</a></td><td class="passed">{c["passed"]}</td>'
            f'<td class="failed">{c["failed"]}</td><td class="error">{c["error"]}</td>'
            f'<td class="skipped">{c["skipped"]}</td></tr>'
        )
    body.append("</table>")
    if headline:
        body.append("<h2>Headline figures</h2><table><tr><th>run</th><th>figure</th><th>value</th></tr>")
        for run_name, f in headline:
            body.append(
                f'<tr class="headline"><td>{_e(run_name)}</td><td>{_e(f["name"])}</td>'
                f"<td>{_e(_figure_value(f))} {_e(f.get('unit', ''))}</td></tr>"
            )
        body.append("</table>")
    body.extend(render_run(r) for r in runs)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{CSS}</style>"
        f"<script>{JS}</script></head><body>{''.join(body)}</body></html>"
    )
    out = report_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out
