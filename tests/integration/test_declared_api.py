"""The workload catalogue on any declared server (custom_server_api in the inventory), under faults.

Claims, each a verdict of gauntlet.checkers over the recorded history, for every workload the description
lists (the others are skipped, saying so):

- register: every key's reads, writes and compare-and-sets are linearizable while the leader is killed;
- counter: every read lies between the acknowledged and the possible increments, and never goes down,
  while the leader is killed;
- set: after the cut-off leader heals, the final read holds every acknowledged add and nothing never added;
- unique ids: no id is handed out twice while the leader is killed;
- same data everywhere: after a cut-off follower heals, every member's own listing is the same.

Nothing here knows the server: the reference Raft KV (custom scenario) and etcd's JSON gateway (etcd
scenario) both run it from their declarations. ``pytest -m custom --inventory <yours>`` runs it on yours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from gauntlet import workloads
from gauntlet.api_spec import DeclarationError
from gauntlet.clients.declared import DeclaredClient, spec_of
from gauntlet.cluster import Cluster
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, catalogue
from gauntlet.pytest_plugin import load_cluster

# custom: selected with the custom server's checks (pytest -m custom); declared: its group is the one the
# description names (etcd's gateway runs it in the etcd topology), not custom_server.
pytestmark = [pytest.mark.custom, pytest.mark.declared]

# workload -> (fault of the catalogue, which member it hits)
CASES = {
    "register": ("kill", "leader"),
    "counter": ("kill", "leader"),
    "set": ("isolate", "leader"),
    "unique_ids": ("kill", "leader"),
    "same_data": ("isolate", "follower"),
}
# Bounds of every run: a workload stops by itself after this long, or this many operations.
MAX_SECONDS = 120.0
MAX_OPS = 4000
# Operations that must complete ok before the fault, under it, and after heal: a run that did nothing
# proves nothing.
OPS_EACH_PHASE = 15
READY_S = 90.0


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> DeclaredClient:
    """The generic client of the declared server; waits until it serves with one leader."""
    try:
        spec = spec_of(cluster)
    except DeclarationError as exc:
        if "not set on the hosts" in str(exc):
            pytest.skip(f"inventory {cluster.source}: {exc}")
        raise
    c = DeclaredClient.from_cluster(cluster, spec)
    c.wait_for_ready(READY_S)
    return c


@pytest.fixture(autouse=True)
def ready_again(api: DeclaredClient) -> Iterator[None]:
    """Every check starts, and leaves, a healthy cluster with one agreed leader."""
    api.wait_for_ready(READY_S)
    yield
    api.wait_for_ready(READY_S)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One check per workload the inventory's description lists (all of them when it has none: they
    skip, saying so) -- so a run collects exactly the promises the server declared."""
    if "workload" not in metafunc.fixturenames:
        return
    names = list(CASES)
    cluster = load_cluster(metafunc.config)
    if not isinstance(cluster, str):
        # no declaration, or a bad one: all are collected and the api fixture says which, in one line
        with contextlib.suppress(DeclarationError):
            names = [w for w in CASES if w in spec_of(cluster).workloads]
    metafunc.parametrize("workload", names)


def test_declared_workload_holds_under_a_fault(
    cluster: Cluster, api: DeclaredClient, history: History, nemesis: Nemesis, bench, workload: str
) -> None:
    if workload not in api.spec.workloads:
        pytest.skip(
            f"inventory {cluster.source}: {api.spec.name} declares no {workload} workload "
            "(custom_server_api.workloads)"
        )
    fault, role = CASES[workload]
    leader = api.wait_for_ready(READY_S)
    name = leader if role == "leader" else next(m.name for m in api.members if m.name != leader)
    target = cluster[name]
    work = workloads.get(workload)(api, history, workers=4, max_ops=MAX_OPS, max_seconds=MAX_SECONDS)
    with work.running():
        work.wait_ops(OPS_EACH_PHASE, 30)
        with catalogue.get(fault).apply(nemesis, target, service=target.services[0]):
            survivors = [m.name for m in api.members if m.name != name]
            api.wait_for_ready(30, members=survivors)
            work.wait_ops(OPS_EACH_PHASE, 30)
        api.wait_for_ready(READY_S)
        work.wait_ops(OPS_EACH_PHASE, 30)
    verdict = work.check()
    print(f"{api.spec.name} {workload} under {fault} of the {role} {name}: {verdict} ({dict(work.counts)})")
    bench.record(
        f"declared_{workload}_operations",
        work.operations,
        "ops",
        server=api.spec.name,
        fault=f"{fault}-{role}",
        verdict=verdict.status,
    )
    assert verdict.valid is True, str(verdict)
