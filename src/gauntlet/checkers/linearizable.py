"""Linearizability of a key-value history: one read/write/compare-and-set register per key.

The search is Wing & Gong's, with Lowe's refinements ("Testing for linearizability", 2017) as Porcupine and
Knossos' WGL checker use them: the history becomes a time-ordered list of call and return entries; the
search linearizes a call ahead of the first remaining return (an op nothing still pending must precede),
earliest first, lifts it out of the list and starts again from the head; when no call ahead of that
return can be linearized the last choice was wrong, so it backtracks.
Every (set of linearized ops, register value) configuration reached is remembered, so no configuration is
explored twice (the just-in-time memoization that makes WGL practical).

Registers of different keys are independent and linearizability is local (Herlihy & Wing), so each key is
checked on its own.

What each completion means (Jepsen's model, see :mod:`gauntlet.history`):

- ``ok``: the operation took effect once, between its invocation and its completion.
- ``fail``: it did not take effect: dropped.
- ``info`` (or never completed): it may have taken effect at any time after its invocation, or never.
  Reads with unknown outcome constrain nothing and are dropped; writes and compare-and-sets stay, as
  optional operations. An optional write or cas whose new value no read returned and no cas expected
  is dropped too: taking effect could never help explain any result, so dropping it cannot hide a
  violation (and it keeps the search from trying every subset of timed-out writes).
- An optional write whose value *was* observed is still never linearized on its own: it completes at
  +infinity, so in any linearization it can be moved later up to the op right after it, and dropped if
  that op does not observe its value. The search therefore linearizes it only as a pair with a read
  returning its value (or a cas expecting it) when the register does not already hold that value, and
  of several pending crashed writes of one value only the earliest (they are interchangeable). This
  keeps dozens of crashed writes pending at once from being tried in every subset and order.

The search is bounded by a step count and a time budget; when either runs out the verdict is
``None`` ("unknown"): never a pass that was not proven. A non-linearizable key is reported with the
smallest offending sub-history the shrinker could prove non-linearizable on its own (see
:func:`_shrink`), as readable text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gauntlet.history import History, Op, pair_ops

NS = 1_000_000_000
INFINITY = float("inf")


class _Unknown:
    """The register's value when a sub-history starts mid-way: any value at all (used by the shrinker)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<any>"


UNKNOWN = _Unknown()


