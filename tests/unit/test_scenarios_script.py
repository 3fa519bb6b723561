"""scripts/scenarios.sh, on stand-in topologies: the short ones start once the long one reached its verify
phase and run beside it one after another, every topology runs even when one fails, the failed ones are
named and the exit status is the first failure's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from role_support import ROOT

# A stand-in scripts/scenario.sh: logs start and end with a clock, walks through the phases as the real one
# writes them, sleeps in each ($NAP_<name>, else $NAP), and exits with $FAIL_<name> (default 0).
FAKE_SCENARIO = r"""#!/usr/bin/env bash
name=${1:-citus}; report=$GAUNTLET_REPORT_DIR; mkdir -p "$report"  # scenario-citus.sh takes no name
echo "start $name $(date +%s.%N)" >> "$LOG"
for p in create converge verify prove; do
  echo "$p" > "$report/current-phase"
  echo "==> [$name] $p"
  nap_var="NAP_$name"; sleep "${!nap_var:-${NAP:-0.3}}"
done
echo "end $name $(date +%s.%N)" >> "$LOG"
rc_var="FAIL_$name"; exit "${!rc_var:-0}"
"""


def run(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, float]]:
    scripts = tmp_path / "scripts"
    scripts.mkdir(exist_ok=True)
    shutil.copy(ROOT / "scripts" / "scenarios.sh", scripts / "scenarios.sh")
    for fake in ("scenario.sh", "scenario-citus.sh"):
        (scripts / fake).write_text(FAKE_SCENARIO)
        (scripts / fake).chmod(0o755)
    log = tmp_path / "times.log"
    r = subprocess.run(
        ["bash", str(scripts / "scenarios.sh"), *args],
        cwd=tmp_path,
        env={**os.environ, "LOG": str(log), "REPORT": "report", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    times = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        what, name, t = line.split()
        times[f"{what} {name}"] = float(t)
    return r, times


def test_the_short_topologies_run_beside_the_long_one_after_it_reached_verify(tmp_path: Path) -> None:
    r, t = run(tmp_path, "default", "etcd", "custom", NAP="0.2", NAP_default="1.5")
    assert r.returncode == 0, r.stdout + r.stderr
    # The long one's verify begins after create + converge (2 naps): the short ones start after that...
    assert t["start etcd"] >= t["start default"] + 3.0
    # ...one after another, and beside it (the first starts before the long one ends).
    assert t["start custom"] >= t["end etcd"]
    assert t["start etcd"] < t["end default"]
    assert "[etcd] ==> [etcd] verify" in r.stdout and "[default] ==> [default] prove" in r.stdout
    assert "scenarios: default passed" in r.stdout and "BENCH scenarios_seconds=" in r.stdout


def test_every_topology_runs_when_one_fails_and_the_first_failure_is_the_exit_status(tmp_path: Path) -> None:
    r, t = run(tmp_path, "default", "etcd", "custom", FAIL_etcd="3", FAIL_default="1", NAP="0.1")
    assert r.returncode == 1, r.stdout + r.stderr  # default is judged first: its status wins
    assert {"end default", "end etcd", "end custom"} <= set(t)
    assert "scenarios: etcd FAILED (exit 3)" in r.stdout and "scenarios: failed: default etcd" in r.stdout


def test_without_a_long_topology_they_run_one_after_another(tmp_path: Path) -> None:
    r, t = run(tmp_path, "", "etcd", "citus", NAP="0.1", FAIL_citus="2")
    assert r.returncode == 2 and t["start citus"] >= t["end etcd"], r.stdout + r.stderr
