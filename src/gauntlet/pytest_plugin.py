"""pytest plugin: ``--inventory``, the ``cluster``/``history``/``nemesis``/``bench`` fixtures, markers that
skip with a reason when the inventory lacks their groups, and BENCH lines in the terminal summary."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gauntlet.bench import Bench
from gauntlet.cluster import Cluster
from gauntlet.errors import GroupMissing, InventoryError
from gauntlet.history import History
from gauntlet.nemesis import Nemesis
from gauntlet.topology import write_topology

# Which inventory groups each marker needs; a test with the marker is skipped when one is missing.
MARKER_GROUPS: dict[str, tuple[str, ...]] = {
    "etcd": ("etcd",),
    "patroni": ("postgres",),
    "haproxy": ("haproxy", "postgres"),
    "redis": ("redis",),
    "coherence": ("redis",),
    "custom": ("custom_server",),
    "citus": ("citus_coordinator", "citus_worker"),
}

_bench_key = pytest.StashKey[Bench]()
_cluster_key = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gauntlet")
    group.addoption(
        "--inventory",
        default=os.environ.get("GAUNTLET_INVENTORY") or _molecule_inventory(),
        help="Ansible inventory of the cluster under test (file or directory). Default: $GAUNTLET_INVENTORY, "
        "else the inventory Molecule wrote ($MOLECULE_INVENTORY_FILE's directory).",
    )
    group.addoption(
        "--report-dir",
        default=os.environ.get("GAUNTLET_REPORT_DIR", "report"),
        help="Where histories (JSONL) and bench.jsonl are written (default: report/).",
    )


def _molecule_inventory() -> str | None:
    f = os.environ.get("MOLECULE_INVENTORY_FILE")
    return str(Path(f).parent) if f else None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    report_dir = Path(config.getoption("--report-dir"))
    config.stash[_bench_key] = Bench(report_dir / "bench.jsonl")
    # Runs for the report (GAUNTLET_REPORT_DIR set by `gauntlet run` / `make scenario-*`) also leave JUnit
    # XML next to the histories, unless the caller chose a path; set before the junitxml plugin reads it.
    if os.environ.get("GAUNTLET_REPORT_DIR") and not config.option.xmlpath:
        config.option.xmlpath = str(report_dir / "junit.xml")


def _load_cluster(config: pytest.Config) -> Cluster | str:
    """The session's cluster, or the reason there is none (cached)."""
    if _cluster_key not in config.stash:
        source = config.getoption("--inventory")
        if not source:
            config.stash[_cluster_key] = (
                "no inventory: pass --inventory PATH (or run through Molecule, which sets MOLECULE_INVENTORY_FILE)"
            )
        else:
            try:
                config.stash[_cluster_key] = Cluster.from_inventory(source)
            except InventoryError as exc:
                config.stash[_cluster_key] = str(exc)
    return config.stash[_cluster_key]  # type: ignore[return-value]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip host tests whose groups the inventory lacks, with that reason."""
    for item in items:
        needed = [g for m in item.iter_markers() for g in MARKER_GROUPS.get(m.name, ())]
        if not needed:
            continue
        cluster = _load_cluster(config)
        if isinstance(cluster, str):
            item.add_marker(pytest.mark.skip(reason=cluster))
            continue
        missing = [g for g in dict.fromkeys(needed) if not cluster.has_group(g)]
        if missing:
            item.add_marker(
                pytest.mark.skip(reason=f"inventory {cluster.source} has no group {', '.join(missing)}")
            )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster under test, from ``--inventory``; its topology is written to the report directory."""
    c = _load_cluster(request.config)
    if isinstance(c, str):
        pytest.skip(c)
    try:
        write_topology(c, Path(request.config.getoption("--report-dir")) / "topology.json")
    except Exception as exc:  # the report's topology table is a nicety; never fail checks over it
        print(f"gauntlet: could not record the topology: {exc}")
    return c


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> Bench:
    """Record benchmark figures: ``bench.record("etcd_election_seconds", 1.8)``."""
    return request.config.stash[_bench_key]


@pytest.fixture
def history(request: pytest.FixtureRequest) -> Iterator[History]:
    """A fresh history for the test, written to ``<report dir>/histories/<test>.jsonl``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    path = Path(request.config.getoption("--report-dir")) / "histories" / f"{name}.jsonl"
    h = History(path)
    yield h
    h.close()


@pytest.fixture
def nemesis(cluster: Cluster, history: History) -> Iterator[Nemesis]:
    """Faults for the test; whatever is still in force when it ends is healed, pass or fail."""
    n = Nemesis(cluster, history)
    try:
        yield n
    finally:
        n.heal()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that asks the cluster for a group it lacks (``cluster.group("x")``) is skipped, not failed."""
    try:
        return (yield)
    except GroupMissing as exc:
        pytest.skip(str(exc))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """The same for a fixture that asks for a group the inventory lacks: the test is skipped, not an error."""
    try:
        return (yield)
    except GroupMissing as exc:
        pytest.skip(str(exc))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    bench = terminalreporter.config.stash.get(_bench_key, None)
    if bench and bench.figures:
        terminalreporter.section("gauntlet benchmark figures (measured, not asserted)")
        for line in bench.lines():
            terminalreporter.write_line(line)


__all__ = ["MARKER_GROUPS", "GroupMissing"]
