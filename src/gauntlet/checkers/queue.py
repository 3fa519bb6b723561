"""A replicated stream (a queue, a log: NATS JetStream, Kafka) judged from its history and its replicas' logs.

History conventions (one stream per history; messages compare as ``str``, so a client decodes bytes first):

* ``f="publish"``: the invoke's ``value`` is the message (its id, or the payload when that is unique). An
  ``ok`` completion is an acknowledged publish; its ``value`` is the broker's acknowledgement as a mapping
  with ``seq`` (the stream sequence the message got; other keys such as ``stream`` or ``duplicate`` are
  ignored) when the broker gives one — any other value (the message kept, as
  :func:`~gauntlet.clients.base.record` without ``returns_value`` leaves it) means no sequence is known.
  ``fail``: certainly not published. ``info`` (or never completed): unknown, it may or may not be there.
  A retry is another ``publish`` of the same message.
* ``f="consume"``: a fetch from a durable consumer (``key`` names the durable; ``None`` is one durable). The
  ``ok`` completion's ``value`` is the list of what it delivered, in delivery order, each a ``(seq,
  message)`` pair (a list after JSON), a mapping with ``seq`` and ``message``, or a bare message (its
  sequence is then taken from the replicas' logs when they hold it at exactly one sequence). ``None`` is
  an empty fetch. An ``info`` consume may have delivered messages nobody saw (the broker redelivers them).
* ``f="read_log"``: the final read of one replica's whole log, after the faults healed. The invoke's
  ``value`` names the replica (the ``process`` does when the value is ``None``); the ``ok`` completion's
  ``value`` is the log as an ordered list of ``(seq, message)`` pairs (or mappings). A replica read more
  than once is judged by its last ``ok`` read.

The promises, one checker each, composed by :func:`queue`:

* :func:`acknowledged_delivered`: every acknowledged message is read — by a consumer or in some replica's
  final log — else it is ``lost``. Each lost message names the fault it fell in when the history has
  faults: the fault in effect while it was published, or else the next one to start after its
  acknowledgement (the one that most plausibly lost it). Unknown when nothing was acknowledged or no
  replica's log was read: a run that checked nothing is never valid.
* :func:`no_phantoms`: nothing read was never published (``phantoms``: no publish of it was even
  attempted), and nothing read was certainly not published (``failed_publish_read``: every attempt ended
  ``fail``). A message whose publish is unknown may or may not be read (``recovered`` counts those read).
* :func:`one_total_order`: one sequence names one message wherever it is seen (replica logs, acknowledged
  sequences, deliveries); each replica's log is in increasing sequence order and is a prefix of (or equal
  to) every longer one — a replica may lag, it may not have a hole another replica fills (a log may start
  late: limits drop a stream's head alike on every replica); and a durable delivers in increasing sequence
  order — a first delivery lower than one delivered by a fetch that completed before this fetch was
  invoked, or earlier in the same fetch, is out of order. A redelivery (the message was delivered before
  on that durable) is not judged for order; nor, counted as ``maybe_redelivered``, is a lower first
  delivery after a fetch of that durable ended ``info`` (it may have been delivered to that fetch and lost
  in flight). Evidence ``reordered`` (every finding) and ``first_divergence`` (the lowest sequence where
  replicas, acknowledgements or deliveries disagree).
* :func:`duplicates`: one message at two sequences in the logs (``log_duplicates``), and a message delivered
  more than once on one durable (``redelivered``), counted and reported. Delivery is at-least-once, so
  redelivery is never a broken promise, and a producer retrying without a deduplication id may store a
  message twice. Only with ``dedup=True`` (the caller says the producer sent a deduplication id, e.g.
  ``Nats-Msg-Id``) does an *acknowledged* message at two sequences in the logs make the verdict invalid.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate, pairwise
from typing import Any

from gauntlet.checkers._per_key import Position, brief, pos
from gauntlet.checkers.verdict import Verdict, compose, invalid, unknown, valid
from gauntlet.history import History, Op

PUBLISH = "publish"
CONSUME = "consume"
READ_LOG = "read_log"
#: How many messages (or findings) evidence lists.
SHOWN = 20
#: How many sources evidence names for one message at one sequence.
SOURCES_SHOWN = 5
NS = 1_000_000_000


@dataclass(frozen=True)
class Delivery:
    """One message a durable consumer delivered: ``op`` is the ``ok`` consume that got it."""

    durable: Any
    invoke: Op
    op: Op
    seq: int | None
    message: str


@dataclass(frozen=True)
class FaultWindow:
    """A fault from its ``start`` to its ``stop`` (monotonic ns; ``None``: never stopped in the history)."""

    fault: str
    start: int
    stop: int | None


@dataclass
class Observed:
    """What a history says about one stream, parsed once for every checker of this module."""

    t0: int = 0
    #: message → every publish attempt of it (invoke, completion or ``None``), in history order.
    publishes: dict[str, list[tuple[Op, Op | None]]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    #: durable → the positions of invokes of its consumes whose outcome is unknown (``info`` or never done).
    uncertain_consumes: dict[Any, list[Position]] = field(default_factory=dict)
    #: replica → (its last ``ok`` read_log, the log as (seq, message) in the order read).
    logs: dict[str, tuple[Op, list[tuple[int, str]]]] = field(default_factory=dict)
    faults: list[FaultWindow] = field(default_factory=list)

    @property
    def acknowledged(self) -> dict[str, tuple[Op, Op]]:
        """message → its first ``ok`` publish (invoke, completion)."""
        out: dict[str, tuple[Op, Op]] = {}
        for m, attempts in self.publishes.items():
            for inv, done in attempts:
                if done is not None and done.type == "ok":
                    out[m] = (inv, done)
                    break
        return out

    def maybe_published(self) -> set[str]:
        """Messages with an attempt that did not certainly fail (``ok``, ``info`` or never completed)."""
        return {
            m
            for m, attempts in self.publishes.items()
            if any(done is None or done.type != "fail" for _, done in attempts)
        }

    def seconds(self, t: int | None) -> float | None:
        return None if t is None else round((t - self.t0) / NS, 3)


def _message(value: Any) -> str:
    return str(value)


def _entry(item: Any, where: str, *, need_seq: bool) -> tuple[int | None, str]:
    """(seq, message) of one delivered or logged item (see the module's conventions)."""
    if isinstance(item, Mapping):
        if "message" not in item:
            raise ValueError(f"{where}: item {item!r} has no 'message'")
        seq = item.get("seq")
        msg = item["message"]
    elif isinstance(item, list | tuple):
        if len(item) != 2:
            raise ValueError(f"{where}: item {item!r} is not a (seq, message) pair")
        seq, msg = item
    else:
        seq, msg = None, item
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise ValueError(f"{where}: sequence {seq!r} is not an int")
    if need_seq and seq is None:
        raise ValueError(f"{where}: log item {item!r} has no sequence")
    return seq, _message(msg)


def _ack_seq(done: Op) -> int | None:
    v = done.value
    if isinstance(v, Mapping):
        seq = v.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None


def _fault_windows(history: History) -> list[FaultWindow]:
    """Each ``name:start`` paired with the next ``name:stop`` of the same fault, in history order."""
    open_: dict[str, list[Op]] = {}
    windows: list[tuple[int, FaultWindow]] = []
    for o in history.faults():
        name, _, phase = o.f.rpartition(":")
        if phase == "start":
            open_.setdefault(name, []).append(o)
        elif phase == "stop" and open_.get(name):
            start = open_[name].pop(0)
            windows.append((start.index, FaultWindow(name, start.time, o.time)))
    for name, starts in open_.items():
        windows.extend((s.index, FaultWindow(name, s.time, None)) for s in starts)
    return [w for _, w in sorted(windows, key=lambda t: t[0])]


def observe(history: History) -> Observed:
    """Parse ``history`` by the module's conventions (a log item without a sequence is a ``ValueError``)."""
    obs = Observed(t0=min((o.time for o in history.ops), default=0), faults=_fault_windows(history))
    last_log: dict[str, tuple[Op, Op]] = {}
    for inv, done in history.pairs():
        if inv.f == PUBLISH:
            obs.publishes.setdefault(_message(inv.value), []).append((inv, done))
        elif inv.f == CONSUME:
            if done is None or done.type == "info":
                obs.uncertain_consumes.setdefault(inv.key, []).append(pos(inv))
            elif done.type == "ok":
                for item in done.value or ():
                    seq, msg = _entry(item, f"consume op {done.index}", need_seq=False)
                    obs.deliveries.append(Delivery(inv.key, inv, done, seq, msg))
        elif inv.f == READ_LOG and done is not None and done.type == "ok":
            replica = str(inv.value if inv.value is not None else inv.process)
            if replica not in last_log or pos(done) > pos(last_log[replica][1]):
                last_log[replica] = (inv, done)
    for replica, (_, done) in last_log.items():
        entries = [_entry(item, f"read_log op {done.index}", need_seq=True) for item in done.value or ()]
        obs.logs[replica] = (done, [(s, m) for s, m in entries if s is not None])
    return obs


def _log_seqs(obs: Observed) -> dict[str, set[int]]:
    """message → the sequences the replicas' logs hold it at."""
    out: dict[str, set[int]] = {}
    for _, log in obs.logs.values():
        for s, m in log:
            out.setdefault(m, set()).add(s)
    return out


# -- acknowledged messages are read ---------------------------------------------------------------------------
def _fault_of(obs: Observed, inv: Op, done: Op) -> dict[str, Any] | None:
    """The fault in effect while ``inv``..``done`` ran, else the next one to start after it."""
    during = [w for w in obs.faults if w.start <= done.time and (w.stop is None or w.stop >= inv.time)]
    after = [w for w in obs.faults if w.start > done.time]
    for relation, ws in (("during", during), ("after", after[:1])):
        if ws:
            w = ws[0]
            return {
                "fault": w.fault,
                "relation": relation,
                "start_s": obs.seconds(w.start),
                "stop_s": obs.seconds(w.stop),
            }
    return None


def _acknowledged_delivered(obs: Observed) -> Verdict:
    check = "acknowledged_delivered"
    acked = obs.acknowledged
    figures = {"acknowledged": float(len(acked)), "replicas": float(len(obs.logs))}
    if not acked:
        return unknown(check, "no publish was acknowledged", {}, **figures)
    if not obs.logs:
        return unknown(check, "no replica's log was read (no ok read_log)", {}, **figures)
    read = {d.message for d in obs.deliveries} | set(_log_seqs(obs))
    lost: list[dict[str, Any]] = []
    by_fault: dict[str, int] = {}
    for m, (inv, done) in sorted(acked.items(), key=lambda kv: pos(kv[1][1])):
        if m in read:
            continue
        entry: dict[str, Any] = {"message": m, "seq": _ack_seq(done), "publish": brief(done)}
        if obs.faults:
            entry["fault"] = fault = _fault_of(obs, inv, done)
            label = f"{fault['relation']} {fault['fault']}" if fault else "no fault"
            by_fault[label] = by_fault.get(label, 0) + 1
        lost.append(entry)
    figures["lost"] = float(len(lost))
    evidence: dict[str, Any] = {"lost": lost[:SHOWN], "lost_count": len(lost), "acknowledged": len(acked)}
    if obs.faults:
        evidence["lost_by_fault"] = by_fault
    if lost:
        names = [e["message"] for e in lost[:10]]
        return invalid(
            check,
            f"{len(lost)} of {len(acked)} acknowledged messages never read (by a consumer or in "
            f"{len(obs.logs)} replica logs): {names!r}",
            evidence,
            **figures,
        )
    return valid(check, f"all {len(acked)} acknowledged messages were read", evidence, **figures)


def acknowledged_delivered(history: History) -> Verdict:
    """Every acknowledged publish is read by a consumer or is in a replica's final log (see the module)."""
    return _acknowledged_delivered(observe(history))


# -- nothing read that was not published -------------------------------------------------------------------
def _reads(obs: Observed) -> dict[str, str]:
    """message → where it was first read (a consume op, or a replica)."""
    where: dict[str, str] = {}
    for d in obs.deliveries:
        where.setdefault(d.message, f"consume op {d.op.index} ({d.op.process})")
    for replica, (_, log) in obs.logs.items():
        for s, m in log:
            where.setdefault(m, f"replica {replica} seq {s}")
    return where


def _no_phantoms(obs: Observed) -> Verdict:
    check = "no_phantoms"
    read = _reads(obs)
    maybe = obs.maybe_published()
    acked = obs.acknowledged
    phantoms = [{"message": m, "read": w} for m, w in read.items() if m not in obs.publishes]
    failed = [{"message": m, "read": w} for m, w in read.items() if m in obs.publishes and m not in maybe]
    recovered = [m for m in read if m in maybe and m not in acked]
    figures = {
        "read": float(len(read)),
        "phantoms": float(len(phantoms)),
        "failed_publish_read": float(len(failed)),
        "recovered": float(len(recovered)),
    }
    evidence = {
        "phantoms": phantoms[:SHOWN],
        "phantom_count": len(phantoms),
        "failed_publish_read": failed[:SHOWN],
        "failed_publish_read_count": len(failed),
    }
    if phantoms or failed:
        what = []
        if phantoms:
            what.append(
                f"{len(phantoms)} read that nobody published: {[p['message'] for p in phantoms[:10]]!r}"
            )
        if failed:
            what.append(
                f"{len(failed)} read whose every publish failed: {[p['message'] for p in failed[:10]]!r}"
            )
        return invalid(check, "; ".join(what), evidence, **figures)
    if not read:
        return unknown(check, "nothing was read (no delivery, no replica log)", evidence, **figures)
    note = f" ({len(recovered)} of unknown outcome)" if recovered else ""
    return valid(check, f"all {len(read)} messages read were published{note}", evidence, **figures)


def no_phantoms(history: History) -> Verdict:
    """Nothing read was never published, or certainly not published (see the module)."""
    return _no_phantoms(observe(history))


# -- one total order ------------------------------------------------------------------------------------------
def _sources_by_seq(obs: Observed) -> dict[int, dict[str, list[str]]]:
    """seq → message → who says that message is at that seq (replicas, acknowledgements, deliveries)."""
    at: dict[int, dict[str, list[str]]] = {}

    def say(seq: int, message: str, source: str) -> None:
        at.setdefault(seq, {}).setdefault(message, []).append(source)

    for replica, (_, log) in obs.logs.items():
        for s, m in log:
            say(s, m, f"replica {replica}")
    for m, attempts in obs.publishes.items():
        for _, done in attempts:
            if done is not None and done.type == "ok" and (ack := _ack_seq(done)) is not None:
                say(ack, m, f"publish op {done.index} ({done.process})")
    for d in obs.deliveries:
        if d.seq is not None:
            say(d.seq, d.message, f"consume op {d.op.index} ({d.op.process})")
    return at


def _log_order(obs: Observed) -> list[dict[str, Any]]:
    """A replica's log listed out of increasing sequence order."""
    found = []
    for replica, (_, log) in obs.logs.items():
        for (s0, _), (s1, m1) in pairwise(log):
            if s1 <= s0:
                found.append(
                    {"kind": "log_out_of_order", "replica": replica, "seq": s1, "after": s0, "message": m1}
                )
                break
    return found


def _divergences(obs: Observed) -> list[dict[str, Any]]:
    """Sequences where the sources disagree, or a replica has a hole inside its span another one fills."""
    spans = {r: (min(s for s, _ in log), max(s for s, _ in log)) for r, (_, log) in obs.logs.items() if log}
    held = {r: {s for s, _ in log} for r, (_, log) in obs.logs.items()}
    found = []
    for seq, messages in sorted(_sources_by_seq(obs).items()):
        holes = sorted(r for r, (lo, hi) in spans.items() if lo <= seq <= hi and seq not in held[r])
        # a hole only where another replica holds the seq: a seq no replica holds is a loss, judged there
        if len(messages) > 1 or (holes and any(seq in h for h in held.values())):
            found.append(
                {
                    "kind": "disagree" if len(messages) > 1 else "not_a_prefix",
                    "seq": seq,
                    "held": {m: srcs[:SOURCES_SHOWN] for m, srcs in messages.items()},
                    "missing_from": holes,
                }
            )
    return found


def _consumer_order(obs: Observed) -> tuple[list[dict[str, Any]], int]:
    """First deliveries that go back in sequence (see the module), and how many were excused as possible
    redeliveries of a fetch lost in flight."""
    log_seqs = _log_seqs(obs)

    def seq_of(d: Delivery) -> int | None:
        if d.seq is not None:
            return d.seq
        seqs = log_seqs.get(d.message, set())
        return next(iter(seqs)) if len(seqs) == 1 else None

    found: list[dict[str, Any]] = []
    excused = 0
    durables: dict[Any, list[Delivery]] = {}
    for d in obs.deliveries:
        durables.setdefault(d.durable, []).append(d)
    for durable, ds in durables.items():
        # the first delivery of each message: by the completion of the fetch that got it, then batch order
        order = sorted(range(len(ds)), key=lambda i: (pos(ds[i].op), i))
        seen: set[str] = set()
        first: list[Delivery] = []
        for i in order:
            if ds[i].message not in seen:
                seen.add(ds[i].message)
                first.append(ds[i])
        # the highest first-delivered seq of each fetch; then, by completion, the highest of all so far
        top: dict[int, tuple[Position, int]] = {}
        for d in first:
            s = seq_of(d)
            if s is not None:
                prev = top.get(d.op.index)
                top[d.op.index] = (pos(d.op), max(s, prev[1]) if prev else s)
        completed = sorted(top.values())
        ends = [p for p, _ in completed]
        highest = list(accumulate((t for _, t in completed), max))
        uncertain = obs.uncertain_consumes.get(durable, [])
        running: dict[int, int] = {}  # fetch → highest seq so far in that fetch
        for d in first:
            s = seq_of(d)
            if s is None:
                continue
            done_before = bisect_left(ends, pos(d.invoke))
            bound_before = highest[done_before - 1] if done_before else None
            bound_batch = running.get(d.op.index)
            running[d.op.index] = max(s, bound_batch) if bound_batch is not None else s
            bounds = [b for b in (bound_before, bound_batch) if b is not None]
            if not bounds or s > max(bounds):
                continue
            if any(p < pos(d.op) for p in uncertain):
                excused += 1
                continue
            found.append(
                {
                    "kind": "consumer_out_of_order",
                    "durable": durable,
                    "seq": s,
                    "message": d.message,
                    "after": max(bounds),
                    "consume": brief(d.op),
                }
            )
    return found, excused


def _one_total_order(obs: Observed) -> Verdict:
    check = "one_total_order"
    lengths = {r: len(log) for r, (_, log) in obs.logs.items()}
    divergences = _divergences(obs)
    consumer, excused = _consumer_order(obs)
    findings = _log_order(obs) + divergences + consumer
    figures = {
        "replicas": float(len(obs.logs)),
        "longest_log": float(max(lengths.values(), default=0)),
        "shortest_log": float(min(lengths.values(), default=0)),
        "deliveries": float(len(obs.deliveries)),
        "reordered": float(len(findings)),
        "maybe_redelivered": float(excused),
    }
    first = min(divergences, key=lambda f: f["seq"], default=None)
    evidence = {
        "reordered": findings[:SHOWN],
        "reordered_count": len(findings),
        "first_divergence": first,
        "log_lengths": lengths,
    }
    if findings:
        lead = first or findings[0]
        where = f"first at seq {lead['seq']}: {lead['kind']}"
        if lead["kind"] in ("disagree", "not_a_prefix"):
            where += f" {lead['held']!r}" + (
                f", missing from {lead['missing_from']}" if lead["missing_from"] else ""
            )
        return invalid(check, f"{len(findings)} order violations, {where}", evidence, **figures)
    if not obs.logs and not any(d.seq is not None for d in obs.deliveries):
        return unknown(check, "no replica's log was read and no delivery had a sequence", evidence, **figures)
    return valid(
        check,
        f"{len(obs.logs)} replica logs agree (lengths {sorted(lengths.values())}); "
        f"{len(obs.deliveries)} deliveries in sequence order",
        evidence,
        **figures,
    )


def one_total_order(history: History) -> Verdict:
    """One sequence names one message everywhere; replica logs are prefixes of each other; durables deliver
    in increasing sequence order (see the module)."""
    return _one_total_order(observe(history))


# -- duplicates -----------------------------------------------------------------------------------------------
def _duplicates(obs: Observed, *, dedup: bool) -> Verdict:
    check = "duplicates"
    in_log = {m: sorted(seqs) for m, seqs in _log_seqs(obs).items() if len(seqs) > 1}
    delivered: dict[Any, dict[str, int]] = {}
    for d in obs.deliveries:
        per = delivered.setdefault(d.durable, {})
        per[d.message] = per.get(d.message, 0) + 1
    redelivered = {
        str(durable): {m: n for m, n in per.items() if n > 1} for durable, per in delivered.items()
    }
    redelivered = {k: v for k, v in redelivered.items() if v}
    acked = obs.acknowledged
    acked_dups = {m: seqs for m, seqs in in_log.items() if m in acked}
    figures = {
        "log_duplicates": float(len(in_log)),
        "acknowledged_log_duplicates": float(len(acked_dups)),
        "redelivered": float(sum(n - 1 for per in redelivered.values() for n in per.values())),
    }
    evidence = {
        "log_duplicates": dict(list(in_log.items())[:SHOWN]),
        "log_duplicate_count": len(in_log),
        "redelivered": {k: dict(list(v.items())[:SHOWN]) for k, v in redelivered.items()},
        "dedup": dedup,
    }
    summary = (
        f"{len(in_log)} messages at several sequences in the logs, {int(figures['redelivered'])} redeliveries"
    )
    if dedup and acked_dups:
        return invalid(
            check,
            f"{len(acked_dups)} acknowledged messages at several sequences although the producer deduplicated: "
            f"{dict(list(acked_dups.items())[:10])!r}",
            evidence,
            **figures,
        )
    if not obs.logs and not obs.deliveries:
        return unknown(check, "nothing was read (no delivery, no replica log)", evidence, **figures)
    return valid(
        check,
        summary + (" (reported, allowed without dedup)" if in_log and not dedup else ""),
        evidence,
        **figures,
    )


def duplicates(history: History, *, dedup: bool = False) -> Verdict:
    """Messages stored at several sequences or delivered several times: reported; invalid only for an
    acknowledged message stored twice with ``dedup`` (see the module)."""
    return _duplicates(observe(history), dedup=dedup)


# -- all of them ----------------------------------------------------------------------------------------------
def queue(history: History, *, dedup: bool = False) -> Verdict:
    """The stream's promises composed (:func:`~gauntlet.checkers.verdict.compose`: invalid wins over unknown,
    unknown over valid): :func:`acknowledged_delivered`, :func:`no_phantoms`, :func:`one_total_order` and
    :func:`duplicates` (``dedup``: the producer sent a deduplication id). The composed verdict carries every
    part's evidence and figures. Unknown when nothing was acknowledged or no replica's log was read."""
    obs = observe(history)
    parts: Sequence[Verdict] = (
        _acknowledged_delivered(obs),
        _no_phantoms(obs),
        _one_total_order(obs),
        _duplicates(obs, dedup=dedup),
    )
    composed = compose("queue", parts)
    evidence: dict[str, Any] = {}
    for p in parts:
        evidence.update(p.evidence)
    return replace(composed, evidence=evidence)
