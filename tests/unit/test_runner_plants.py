"""The runners topology's planted defect (gauntlet.nemesis.plants.runner): ``[runner] fencing = false`` set in
the config file the custom_server role renders, the original kept and put back, every runner restarted and
waited for -- against fake hosts whose file commands run here on a real file."""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gauntlet.nemesis import defects
from gauntlet.nemesis.plants import runner
from gauntlet.nemesis.plants.files import SAVED

_spec = importlib.util.spec_from_file_location(
    "toml_filter", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "toml.py"
)
assert _spec is not None and _spec.loader is not None
toml_filter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toml_filter)


def rendered_config() -> str:
    """A config file as the role writes it (its to_toml filter) with the runners scenario's tables."""
    return "# Ansible managed\n" + toml_filter.to_toml(
        {
            "node_id": "runner1",
            "data_dir": "/var/lib/custom-server",
            "listen": {"client": "0.0.0.0:8443", "peer": "0.0.0.0:7480"},
            "peers": [{"id": f"runner{i}", "client": f"10.0.0.{i}:8443"} for i in (1, 2, 3)],
            "runner": {"shards": 32, "lease_ttl": 3, "fencing": True, "timer_interval": 0.2},
            "etcd": {"endpoints": ["https://10.0.0.1:2379"], "prefix": "/gauntlet-runner", "fencing": True},
            "postgres": {"host": "10.0.0.9", "port": 5432, "password": "s3cret"},
            "tls": {"ca_file": "/etc/custom-server/tls/ca.crt", "client_auth": "require"},
        }
    )


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


@dataclass
class Result:
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass
class FakeHost:
    """A runner: file commands run here (on ``config``), systemctl is only recorded."""

    name: str
    config: Path
    restarts: list[str] = field(default_factory=list)

    def setting(self, name: str) -> Any:
        return {"custom_server_config_file": str(self.config), "custom_server_service_name": "custom-server"}[
            name
        ]

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        if command.startswith("systemctl "):
            self.restarts.append(command)
            return Result(0)
        out = sh(command)
        if check and out.returncode != 0:
            raise AssertionError(f"{command} failed: {out.stderr}")
        return Result(out.returncode, out.stdout, out.stderr)


class FakeCluster:
    def __init__(self, hosts: list[FakeHost]) -> None:
        self.hosts = hosts

    def group(self, name: str) -> list[FakeHost]:
        assert name == "custom_server"
        return self.hosts


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    hosts = []
    for i in (1, 2, 3):
        path = tmp_path / f"runner{i}" / "config.toml"
        path.parent.mkdir()
        path.write_text(rendered_config())
        hosts.append(FakeHost(f"runner{i}", path))
    c = FakeCluster(hosts)
    waits: list[list[int]] = []
    # the health wait, recorded with how many restarts each runner had by then
    monkeypatch.setattr(
        runner, "wait_until_healthy", lambda cl: waits.append([len(h.restarts) for h in hosts])
    )
    c.waits = waits  # type: ignore[attr-defined]
    return c


def test_fencing_false_is_set_in_the_runner_table_only_and_the_file_still_parses(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(rendered_config())
    before = tomllib.loads(path.read_text())
    out = sh(runner.set_in_table_command(str(path), "runner", "fencing", "false"))
    assert out.returncode == 0, out.stderr
    after = tomllib.loads(path.read_text())
    assert after["runner"]["fencing"] is False
    before["runner"]["fencing"] = False
    assert after == before, "nothing else changed (the [etcd] table's own fencing key included)"


def test_a_runner_table_without_the_key_gets_it_and_a_file_without_the_table_fails(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('node_id = "r1"\n\n[runner]\nshards = 32\n\n[tls]\nclient_auth = "require"\n')
    assert sh(runner.set_in_table_command(str(path), "runner", "fencing", "false")).returncode == 0
    assert tomllib.loads(path.read_text())["runner"] == {"shards": 32, "fencing": False}
    other = tmp_path / "other.toml"
    other.write_text('node_id = "r1"\n\n[tls]\nfencing = true\n')
    out = sh(runner.set_in_table_command(str(other), "runner", "fencing", "false"))
    assert out.returncode != 0 and tomllib.loads(other.read_text())["tls"]["fencing"] is True


def test_plant_edits_every_runner_restarts_them_all_then_waits_and_the_undo_puts_the_role_file_back(
    cluster: FakeCluster,
) -> None:
    original = {h.name: h.config.read_text() for h in cluster.hosts}
    runner.no_fencing(cluster)  # type: ignore[arg-type]
    for h in cluster.hosts:
        assert tomllib.loads(h.config.read_text())["runner"]["fencing"] is False
        assert Path(str(h.config) + SAVED).read_text() == original[h.name]
        assert h.restarts == ["systemctl restart custom-server"]
    assert cluster.waits == [[1, 1, 1]], "one wait, after every runner restarted"  # type: ignore[attr-defined]
    runner.no_fencing(cluster)  # type: ignore[arg-type]  # planted twice: the first original is kept
    runner.config_restored(cluster)  # type: ignore[arg-type]
    for h in cluster.hosts:
        assert h.config.read_text() == original[h.name]
        assert not Path(str(h.config) + SAVED).exists()
        assert h.restarts == ["systemctl restart custom-server"] * 3
    # an undo with nothing to put back restarts nobody, and still waits
    runner.config_restored(cluster)  # type: ignore[arg-type]
    assert all(len(h.restarts) == 3 for h in cluster.hosts)
    assert cluster.waits[-1] == [3, 3, 3]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("plant", "key"),
    [
        (runner.no_fencing, "fencing"),
        (runner.timers_not_inherited, "inherit_timers"),
        (runner.state_in_memory, "durable_state"),
    ],
)
def test_each_plant_turns_its_own_knob_off_and_nothing_else(
    cluster: FakeCluster, plant: Any, key: str
) -> None:
    before = {h.name: tomllib.loads(h.config.read_text()) for h in cluster.hosts}
    plant(cluster)
    for h in cluster.hosts:
        after = tomllib.loads(h.config.read_text())
        assert after["runner"].pop(key) is False
        before[h.name]["runner"].pop(key, None)
        assert after == before[h.name], f"{plant.__name__} changed more than [runner] {key}"
    runner.config_restored(cluster)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "plant", "check", "reason"),
    [
        (
            "runner_no_fencing",
            runner.no_fencing,
            "test_no_acknowledged_increment_lost_when_a_stale_owner_writes",
            r"lost acknowledged increments|served by a stale owner after a newer one had served",
        ),
        (
            "runner_timers_not_inherited",
            runner.timers_not_inherited,
            "test_every_timer_fires_even_when_its_runner_dies",
            r"acknowledged timers never fired",
        ),
        (
            "runner_state_in_memory",
            runner.state_in_memory,
            "test_state_survives_a_restart_of_every_runner",
            r"below the lower bound",
        ),
    ],
)
def test_the_defects_are_in_the_catalogue_with_their_checks(
    name: str, plant: Any, check: str, reason: str
) -> None:
    d = defects.get(name)
    assert d.plant is plant and d.undo is runner.config_restored and d.patch is None
    assert d.check == f"tests/integration/test_runners.py::{check}"
    assert d.reason == reason
    assert set(d.groups) == {"custom_server", "etcd", "postgresql_standalone"}
