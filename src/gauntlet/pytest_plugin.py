"""pytest plugin: ``--inventory``, the ``cluster``/``history``/``nemesis``/``bench`` fixtures, markers that
skip with a reason when the inventory lacks their groups, and BENCH lines in the terminal summary.

No empty green: against an inventory, a run is red when the inventory cannot be read (one line, exit 4, never
a skip), when it executed no check or fewer than ``--min-executed``, and when a check skipped for anything
but something the inventory really lacks (a skip reason that starts with "inventory "). A test body that asks
the cluster for a group it lacks fails (:class:`GroupMissing`); only a fixture that does so skips.

Every check on hosts has a per-test backstop (:mod:`gauntlet.backstop`): pytest-timeout fails it after
900 s times ``$GAUNTLET_TIMEOUT_MULTIPLIER``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from gauntlet import backstop
from gauntlet.bench import Bench
from gauntlet.cluster import Cluster
from gauntlet.errors import GroupMissing, InventoryError
from gauntlet.history import History
from gauntlet.nemesis import Nemesis
from gauntlet.topology import write_topology

# Which inventory groups each marker needs; a test with the marker is skipped when one is missing.
MARKER_GROUPS: dict[str, tuple[str, ...]] = {
    "etcd": ("etcd",),
    "nats": ("nats",),
    "patroni": ("postgres",),
    "haproxy": ("haproxy", "postgres"),
    "pgbouncer": ("haproxy", "postgres"),
    "redis": ("redis",),
    "coherence": ("redis",),
    "custom": ("custom_server",),
    "citus": ("citus_coordinator", "citus_worker"),
}

_bench_key = pytest.StashKey[Bench]()
_cluster_key = pytest.StashKey[object]()
_executed_key = pytest.StashKey[list[str]]()
_problem_key = pytest.StashKey[str]()
_planted_key = pytest.StashKey[str]()
#: The one kind of skip a run against an inventory allows: something the inventory really lacks.
ALLOWED_SKIP_PREFIX = "inventory "


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
    group.addoption(
        "--min-executed",
        type=int,
        default=0,
        help="Fail the run when fewer checks than this executed (a topology's checks.min_executed).",
    )


def _molecule_inventory() -> str | None:
    f = os.environ.get("MOLECULE_INVENTORY_FILE")
    return str(Path(f).parent) if f else None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    report_dir = Path(config.getoption("--report-dir"))
    config.stash[_bench_key] = Bench(report_dir / "bench.jsonl")
    config.stash[_executed_key] = []
    # Runs for the report (GAUNTLET_REPORT_DIR set by `gauntlet run` / `make scenario-*`) also leave JUnit
    # XML next to the histories, unless the caller chose a path; set before the junitxml plugin reads it.
    if os.environ.get("GAUNTLET_REPORT_DIR") and not config.option.xmlpath:
        config.option.xmlpath = str(report_dir / "junit.xml")
    # A proof run (gauntlet prove) of a defect planted in the checks' own clients: patch them first.
    from gauntlet.nemesis.defects import apply_planted_patch

    planted = apply_planted_patch()
    if planted:
        config.stash[_planted_key] = planted


def load_cluster(config: pytest.Config) -> Cluster | str:
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
                # Never a skip: a run whose inventory cannot be read has checked nothing.
                raise pytest.UsageError(f"gauntlet: cannot read the inventory {source}: {exc}") from None
    return config.stash[_cluster_key]  # type: ignore[return-value]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read the inventory at once when one is given: an unreadable one ends the run with one line (exit 4)."""
    if session.config.getoption("--inventory") and not session.config.option.collectonly:
        load_cluster(session.config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip host tests whose groups the inventory lacks, with that reason; bound every test on hosts."""
    backstop.add_backstop(config, items)
    for item in items:
        if item.get_closest_marker("declared"):
            continue  # its group is the one its custom_server_api names: the check's own fixture skips
        needed = [g for m in item.iter_markers() for g in MARKER_GROUPS.get(m.name, ())]
        if not needed:
            continue
        cluster = load_cluster(config)
        if isinstance(cluster, str):
            item.add_marker(pytest.mark.skip(reason=cluster))
            continue
        missing = [g for g in dict.fromkeys(needed) if not cluster.has_group(g)]
        if missing:
            item.add_marker(
                pytest.mark.skip(reason=f"inventory {cluster.source} has no group {', '.join(missing)}")
            )


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: object) -> bool | None:
    """pytest-timeout's timer hook: a backstopped check's alarm repeats (see :mod:`gauntlet.backstop`)."""
    return backstop.set_repeating_alarm(item, settings)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster under test, from ``--inventory``; its topology is written to the report directory."""
    c = load_cluster(request.config)
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
        for host, why in n.heal().items():
            print(
                f"gauntlet: could not heal {host}: {why} (gauntlet heal --inventory INV removes what is left)"
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """A fixture that asks for a group the inventory lacks skips its tests (with that reason); a test body
    that does so fails, since its selection promised the group."""
    try:
        return (yield)
    except GroupMissing as exc:
        pytest.skip(str(exc))


def _against_inventory(config: pytest.Config) -> bool:
    return bool(config.getoption("--inventory"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Count executed checks; against an inventory, turn a skip for any other reason than something the
    inventory lacks into a failure (a check that did not run is not a pass)."""
    report: pytest.TestReport = yield
    if report.when == "call" and not report.skipped:
        item.config.stash[_executed_key].append(item.nodeid)
    if report.skipped and _against_inventory(item.config) and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not reason.startswith(ALLOWED_SKIP_PREFIX):
            report.outcome = "failed"
            report.longrepr = (
                f"gauntlet: skipped for a reason other than something the inventory lacks: {reason}"
            )
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Against an inventory, a run that executed no check, or fewer than ``--min-executed``, is red."""
    config = session.config
    executed = len(config.stash.get(_executed_key, []))
    wanted = config.getoption("--min-executed")
    problem = None
    if wanted and executed < wanted:
        problem = f"only {executed} checks executed, the topology needs at least {wanted} (--min-executed)"
    elif _against_inventory(config) and session.testscollected and not executed:
        problem = f"no check executed of the {session.testscollected} collected: nothing was checked"
    if problem:
        config.stash[_problem_key] = problem
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    problem = terminalreporter.config.stash.get(_problem_key, None)
    if problem:
        terminalreporter.write_line(f"gauntlet: RED: {problem}", red=True, bold=True)
    planted = terminalreporter.config.stash.get(_planted_key, None)
    if planted:
        terminalreporter.write_line(
            f"gauntlet: planted defect {planted} (its patch is in this run's clients)"
        )
    bench = terminalreporter.config.stash.get(_bench_key, None)
    if bench and bench.figures:
        terminalreporter.section("gauntlet benchmark figures (measured, not asserted)")
        for line in bench.lines():
            terminalreporter.write_line(line)


__all__ = ["MARKER_GROUPS", "GroupMissing", "load_cluster"]
