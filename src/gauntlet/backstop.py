"""The per-test backstop of the checks on hosts: every test that uses the ``cluster`` fixture (all of
tests/integration and tests/staging, and the reruns of a proof) fails once it has run for
:data:`HOST_TEST_TIMEOUT_S` seconds times ``$GAUNTLET_TIMEOUT_MULTIPLIER`` (default 1; 0 turns it off), so a
hang ends as one failed check instead of a run that never ends. pytest-timeout enforces it.

Every command a check sends to a host already has its own bound (``Host.run``'s default timeout); this catches
what those miss: a client call without a timeout, a wait loop whose condition never comes true.

The method is ``signal`` (SIGALRM in the main thread), on purpose: it raises pytest's failure inside the test,
so the test's teardown still runs (the ``nemesis`` fixture heals the faults still in force on the hosts), the
JUnit XML and the report are still written and the next check runs. ``thread`` would dump the stacks and
``os._exit`` the whole pytest process: no heal, no report, faults left on the hosts. The failure is a
``BaseException`` (pytest's ``Failed``), so a broad ``except Exception`` in a check does not swallow it.

The alarm repeats every bound, where pytest-timeout's own fires once: Hypothesis replays a failed example
(the Patroni fault schedule) once more to report it, and that replay, like a teardown after the timeout, would
otherwise run with no bound at all.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

import pytest

#: The bound of one check on hosts, setup and teardown included. The longest are the fault schedules: the
#: Patroni one stops starting faults after its 300 s budget (GAUNTLET_SCHEDULE_BUDGET) and its last fault can
#: take up to about 400 s more (two waits for a healthy cluster of 120 s, two of ttl + 60 s); the default
#: topology's 42 checks take about 840 s in all. 900 s lets every one of them end and still stops a hang.
HOST_TEST_TIMEOUT_S = 900.0
#: Scales the bound (slower machines, a debugging session): 2 doubles it, 0 turns the backstop off.
MULTIPLIER_ENV = "GAUNTLET_TIMEOUT_MULTIPLIER"

_backstopped = pytest.StashKey[float]()


def timeout_multiplier(environ: Mapping[str, str] = os.environ) -> float:
    """``$GAUNTLET_TIMEOUT_MULTIPLIER`` as a number (1 when unset); a usage error when it is not one >= 0."""
    raw = environ.get(MULTIPLIER_ENV, "").strip() or "1"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise pytest.UsageError(f"gauntlet: {MULTIPLIER_ENV}={raw!r} is not a number >= 0")
    return value


def host_test_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """The bound of one check on hosts, in seconds; 0 when the backstop is off."""
    return HOST_TEST_TIMEOUT_S * timeout_multiplier(environ)


def uses_hosts(item: pytest.Item) -> bool:
    """Whether a test works on hosts: it asks, directly or through its fixtures, for ``cluster``."""
    return "cluster" in getattr(item, "fixturenames", ())


def add_backstop(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Give every test on hosts the backstop, except a test with its own ``timeout`` marker and a run
    given ``--timeout`` on its command line (the caller's choice wins). A run that needs the backstop
    without pytest-timeout installed is a usage error, never a silently unbounded run."""
    seconds = host_test_timeout()
    chosen = items if seconds else []
    chosen = [i for i in chosen if uses_hosts(i) and i.get_closest_marker("timeout") is None]
    if not chosen:
        return
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError(
            "gauntlet: pytest-timeout is not installed, and the checks on hosts need its backstop: "
            f"run 'make setup' (pyproject.toml pins it), or set {MULTIPLIER_ENV}=0 to run without it"
        )
    if config.getoption("timeout", None) is not None:
        return
    for item in chosen:
        item.add_marker(pytest.mark.timeout(seconds, method="signal"))
        item.stash[_backstopped] = seconds


def set_repeating_alarm(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's ``pytest_timeout_set_timer`` for a backstopped test in the main thread: its own
    SIGALRM timer and failure, but an alarm that fires again every bound until the test's protocol ends.
    None (pytest-timeout's own timer) for any other test."""
    seconds = item.stash.get(_backstopped, None)
    if seconds is None or settings.method != "signal":
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # no SIGALRM off the main thread: pytest-timeout falls back to its thread method
    from pytest_timeout import timeout_sigalrm

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        timeout_sigalrm(item, settings)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
    return True
