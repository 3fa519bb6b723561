"""The planted-defect proof of a running topology: for each defect of the catalogue
(:mod:`gauntlet.nemesis.defects`) that applies to the cluster, plant it, run the check that names it and
require it to FAIL for the expected reason, undo it, and require the same check to pass again.

The result is one row per defect (``proof.json`` in the report directory, a table in the report) and two
BENCH lines, ``fidelity_planted`` and ``fidelity_caught``; the proof holds when every planted defect was
caught and every check passed again after its undo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from gauntlet.cluster import Cluster
from gauntlet.nemesis.defects import PLANTED_ENV, Defect

ROOT = Path(__file__).resolve().parents[2]
PROOF_FILE = "proof.json"
# How much of a failing check's output a row keeps as evidence.
EVIDENCE_CHARS = 600


@dataclass(frozen=True)
class CheckRun:
    """One run of a check: pytest's exit status and output."""

    rc: int
    output: str


Runner = Callable[[Defect, str, dict[str, str]], CheckRun]  # (defect, phase, extra env) -> run


@dataclass
class ProofRow:
    """What planting one defect showed."""

    defect: str
    check: str
    planted: bool = False  # the plant went in (False: the proof could not be made)
    caught: bool = False  # the check failed, for the expected reason
    reason_matched: bool = False
    restored: bool = False  # after the undo the same check passed again
    seconds: float = 0.0
    detail: str = ""  # why it is not caught / not restored, or the failing check's reason

    @property
    def held(self) -> bool:
        return self.planted and self.caught and self.restored


def failure_lines(output: str) -> str:
    """What pytest said about why the check failed: its ``E`` lines and its FAILED/ERROR summary lines, in
    full. A defect's reason is matched against these only -- not the traceback's source listing, where the
    check's own messages stand whatever happened."""
    return "\n".join(
        ln[1:].strip() if ln.startswith("E ") else ln
        for ln in output.splitlines()
        if ln.startswith(("E ", "FAILED", "ERROR"))
    )


def failure_reason(output: str) -> str:
    """The line of pytest's output that says why the check failed (its ``E`` lines, else the summary)."""
    lines = [ln[1:].strip() for ln in output.splitlines() if ln.startswith("E ")]
    if lines:
        return " ".join(lines)[:EVIDENCE_CHARS]
    failed = [ln for ln in output.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return " ".join(failed)[:EVIDENCE_CHARS] or output[-EVIDENCE_CHARS:]


def pytest_runner(inventory: str, report_dir: Path) -> Runner:
    """Run a defect's check with pytest against ``inventory``; its histories and JUnit XML go to
    ``<report_dir>/proof/<defect>/<phase>``."""

    def run(defect: Defect, phase: str, env: dict[str, str]) -> CheckRun:
        out = report_dir / "proof" / defect.name / phase
        out.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            defect.check,
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfE",
            "--no-header",
            f"--inventory={inventory}",
            f"--report-dir={out}",
            "--min-executed=1",
        ]
        full_env = {**os.environ, "GAUNTLET_REPORT_DIR": str(out), **env}
        proc = subprocess.run(
            cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, check=False, timeout=900
        )
        output = proc.stdout + proc.stderr
        (out / "pytest.log").write_text(output)
        return CheckRun(proc.returncode, output)

    return run


def prove_one(cluster: Cluster, defect: Defect, runner: Runner, log: Callable[[str], None]) -> ProofRow:
    """Plant ``defect``, require its check red for its reason, undo it, require the check green."""
    row = ProofRow(defect.name, defect.check)
    t0 = time.monotonic()
    env = {PLANTED_ENV: defect.name} if defect.patch else {}
    try:
        log(f"plant {defect.name}: {defect.description}")
        try:
            if defect.plant:
                defect.plant(cluster)
            row.planted = True
            red = runner(defect, "planted", env)
        finally:
            if defect.undo:
                log(f"undo {defect.name}")
                defect.undo(cluster)
        reason = failure_reason(red.output)
        row.reason_matched = bool(re.search(defect.reason, failure_lines(red.output)))
        # pytest exits 1 when a test failed; anything else (no test ran, a usage error) caught nothing.
        row.caught = red.rc == 1 and row.reason_matched
        if row.caught:
            row.detail = reason
        elif red.rc == 0:
            row.detail = "the check passed with the defect planted"
        elif red.rc != 1:
            row.detail = f"the check did not run (pytest exit {red.rc}): {reason}"
        else:
            row.detail = f"failed, but not for /{defect.reason}/: {reason}"
        green = runner(defect, "undone", {})
        row.restored = green.rc == 0
        if not row.restored:
            row.detail += f" | after the undo the check still fails: {failure_reason(green.output)}"
    except Exception as exc:  # a plant or undo that fails ends this defect's proof, not the others'
        row.detail = f"{type(exc).__name__}: {exc}"[:EVIDENCE_CHARS]
    row.seconds = round(time.monotonic() - t0, 1)
    return row


def prove(
    cluster: Cluster,
    defects: Sequence[Defect],
    runner: Runner,
    log: Callable[[str], None] = print,
) -> list[ProofRow]:
    """Prove every defect in turn; one row each."""
    rows = []
    for d in defects:
        row = prove_one(cluster, d, runner, log)
        verdict = "caught" if row.caught else "MISSED"
        log(
            f"{verdict} {d.name} by {d.check} in {row.seconds:.0f} s"
            f"{'' if row.restored else ' (NOT restored)'}: {row.detail}"
        )
        rows.append(row)
    return rows


def write_proof(report_dir: Path, rows: Sequence[ProofRow]) -> Path:
    """``proof.json`` (one object per row) in ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / PROOF_FILE
    path.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return path


def read_proof(report_dir: Path) -> list[ProofRow]:
    """The rows of ``proof.json`` in ``report_dir`` (none when there is no proof)."""
    path = report_dir / PROOF_FILE
    if not path.exists():
        return []
    return [ProofRow(**r) for r in json.loads(path.read_text())]


def bench_lines(rows: Sequence[ProofRow]) -> list[str]:
    """The proof's BENCH lines."""
    caught = sum(1 for r in rows if r.caught)
    return [f"BENCH fidelity_planted={len(rows)} defects", f"BENCH fidelity_caught={caught} defects"]
