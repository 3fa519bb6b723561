"""``gauntlet clean``: remove the containers and networks an interrupted run left behind, and Molecule's state
of the scenarios cleaned.

Ours means labelled: every container and network gauntlet makes carries the label ``gauntlet_scenario``
(molecule/_shared/create.yml: the scenario's name; scripts/staging-proof.sh: ``staging-proof``). Only things
with that label are ever removed, listed by ``podman ... --filter label=...`` and checked again here, and
networks without ``--force`` (which would also remove any container attached, labelled or not): containers
first, since podman removes no network a container still uses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "gauntlet_scenario"
# Removal stops a container at once: these are throwaway test hosts and systemd's own stop takes seconds.
STOP_SECONDS = 0
PODMAN_TIMEOUT_S = 120.0  # one podman call; a wedged podman must not hang the clean-up itself

#: Runs one podman command: its arguments after ``podman``, to (exit status, stdout, stderr).
Podman = Callable[[Sequence[str]], tuple[int, str, str]]


def run_podman(args: Sequence[str]) -> tuple[int, str, str]:
    """The real podman (the first on PATH), bounded by :data:`PODMAN_TIMEOUT_S`."""
    try:
        proc = subprocess.run(
            ["podman", *args], capture_output=True, text=True, check=False, timeout=PODMAN_TIMEOUT_S
        )
    except FileNotFoundError:
        return 127, "", "podman is not installed"
    except subprocess.TimeoutExpired:
        return 124, "", f"podman {' '.join(args)} did not answer in {PODMAN_TIMEOUT_S:.0f} s"
    return proc.returncode, proc.stdout, proc.stderr


class PodmanFailed(RuntimeError):
    """podman could not list what is ours: nothing was removed."""


@dataclass(frozen=True)
class Labelled:
    """A container or network of ours: its name and the scenario its label names."""

    name: str
    scenario: str


@dataclass
class Cleaned:
    """What one clean-up removed, what it could not remove (with podman's reason) and whose state it reset."""

    containers: list[Labelled] = field(default_factory=list)
    networks: list[Labelled] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    states_reset: list[Path] = field(default_factory=list)

    @property
    def scenarios(self) -> list[str]:
        """The scenarios whose containers or networks were removed, sorted."""
        return sorted({x.scenario for x in [*self.containers, *self.networks]})


def label_filter(scenario: str | None) -> str:
    """podman's ``--filter`` for our things: all of them, or one scenario's."""
    return f"label={LABEL}" if scenario is None else f"label={LABEL}={scenario}"


def _parse(out: str, scenario: str | None) -> list[Labelled]:
    """podman's JSON listing (``ps --format json``: ``Names``, ``Labels``; ``network ls --format json``:
    ``name``, ``labels``) to the things that really carry our label (with the scenario's value, when one is
    given): an entry without it is never ours, whatever the filter let through."""
    found = []
    for entry in json.loads(out or "[]") or []:
        names = entry.get("Names") or entry.get("name") or entry.get("Name") or []
        name = names[0] if isinstance(names, list) and names else names
        labels = entry.get("Labels") or entry.get("labels") or {}
        value = labels.get(LABEL, "") if isinstance(labels, dict) else ""
        if isinstance(name, str) and name and value and scenario in (None, value):
            found.append(Labelled(name, value))
    return found


def _list(args: list[str], scenario: str | None, podman: Podman) -> list[Labelled]:
    rc, out, err = podman([*args, "--filter", label_filter(scenario), "--format", "json"])
    if rc:
        raise PodmanFailed(f"podman {' '.join(args)} failed (exit {rc}): {err.strip()}")
    try:
        return _parse(out, scenario)
    except (ValueError, AttributeError) as exc:
        raise PodmanFailed(f"podman {' '.join(args)}: unreadable JSON ({exc})") from None


def list_containers(scenario: str | None, podman: Podman = run_podman) -> list[Labelled]:
    """Every container with our label (running or not), or one scenario's."""
    return _list(["ps", "-a"], scenario, podman)


def list_networks(scenario: str | None, podman: Podman = run_podman) -> list[Labelled]:
    """Every network with our label, or one scenario's."""
    return _list(["network", "ls"], scenario, podman)


def remove_labelled(scenario: str | None, podman: Podman = run_podman) -> Cleaned:
    """Remove our containers, then our networks (all, or one scenario's), both listed before anything is
    removed; what podman would not remove is in ``left``, and whatever is still listed afterwards too."""
    cleaned = Cleaned()
    containers, networks = list_containers(scenario, podman), list_networks(scenario, podman)
    for c in containers:
        rc, _, err = podman(["rm", "--force", "--time", str(STOP_SECONDS), c.name])
        if rc:
            cleaned.left.append(f"container {c.name}: {err.strip() or f'exit {rc}'}")
        else:
            cleaned.containers.append(c)
    for n in networks:
        rc, _, err = podman(["network", "rm", n.name])
        if rc:
            cleaned.left.append(f"network {n.name}: {err.strip() or f'exit {rc}'}")
        else:
            cleaned.networks.append(n)
    reported = {entry.split(":", 1)[0] for entry in cleaned.left}
    for kind, things in (
        ("container", list_containers(scenario, podman)),
        ("network", list_networks(scenario, podman)),
    ):
        cleaned.left += [
            f"{kind} {t.name}: still there" for t in things if f"{kind} {t.name}" not in reported
        ]
    return cleaned


def molecule_checksum(text: str, length: int = 4) -> str:
    """Molecule's ``molecule.text.checksum`` (26.10): the urlsafe base64 of the SHA-256, cut to ``length``."""
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()[:length]


def molecule_state_dir(root: Path, scenario: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where Molecule keeps a scenario's state (state.yml, its inventory) for the checkout ``root``, as
    Molecule 26.10 computes it: ``$ANSIBLE_HOME`` (default ~/.ansible) ``/tmp/molecule.<checksum of the
    checkout's directory name>.<scenario>``. None when ``$MOLECULE_EPHEMERAL_DIRECTORY`` puts every scenario's
    state in one directory: that is not one scenario's to remove."""
    if environ.get("MOLECULE_EPHEMERAL_DIRECTORY"):
        return None
    home = Path(environ.get("ANSIBLE_HOME") or "~/.ansible").expanduser()
    return home / "tmp" / f"molecule.{molecule_checksum(root.name)}.{scenario.replace('/', '--')}"


def reset_molecule_state(
    root: Path, scenarios: Sequence[str], environ: Mapping[str, str] = os.environ
) -> list[Path]:
    """Remove the state directories of these scenarios of the checkout ``root`` (what ``molecule reset -s
    NAME`` removes, without the podman driver's reset, which removes every container labelled
    ``owner=molecule`` on the machine, other scenarios' included). A state that still says "created" would
    make ``molecule create`` and ``molecule converge`` skip creating hosts that are gone."""
    removed = []
    for name in scenarios:
        state_dir = molecule_state_dir(root, name, environ)
        if state_dir is not None and (state_dir / "state.yml").is_file():
            shutil.rmtree(state_dir)
            removed.append(state_dir)
    return removed


def scenarios_of(root: Path) -> list[str]:
    """The Molecule scenarios of the checkout ``root`` (molecule/<name>/molecule.yml)."""
    molecule = root / "molecule"
    return (
        sorted(p.name for p in molecule.iterdir() if (p / "molecule.yml").is_file())
        if molecule.is_dir()
        else []
    )


def clean(scenario: str | None, root: Path | None, podman: Podman = run_podman) -> Cleaned:
    """Remove our containers and networks (all, or ``scenario``'s), then reset Molecule's state of the
    scenarios cleaned: ``scenario``, or without one every scenario of the checkout ``root``."""
    cleaned = remove_labelled(scenario, podman)
    if root is not None:
        names = [scenario] if scenario else scenarios_of(root)
        cleaned.states_reset = reset_molecule_state(root, names)
    return cleaned


def report_lines(cleaned: Cleaned, scenario: str | None) -> list[str]:
    """What ``gauntlet clean`` prints: each thing removed, each reset state, what is left and why."""
    lines = [f"removed container {c.name} ({c.scenario})" for c in cleaned.containers]
    lines += [f"removed network {n.name} ({n.scenario})" for n in cleaned.networks]
    lines += [f"reset Molecule state {p}" for p in cleaned.states_reset]
    if not cleaned.containers and not cleaned.networks:
        lines.append(f"nothing of ours was left{f' for {scenario}' if scenario else ''} (label {LABEL})")
    lines += [f"could not remove {entry}" for entry in cleaned.left]
    return lines
