"""One owner at a time, judged from what clients were answered (a sharded runtime's promise).

History: any client operation whose ``ok`` completion names, in its ``extra``, the fencing ``token`` that
served it and ``served_by`` (the runner), and either a ``shard`` or none (then the op's ``key`` is the
owned thing, e.g. a singleton). Tokens are the owner's lease generation: a later owner holds a larger one.

Broken when
- one token was served by two runners (two owners of one generation), or
- an operation was served under an older token after an operation under a newer token had completed
  before it was invoked: a stale owner served after the next owner had (real-time order, so no overlap of
  in-flight operations is blamed).

Figures: owned things judged, operations judged, hand-overs (distinct tokens - 1, summed).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from gauntlet.checkers._per_key import brief, pos
from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid
from gauntlet.history import History, Op, pair_ops

CHECK = "one_owner_at_a_time"
SHOWN = 10


def _owned(done: Op) -> Any:
    shard = done.extra.get("shard")
    return f"shard {shard}" if shard is not None else f"{done.key}"


def one_owner_at_a_time(history: History) -> Verdict:
    """Valid when every shard (or singleton) was served by one runner per token and never by an older token
    after a newer one had served (evidence: the offending pairs of operations)."""
    served: dict[Any, list[tuple[Op, Op]]] = {}
    for inv, done in pair_ops(history.client_ops()):
        if done is None or done.type != "ok" or done.extra.get("token") is None:
            continue
        served.setdefault(_owned(done), []).append((inv, done))
    if not served:
        return unknown(CHECK, "no operation named the token that served it")
    two_runners: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    handovers = 0
    for owned, ops in served.items():
        by_token: dict[int, set[str]] = {}
        for _, done in ops:
            by_token.setdefault(int(done.extra["token"]), set()).add(str(done.extra.get("served_by")))
        handovers += len(by_token) - 1
        two_runners += [
            {"owned": owned, "token": t, "runners": sorted(r)} for t, r in by_token.items() if len(r) > 1
        ]
        # newest token among the operations completed before each invocation
        completions = sorted(ops, key=lambda p: pos(p[1]))
        best: tuple[int, Op] | None = None
        i = 0
        for inv, done in sorted(ops, key=lambda p: pos(p[0])):
            while i < len(completions) and pos(completions[i][1]) < pos(inv):
                c = completions[i][1]
                if best is None or int(c.extra["token"]) > best[0]:
                    best = (int(c.extra["token"]), c)
                i += 1
            if best is not None and int(done.extra["token"]) < best[0]:
                stale.append(
                    {
                        "owned": owned,
                        "served": {
                            **(brief(done) or {}),
                            "token": done.extra["token"],
                            "by": done.extra.get("served_by"),
                        },
                        "after": {
                            **(brief(best[1]) or {}),
                            "token": best[0],
                            "by": best[1].extra.get("served_by"),
                        },
                    }
                )
    judged = sum(len(v) for v in served.values())
    figures = {"owned": float(len(served)), "operations": float(judged), "handovers": float(handovers)}
    if two_runners or stale:
        parts = []
        if two_runners:
            parts.append(f"{len(two_runners)} tokens served by two runners")
        if stale:
            first = stale[0]
            parts.append(
                f"{len(stale)} operations served by a stale owner after a newer one had served "
                f"(first: {first['owned']} by {first['served']['by']} under token {first['served']['token']} "
                f"after {first['after']['by']} under {first['after']['token']})"
            )
        return invalid(
            CHECK, "; ".join(parts), {"two_runners": two_runners[:SHOWN], "stale": stale[:SHOWN]}, **figures
        )
    return valid(
        CHECK, f"{judged} operations on {len(served)} shards/singletons: one owner at a time", {}, **figures
    )


def increasing(history: History, f: str = "next-id") -> Verdict:
    """A sequence never goes backwards: an ``ok`` ``f`` completed before another was invoked handed out a
    smaller number (and none twice: gauntlet.checkers.unique_ids says which)."""
    check = "sequence_increasing"
    done_ops = [
        (inv, done)
        for inv, done in pair_ops(history.client_ops())
        if inv.f == f and done is not None and done.type == "ok" and isinstance(done.value, int)
    ]
    if not done_ops:
        return unknown(check, f"no {f} ended ok")
    completions = sorted(done_ops, key=lambda p: pos(p[1]))
    best: tuple[int, Op] | None = None
    back: list[dict[str, Any]] = []
    i = 0
    for inv, done in sorted(done_ops, key=lambda p: pos(p[0])):
        while i < len(completions) and pos(completions[i][1]) < pos(inv):
            c = completions[i][1]
            if best is None or int(c.value) > best[0]:
                best = (int(c.value), c)
            i += 1
        if best is not None and int(done.value) <= best[0]:
            back.append({"got": brief(done), "after": brief(best[1])})
    figures = {"handed_out": float(len(done_ops)), "backwards": float(len(back))}
    if back:
        b = back[0]
        return invalid(
            check,
            f"{len(back)} numbers not above one handed out before they were asked for (first: "
            f"{b['got']['value']} after {b['after']['value']})",
            {"backwards": back[:SHOWN]},
            **figures,
        )
    return valid(check, f"{len(done_ops)} numbers, each above every one handed out before it", {}, **figures)


def singleton_holders(history: History, f: str = "next-id") -> Verdict:
    """The singleton's leader history shows one holder at a time: every number holder ``t`` handed out lies in
    its own range, from its ``first_seq`` up to (not including) its successor's -- so no two holders handed
    out numbers at once, whatever the overlap of their leases -- and every holder that served is in it.

    History: the ``ok`` ``f`` operations, each naming the ``token`` that served it in its ``extra`` (its value
    the number), and one final ``f="read_holders"`` whose ``ok`` value is the runtime's leader history:
    ``[{"runner", "token", "acquired_at", "first_seq"}, ...]`` (acquired_at on the database's clock, one clock
    for every holder). Also broken when that history is out of order (a later token acquired earlier, or
    starting below an earlier holder's start). Unknown without the final read or any number served.
    Figures: holders, numbers judged, shortest and longest time between two acquisitions."""
    check = "singleton_holders"
    final: list[dict[str, Any]] | None = None
    served: list[Op] = []
    for inv, done in pair_ops(history.client_ops()):
        if done is None or done.type != "ok":
            continue
        if inv.f == "read_holders":
            final = list(done.value or [])
        elif inv.f == f and isinstance(done.value, int) and done.extra.get("token") is not None:
            served.append(done)
    if final is None:
        return unknown(check, "no final read of the singleton's leader history")
    if not served:
        return unknown(check, f"no {f} ended ok naming its token")
    holders = sorted(final, key=lambda h: int(h["token"]))
    disorder = [
        {"earlier": a, "later": b}
        for a, b in pairwise(holders)
        if float(b["acquired_at"]) < float(a["acquired_at"]) or int(b["first_seq"]) < int(a["first_seq"])
    ]
    ranges: dict[int, tuple[int, float, str]] = {}
    for n, h in enumerate(holders):
        end = int(holders[n + 1]["first_seq"]) if n + 1 < len(holders) else float("inf")
        ranges[int(h["token"])] = (int(h["first_seq"]), end, str(h["runner"]))
    unrecorded: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    for done in served:
        token = int(done.extra["token"])
        if token not in ranges:
            unrecorded.append({**(brief(done) or {}), "token": token, "by": done.extra.get("served_by")})
            continue
        start, end, runner = ranges[token]
        if not start <= int(done.value) < end:
            outside.append({**(brief(done) or {}), "token": token, "holder": runner, "range": [start, end]})
    gaps = [float(b["acquired_at"]) - float(a["acquired_at"]) for a, b in pairwise(holders)]
    figures = {
        "holders": float(len(holders)),
        "numbers": float(len(served)),
        "min_handover_gap_s": round(min(gaps, default=0.0), 3),
        "max_handover_gap_s": round(max(gaps, default=0.0), 3),
    }
    if disorder or unrecorded or outside:
        parts = []
        if outside:
            o = outside[0]
            parts.append(
                f"{len(outside)} numbers handed out outside their holder's range (first: {o['value']} by "
                f"{o['holder']} under token {o['token']}, its range [{o['range'][0]}, {o['range'][1]}))"
            )
        if unrecorded:
            parts.append(f"{len(unrecorded)} numbers served under a token the leader history does not hold")
        if disorder:
            parts.append(f"{len(disorder)} hand-overs out of order in the leader history")
        return invalid(
            check,
            "; ".join(parts),
            {"outside": outside[:SHOWN], "unrecorded": unrecorded[:SHOWN], "disorder": disorder[:SHOWN]},
            **figures,
        )
    return valid(
        check,
        f"{len(served)} numbers from {len(holders)} holders, each within its own range: one holder at a time",
        {},
        **figures,
    )
