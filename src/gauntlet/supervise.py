"""Run one long child (scripts/scenario.sh, a playbook, pytest) so that a signal to gauntlet ends it cleanly.

Two ways, by what the child runs:

- ``group=True`` (scripts/scenario.sh): the child runs in a session of its own, and a SIGINT, SIGTERM or
  SIGHUP that gauntlet receives is forwarded once to the child's whole process group: the command running
  in it (molecule, ansible-playbook, pytest) stops as a terminal's Ctrl-C would stop it, and scenario.sh's
  INT/TERM trap then destroys its hosts (bash runs a trap only once its foreground command has ended, so
  signalling the script alone would wait for the whole phase). A Ctrl-C at the terminal reaches only
  gauntlet (the child has no terminal) and so is delivered once, not twice.
- ``group=False`` (a playbook or pytest against your hosts): the child keeps gauntlet's terminal and
  process group, so ssh can still ask for a passphrase. A Ctrl-C at the terminal reaches it directly and is
  not sent again (a second SIGINT would cut pytest's teardowns short); a SIGTERM or SIGHUP to gauntlet is
  forwarded to the child alone.

Either way gauntlet waits for the child's clean-up for a bounded time; past it, or on a second signal, it
kills the child (its group) and runs the caller's last resort. The caller then exits 128 + the signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: How long the child may take to clean up after the forwarded signal (a topology's `molecule destroy`
#: takes about a minute), unless ``$GAUNTLET_CLEANUP_GRACE_S`` says otherwise.
CLEANUP_GRACE_S = 300.0
GRACE_ENV = "GAUNTLET_CLEANUP_GRACE_S"
POLL_S = 0.2


def cleanup_grace(environ: Mapping[str, str] = os.environ) -> float:
    """The bound on the child's clean-up, in seconds: ``$GAUNTLET_CLEANUP_GRACE_S``, else the default."""
    raw = environ.get(GRACE_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else CLEANUP_GRACE_S
    except ValueError:
        return CLEANUP_GRACE_S


@dataclass
class Outcome:
    """How a supervised child ended: its exit status, or the signal that interrupted gauntlet."""

    returncode: int
    signum: int | None = None
    abandoned: bool = False  # the child did not finish its clean-up in time: it was killed

    @property
    def exit_code(self) -> int:
        """gauntlet's own exit status for an interrupted run: 128 + the signal (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum if self.signum else self.returncode


def run_supervised(
    cmd: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    group: bool = True,
    forward_as: int | None = None,
    grace_s: float | None = None,
    last_resort: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> Outcome:
    """Run ``cmd`` to its end; on a signal to gauntlet, forward it (or ``forward_as``) to the child's
    process group (``group``) or to the child alone (not a SIGINT: see the module docstring), wait up to
    ``grace_s`` for it to exit, else kill it and call ``last_resort``."""
    grace = cleanup_grace() if grace_s is None else grace_s
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in FORWARDED}
    try:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), start_new_session=group)
        outcome = _wait(proc, Path(cmd[0]).name, received, grace, group, forward_as, say)
        if outcome.abandoned and last_resort is not None:
            last_resort()
        return outcome
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait(
    proc: subprocess.Popen[bytes],
    what: str,
    received: list[int],
    grace: float,
    group: bool,
    forward_as: int | None,
    say: Callable[[str], None],
) -> Outcome:
    deadline: float | None = None
    while True:
        try:
            rc = proc.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if received and deadline is None:
            first = signal.Signals(received[0])
            if group or first != signal.SIGINT:
                sent = signal.Signals(forward_as or first)
                say(
                    f"gauntlet: {first.name}: sent {sent.name} to {what} (pid {proc.pid}"
                    f"{' and its group' if group else ''}); waiting up to {grace:.0f} s for its clean-up"
                )
                _signal(proc, sent, group)
            else:
                say(f"gauntlet: {first.name}: waiting up to {grace:.0f} s for {what} to stop")
            deadline = time.monotonic() + grace
        if deadline is not None and (time.monotonic() > deadline or len(received) > 1):
            why = "a second signal" if len(received) > 1 else f"its clean-up took over {grace:.0f} s"
            say(f"gauntlet: {why}: killing pid {proc.pid}{' and its group' if group else ''}")
            _signal(proc, signal.SIGKILL, group)
            proc.wait()
            return Outcome(proc.returncode, received[0], abandoned=True)
    return Outcome(rc, received[0] if received else None)


def _signal(proc: subprocess.Popen[bytes], signum: int, group: bool) -> None:
    """Signal the child's process group (its session's: the child leads it), or the child alone."""
    try:
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
    except ProcessLookupError:
        pass
