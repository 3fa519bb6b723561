"""The fault catalogue: every fault by name, applied through the nemesis on fake hosts (no containers), the
history names it writes, the error for an unknown name, and agreement with the checks that pick faults."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gauntlet.errors import FaultError
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, catalogue, commands
from gauntlet.nemesis.catalogue import UnknownFault

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

EXPECTED = {
    "kill",
    "crash",
    "pause",
    "restart",
    "isolate",
    "isolate_from_peers",
    "partition",
    "partition_majority",
    "partition_ring",
    "partition_bridge",
    "latency",
    "loss",
    "bandwidth",
    "postgres_crash",
    "switchover",
    "clock_skew",
    "clock_jump",
    "disk_full",
    "pressure",
}


@dataclass
class Result:
    rc: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass
class FakeHost:
    """A host that records the commands it is asked to run (ssh: crash goes through systemd)."""

    name: str
    address: str
    groups: frozenset[str] = frozenset({"postgres"})
    connection: str = "ssh"
    services: list[str] = field(default_factory=lambda: ["patroni"])
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        self.commands.append(command)
        if command == "nproc":
            return Result(stdout="2\n")
        if command == commands.find_faketime():
            return Result(stdout=f"{FAKETIME}\n")
        return Result()

    def put(self, path: str, content: str, mode: str = "0644") -> None:
        self.commands.append(f"put {path}")


class FakeCluster:
    def __init__(self, n: int = 3) -> None:
        self.hosts = {f"n{i}": FakeHost(f"n{i}", f"10.0.0.{i}") for i in range(1, n + 1)}

    def __getitem__(self, name: str | FakeHost) -> FakeHost:
        return name if isinstance(name, FakeHost) else self.hosts[name]

    def run(self, host: Any, command: str, check: bool = False) -> Result:
        h = host if isinstance(host, FakeHost) else self.hosts[host]
        return h.run(command, check=check)


class FakeAPI:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def request(
        self, method: str, path: str, body: Any = None, auth: bool = False, timeout: float | None = None
    ) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        return 200, "ok"


OPTIONS = {
    "service": "patroni",
    "candidate": "n2",
    "ms": 50,
    "pct": 10.0,
    "kbit": 512,
    "path": "/var/lib/raftkv",
}


def nemesis(n: int = 3) -> tuple[Nemesis, FakeCluster, History]:
    cluster = FakeCluster(n)
    history = History()
    return Nemesis(cluster, history), cluster, history  # type: ignore[arg-type]


def test_every_fault_is_in_the_catalogue_under_its_own_name() -> None:
    assert set(catalogue.FAULTS) == EXPECTED
    assert catalogue.names() == list(catalogue.FAULTS)
    for name, fault in catalogue.FAULTS.items():
        assert fault.name == name and catalogue.get(name) is fault
        assert fault.description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fault_applies_and_is_recorded_under_its_history_name(name: str) -> None:
    n, cluster, history = nemesis(5)  # a ring needs 4 members at least
    fault = catalogue.get(name)
    with fault.apply(n, "n1", api=FakeAPI(), **OPTIONS):
        assert n.active == [fault.recorded_as]
        assert [o.f for o in history.faults()] == [f"{fault.recorded_as}:start"]
    assert [o.f for o in history.faults()] == [f"{fault.recorded_as}:start", f"{fault.recorded_as}:stop"]
    assert n.active == []
    touched = [h for h in cluster.hosts.values() if h.commands]
    if name == "partition_bridge":  # the target is the bridge: the one member every other still reaches
        assert cluster["n1"] not in touched and len(touched) == 4, touched
    elif name != "switchover":  # a switchover is one REST call, no command on a host
        assert cluster["n1"] in touched, f"{name} ran nothing on its target"


def test_isolate_is_recorded_as_isolate_not_partition() -> None:
    assert catalogue.get("isolate").recorded_as == "isolate"
    assert catalogue.get("partition").recorded_as == "partition"
    n, cluster, history = nemesis()
    with catalogue.get("isolate").apply(n, "n2"):
        pass
    start = history.faults()[0]
    assert start.f == "isolate:start"
    assert start.value == {"side_a": ["n2"], "side_b": ["n1", "n3"]}
    assert any("-s 10.0.0.1" in c and "DROP" in c for c in cluster["n2"].commands)


def test_isolate_from_peers_keeps_the_load_balancers() -> None:
    """The leader loses its peers and the DCS, not the load balancer its clients come through."""
    n, cluster, history = nemesis()
    cluster.hosts["lb"] = FakeHost("lb", "10.0.0.9", groups=frozenset({"haproxy"}))
    with catalogue.get("isolate_from_peers").apply(n, "n1"):
        pass
    start = history.faults()[0]
    assert start.f == "isolate_from_peers:start"
    assert start.value == {"side_a": ["n1"], "side_b": ["n2", "n3"]}
    assert not any("10.0.0.9" in c for c in cluster["n1"].commands), cluster["n1"].commands
    assert not cluster["lb"].commands


def test_switchover_posts_to_the_leaders_api_and_fails_loudly_on_refusal() -> None:
    n, _, history = nemesis()
    api = FakeAPI()
    with catalogue.get("switchover").apply(n, "n1", api=api, candidate="n3"):
        pass
    assert api.calls == [("POST", "/switchover", {"leader": "n1", "candidate": "n3"})]
    assert history.faults()[0].value == {"host": "n1", "leader": "n1", "candidate": "n3"}

    class Refusing(FakeAPI):
        def request(self, *a: Any, **k: Any) -> tuple[int, Any]:
            return 412, "no candidate"

    refused = catalogue.get("switchover").apply(n, "n1", api=Refusing(), candidate="n3")
    with pytest.raises(FaultError, match="412"), refused:
        pass


def test_unknown_fault_name_is_one_clear_error_naming_the_known_faults() -> None:
    with pytest.raises(UnknownFault) as err:
        catalogue.get("partiton")
    message = str(err.value)
    assert message.startswith("unknown fault 'partiton'")
    for name in EXPECTED:
        assert name in message
    assert isinstance(err.value, KeyError)


def test_options_a_fault_needs_are_required_and_unknown_ones_refused() -> None:
    n, _, _ = nemesis()
    with pytest.raises(TypeError, match="'kill' needs service"):
        catalogue.get("kill").apply(n, "n1")
    with pytest.raises(TypeError, match="servce"):
        catalogue.get("crash").apply(n, "n1", servce="patroni")
    catalogue.get("crash").apply(n, "n1", service="patroni")  # known, not used by crash: ignored


def test_targets_follow_the_groups() -> None:
    cluster = FakeCluster()
    etcd_only = FakeHost("e1", "10.0.1.1", groups=frozenset({"etcd"}))
    assert catalogue.get("postgres_crash").can_target(cluster["n1"])  # type: ignore[arg-type]
    assert not catalogue.get("postgres_crash").can_target(etcd_only)  # type: ignore[arg-type]
    assert catalogue.get("kill").can_target(etcd_only)  # type: ignore[arg-type]
    cluster.hosts = {"e1": etcd_only}
    applicable = catalogue.names(cluster=cluster)  # type: ignore[arg-type]
    assert "kill" in applicable and "postgres_crash" not in applicable and "switchover" not in applicable


# -- the checks pick faults from the catalogue ------------------------------------------------------------------
def _load(path: Path) -> Any:
    name = "catalogue_check_" + "_".join(path.relative_to(INTEGRATION).with_suffix("").parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _fault_parametrizations() -> dict[str, list[str]]:
    """test node name -> the fault names it is parametrized with, over every integration module."""
    found = {}
    for path in sorted(INTEGRATION.rglob("test_*.py")):
        module = _load(path)
        for attr, fn in vars(module).items():
            for mark in getattr(fn, "pytestmark", []) if attr.startswith("test_") else []:
                if mark.name == "parametrize" and mark.args[0] == "fault":
                    found[f"{path.name}::{attr}"] = list(mark.args[1])
    return found


def test_every_fault_parametrization_names_catalogue_faults() -> None:
    found = _fault_parametrizations()
    # The checks parametrized by fault today: a scan that finds none would pass vacuously.
    assert set(found) >= {
        "test_patroni_failover.py::test_failover_under_fault_loses_no_acknowledged_write",
        "test_coherence_failover.py::test_cache_never_serves_a_write_the_database_lost",
        "test_sentinel.py::test_sentinel_failover_under_writes",
    }
    for test, faults in found.items():
        assert faults and set(faults) <= set(catalogue.FAULTS), f"{test} names faults not in the catalogue"


def test_the_patroni_failover_ids_stay_the_fault_names_they_were() -> None:
    """Its ids come from the catalogue (the outage faults): a catalogue change must not rename them."""
    found = _fault_parametrizations()
    ids = found["test_patroni_failover.py::test_failover_under_fault_loses_no_acknowledged_write"]
    assert ids == ["kill", "crash", "pause", "isolate", "isolate_from_peers"]


def test_randomized_schedules_draw_catalogue_faults() -> None:
    patroni = _load(INTEGRATION / "patroni" / "test_patroni_schedule.py")
    assert sorted(catalogue.names(outage=True)) == patroni.KINDS
    assert all(catalogue.get(k).outage for k in patroni.KINDS)
    custom = _load(INTEGRATION / "test_custom_faults.py")
    assert custom.FAULTS and {f.rsplit("-", 1)[0] for f in custom.FAULTS} <= set(catalogue.FAULTS)
    assert {f.rsplit("-", 1)[1] for f in custom.FAULTS} <= {"leader", "follower"}


def test_no_check_writes_a_fault_into_the_history_by_hand() -> None:
    """Inline faults (a context manager of the test's own that calls history.fault) belong in the catalogue."""
    tests = INTEGRATION.parent
    offenders = [
        str(p.relative_to(tests))
        for d in ("integration", "checklib", "staging")
        for p in (tests / d).rglob("*.py")
        if "history.fault(" in p.read_text()
    ]
    assert offenders == []


# -- partition shapes through the catalogue --------------------------------------------------------------------
def _cuts(cluster: FakeCluster) -> dict[str, set[str]]:
    """Per host, the peers its DROP rules name (what the shape made it unable to reach)."""
    by_address = {h.address: h.name for h in cluster.hosts.values()}
    out: dict[str, set[str]] = {}
    for h in cluster.hosts.values():
        named = set()
        for c in h.commands:
            for part in c.split("; "):
                if part.startswith("iptables -w -A GAUNTLET") and "-j DROP" in part:
                    named.add(by_address[part.split()[5]])
        out[h.name] = named
    return out


def test_majority_puts_the_target_on_the_minority_side_drawn_by_the_seed() -> None:
    for seed in (1, 2, 3):
        n, cluster, history = nemesis(5)
        with catalogue.get("partition_majority").apply(n, "n2", seed=seed):
            cuts = _cuts(cluster)
        start = history.faults()[0]
        assert start.f == "partition_majority:start"
        minority, majority = start.value["minority"], start.value["majority"]
        assert "n2" in minority and len(minority) == 2 and len(majority) == 3
        for m in minority:
            assert cuts[m] == set(majority), cuts
        n2, _, history2 = nemesis(5)
        with catalogue.get("partition_majority").apply(n2, "n2", seed=seed):
            pass
        assert history2.faults()[0].value["minority"] == minority  # one seed, one split


def test_ring_and_bridge_through_the_catalogue_cut_what_their_shape_says() -> None:
    n, cluster, history = nemesis(5)
    with catalogue.get("partition_ring").apply(n, "n1"):
        cuts = _cuts(cluster)
    assert history.faults()[0].value["ring"] == ["n1", "n2", "n3", "n4", "n5"]
    assert cuts == {
        "n1": {"n3", "n4"},
        "n2": {"n4", "n5"},
        "n3": {"n1", "n5"},
        "n4": {"n1", "n2"},
        "n5": {"n2", "n3"},
    }
    n, cluster, history = nemesis(5)
    with catalogue.get("partition_bridge").apply(n, "n3", members=["n1", "n2", "n3", "n4", "n5"]):
        cuts = _cuts(cluster)
    assert history.faults()[0].value["bridge"] == "n3"
    assert cuts == {
        "n1": {"n4", "n5"},
        "n2": {"n4", "n5"},
        "n3": set(),
        "n4": {"n1", "n2"},
        "n5": {"n1", "n2"},
    }


def test_a_shape_that_cannot_be_made_is_refused_before_any_host_is_touched() -> None:
    n, cluster, _ = nemesis(3)
    with pytest.raises(FaultError, match="ring of 3 nodes cuts nothing"):
        catalogue.get("partition_ring").apply(n, "n1")
    with pytest.raises(FaultError, match="not one of the members"):
        catalogue.get("partition_bridge").apply(n, "n1", members=["n2", "n3"])
    assert not any(h.commands for h in cluster.hosts.values())
