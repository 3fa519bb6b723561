"""Durable timers: every scheduled, non-cancelled timer fires; a cancelled one never does.

History: ``f="schedule"``, ``key=timer id`` (``ok``: the runtime took it; its value the due time, epoch
seconds); ``f="cancel"``, ``key=timer id`` (``ok``: the cancel was acknowledged before the timer fired;
``fail``: refused, e.g. already fired); and one final ``f="read_timers"`` whose ``ok`` value is the
runtime's record of every timer: ``[{"id", "due_at", "cancelled", "fires": [{"runner", "at"}, ...]}]``.

Broken when an acknowledged, not-cancelled timer never fired (at least once is the promise), when a timer
whose cancel was acknowledged fired, or when a fired timer was never scheduled by anyone. Duplicates (a
timer fired twice) and lateness (first firing minus due time, p50 / p99 / max) are reported as figures.
Unknown without the final read.
"""

from __future__ import annotations

from typing import Any

from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid
from gauntlet.history import History, pair_ops

CHECK = "timers"
SHOWN = 10


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else 0.0


def timers(history: History) -> Verdict:
    """The verdict on a history of schedules, cancels and the final read (see the module docstring)."""
    scheduled: set[str] = set()
    attempted: set[str] = set()
    cancelled_ok: set[str] = set()
    final: list[dict[str, Any]] | None = None
    for inv, done in pair_ops(history.client_ops()):
        if inv.f == "schedule":
            attempted.add(str(inv.key))
            if done is not None and done.type == "ok":
                scheduled.add(str(inv.key))
        elif inv.f == "cancel" and done is not None and done.type == "ok":
            cancelled_ok.add(str(inv.key))
        elif inv.f == "read_timers" and done is not None and done.type == "ok":
            final = list(done.value or [])
    if final is None:
        return unknown(CHECK, "no final read of the timers")
    record = {str(t["id"]): t for t in final}
    never = sorted(t for t in scheduled - cancelled_ok if not (record.get(t) or {}).get("fires"))
    fired_cancelled = sorted(t for t in cancelled_ok if (record.get(t) or {}).get("fires"))
    phantom = sorted(t for t, r in record.items() if r.get("fires") and t not in attempted)
    duplicates = sorted(t for t, r in record.items() if len(r.get("fires") or []) > 1)
    lateness = [float(r["fires"][0]["at"]) - float(r["due_at"]) for r in record.values() if r.get("fires")]
    figures = {
        "scheduled": float(len(scheduled)),
        "cancelled": float(len(cancelled_ok)),
        "fired": float(len(lateness)),
        "duplicates": float(len(duplicates)),
        "lateness_p50_s": round(_percentile(lateness, 0.5), 3),
        "lateness_p99_s": round(_percentile(lateness, 0.99), 3),
        "lateness_max_s": round(max(lateness, default=0.0), 3),
    }
    evidence = {
        "never_fired": never[:SHOWN],
        "fired_after_cancel": fired_cancelled[:SHOWN],
        "phantom": phantom[:SHOWN],
        "duplicates": duplicates[:SHOWN],
    }
    broken = []
    if never:
        broken.append(f"{len(never)} acknowledged timers never fired ({never[:5]})")
    if fired_cancelled:
        broken.append(
            f"{len(fired_cancelled)} timers fired after an acknowledged cancel ({fired_cancelled[:5]})"
        )
    if phantom:
        broken.append(f"{len(phantom)} timers fired that nobody scheduled ({phantom[:5]})")
    if broken:
        return invalid(CHECK, "; ".join(broken), evidence, **figures)
    if not scheduled:
        return unknown(CHECK, "no timer was acknowledged", evidence, **figures)
    return valid(
        CHECK,
        f"all {len(scheduled - cancelled_ok)} acknowledged timers fired, none of {len(cancelled_ok)} cancelled "
        f"did; {len(duplicates)} fired twice; lateness p50 {figures['lateness_p50_s']}s, "
        f"p99 {figures['lateness_p99_s']}s",
        evidence,
        **figures,
    )