def freeze(value: Any) -> Any:
    """A hashable, order-stable form of a JSON-like value (lists become tuples, dicts sorted tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return tuple(sorted(freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)
    return value


@dataclass(frozen=True)
class RegisterOp:
    """One operation on one key's register, as the search sees it.

    ``f`` is ``read``, ``write`` or ``cas``; ``value`` what a read returned, what a write wrote, or
    ``(expected, new)`` for a cas. ``complete`` is ``None`` for an operation whose outcome is unknown
    (``info``, or no completion at all): it is optional and may take effect any time after ``invoke``.
    """

    id: int
    process: str
    f: str
    key: Any
    value: Any
    invoke: int
    complete: int | None
    index: int = -1

    @property
    def optional(self) -> bool:
        return self.complete is None

    def describe(self, t0: int = 0) -> str:
        """One line: process, operation, value, interval relative to ``t0`` (seconds), outcome."""
        if self.f == "read":
            what = f"read  -> {self.value!r}"
        elif self.f == "cas":
            what = f"cas   {self.value[0]!r} -> {self.value[1]!r}"
        else:
            what = f"write {self.value!r}"
        start = (self.invoke - t0) / NS
        end = "      ?" if self.complete is None else f"{(self.complete - t0) / NS:7.3f}"
        outcome = "info (may or may not have happened)" if self.optional else "ok"
        return f"{self.process:>8}  {what:<28} [{start:7.3f} .. {end}] s  {outcome}"


@dataclass
class KeyResult:
    """The verdict for one key: ``valid`` True, False, or None (budget exhausted: unknown)."""

    key: Any
    valid: bool | None
    ops: int
    steps: int
    witness: list[RegisterOp] = field(default_factory=list)
    witness_initial: Any = None
    culprit: RegisterOp | None = None
    reason: str = ""

    def report(self) -> str:
        """Readable explanation; for a violation, the smallest offending sub-history."""
        if self.valid is True:
            return f"key {self.key!r}: linearizable ({self.ops} ops, {self.steps} search steps)"
        if self.valid is None:
            return f"key {self.key!r}: UNKNOWN ({self.reason})"
        t0 = min((o.invoke for o in self.witness), default=0)
        init = (
            "any value (earlier ops all completed before these began)"
            if self.witness_initial is UNKNOWN
            else (repr(self.witness_initial))
        )
        lines = [
            f"key {self.key!r}: NOT linearizable. Smallest offending sub-history: {len(self.witness)} of "
            f"{self.ops} ops of this key; the register held {init} before them. No order of these ops that "
            "respects their real-time order explains every result:",
        ]
        for o in sorted(self.witness, key=lambda o: (o.invoke, o.id)):
            mark = (
                "   <-- first result that cannot be explained"
                if self.culprit and o.id == self.culprit.id
                else ""
            )
            lines.append("  " + o.describe(t0) + mark)
        lines.append(
            f"  (times are seconds after {t0 / NS:.3f} s monotonic; history indices "
            f"{sorted(o.index for o in self.witness)})"
        )
        return "\n".join(lines)


@dataclass
class LinearizabilityResult:
    """The verdict over every key. ``valid``: True (all keys proven), False (a key violates), None
    (no violation found but some key could not be decided within the budget)."""

    valid: bool | None
    keys: dict[Any, KeyResult]
    steps: int
    seconds: float

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys.values() if k.valid is False]

    @property
    def unknown(self) -> list[KeyResult]:
        return [k for k in self.keys.values() if k.valid is None]

    def __bool__(self) -> bool:
        raise TypeError("use result.valid (True, False or None for unknown), not the result's truth value")

    def report(self) -> str:
        """Summary line plus the explanation of every key that is not proven linearizable."""
        verdict = {
            True: "linearizable",
            False: "NOT linearizable",
            None: "UNKNOWN (search budget exhausted)",
        }[self.valid]
        head = (
            f"linearizability: {verdict} — {len(self.keys)} keys, "
            f"{sum(k.ops for k in self.keys.values())} ops, {self.steps} steps, {self.seconds:.2f} s"
        )
        return "\n".join([head] + [k.report() for k in self.keys.values() if k.valid is not True])


class _Budget:
    """Steps and wall time shared by every search of one check."""

    def __init__(self, max_steps: int, time_limit: float) -> None:
        self.max_steps = max_steps
        self.deadline = time.monotonic() + time_limit
        self.steps = 0

    def exhausted(self) -> bool:
        return self.steps >= self.max_steps or time.monotonic() >= self.deadline


def _step(state: Any, op: RegisterOp) -> tuple[bool, Any]:
    """Apply ``op`` to a register holding ``state``: (allowed, new state)."""
    if op.f == "write":
        return True, op.value
    if op.f == "read":
        if state is UNKNOWN or state == op.value:
            return True, op.value
        return False, state
    if op.f == "cas":
        expected, new = op.value
        if state is UNKNOWN or state == expected:
            return True, new
        return False, state
    raise ValueError(f"register model has no operation {op.f!r}")


class _Entry:
    __slots__ = ("match", "next", "op", "prev")

    def __init__(self, op: RegisterOp | None) -> None:
        self.op = op
        self.match: _Entry | None = None  # call -> its return entry; None for return entries
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _observes(op: RegisterOp) -> Any:
    """The value ``op`` requires the register to hold (a read's result, a cas' expected value)."""
    return op.value if op.f == "read" else op.value[0]


def _search(ops: Sequence[RegisterOp], initial: Any, budget: _Budget) -> bool | None:
    """WGL search over one key: True (linearizable), False (not), None (budget exhausted).

    The entries form a time-ordered list of calls and returns; the calls ahead of the first remaining
    return are the *minimal* ops, those that may take effect next. Each configuration (set of linearized
    ops, register value) is expanded once (memoized). An optional (crashed) write is never linearized on
    its own: only as a pair with an op that observes its value right after it (see ``moves`` below),
    which is what keeps many crashed writes pending at once from being tried in every subset and order.
    """
    if not ops:
        return True
    # Time-ordered events; at equal times calls go first (treating touching ops as concurrent is the
    # permissive choice: it can never turn a linearizable history into a violation).
    events: list[tuple[float, int, int, RegisterOp]] = []
    for o in ops:
        events.append((o.invoke, 0, o.id, o))
        events.append((INFINITY if o.complete is None else o.complete, 1, o.id, o))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(None)
    calls: dict[int, _Entry] = {}
    last = head
    for _, kind, oid, o in events:
        e = _Entry(o)
        if kind == 0:
            calls[oid] = e
        else:
            calls[oid].match = e
        e.prev = last
        last.next = e
        last = e

    def lift(call: _Entry) -> None:
        for e in (call, call.match):
            assert e is not None and e.prev is not None  # every call has its match and a predecessor
            e.prev.next = e.next
            if e.next is not None:
                e.next.prev = e.prev

    def unlift(call: _Entry) -> None:
        for e in (call.match, call):
            assert e is not None and e.prev is not None
            e.prev.next = e
            if e.next is not None:
                e.next.prev = e

    def moves(state: Any) -> list[tuple[tuple[_Entry, ...], Any]]:
        """What may be linearized next from ``state``: (entries to lift, new state), earliest call first.

        Sound and complete for the register (any linearization can be normalized into these moves):

        - an optional write is completed at +infinity, so it can always be moved later in an order, up to
          the op right after it; if that op does not observe its value (another write, or nothing), the
          optional write can be dropped instead. So it only ever needs to be linearized immediately
          before a read returning its value or a cas expecting it, as a pair, and only when the register
          does not already hold that value (else dropping it changes nothing).
        - two minimal optional writes of the same value are interchangeable from here on (nothing must
          precede either any more, and nothing must follow either), so only the earliest is tried.
        """
        minimal: list[_Entry] = []
        e = head.next
        while e is not None and e.match is not None:
            minimal.append(e)
            e = e.next
        pending: dict[Any, _Entry] = {}  # value -> earliest minimal optional write of that value
        for c in minimal:
            o = c.op
            assert o is not None
            if o.f == "write" and o.optional:
                pending.setdefault(o.value, c)
        out: list[tuple[tuple[_Entry, ...], Any]] = []
        for c in minimal:
            o = c.op
            assert o is not None
            if o.f == "write" and o.optional:
                continue
            allowed, new_state = _step(state, o)
            if allowed:
                out.append(((c,), new_state))
                continue
            w = pending.get(_observes(o))
            if w is not None:
                out.append(((w, c), _step(_observes(o), o)[1]))
        return out

    bit = {o.id: 1 << i for i, o in enumerate(ops)}
    required = sum(1 for o in ops if not o.optional)
    linearized = 0
    state = initial
    cache: set[tuple[int, Any]] = set()
    frames: list[tuple[list[tuple[tuple[_Entry, ...], Any]], int]] = []  # (moves, next one to try)
    undo: list[tuple[tuple[_Entry, ...], Any]] = []  # (entries lifted, state before them)
    if required == 0:
        return True
    frames.append((moves(state), 0))
    while frames:
        budget.steps += 1
        if budget.steps >= budget.max_steps or (budget.steps % 4096 == 0 and budget.exhausted()):
            return None
        options, i = frames[-1]
        if i == len(options):  # every move from here fails: undo the move that led here
            frames.pop()
            if undo:
                entries, state = undo.pop()
                for c in reversed(entries):
                    unlift(c)
                    linearized ^= bit[c.op.id]  # type: ignore[union-attr]
                    if not c.op.optional:  # type: ignore[union-attr]
                        required += 1
            continue
        frames[-1] = (options, i + 1)
        entries, new_state = options[i]
        new_lin = linearized
        for c in entries:
            new_lin |= bit[c.op.id]  # type: ignore[union-attr]
        config = (new_lin, new_state)
        if config in cache:
            continue
        cache.add(config)
        undo.append((entries, state))
        for c in entries:
            lift(c)
            if not c.op.optional:  # type: ignore[union-attr]
                required -= 1
        state, linearized = new_state, new_lin
        if required == 0:
            return True
        frames.append((moves(state), 0))
    return False


def register_ops(
    history: History | Iterable[Op], fs: Sequence[str] = ("read", "write", "cas")
) -> list[RegisterOp]:
    """The register operations of a history (invoke + completion pairs), in invocation order.

    ``delete`` counts as a write of ``None``. Failed ops and reads of unknown outcome are dropped (see the
    module docstring). cas values may be ``[expected, new]`` or ``{"expect": .., "value": ..}``.
    """
    ops = (
        history.client_ops()
        if isinstance(history, History)
        else [o for o in history if o.process not in ("nemesis", "mark")]
    )
    wanted = set(fs) | ({"delete"} if "write" in fs else set())
    out: list[RegisterOp] = []
    for inv, comp in pair_ops(ops):
        if inv.f not in wanted:
            continue
        ctype = comp.type if comp is not None else "info"
        if ctype == "fail":
            continue
        f = "write" if inv.f == "delete" else inv.f
        if f == "read":
            if ctype != "ok":
                continue
            value = freeze(comp.value) if comp is not None else None
        elif f == "cas":
            raw = inv.value
            if isinstance(raw, dict):
                raw = (raw.get("expect"), raw.get("value"))
            if not isinstance(raw, list | tuple) or len(raw) != 2:
                raise ValueError(f"cas op {inv.index} needs value [expected, new], not {inv.value!r}")
            value = (freeze(raw[0]), freeze(raw[1]))
        else:
            value = None if inv.f == "delete" else freeze(inv.value)
        out.append(
            RegisterOp(
                id=len(out),
                process=inv.process,
                f=f,
                key=freeze(inv.key),
                value=value,
                invoke=inv.time,
                complete=comp.time if ctype == "ok" and comp is not None else None,
                index=inv.index,
            )
        )
    return out


def _prune_optional(ops: list[RegisterOp]) -> list[RegisterOp]:
    """Drop optional writes/cas whose new value nothing observed (no read returned it, no cas expected it)."""
    observed = {o.value for o in ops if o.f == "read"} | {o.value[0] for o in ops if o.f == "cas"}
    kept = []
    for o in ops:
        if o.optional:
            new = o.value[1] if o.f == "cas" else o.value
            if new not in observed:
                continue
        kept.append(o)
    return _renumber(kept)


def _renumber(ops: Iterable[RegisterOp]) -> list[RegisterOp]:
    return [
        RegisterOp(i, o.process, o.f, o.key, o.value, o.invoke, o.complete, o.index)
        for i, o in enumerate(ops)
    ]


def _check(ops: list[RegisterOp], initial: Any, budget: _Budget) -> bool | None:
    return _search(_prune_optional(ops), initial, budget)


def _cut_before(ops: list[RegisterOp], t: int) -> list[RegisterOp]:
    """The history as it stood at time ``t``: ops invoked later vanish, ops still running become optional."""
    out = []
    for o in ops:
        if o.invoke > t:
            continue
        if o.complete is not None and o.complete > t:
            if o.f == "read":
                continue
            o = RegisterOp(o.id, o.process, o.f, o.key, o.value, o.invoke, None, o.index)
        out.append(o)
    return out


def _shrink(
    ops: list[RegisterOp], initial: Any, max_steps: int, time_limit: float
) -> tuple[list[RegisterOp], Any, RegisterOp | None]:
    """The smallest sub-history this can *prove* non-linearizable on its own, by three sound reductions.

    1. Prefix: linearizability is prefix-closed, so the shortest prefix (cut at an ok completion, ops
       still running at the cut made optional) that is still non-linearizable is a witness. The op whose
       completion ends it is the culprit: the first result no order explains.
    2. Quiescent left cut: at a moment no op of the key is running, every earlier op precedes every later
       one, so the later ops alone, starting from *any* register value, must still be linearizable.
    3. Reads: dropping a read only removes a constraint; reads are dropped one by one while the rest
       stays non-linearizable.

    Each candidate is checked with its own small budget; a candidate whose check is unknown is not taken,
    so the result is always a proven violation (at worst the whole history of the key).
    Returns (ops, the register's value before them, culprit).
    """
    deadline = time.monotonic() + time_limit

    def fails(candidate: list[RegisterOp], init: Any) -> bool:
        if time.monotonic() >= deadline:
            return False
        budget = _Budget(max_steps, max(0.1, deadline - time.monotonic()))
        return _check(_renumber(candidate), init, budget) is False

    current, init = ops, initial
    culprit: RegisterOp | None = None
    # 1. shortest failing prefix: binary search over ok completion times (monotone by prefix closure).
    cuts = sorted({o.complete for o in current if o.complete is not None})
    lo, hi = 0, len(cuts) - 1
    best, best_cut = current, None
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = _cut_before(current, cuts[mid])
        if fails(cand, init):
            best, best_cut, hi = cand, cuts[mid], mid - 1
        else:
            lo = mid + 1
    current = best
    if best_cut is not None:
        culprit = next((o for o in current if o.complete == best_cut), None)
    # 2. latest quiescent point whose suffix (from any value) still fails (monotone as well).
    quiet: list[int] = []
    running_until: float = -1
    for o in sorted(current, key=lambda o: o.invoke):
        if running_until >= 0 and o.invoke > running_until:
            quiet.append(o.invoke)
        running_until = max(running_until, INFINITY if o.complete is None else o.complete)
    lo, hi = 0, len(quiet) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = [o for o in current if o.invoke >= quiet[mid]]
        if fails(cand, UNKNOWN):
            current, init, lo = cand, UNKNOWN, mid + 1
        else:
            hi = mid - 1
    # 3. drop reads that are not needed, latest first (never the culprit).
    for o in sorted((o for o in current if o.f == "read"), key=lambda o: -o.invoke):
        if len(current) <= 2 or (culprit is not None and o.id == culprit.id):
            continue
        cand = [x for x in current if x.id != o.id]
        if fails(cand, init):
            current = cand
    return current, init, culprit


def linearizable(
    history: History | Iterable[Op],
    *,
    initial: Any = None,
    max_steps: int = 2_000_000,
    time_limit: float = 60.0,
    shrink_time_limit: float = 20.0,
    fs: Sequence[str] = ("read", "write", "cas"),
) -> LinearizabilityResult:
    """Check that every key's operations form a linearizable register history.

    ``initial`` is every register's value before the history (``None``: absent). ``max_steps`` and
    ``time_limit`` bound the whole search; a key not decided within them makes the verdict ``None``
    (unknown), never True. A violation is shrunk (within ``shrink_time_limit``) to the smallest
    sub-history that is non-linearizable on its own, see :meth:`LinearizabilityResult.report`.
    """
    t_start = time.monotonic()
    budget = _Budget(max_steps, time_limit)
    by_key: dict[Any, list[RegisterOp]] = {}
    for o in register_ops(history, fs):
        by_key.setdefault(o.key, []).append(o)
    results: dict[Any, KeyResult] = {}
    for key, ops in by_key.items():
        ops = _renumber(ops)
        before = budget.steps
        if budget.exhausted():
            results[key] = KeyResult(key, None, len(ops), 0, reason="search budget exhausted before this key")
            continue
        verdict = _check(ops, initial, budget)
        steps = budget.steps - before
        if verdict is None:
            reason = f"budget exhausted after {steps} steps (max_steps={max_steps}, time_limit={time_limit}s)"
            results[key] = KeyResult(key, None, len(ops), steps, reason=reason)
        elif verdict:
            results[key] = KeyResult(key, True, len(ops), steps)
        else:
            witness, w_init, culprit = _shrink(ops, initial, min(max_steps, 200_000), shrink_time_limit)
            results[key] = KeyResult(key, False, len(ops), steps, witness, w_init, culprit)
    if any(r.valid is False for r in results.values()):
        valid: bool | None = False
    elif any(r.valid is None for r in results.values()):
        valid = None
    else:
        valid = True
    return LinearizabilityResult(valid, results, budget.steps, time.monotonic() - t_start)


__all__ = ["UNKNOWN", "KeyResult", "LinearizabilityResult", "RegisterOp", "linearizable", "register_ops"]
