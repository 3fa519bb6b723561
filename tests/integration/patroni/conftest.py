"""Fixtures of the Patroni topology checks, and diagnostics (patronictl list/history, every member's Patroni
log) printed with any check of this directory that fails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checklib.patroni import PatroniCluster
from gauntlet.bench import Bench, wait_for
from gauntlet.clients.postgres import ensure_table
from gauntlet.cluster import Cluster


@pytest.fixture(scope="session")
def pg(cluster: Cluster) -> PatroniCluster:
    """The Patroni topology of the inventory (skipped when it has no group postgres)."""
    return PatroniCluster(cluster)


@pytest.fixture(scope="session")
def table(pg: PatroniCluster) -> str:
    """The writers' table exists (created on the leader itself: HAProxy's routing is a check's to judge, not
    a fixture's to depend on)."""
    leader = pg.wait_healthy()
    wait_for(
        lambda: ensure_table(pg.member_endpoint(leader)) or True, 30, 0.5, "the writers' table on the leader"
    )
    return "gauntlet_writes"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """When a check of this directory fails, add patronictl list/history and every member's Patroni log to
    its report (shown with the failure, and in JUnit XML)."""
    rep = yield
    if rep.failed and rep.when in ("setup", "call"):
        try:
            pg = item.funcargs.get("pg") if hasattr(item, "funcargs") else None  # type: ignore[attr-defined]
            if pg is None:
                cluster = item.funcargs.get("cluster")  # type: ignore[attr-defined]
                pg = PatroniCluster(cluster) if cluster is not None else None
            text = pg.diagnostics() if pg is not None else "(no cluster: nothing to diagnose)"
        except Exception as exc:
            text = f"(diagnostics unavailable: {exc})"
        rep.sections.append(("patroni diagnostics (patronictl list/history, Patroni logs)", text))
        # Kept in the run's output directory too (next to the histories and junit.xml).
        try:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("::", 1)[-1])
            out = Path(item.config.getoption("--report-dir")) / "diagnostics" / f"{name}.{rep.when}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(f"{item.nodeid} failed ({rep.when})\n{rep.longreprtext[-4000:]}\n\n{text}\n")
        except Exception as exc:
            print(f"gauntlet: could not write the patroni diagnostics: {exc}")
    return rep


@pytest.fixture(scope="session")
def rto_series(bench: Bench) -> Iterator[dict[str, list[float]]]:
    """RTO samples per fault type from every check of the session; their median/p99/max are bench lines."""
    series: dict[str, list[float]] = {}
    yield series
    for fault, values in sorted(series.items()):
        bench.record_series(f"patroni_rto_{fault}", values, "s")
