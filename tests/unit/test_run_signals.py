"""gauntlet run --topology under a signal (gauntlet.supervise): a SIGTERM sent to the gauntlet process alone
reaches the running scenario, whose clean-up finishes before gauntlet exits 143 (SIGINT: 130); a clean-up
that does not finish in time is killed and gauntlet removes the topology's hosts itself.

scripts/scenario.sh is a stub here, in a temporary checkout (gauntlet finds the checkout from its working
directory), and podman is a fake (tests/unit/fake_podman.py): nothing starts a container."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fake_podman
import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# The scenario's trap as scripts/scenario.sh has it, its phase a foreground command: bash runs the trap only
# once that command has ended, so the signal must reach the whole group, not the script alone.
CLEANS_UP = """\
    trap 'echo "cleanup-start" >> "$STUB_LOG"; sleep 1; echo "cleanup-done" >> "$STUB_LOG"; exit 130' INT TERM
    echo "started $$" >> "$STUB_LOG"
    sleep 300
    echo "phase-ended" >> "$STUB_LOG"
"""
# A scenario whose clean-up never ends: each signal is noted, the loop goes on.
NEVER_ENDS = """\
    trap 'echo "signalled" >> "$STUB_LOG"' INT TERM
    echo "started $$" >> "$STUB_LOG"
    while :; do sleep 0.2; done
"""


def checkout(tmp_path: Path, body: str) -> Path:
    """A checkout gauntlet accepts (galaxy.yml, molecule/fake/) whose scripts/scenario.sh is ``body``."""
    root = tmp_path / "checkout"
    (root / "molecule" / "fake").mkdir(parents=True)
    (root / "molecule" / "fake" / "molecule.yml").write_text("platforms: [{name: fakehost}]\n")
    (root / "galaxy.yml").write_text("namespace: gauntlet\nname: cluster\n")
    (root / "scripts").mkdir()
    script = root / "scripts" / "scenario.sh"
    script.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return root


def start_run(tmp_path: Path, body: str, grace_s: float) -> tuple[subprocess.Popen[str], Path, Path]:
    """``gauntlet run --topology fake`` in the stub checkout; returns it once the stub has started."""
    root = checkout(tmp_path, body)
    state, podman_log = fake_podman.install(
        tmp_path / "bin",
        {
            "containers": {"fakehost": {"labels": {"gauntlet_scenario": "fake"}, "network": "gauntlet-fake"}},
            "networks": {"gauntlet-fake": {"labels": {"gauntlet_scenario": "fake"}}},
        },
    )
    stub_log = tmp_path / "stub.log"
    stub_log.write_text("")
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "STUB_LOG": str(stub_log),
        "GAUNTLET_CLEANUP_GRACE_S": str(grace_s),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),  # the last resort's state reset: never ~/.ansible
        fake_podman.STATE_ENV: str(state),
        fake_podman.LOG_ENV: str(podman_log),
    }
    env.pop("MOLECULE_EPHEMERAL_DIRECTORY", None)
    cmd = [sys.executable, "-m", "gauntlet.cli", "run", "--topology", "fake", "--report", str(tmp_path / "r")]
    # gauntlet in a group of its own, so that what a red run leaves can be killed without killing pytest.
    run = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while "started" not in stub_log.read_text():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)
    return run, stub_log, podman_log


def stub_pid(stub_log: Path) -> int:
    return int(stub_log.read_text().split("started ", 1)[1].split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def finish(run: subprocess.Popen[str], stub_log: Path, timeout: float) -> str:
    """gauntlet's output once it has exited; then whatever is left of the run (a red one leaves the stub
    running) is killed: gauntlet's own process group, and the stub's, which gauntlet gives its own session."""
    try:
        out, _ = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = ""
    for group in (run.pid, stub_pid(stub_log)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    if not out:
        out, _ = run.communicate()
    return out


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_gauntlet_alone_reaches_the_scenario_and_its_clean_up_finishes_first(
    tmp_path, signum, code
):
    run, stub_log, podman_log = start_run(tmp_path, CLEANS_UP, grace_s=20)
    pid = stub_pid(stub_log)
    run.send_signal(signum)  # the gauntlet process only, not its process group
    out = finish(run, stub_log, timeout=15)
    stub = stub_log.read_text().split()
    assert run.returncode == code, out
    assert "cleanup-done" in stub and "phase-ended" not in stub, (stub, out)
    assert not alive(pid), "gauntlet exited before its scenario did"
    assert f"interrupted by {signal.Signals(signum).name}" in out
    removals = [c for c in fake_podman.calls(podman_log) if c[0] == "rm" or c[:2] == ["network", "rm"]]
    assert removals == [], "the scenario cleaned up itself: no last resort"


def test_a_clean_up_that_does_not_finish_is_killed_and_gauntlet_removes_the_hosts(tmp_path):
    run, stub_log, podman_log = start_run(tmp_path, NEVER_ENDS, grace_s=1)
    pid = stub_pid(stub_log)
    run.send_signal(signal.SIGTERM)
    out = finish(run, stub_log, timeout=15)
    assert run.returncode == 143, out
    assert "signalled" in stub_log.read_text() and not alive(pid)
    assert "removed container fakehost (fake)" in out and "removed network gauntlet-fake (fake)" in out, out
    removals = [c for c in fake_podman.calls(podman_log) if c[0] == "rm" or c[:2] == ["network", "rm"]]
    assert removals == [["rm", "--force", "--time", "0", "fakehost"], ["network", "rm", "gauntlet-fake"]]


# -- against your hosts: the step keeps gauntlet's terminal and process group ------------------------------
# Each SIGINT the step gets is noted; it ends 1 s after the first (a second one would be noted meanwhile).
NOTES_SIGINTS = """\
    trap 'echo "got-INT" >> "$STUB_LOG"' INT
    echo "started $$" >> "$STUB_LOG"
    until grep -q got-INT "$STUB_LOG"; do sleep 0.1; done
    sleep 1
"""
DRIVER = """\
import signal, sys
from pathlib import Path
from gauntlet.supervise import run_supervised
out = run_supervised(["bash", "-c", sys.argv[1]], Path.cwd(), dict(__import__("os").environ), group=False,
                     forward_as=signal.SIGINT, grace_s=10)
print("EXIT", out.exit_code, out.abandoned)
"""


@pytest.mark.parametrize(
    "to_group", [False, True], ids=["SIGTERM to gauntlet alone", "Ctrl-C at the terminal"]
)
def test_against_hosts_the_step_gets_one_sigint(tmp_path, to_group):
    """A SIGTERM to gauntlet reaches the step (pytest, ansible-playbook) as SIGINT; a terminal's Ctrl-C (to
    the whole foreground group) reaches it once, not again from gauntlet: a second SIGINT would cut pytest's
    teardowns (the nemesis' heal) short."""
    stub_log = tmp_path / "stub.log"
    stub_log.write_text("")
    env = {**os.environ, "STUB_LOG": str(stub_log)}
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, textwrap.dedent(NOTES_SIGINTS)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the "terminal" here, and nothing of pytest's in it
    )
    try:
        deadline = time.monotonic() + 20
        while "started" not in stub_log.read_text():
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        if to_group:
            os.killpg(driver.pid, signal.SIGINT)
        else:
            driver.send_signal(signal.SIGTERM)
        out, _ = driver.communicate(timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    code = 130 if to_group else 143
    assert f"EXIT {code} False" in out, out
    assert stub_log.read_text().split().count("got-INT") == 1, stub_log.read_text()
