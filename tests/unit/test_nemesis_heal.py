"""Hosts that heal themselves (a dead-man timer per fault, disarmed by the normal undo), Nemesis.heal going on
past a host that does not answer, and `gauntlet heal`: against fake hosts that record their commands."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from test_catalogue import FakeCluster, FakeHost, Result

from gauntlet import cli
from gauntlet.cluster import Cluster
from gauntlet.errors import FaultError, InventoryError
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, commands
from gauntlet.nemesis.core import BOUND_ENV, DEFAULT_FAULT_BOUND_S

ARM = re.compile(r"--unit=gauntlet-heal-(\S+) --on-active=(\d+)s")


def nemesis(n: int = 3, **kw: float) -> tuple[Nemesis, FakeCluster, History]:
    cluster = FakeCluster(n)
    history = History()
    return Nemesis(cluster, history, **kw), cluster, history  # type: ignore[arg-type]


def armed(host: FakeHost) -> list[tuple[str, int]]:
    return [(m[1], int(m[2])) for c in host.commands for m in ARM.finditer(c)]


def disarmed(host: FakeHost) -> list[str]:
    return re.findall(r"systemctl stop gauntlet-heal-(\S+)\.timer", "\n".join(host.commands))


def test_every_fault_on_a_host_arms_a_timer_before_it_starts_and_its_undo_disarms_it(monkeypatch):
    monkeypatch.delenv(BOUND_ENV, raising=False)
    n, cluster, _ = nemesis()
    with n.kill("n1", "patroni"):
        ((fault_id, bound),) = armed(cluster["n1"])
        assert fault_id.startswith("kill-") and bound == DEFAULT_FAULT_BOUND_S == 300
        (started,) = cluster["n1"].commands
        assert started.index("systemd-run") < started.index("systemctl kill --signal=SIGKILL patroni")
        assert "systemctl start patroni" in started  # the undo the host keeps, and its timer runs
        assert disarmed(cluster["n1"]) == []
    assert disarmed(cluster["n1"]) == [fault_id]
    assert cluster["n1"].commands[-1] == commands.disarm_and_undo(fault_id, 300)


def test_a_partition_arms_one_timer_per_host_under_one_fault_id_and_two_faults_two_ids():
    n, cluster, _ = nemesis()
    with n.isolate("n1"), n.pause("n2", "etcd"):
        pass
    ids = {name: [i for i, _ in armed(h)] for name, h in cluster.hosts.items()}
    isolate_id = ids["n1"][0]
    assert isolate_id.startswith("isolate-") and ids["n3"] == [isolate_id]
    assert ids["n2"][0] == isolate_id and ids["n2"][1].startswith("pause-") and ids["n2"][1] != isolate_id
    for name, h in cluster.hosts.items():
        assert sorted(disarmed(h)) == sorted(ids[name])


def test_the_bound_comes_from_the_argument_else_the_environment(monkeypatch):
    monkeypatch.setenv(BOUND_ENV, "42")
    n, cluster, _ = nemesis()
    with n.loss("n1", 10):
        pass
    assert [b for _, b in armed(cluster["n1"])] == [42]
    n, cluster, _ = nemesis(fault_bound_s=7)
    with n.latency("n1", 50):
        pass
    assert [b for _, b in armed(cluster["n1"])] == [7]
    n, cluster, _ = nemesis(fault_bound_s=0)
    with n.kill("n1", "patroni"):
        pass
    assert armed(cluster["n1"]) == [] and commands.NO_TIMER in cluster["n1"].commands[0]
    monkeypatch.setenv(BOUND_ENV, "five minutes")
    with pytest.raises(FaultError, match="GAUNTLET_FAULT_BOUND_S='five minutes' is not a number"):
        nemesis()


def test_instant_faults_arm_nothing():
    n, cluster, _ = nemesis()
    with n.restart("n1", "etcd"), n.postgres_crash("n2"):
        pass
    assert not armed(cluster["n1"]) and not armed(cluster["n2"])


@dataclass
class HealedEarly(FakeHost):
    """A host whose timer already ran the undo: the script is gone, the disarm exits ALREADY_UNDONE."""

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        self.commands.append(command)
        if command.startswith("systemctl stop gauntlet-heal-"):
            r = Result(commands.ALREADY_UNDONE, "", "gauntlet: fault x was undone before its end: ...")
            if check:
                from gauntlet.cluster import CommandFailed, CommandResult

                raise CommandFailed(CommandResult(self.name, command, r.rc, r.stdout, r.stderr))
            return r
        return Result()


def test_a_fault_that_outlived_its_bound_fails_at_its_end_naming_why():
    n, cluster, history = nemesis()
    cluster.hosts["n1"] = HealedEarly("n1", "10.0.0.1")
    with pytest.raises(FaultError, match="undone before its end"), n.kill("n1", "patroni"):
        pass
    assert [o.f for o in history.faults()] == ["kill:start", "kill:stop"]


@dataclass
class Unreachable(FakeHost):
    """A host that does not answer (the command times out on the controller's side)."""

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        self.commands.append(command)
        raise TimeoutError("ssh: connect to host 10.0.0.2 port 22: Connection timed out")


@dataclass
class Silent(FakeHost):
    """A host whose command ran into its own time limit (coreutils timeout: exit 124)."""

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        self.commands.append(command)
        return Result(124)


def test_heal_goes_on_past_hosts_that_do_not_answer_and_names_them():
    n, cluster, history = nemesis(4)
    cluster.hosts["n2"] = Unreachable("n2", "10.0.0.2")
    cluster.hosts["n3"] = Silent("n3", "10.0.0.3")
    unhealed = n.heal()
    assert set(unhealed) == {"n2", "n3"}
    assert "Connection timed out" in unhealed["n2"] and "no answer within 60 s" in unhealed["n3"]
    for name in ("n1", "n4"):  # the hosts after the silent ones were healed too
        assert cluster[name].commands == [commands.heal_host()]
    assert history.faults()[-1].f == "heal:stop"


@dataclass
class GoesAway(FakeHost):
    """A host that answers until it is told to stop answering."""

    gone: bool = False

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        if self.gone:
            raise TimeoutError("ssh: connect to host 10.0.0.1 port 22: Connection timed out")
        return super().run(command, check, timeout)


def test_heal_still_raises_for_an_undo_that_failed_and_names_the_unhealed_hosts():
    n, cluster, _ = nemesis()
    host = cluster.hosts["n1"] = GoesAway("n1", "10.0.0.1")
    fault = n.kill("n1", "patroni")
    fault.__enter__()
    host.gone = True  # gone before the heal
    with pytest.raises(
        FaultError, match=r"heal could not undo: kill: .*; hosts not healed: n1: TimeoutError"
    ):
        n.heal()
    assert n.active == []


# -- gauntlet heal ---------------------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def test_heal_help_says_what_it_removes():
    r = invoke("heal", "--help")
    assert r.exit_code == 0
    for words in ("--inventory", "dead-man timers", "iptables chain", "Exit 0"):
        assert words in r.output


def test_heal_without_an_inventory_is_a_usage_error_in_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("GAUNTLET_INVENTORY", raising=False)
    r = invoke("heal")
    assert r.exit_code == cli.EXIT_USAGE
    assert r.output.strip().splitlines() == ["Error: give --inventory PATH (or set GAUNTLET_INVENTORY)"]
    r = invoke("heal", "--inventory", str(tmp_path / "missing"))
    assert r.exit_code == cli.EXIT_USAGE and "does not exist" in r.output


def test_heal_names_every_host_and_exits_1_for_one_it_could_not_heal(monkeypatch, tmp_path):
    fake = FakeCluster(3)
    fake.hosts["n2"] = Unreachable("n2", "10.0.0.2")
    monkeypatch.setattr(Cluster, "from_inventory", classmethod(lambda cls, source: fake))
    r = invoke("heal", "--inventory", str(tmp_path))
    assert r.exit_code == cli.EXIT_CHECKS_FAILED == 1
    lines = r.output.strip().splitlines()
    assert lines[:3] == [
        "n1: healed",
        "n2: could not heal: TimeoutError: ssh: connect to host 10.0.0.2 port 22: Connection timed out",
        "n3: healed",
    ]
    assert lines[-1] == "Error: 1 host(s) not healed: n2"
    assert fake["n3"].commands == [commands.heal_host()]


def test_heal_of_healthy_hosts_exits_0_and_an_unreadable_inventory_4(monkeypatch, tmp_path):
    fake = FakeCluster(2)
    monkeypatch.setattr(Cluster, "from_inventory", classmethod(lambda cls, source: fake))
    r = invoke("heal", "--inventory", str(tmp_path))
    assert r.exit_code == 0 and r.output.splitlines() == ["n1: healed", "n2: healed"]

    def unreadable(cls, source):
        raise InventoryError("no hosts")

    monkeypatch.setattr(Cluster, "from_inventory", classmethod(unreadable))
    r = invoke("heal", "--inventory", str(tmp_path))
    assert r.exit_code == cli.EXIT_INVENTORY and "cannot read the inventory" in r.output


@pytest.mark.parametrize(
    "name",
    [
        "kill",
        "pause",
        "isolate",
        "partition_ring",
        "latency",
        "loss",
        "bandwidth",
        "clock_skew",
        "clock_jump",
        "disk_full",
        "pressure",
    ],
)
def test_every_command_a_fault_sends_is_valid_sh(name, monkeypatch):
    """The arm, start, disarm and heal commands are put together from pieces: each must parse as sh."""
    import subprocess

    from gauntlet.nemesis import catalogue

    n, cluster, _ = nemesis(5)
    monkeypatch.setattr(n, "has_netem", lambda host: name == "latency")
    with catalogue.get(name).apply(n, "n1", service="patroni", path="/var/lib/patroni", memory_mb=64):
        pass
    n.heal()
    sent = [c for h in cluster.hosts.values() for c in h.commands if not c.startswith("put ")]
    assert sent
    for command in sent:
        r = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, f"{command}\n{r.stderr}"
