"""gauntlet clean (src/gauntlet/cleanup.py) against a fake podman first on PATH: only what carries our label
is removed, containers before networks, a network a foreign container uses is left (never --force), and
Molecule's state of the scenarios cleaned is reset the way Molecule itself finds it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fake_podman
import pytest
from click.testing import CliRunner

from gauntlet import cleanup, cli

ROOT = Path(__file__).resolve().parents[2]


def labelled(scenario: str, network: str | None = None) -> dict[str, object]:
    return {"labels": {"owner": "molecule", cleanup.LABEL: scenario}, "network": network}


MACHINE = {
    "containers": {
        "etcd1": labelled("etcd", "gauntlet-etcd"),
        "etcd2": labelled("etcd", "gauntlet-etcd"),
        "pg1": labelled("default", "gauntlet-default"),
        "stg-etcd1": labelled("staging-proof", "gauntlet-staging-proof-etcd"),
        "someone-elses": {"labels": {"owner": "molecule"}, "network": "podman"},
        "unlabelled": {"labels": {}, "network": None},
    },
    "networks": {
        "gauntlet-etcd": {"labels": {cleanup.LABEL: "etcd"}},
        "gauntlet-default": {"labels": {cleanup.LABEL: "default"}},
        "gauntlet-staging-proof-etcd": {"labels": {cleanup.LABEL: "staging-proof"}},
        "podman": {"labels": {}},
        "gauntlet-unlabelled": {"labels": {}},
    },
}
OURS = {"etcd1", "etcd2", "pg1", "stg-etcd1"}
OUR_NETWORKS = {"gauntlet-etcd", "gauntlet-default", "gauntlet-staging-proof-etcd"}


@pytest.fixture
def podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install the fake podman with :data:`MACHINE` (or the given machine); returns (state, log) paths."""

    def install(machine: dict = MACHINE) -> tuple[Path, Path]:
        state, log = fake_podman.install(tmp_path / "bin", json.loads(json.dumps(machine)))
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
        monkeypatch.setenv(fake_podman.STATE_ENV, str(state))
        monkeypatch.setenv(fake_podman.LOG_ENV, str(log))
        return state, log

    return install


@pytest.fixture(autouse=True)
def own_ansible_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Molecule's state lives under $ANSIBLE_HOME/tmp: a test's own, never the machine's ~/.ansible."""
    home = tmp_path / "ansible-home"
    monkeypatch.setenv("ANSIBLE_HOME", str(home))
    monkeypatch.delenv("MOLECULE_EPHEMERAL_DIRECTORY", raising=False)
    return home


def remaining(state: Path) -> tuple[set[str], set[str]]:
    machine = json.loads(state.read_text())
    return set(machine["containers"]), set(machine["networks"])


def test_only_labelled_things_are_removed_containers_before_networks(podman):
    state, log = podman()
    cleaned = cleanup.remove_labelled(None)
    assert {c.name for c in cleaned.containers} == OURS
    assert {n.name for n in cleaned.networks} == OUR_NETWORKS
    assert cleaned.left == [] and cleaned.scenarios == ["default", "etcd", "staging-proof"]
    containers, networks = remaining(state)
    assert containers == {"someone-elses", "unlabelled"}
    assert networks == {"podman", "gauntlet-unlabelled"}
    removals = [c for c in fake_podman.calls(log) if c[0] == "rm" or c[:2] == ["network", "rm"]]
    removed_names = [c[-1] for c in removals]
    assert set(removed_names) == OURS | OUR_NETWORKS
    last_container = max(i for i, c in enumerate(removals) if c[0] == "rm")
    first_network = min(i for i, c in enumerate(removals) if c[0] == "network")
    assert last_container < first_network, removals
    assert all(c == ["rm", "--force", "--time", "0", c[-1]] for c in removals if c[0] == "rm")
    assert all(c == ["network", "rm", c[-1]] for c in removals if c[0] == "network")  # never --force


def test_the_listing_asks_podman_for_our_label_only(podman):
    _, log = podman()
    cleanup.remove_labelled("etcd")
    listings = [c for c in fake_podman.calls(log) if c[:2] in (["ps", "-a"], ["network", "ls"])]
    assert listings and all(c[c.index("--filter") + 1] == "label=gauntlet_scenario=etcd" for c in listings)
    assert all(c[c.index("--format") + 1] == "json" for c in listings)


def test_scenario_limits_the_clean_up_to_its_label(podman):
    state, _ = podman()
    cleaned = cleanup.remove_labelled("etcd")
    assert sorted(c.name for c in cleaned.containers) == ["etcd1", "etcd2"]
    assert [n.name for n in cleaned.networks] == ["gauntlet-etcd"]
    containers, networks = remaining(state)
    assert {"pg1", "stg-etcd1", "someone-elses", "unlabelled"} == containers
    assert "gauntlet-default" in networks and "gauntlet-etcd" not in networks


