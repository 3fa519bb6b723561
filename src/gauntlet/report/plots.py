"""Plots of a history, rendered to PNG (base64, for embedding): a timeline and latency over time."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here, and none needed
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from gauntlet.history import NEMESIS, History

COLORS = {"ok": "#2e7d32", "fail": "#c62828", "info": "#ef6c00"}
NS = 1e9


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def fault_spans(history: History, t0: int) -> list[tuple[float, float, str]]:
    """(start s, stop s, label) of each fault in the history."""
    spans: list[tuple[float, float, str]] = []
    open_: dict[str, list[tuple[float, str]]] = {}
    end = max((o.time for o in history.ops), default=t0)
    for o in history.ops:
        if o.process != NEMESIS or ":" not in o.f:
            continue
        name, phase = o.f.rsplit(":", 1)
        detail = o.value or {}
        label = name + (f" {detail.get('host')}" if isinstance(detail, dict) and detail.get("host") else "")
        if phase == "start":
            open_.setdefault(name, []).append(((o.time - t0) / NS, label))
        elif phase == "stop" and open_.get(name):
            start, lbl = open_[name].pop(0)
            spans.append((start, (o.time - t0) / NS, lbl))
    for pending in open_.values():
        spans.extend((s, (end - t0) / NS, lbl) for s, lbl in pending)
    return spans


def timeline_png(history: History, title: str) -> str:
    """Client operations per client (ok / fail / unknown) against faults, and op latency over time."""
    ops = history.client_ops()
    t0 = min((o.time for o in history.ops), default=0)
    processes = sorted({o.process for o in ops})
    lane = {p: i for i, p in enumerate(processes)}
    fig, (ax1, ax2) = plt.subplots(
        2,
        1,
        figsize=(10, 2.2 + 0.25 * len(processes) + 2.2),
        sharex=True,
        gridspec_kw={"height_ratios": [2, 1.4]},
    )
    for start, stop, label in fault_spans(history, t0):
        for ax in (ax1, ax2):
            ax.axvspan(start, stop, color="#90a4ae", alpha=0.25)
        ax1.text(start, len(processes) - 0.4, label, fontsize=7, va="bottom")
    invokes: dict[str, int] = {}
    lat: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in COLORS}
    pts: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in COLORS}
    for o in ops:
        if o.type == "invoke":
            invokes[o.process] = o.time
            continue
        x = (o.time - t0) / NS
        pts[o.type][0].append(x)
        pts[o.type][1].append(lane[o.process])
        if o.process in invokes:
            lat[o.type][0].append(x)
            lat[o.type][1].append((o.time - invokes.pop(o.process)) / 1e6)
    for kind, color in COLORS.items():
        label = {"info": "unknown"}.get(kind, kind)
        ax1.scatter(pts[kind][0], pts[kind][1], s=6, color=color, label=f"{label} ({len(pts[kind][0])})")
        ax2.scatter(lat[kind][0], lat[kind][1], s=5, color=color)
    ax1.set_yticks(range(len(processes)), processes, fontsize=7)
    ax1.set_ylim(-0.8, len(processes) + 0.2)
    ax1.set_title(title, fontsize=10)
    ax1.legend(loc="upper right", fontsize=7, ncols=3)
    ax2.set_ylabel("latency (ms)")
    if any(lat[k][1] for k in lat):
        ax2.set_yscale("log")
    ax2.set_xlabel("seconds since the first operation")
    return _png(fig)


def _label(f: dict[str, Any]) -> str:
    ctx = f.get("context") or {}
    extra = ", ".join(f"{k}={ctx[k]}" for k in ("fault", "mode") if k in ctx and str(ctx[k]) not in f["name"])
    return str(f["name"]) + (f" ({extra})" if extra else "")


def metric_png(title: str, figures: list[dict[str, Any]]) -> str:
    """A horizontal bar per figure (value and unit written next to it), for one panel of the report."""
    figures = figures[:40]
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.28 * len(figures)))
    labels = [_label(f) for f in figures]
    values = [float(f["value"]) for f in figures]
    bars = ax.barh(range(len(figures)), values, color="#5c6bc0")
    top = max(values, default=0.0) or 1.0
    for bar, f, v in zip(bars, figures, values, strict=True):
        ax.text(
            v + top * 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{v:g} {f.get('unit', '')}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(range(len(figures)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.25)
    ax.set_title(title, fontsize=10)
    return _png(fig)
