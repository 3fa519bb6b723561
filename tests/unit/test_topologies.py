"""Topologies are data: every list of topologies in the project agrees with molecule/<name>/topology.yml.

Each test names the file that disagrees and what to change, so adding a topology is one new directory plus
the lines these tests ask for.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from gauntlet import topologies
from gauntlet.topologies import ROOT, Topology, TopologyError, all_topologies, load, readme_table

ALL = all_topologies()
BY_NAME = {t.name: t for t in ALL}


def test_every_scenario_has_a_description_and_no_verify_of_its_own() -> None:
    scenarios = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    assert scenarios == sorted(BY_NAME), "each molecule/<name>/molecule.yml needs a topology.yml beside it"
    own = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "molecule").glob("*/verify.yml"))
    assert own == ["molecule/_shared/verify.yml"], f"scenarios use the shared verify playbook, not {own}"
    shared = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())
    assert shared["provisioner"]["playbooks"]["verify"] == "../_shared/verify.yml"


@pytest.mark.parametrize("t", ALL, ids=[t.name for t in ALL])
def test_molecule_platforms_are_the_description_hosts(t: Topology) -> None:
    molecule = yaml.safe_load((ROOT / "molecule" / t.name / "molecule.yml").read_text())
    platforms = {p["name"]: tuple(p.get("groups", [])) for p in molecule["platforms"]}
    assert platforms == t.hosts, f"molecule/{t.name}/molecule.yml platforms must be topology.yml's hosts"


def test_makefile_scenarios_are_the_make_test_topologies() -> None:
    m = re.search(r"^SCENARIOS \?= (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "Makefile: no 'SCENARIOS ?= ...' line"
    want = [t.name for t in ALL if t.ci == "make-test"]
    assert m.group(1).split() == want, f"Makefile: set 'SCENARIOS ?= {' '.join(want)}'"


def test_makefile_checks_queue_holds_every_make_test_topology_but_the_long_one() -> None:
    text = (ROOT / "Makefile").read_text()
    queue = re.search(r"^CHECKS_QUEUE \?= (.*)$", text, re.M)
    long = re.search(r"^LONG_SCENARIO \?= (.*)$", text, re.M)
    assert queue and long, "Makefile: no 'CHECKS_QUEUE ?= ...' or 'LONG_SCENARIO ?= ...' line"
    want = {t.name for t in ALL if t.ci == "make-test"} - {long.group(1).strip()} | {"unit", "staging-proof"}
    got = queue.group(1).split()
    assert sorted(got) == sorted(want), (
        f"Makefile: CHECKS_QUEUE must hold {sorted(want)} once each, not {got}"
    )


def test_ci_matrix_runs_every_topology() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    matrix = workflow["jobs"]["scenario"]["strategy"]["matrix"]["scenario"]
    assert matrix == [t.name for t in ALL], f"ci.yml matrix: scenario: [{', '.join(t.name for t in ALL)}]"


def test_readme_table_is_generated_from_the_descriptions() -> None:
    table = readme_table(ALL)
    assert table in (ROOT / "README.md").read_text(), (
        "README.md: replace the topology table with the output of `python -m gauntlet.topologies readme-table`"
    )


def _collect(t: Topology) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *t.checks.pytest_args_list(), "--collect-only", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    ids = {line.strip() for line in out.stdout.splitlines() if "::" in line}
    assert ids, f"{t.name}: its selection collects nothing\n{out.stdout}{out.stderr}"
    return ids


@functools.cache
def _selections() -> dict[str, set[str]]:
    """Every topology's selected test ids, collected once, in parallel (collection takes seconds each)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(BY_NAME, pool.map(_collect, BY_NAME.values()), strict=True))


def _selected(t: Topology) -> set[str]:
    return _selections()[t.name]


@pytest.mark.parametrize("t", [t for t in ALL if t.ci == "matrix"], ids=lambda t: t.name)
def test_a_matrix_only_topology_is_covered_by_its_make_test_topology(t: Topology) -> None:
    """`make test` runs every check at least once: a topology left to the CI matrix names the one that
    selects all its checks."""
    assert t.covered_by in BY_NAME and BY_NAME[t.covered_by].ci == "make-test"
    missing = sorted(_selected(t) - _selected(BY_NAME[t.covered_by]))
    assert not missing, f"{t.covered_by} does not select these checks of {t.name}: {missing}"


@pytest.mark.parametrize("t", ALL, ids=[t.name for t in ALL])
def test_min_executed_is_reachable(t: Topology) -> None:
    """The floor cannot exceed what the selection holds (or every run would be red)."""
    assert t.checks.min_executed <= len(_selected(t))


def test_staging_comparison_reads_the_descriptions() -> None:
    text = (ROOT / "tests/staging/compare_runs.py").read_text()
    assert "gauntlet.topologies" in text and "verify.yml" not in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("summary: x\norder: 1\nci: make-test\nhosts: {a: [g]}\n", "missing field 'checks'"),
        (
            "summary: x\norder: 1\nci: make-test\nhosts: {a: [g]}\n"
            "checks: {paths: [tests/integration], markers: m}\n",
            "missing field 'checks.min_executed'",
        ),
        (
            "summary: x\norder: 1\nci: sometimes\nhosts: {a: [g]}\n"
            "checks: {paths: [tests/integration], markers: m, min_executed: 1}\n",
            "'ci' must be one of make-test, matrix",
        ),
        (
            "summary: x\norder: 1\nci: matrix\nhosts: {a: [g]}\n"
            "checks: {paths: [tests/integration], markers: m, min_executed: 1}\n",
            "needs 'covered_by'",
        ),
        (
            "summary: x\norder: 1\nci: make-test\nhosts: {a: [g]}\n"
            "checks: {paths: [tests/nowhere], markers: m, min_executed: 1}\n",
            "checks.paths: tests/nowhere does not exist",
        ),
        (
            "summary: x\norder: 1\nci: make-test\nhosts: {a: [g]}\n"
            "checks: {paths: [tests/integration], markers: m, min_executed: 0}\n",
            "'checks.min_executed' must be a whole number >= 1",
        ),
        ("summary: x\norder: 1\nci: make-test\nhost: {}\n", "unknown field(s) host"),
    ],
)
def test_a_wrong_description_names_the_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "mytopo" / "topology.yml"
    path.parent.mkdir()
    path.write_text(body)
    with pytest.raises(TopologyError) as exc:
        load(path)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_topology_lists_the_names() -> None:
    with pytest.raises(TopologyError, match="choose one of etcd"):
        topologies.get("nosuch")
