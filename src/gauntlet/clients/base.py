"""The one client protocol every client of the harness follows (Jepsen's model).

An operation is *invoked*, then ends ``ok`` (it happened), ``fail`` (it certainly did not take effect) or
``info`` (unknown: it may or may not have taken effect). Clients raise :class:`Fail` or :class:`Info` (or a
subclass) for the last two; :func:`record` writes the invoke and the completion into the history, and
:class:`WorkloadRunner` runs bounded client threads. A client never decides "lost" or "linearizable": that
is the checkers' job, on the history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from gauntlet.history import History

T = TypeVar("T")
Completion = Literal["ok", "fail", "info"]


class ClientError(Exception):
    """Base of every client error. ``definite``: the operation certainly did not take effect."""

    definite: ClassVar[bool] = False

    def __init__(self, message: str, member: str | None = None, status: int | None = None) -> None:
        super().__init__(f"{member}: {message}" if member else message)
        self.member = member
        self.status = status


class Fail(ClientError):
    """Certainly not applied: the request never left, or the server refused it before acting on it
    (not the leader, read-only, a compare-and-set mismatch, a 4xx)."""

    definite = True


class Info(ClientError):
    """Outcome unknown: the request was sent and no definite answer came back (timeout, reset, 5xx)."""


def classify(exc: BaseException) -> Completion:
    """``fail`` for a definite error, ``info`` for everything else (an unknown outcome is never a failure)."""
    return "fail" if isinstance(exc, ClientError) and exc.definite else "info"


@dataclass(frozen=True)
class Result:
    """How one recorded operation ended."""

    type: Completion
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the operation happened."""
        return self.type == "ok"


def record(
    history: History | None,
    process: str,
    f: str,
    call: Callable[[], T],
    *,
    value: Any = None,
    key: Any = None,
    returns_value: bool = False,
    read_only: bool = False,
    reraise: bool = False,
) -> Result:
    """Run ``call`` as one operation of ``process`` and record it.

    ``value`` is what the operation writes (recorded on invoke); with ``returns_value`` (reads, cas that
    return the old value, next-id…) the completion records what ``call`` returned instead. A
    :class:`ClientError` ends the operation ``fail`` or ``info`` by its ``definite`` flag — always ``fail``
    with ``read_only`` (an operation that changes nothing cannot have taken effect) — and is re-raised after
    recording with ``reraise`` (for callers that act on the error, e.g. a cas mismatch's current value).
    Any other exception is recorded ``info`` and re-raised (a bug in a client must not pass unseen).
    The member that answered (``exc.member``) is kept in the completion's ``extra``.
    """
    invoked = history.invoke(process, f, value, key) if history else None
    try:
        out = call()
    except ClientError as exc:
        kind: Completion = "fail" if read_only else classify(exc)
        if history and invoked:
            extra = {"member": exc.member} if exc.member else {}
            history.complete(invoked, kind, error=str(exc), **extra)
        if reraise:
            raise
        return Result(kind, None, str(exc))
    except BaseException as exc:
        if history and invoked:
            history.complete(invoked, "info", error=f"{type(exc).__name__}: {exc}")
        raise
    done = out if returns_value else value
    if history and invoked:
        history.complete(invoked, "ok", value=done)
    return Result("ok", done)


class WorkloadStuck(RuntimeError):
    """:meth:`WorkloadRunner.stop` gave up: some client threads were still running after its timeout."""


class WorkloadRunner:
    """Client threads that each call ``step(process, n)`` until stopped — bounded in count and time.

    Every thread stops by itself after ``max_seconds`` or when ``max_ops`` operations have been started in
    all, whichever comes first, so a test that forgets to stop it (or dies) never leaves load running.
    ``step`` performs one operation (normally through :func:`record`); after it the thread pauses
    ``pause_s``, or ``backoff_s`` (when given) if the step returned a :class:`Result` that is not ok, so a
    client does not hammer a server that refuses it; with ``every_s`` a thread starts a step every ``every_s``
    seconds instead (a sampler's cadence: it pauses what remains of the period). An exception ``step`` raises ends that thread and is
    re-raised by :meth:`stop`. ``finish(process)`` runs when a thread ends, however it ends (close its
    connections).
    """

    def __init__(
        self,
        processes: Sequence[str],
        step: Callable[[str, int], object],
        *,
        max_ops: int = 100_000,
        max_seconds: float = 300.0,
        pause_s: float = 0.0,
        backoff_s: float | None = None,
        every_s: float | None = None,
        finish: Callable[[str], None] | None = None,
    ) -> None:
        self.processes = list(processes)
        self.step = step
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.pause_s = pause_s
        self.backoff_s = pause_s if backoff_s is None else backoff_s
        self.every_s = every_s
        self.finish = finish
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started = 0
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0

    @property
    def operations(self) -> int:
        """Operations started so far, over all processes."""
        return self._started

    def alive(self) -> list[str]:
        """Names of the threads still running."""
        return [t.name for t in self._threads if t.is_alive()]

    def _take(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self._started >= self.max_ops or time.monotonic() >= self._deadline:
                return None
            self._started += 1
            return self._started

    def _loop(self, process: str) -> None:
        try:
            while (n := self._take()) is not None:
                began = time.monotonic()
                out = self.step(process, n)
                if self.every_s is not None:
                    pause = max(0.0, self.every_s - (time.monotonic() - began))
                else:
                    pause = self.backoff_s if isinstance(out, Result) and not out.ok else self.pause_s
                if pause:
                    self._stop.wait(pause)
        except BaseException as exc:  # surfaced by stop()
            with self._lock:
                self._errors.append(exc)
        finally:
            if self.finish is not None:
                try:
                    self.finish(process)
                except Exception as exc:  # a cleanup that fails is a bug too: surfaced by stop()
                    with self._lock:
                        self._errors.append(exc)

    def start(self) -> WorkloadRunner:
        """Start one thread per process (once)."""
        if self._threads:
            raise RuntimeError("a WorkloadRunner starts once")
        self._deadline = time.monotonic() + self.max_seconds
        for p in self.processes:
            t = threading.Thread(target=self._loop, args=(p,), name=f"workload-{p}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def request_stop(self) -> None:
        """Ask every thread to stop after its current step, without waiting (:meth:`stop` waits)."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every thread, waiting at most ``timeout`` seconds in all; raise :class:`WorkloadStuck` naming
        the threads still running after that, else re-raise the first error a step raised."""
        self.request_stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if stuck := self.alive():
            raise WorkloadStuck(
                f"{len(stuck)} workload threads still running {timeout:.0f}s after stop: {stuck}"
            )
        if self._errors:
            raise self._errors[0]

    def run(self, seconds: float, timeout: float = 30.0) -> None:
        """Start, let the workload run ``seconds`` (bounded by ``max_seconds``), stop."""
        self.start()
        self._stop.wait(min(seconds, self.max_seconds))
        self.stop(timeout)

    @contextmanager
    def running(self, timeout: float = 30.0) -> Iterator[WorkloadRunner]:
        """``with runner.running(): ...fault...`` — stopped when the block ends, pass or fail."""
        self.start()
        try:
            yield self
        finally:
            self.stop(timeout)
