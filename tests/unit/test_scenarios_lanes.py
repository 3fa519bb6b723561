"""scripts/scenarios.sh, the lanes of `make test`, run on stand-in jobs (a fake scripts/scenario.sh and
a fake `make` that log when they start and end): every job runs once, the other lanes start once the long
topology reaches its checks, no two converges overlap, three lanes run checks side by side from one queue,
and a failed job fails the run after the others ran."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A stand-in job: logs "start NAME t"; a topology takes the converge slot (the real scripts/converge-slot.sh)
# after CREATE_<NAME> s, for CONV_<NAME> s (0.3 unless set) and logs it; then sleeps SLEEP_<NAME> s (its checks); fails when in FAIL.
FAKE_JOB = r"""#!/usr/bin/env bash
name=${1:-$JOB}
echo "start $name $(date +%s.%N)" >> "$LOG"
trap 'echo "term $name" >> "$LOG"; kill $! 2>/dev/null; exit 143' TERM
mkdir -p "${GAUNTLET_REPORT_DIR:-/tmp}"
if [ -n "${TOPOLOGY:-}" ]; then
  var=CREATE_$name; sleep "${!var:-0}" & wait  # destroy + create, before the slot
  . "$(dirname "$0")/converge-slot.sh"
  take_converge_slot "$name"
  echo converge > "$GAUNTLET_REPORT_DIR/current-phase"
  echo "slot $name $(date +%s.%N)" >> "$LOG"
  var=CONV_$name; sleep "${!var:-0.3}" & wait
  echo "unslot $name $(date +%s.%N)" >> "$LOG"
  give_converge_slot
  echo verify > "$GAUNTLET_REPORT_DIR/current-phase"
fi
var=SLEEP_${name//-/_}; sleep "${!var:-0.3}" & wait
echo "end $name $(date +%s.%N)" >> "$LOG"
case " $FAIL " in *" $name "*) exit 3 ;; esac
exit 0
"""


def _tree(tmp: Path) -> Path:
    (tmp / "scripts").mkdir()
    for script in ("scenarios.sh", "converge-slot.sh"):
        shutil.copy(ROOT / "scripts" / script, tmp / "scripts" / script)
    (tmp / "bin").mkdir()
    for path in (
        tmp / "scripts" / "scenario.sh",
        tmp / "scripts" / "scenario-citus.sh",
        tmp / "bin" / "make",
    ):
        # make's job name is its last argument
        body = FAKE_JOB.replace("${1:-$JOB}", "${@: -1}") if path.name == "make" else FAKE_JOB
        if path.name == "scenario-citus.sh":
            body = body.replace("${1:-$JOB}", "citus")
        if path.name == "scenario.sh":  # a topology: it takes the converge slot
            body = body.replace("#!/usr/bin/env bash\n", "#!/usr/bin/env bash\nTOPOLOGY=1\n")
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return tmp


def _run(tmp: Path, *args: str, **env: str) -> tuple[int, str, list[list[str]]]:
    log = tmp / "log"
    log.unlink(missing_ok=True)
    full = {
        **os.environ,
        "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}",
        "LOG": str(log),
        "FAIL": "",
        "GAUNTLET_LANES": "3",
        **env,
    }
    full["REPORT"] = str(tmp / "report")
    p = subprocess.run(
        ["bash", str(tmp / "scripts" / "scenarios.sh"), *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
    )
    lines = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return p.returncode, p.stdout + p.stderr, lines


def _at(lines: list[list[str]], event: str, name: str) -> float:
    return next(float(e[2]) for e in lines if e[0] == event and e[1] == name)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return _tree(tmp_path)


QUEUE = ["unit", "etcd", "redis_cluster", "custom", "citus", "runners", "staging-proof"]


def _spans(lines: list[list[str]], begin: str, end: str) -> dict[str, tuple[float, float]]:
    return {e[1]: (float(e[2]), _at(lines, end, e[1])) for e in lines if e[0] == begin}


def _overlaps(spans: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    return [
        (x, y)
        for x in spans
        for y in spans
        if x < y and spans[x][0] < spans[y][1] and spans[y][0] < spans[x][1]
    ]


def test_every_job_runs_once_after_the_long_converge_and_converges_run_one_at_a_time(tree: Path) -> None:
    rc, out, lines = _run(tree, "default", *QUEUE, CREATE_default="0.6", CONV_default="0.8")
    assert rc == 0, out
    started = sorted(e[1] for e in lines if e[0] == "start")
    assert started == sorted(["default", *QUEUE]), lines
    converges = _spans(lines, "slot", "unslot")
    assert not _overlaps(converges), f"two converges at once: {_overlaps(converges)}"
    first_other = min(_at(lines, "start", n) for n in QUEUE)
    assert first_other >= converges["default"][1], "a job started before the long topology's checks"
    assert "BENCH scenarios_seconds=" in out and "scenarios: citus passed" in out
    assert "BENCH converge_slot_wait_custom_seconds=" in out


def test_the_lanes_run_checks_side_by_side(tree: Path) -> None:
    t0 = time.monotonic()
    sleeps = {f"SLEEP_{n}": "1.5" for n in "abcd"}
    rc, out, lines = _run(tree, "default", "a", "b", "c", "d", CONV_default="0.1", **sleeps)
    took = time.monotonic() - t0
    assert rc == 0, out
    # one lane alone would need about 4 x (0.3 s converge + 1.5 s checks) after default
    assert took < 5.0, f"{took:.1f}s: the jobs ran in one lane\n{out}"
    checks = {n: (_at(lines, "unslot", n), _at(lines, "end", n)) for n in "abcd"}
    at_once = max(sum(1 for b, e in checks.values() if b <= t < e) for t, _ in checks.values())
    assert at_once == 3, f"not three lanes' checks at once ({at_once}): {checks}"
    rc, out, _ = _run(tree, "default", "a", GAUNTLET_LANES="two")
    assert rc == 2 and "GAUNTLET_LANES=two is not a number of lanes" in out


def test_a_failed_job_fails_the_run_after_every_other_ran(tree: Path) -> None:
    rc, out, lines = _run(tree, "default", *QUEUE, FAIL="unit")
    assert rc == 3, out
    assert sorted(e[1] for e in lines if e[0] == "end") == sorted(["default", *QUEUE])
    assert "scenarios: unit FAILED (exit 3)" in out and "scenarios: failed: unit" in out


def test_without_a_long_topology_the_lanes_take_every_job(tree: Path) -> None:
    rc, out, lines = _run(tree, "", "a", "b", "c", FAIL="b", SLEEP_a="1", SLEEP_b="1", SLEEP_c="1")
    assert rc == 3, out
    converges = _spans(lines, "slot", "unslot")
    assert sorted(converges) == ["a", "b", "c"] and not _overlaps(converges), converges
    checks = {n: (_at(lines, "unslot", n), _at(lines, "end", n)) for n in "abc"}
    assert _overlaps(checks), f"the checks did not run side by side: {checks}"
    assert "scenarios: failed: b" in out
