"""The one client protocol (gauntlet.clients.base): classification, recording, the bounded runner."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from gauntlet.clients.base import Fail, Info, Result, WorkloadRunner, WorkloadStuck, classify, record
from gauntlet.history import History


def _kinds(history: History) -> list[tuple[str, str]]:
    return [(o.type, o.f) for o in history.ops]


def test_classify_definite_is_fail_everything_else_info() -> None:
    assert classify(Fail("refused")) == "fail"
    assert classify(Info("timed out")) == "info"
    assert classify(ValueError("bug")) == "info"


def test_record_ok_keeps_written_value_or_returned_one() -> None:
    h = History()
    assert record(h, "c0", "write", lambda: 17, value="v1", key="k") == Result("ok", "v1")
    assert record(h, "c0", "read", lambda: "v1", key="k", returns_value=True) == Result("ok", "v1")
    assert [(o.type, o.value) for o in h.ops] == [
        ("invoke", "v1"),
        ("ok", "v1"),
        ("invoke", None),
        ("ok", "v1"),
    ]


def test_record_fail_and_info_by_the_error_with_its_member() -> None:
    h = History()

    def refused() -> None:
        raise Fail("not the leader", member="n1")

    def lost() -> None:
        raise Info("no answer", member="n2")

    assert record(h, "c0", "write", refused, value=1).type == "fail"
    assert record(h, "c0", "write", lost, value=2).type == "info"
    done = [o for o in h.ops if o.type != "invoke"]
    assert [(o.type, o.extra.get("member")) for o in done] == [("fail", "n1"), ("info", "n2")]
    assert done[0].error == "n1: not the leader"


def test_record_read_only_unknown_is_fail() -> None:
    """A read changes nothing: even an unknown outcome cannot have taken effect."""
    h = History()

    def lost() -> None:
        raise Info("no answer")

    assert record(h, "r0", "read", lost, read_only=True).type == "fail"
    assert _kinds(h) == [("invoke", "read"), ("fail", "read")]


def test_record_reraise_after_recording() -> None:
    h = History()

    def refused() -> None:
        raise Fail("mismatch")

    with pytest.raises(Fail):
        record(h, "c0", "cas", refused, value=[1, 2], reraise=True)
    assert _kinds(h) == [("invoke", "cas"), ("fail", "cas")]


def test_record_other_exception_is_info_and_propagates() -> None:
    h = History()

    def bug() -> None:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        record(h, "c0", "write", bug, value=1)
    assert _kinds(h) == [("invoke", "write"), ("info", "write")]


def test_record_without_history_still_classifies() -> None:
    def refused() -> None:
        raise Fail("no")

    assert record(None, "c0", "write", refused).type == "fail"


def test_runner_bounded_by_operations() -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def step(p: str, n: int) -> None:
        with lock:
            seen.append((p, n))

    r = WorkloadRunner(["a", "b"], step, max_ops=50, max_seconds=10)
    r.start()
    deadline = time.monotonic() + 5
    while r.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    r.stop(5)
    assert len(seen) == 50 and r.operations == 50
    assert sorted(n for _, n in seen) == list(range(1, 51))


def test_runner_bounded_by_time_without_stop() -> None:
    r = WorkloadRunner(["a"], lambda p, n: None, pause_s=0.01, max_seconds=0.2).start()
    time.sleep(0.6)
    assert r.alive() == [], "a runner nobody stopped kept running past max_seconds"
    r.stop(1)


def test_runner_backs_off_after_a_failed_step_and_finishes_each_thread() -> None:
    finished: list[str] = []
    r = WorkloadRunner(
        ["a"],
        lambda p, n: Result("fail", error="refused"),
        pause_s=0.0,
        backoff_s=0.1,
        finish=finished.append,
    )
    r.run(0.35)
    assert 2 <= r.operations <= 5, f"{r.operations} failed steps in 0.35 s with a 0.1 s backoff"
    assert finished == ["a"]


def test_runner_stop_reraises_a_step_error() -> None:
    def step(p: str, n: int) -> None:
        raise ValueError(f"bug in {p}")

    r = WorkloadRunner(["a"], step).start()
    with pytest.raises(ValueError, match="bug in a"):
        r.stop(5)


def test_runner_stop_names_threads_that_do_not_stop() -> None:
    release = threading.Event()

    def step(p: str, n: int) -> None:
        release.wait(5)

    r = WorkloadRunner(["stuck"], step).start()
    time.sleep(0.05)
    try:
        with pytest.raises(WorkloadStuck, match="workload-stuck"):
            r.stop(timeout=0.2)
    finally:
        release.set()
    r.stop(5)


def test_runner_running_stops_on_error_in_block() -> None:
    r = WorkloadRunner(["a"], lambda p, n: None, pause_s=0.01)
    with pytest.raises(RuntimeError, match="fault"), r.running():
        raise RuntimeError("fault")
    assert r.alive() == []


def test_runner_every_keeps_a_cadence_whatever_a_step_takes() -> None:
    """A sampler's rounds start every ``every_s`` seconds: a slow round shortens the pause after it."""
    starts: list[float] = []

    def step(p: str, n: int) -> None:
        starts.append(time.monotonic())
        time.sleep(0.06)

    WorkloadRunner(["s"], step, every_s=0.1, pause_s=0.5).run(0.55)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 4 <= len(starts) <= 7, starts
    assert all(0.08 <= g <= 0.2 for g in gaps), gaps