def test_what_podman_lists_without_our_label_is_never_taken_for_ours():
    """Even if a listing came back unfiltered, an entry without the label's value (or with another
    scenario's, under --scenario) is not ours."""
    listing = json.dumps(
        [
            {"Names": ["a"], "Labels": {cleanup.LABEL: "etcd"}},
            {"Names": ["b"], "Labels": {cleanup.LABEL: ""}},
            {"Names": ["c"], "Labels": None},
            {"name": "d", "labels": {cleanup.LABEL: "default"}},
            {"name": "e", "labels": {"owner": "molecule"}},
        ]
    )
    assert [x.name for x in cleanup._parse(listing, None)] == ["a", "d"]
    assert [x.name for x in cleanup._parse(listing, "etcd")] == ["a"]
    assert cleanup._parse("", None) == [] and cleanup._parse("null", None) == []


def test_a_network_a_foreign_container_uses_is_left_and_the_clean_up_exits_1(podman):
    machine = json.loads(json.dumps(MACHINE))
    machine["containers"]["unlabelled"]["network"] = "gauntlet-etcd"
    state, _ = podman(machine)
    r = CliRunner().invoke(cli.main, ["clean", "--scenario", "etcd"])
    assert r.exit_code == 1, r.output
    assert (
        "could not remove network gauntlet-etcd: Error: network gauntlet-etcd is in use by unlabelled"
        in r.output
    )
    assert {"unlabelled", "gauntlet-etcd"} <= set().union(*remaining(state))


def test_clean_prints_what_it_removed_and_exits_0_then_finds_nothing(podman):
    podman()
    r = CliRunner().invoke(cli.main, ["clean", "--scenario", "etcd"])
    assert r.exit_code == 0, r.output
    assert "removed container etcd1 (etcd)" in r.output and "removed network gauntlet-etcd (etcd)" in r.output
    again = CliRunner().invoke(cli.main, ["clean", "--scenario", "etcd"])
    assert again.exit_code == 0 and "nothing of ours was left for etcd" in again.output


def test_a_podman_that_cannot_list_removes_nothing(podman, tmp_path):
    """Everything is listed before anything is removed: a network listing that fails (seen: podman 4.3's
    network ls template has no index on .Labels) leaves the containers too."""
    state, _ = podman()
    fake = tmp_path / "bin" / "podman"
    fake.rename(tmp_path / "bin" / "podman-fake")
    fake.write_text(
        '#!/bin/sh\n[ "$1 $2" = "network ls" ] && { echo "cannot connect" >&2; exit 125; }\n'
        f'exec "{tmp_path / "bin" / "podman-fake"}" "$@"\n'
    )
    fake.chmod(0o755)
    r = CliRunner().invoke(cli.main, ["clean"])
    assert r.exit_code == 1
    assert "podman network ls failed (exit 125): cannot connect; nothing was removed" in r.output
    assert remaining(state) == (set(MACHINE["containers"]), set(MACHINE["networks"]))


# -- Molecule's state -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["main", "cleanup", "gauntlet.cluster", "a b"])
def test_the_checksum_is_molecules(name):
    from molecule.text import checksum

    assert cleanup.molecule_checksum(name) == checksum(name, 4)


def test_the_state_dir_is_where_molecule_keeps_it(own_ansible_home, monkeypatch):
    """The path Molecule 26.10 itself computes for a scenario of this checkout (Scenario.ephemeral_directory,
    with the runtime's cache dir: $ANSIBLE_HOME when set)."""
    from molecule.text import checksum

    expected = own_ansible_home / "tmp" / f"molecule.{checksum(ROOT.name, 4)}.etcd"
    assert cleanup.molecule_state_dir(ROOT, "etcd") == expected
    monkeypatch.setenv("MOLECULE_EPHEMERAL_DIRECTORY", "/somewhere/shared")
    assert cleanup.molecule_state_dir(ROOT, "etcd") is None


def test_clean_resets_the_state_of_the_scenarios_cleaned_only(podman, tmp_path):
    podman()
    root = tmp_path / "checkout"
    for name in ("etcd", "default"):
        (root / "molecule" / name).mkdir(parents=True)
        (root / "molecule" / name / "molecule.yml").write_text("{}\n")
        state_dir = cleanup.molecule_state_dir(root, name)
        assert state_dir is not None
        state_dir.mkdir(parents=True)
        (state_dir / "state.yml").write_text("created: true\nconverged: true\n")
    cleaned = cleanup.clean("etcd", root)
    etcd, default = cleanup.molecule_state_dir(root, "etcd"), cleanup.molecule_state_dir(root, "default")
    assert cleaned.states_reset == [etcd] and not etcd.exists()  # type: ignore[union-attr]
    assert (default / "state.yml").is_file()  # type: ignore[operator]
    assert cleanup.clean(None, root).states_reset == [default]
