"""Read what a run left in its report directory: JUnit XML, bench.jsonl, histories, topology.json."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gauntlet.history import History

RUN_MARKERS = ("junit.xml", "bench.jsonl", "topology.json", "histories", "proof.json")
NS = 1_000_000_000

# The report's figure panels: (id, title, unit, name fragments). A bench figure belongs to the first panel
# one of whose fragments its name contains; figures of no panel are listed in the run's table only.
METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lost", "Acknowledged writes lost (and reads of lost writes)", ("lost",)),
    ("staleness", "Max staleness of cached reads", ("staleness",)),
    (
        "election",
        "Election times (fault to new leader/primary)",
        ("election", "failover_seconds", "switchover"),
    ),
    (
        "rto",
        "RTO per fault (longest gap without an acknowledged write)",
        ("rto", "write_gap", "write_recovery"),
    ),
    (
        "lag",
        "Replication lag (write on the leader to visible on the replicas)",
        ("lag", "replication_visible"),
    ),
)


@dataclass
class Check:
    """One pytest test as the JUnit XML tells it."""

    name: str
    classname: str
    seconds: float
    verdict: str  # passed | failed | error | skipped
    message: str = ""


@dataclass
class Run:
    """Everything one run (a topology, or one inventory) left in a directory."""

    name: str
    directory: Path
    checks: list[Check] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    histories: dict[str, History] = field(default_factory=dict)
    topology: dict[str, Any] | None = None
    # The planted-defect proof of this run's topology (gauntlet prove: proof.json), one row per defect.
    proof: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for c in self.checks:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """The run's figures grouped into the report's panels (:data:`METRICS`), empty panels included."""
        out: dict[str, list[dict[str, Any]]] = {m[0]: [] for m in METRICS}
        for f in self.figures:
            if f.get("metric") in out:  # derived figures say which panel they belong to
                out[f["metric"]].append(f)
                continue
            for key, _, fragments in METRICS:
                if any(frag in f["name"] for frag in fragments):
                    out[key].append(f)
                    break
        return out

    @property
    def ok(self) -> bool:
        """No check failed, and every planted defect of its proof (if any) was caught and undone."""
        counts = self.counts
        proven = all(r.get("caught") and r.get("restored") for r in self.proof)
        return counts["failed"] == 0 and counts["error"] == 0 and proven


def read_junit(path: Path) -> list[Check]:
    """Checks from a JUnit XML file (pytest's flavour)."""
    if not path.exists():
        return []
    checks = []
    for case in ET.parse(path).getroot().iter("testcase"):
        verdict, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                verdict = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or el.text or "").strip()
                break
        checks.append(
            Check(
                name=case.get("name", "?"),
                classname=case.get("classname", ""),
                seconds=float(case.get("time") or 0),
                verdict=verdict,
                message=message[:2000],
            )
        )
    return checks


def read_bench(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_run(directory: Path, name: str | None = None) -> Run:
    run = Run(name=name or directory.name, directory=directory)
    run.checks = read_junit(directory / "junit.xml")
    run.figures = read_bench(directory / "bench.jsonl")
    hist_dir = directory / "histories"
    if hist_dir.is_dir():
        for p in sorted(hist_dir.glob("*.jsonl")):
            h = History.load(p)
            if h.ops:
                run.histories[p.stem] = h
    run.figures += election_figures(run.histories)
    proof = directory / "proof.json"
    if proof.exists():
        run.proof = list(json.loads(proof.read_text()))
    topo = directory / "topology.json"
    if topo.exists():
        run.topology = json.loads(topo.read_text())
    return run


def election_figures(histories: dict[str, History]) -> list[dict[str, Any]]:
    """Election times derived from histories: a fault's start to the ``new-leader`` mark a check recorded
    when it saw the new leader (checks that mark it: the Patroni and coherence failover checks)."""
    out = []
    for name, h in histories.items():
        starts = [o for o in h.faults() if o.f.endswith(":start")]
        for m in (o for o in h.ops if o.process == "mark" and o.f == "new-leader"):
            before = [s for s in starts if s.time <= m.time]
            if not before:
                continue
            s = before[-1]
            out.append(
                {
                    "name": f"election_seconds {name}",
                    "metric": "election",
                    "value": round((m.time - s.time) / NS, 3),
                    "unit": "s",
                    "context": {"fault": s.f.split(":")[0], **(m.value if isinstance(m.value, dict) else {})},
                    "derived": "history",
                }
            )
    return out


def find_runs(report_dir: Path) -> list[Run]:
    """The run in ``report_dir`` itself, and one per subdirectory that holds a run (``make test`` layout)."""
    runs = []
    if any((report_dir / m).exists() for m in RUN_MARKERS):
        runs.append(read_run(report_dir, name=report_dir.name))
    for sub in sorted(p for p in report_dir.iterdir() if p.is_dir() and p.name != "histories"):
        if any((sub / m).exists() for m in RUN_MARKERS):
            runs.append(read_run(sub))
    return runs
