"""A Jepsen-style history of client operations and faults.

Every client operation is recorded twice: an ``invoke`` when it starts and a completion when it ends:
``ok`` (it happened), ``fail`` (it certainly did not happen) or ``info`` (unknown: a timeout or a lost
connection, it may or may not have taken effect). Faults are recorded as ``nemesis`` entries. Times are
``time.monotonic_ns()`` so that gaps and windows are immune to wall-clock jumps. The history is written as
JSONL, one entry a line, so a crashed run still leaves everything it saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

OpType = Literal["invoke", "ok", "fail", "info"]
COMPLETIONS: tuple[str, ...] = ("ok", "fail", "info")
NEMESIS = "nemesis"


@dataclass
class Op:
    """One history entry (Jepsen's model).

    ``process`` is the client id (or ``"nemesis"``), ``f`` the operation (``write``, ``read``, ``cas``,
    ``start``/``stop`` for faults), ``key`` the object operated on (registers are per key), ``value`` what
    was written or read, ``time`` a monotonic timestamp in nanoseconds.
    """

    index: int
    type: OpType
    process: str
    f: str
    value: Any = None
    key: Any = None
    time: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSONL line."""
        d = asdict(self)
        if not d["extra"]:
            del d["extra"]
        if d["error"] is None:
            del d["error"]
        return json.dumps(d, default=str, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Op:
        """Inverse of :meth:`to_json` (after ``json.loads``)."""
        return cls(
            index=d["index"],
            type=d["type"],
            process=str(d["process"]),
            f=d["f"],
            value=d.get("value"),
            key=d.get("key"),
            time=d.get("time", 0),
            error=d.get("error"),
            extra=d.get("extra", {}),
        )


class Outcome:
    """Handle a client uses to complete the operation :meth:`History.op` opened."""

    def __init__(self) -> None:
        self.type: OpType = "ok"
        self.value: Any = None
        self.error: str | None = None
        self._set = False

    def ok(self, value: Any = None) -> None:
        """The operation happened (``value``: what a read returned; ``None`` keeps the invoked value)."""
        self.type, self.value, self._set = "ok", value, True

    def fail(self, error: str) -> None:
        """The operation certainly did not take effect."""
        self.type, self.error, self._set = "fail", error, True

    def info(self, error: str) -> None:
        """The outcome is unknown (timeout, connection lost after sending)."""
        self.type, self.error, self._set = "info", error, True


class History:
    """Thread-safe, append-only recorder of operations and faults, mirrored to a JSONL file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self.path = Path(path) if path else None
        self._file = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")

    # -- recording -----------------------------------------------------------------------------------------
    def _append(self, **kw: Any) -> Op:
        with self._lock:
            op = Op(index=len(self._ops), time=kw.pop("time", None) or time.monotonic_ns(), **kw)
            self._ops.append(op)
            if self._file:
                self._file.write(op.to_json() + "\n")
                self._file.flush()
            return op

    def invoke(self, process: str, f: str, value: Any = None, key: Any = None, **extra: Any) -> Op:
        """Record the start of a client operation and return its ``invoke`` entry."""
        return self._append(type="invoke", process=str(process), f=f, value=value, key=key, extra=extra)

    def complete(
        self, invoked: Op, type: OpType, value: Any = None, error: str | None = None, **extra: Any
    ) -> Op:
        """Record the completion of ``invoked``; a ``None`` value keeps the invoked one (writes)."""
        if type not in COMPLETIONS:
            raise ValueError(f"completion type must be one of {COMPLETIONS}, not {type!r}")
        return self._append(
            type=type,
            process=invoked.process,
            f=invoked.f,
            value=invoked.value if value is None else value,
            key=invoked.key,
            error=error,
            extra=extra,
        )

    @contextmanager
    def op(self, process: str, f: str, value: Any = None, key: Any = None) -> Iterator[Outcome]:
        """Record one operation around a block.

        The block calls ``outcome.ok(value)``, ``.fail(err)`` or ``.info(err)``; if it returns without a
        call the op is ``ok``; if it raises, the op is ``info`` (unknown) and the exception propagates:
        a client that knows an error is definite must say ``fail`` itself.
        """
        invoked = self.invoke(process, f, value, key)
        outcome = Outcome()
        try:
            yield outcome
        except BaseException as exc:
            self.complete(invoked, "info", error=f"{type(exc).__name__}: {exc}")
            raise
        self.complete(invoked, outcome.type, value=outcome.value, error=outcome.error)

    def fault(self, f: str, phase: Literal["start", "stop"], **detail: Any) -> Op:
        """Record a nemesis event: ``f`` is the fault (``kill``, ``partition``…), ``phase`` start or stop."""
        return self._append(type="info", process=NEMESIS, f=f"{f}:{phase}", value=detail or None)

    def mark(self, label: str, **detail: Any) -> Op:
        """Record a labelled instant (a phase of the test), shown on the report's timeline."""
        return self._append(type="info", process="mark", f=label, value=detail or None)

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def ops(self) -> list[Op]:
        """A snapshot of all entries so far."""
        with self._lock:
            return list(self._ops)

    def client_ops(self) -> list[Op]:
        """Entries of clients only (no nemesis, no marks)."""
        return [o for o in self.ops if o.process not in (NEMESIS, "mark")]

    def pairs(self) -> list[tuple[Op, Op | None]]:
        """Each client invoke with its completion (``None`` if it never completed)."""
        return pair_ops(self.client_ops())

    def faults(self) -> list[Op]:
        """Nemesis entries only."""
        return [o for o in self.ops if o.process == NEMESIS]

    def close(self) -> None:
        """Flush and close the JSONL file."""
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by another run."""
        h = cls()
        with Path(path).open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    h._ops.append(Op.from_dict(json.loads(line)))
        return h

    @classmethod
    def from_ops(cls, ops: list[Op]) -> History:
        """A history over given entries (for checkers and unit tests)."""
        h = cls()
        h._ops = list(ops)
        return h


def pair_ops(ops: list[Op]) -> list[tuple[Op, Op | None]]:
    """Match every ``invoke`` to the next completion of the same process (a process runs one op at a time)."""
    open_by_process: dict[str, Op] = {}
    pairs: list[tuple[Op, Op | None]] = []
    index_of: dict[int, int] = {}
    for o in ops:
        if o.type == "invoke":
            if o.process in open_by_process:
                raise ValueError(
                    f"process {o.process} invoked op {o.index} before completing the previous one"
                )
            open_by_process[o.process] = o
            index_of[o.index] = len(pairs)
            pairs.append((o, None))
        elif o.type in COMPLETIONS and o.process in open_by_process:
            inv = open_by_process.pop(o.process)
            pairs[index_of[inv.index]] = (inv, o)
    return pairs
