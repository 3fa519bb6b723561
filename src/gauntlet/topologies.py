"""Topologies as data: one description per topology, ``molecule/<name>/topology.yml``.

A description names the topology's hosts (with their inventory groups) and its check selection: the test
paths, a marker expression, an optional keyword expression and the least number of checks that must execute.
Everything else that lists topologies is derived from, or held equal to, these files: the shared verify
playbook (``molecule/_shared/verify.yml``) runs ``python -m gauntlet.topologies verify NAME``; the Makefile's
``SCENARIOS``, the CI matrix, the README table, every scenario's ``molecule.yml`` platforms and the staging
comparison are checked against them by ``tests/unit/test_topologies.py``.

    python -m gauntlet.topologies list [--make-test]      names, in CI order
    python -m gauntlet.topologies pytest-args NAME        the pytest arguments of NAME's checks
    python -m gauntlet.topologies verify NAME             run NAME's checks against Molecule's inventory
    python -m gauntlet.topologies readme-table            the README's topology table
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = "topology.yml"
#: How a topology runs in `make test`: every check of its own, or none because another topology runs them all.
CI_MODES = ("make-test", "matrix")
_KEYS = {"summary", "hosts", "checks", "ci", "order", "covered_by", "needs", "proof"}
_CHECK_KEYS = {"paths", "markers", "keyword", "min_executed", "pytest_args"}


class TopologyError(ValueError):
    """A topology description is wrong; the message names the file and the field to fix."""


@dataclass(frozen=True)
class Checks:
    """Which checks a topology runs: ``pytest PATHS -m MARKERS [-k KEYWORD]``, at least ``min_executed``."""

    paths: tuple[str, ...]
    markers: str
    min_executed: int
    keyword: str | None = None
    pytest_args: tuple[str, ...] = ()

    def pytest_args_list(self) -> list[str]:
        """The selection as pytest arguments (no inventory: the caller adds it)."""
        args = [*self.paths, "-m", self.markers]
        if self.keyword:
            args += ["-k", self.keyword]
        return [*args, *self.pytest_args]


@dataclass(frozen=True)
class Topology:
    """One topology description (``molecule/<name>/topology.yml``)."""

    name: str
    summary: str
    hosts: dict[str, tuple[str, ...]]
    checks: Checks
    ci: str
    order: int
    covered_by: str | None = None
    needs: str | None = None
    # The planted defects `gauntlet prove` plants in this topology (gauntlet.nemesis.defects), in order.
    proof: tuple[str, ...] = ()

    @property
    def markers(self) -> list[str]:
        """The marker names the selection mentions (for the README table)."""
        words = self.checks.markers.replace("(", " ").replace(")", " ").split()
        return [w for w in dict.fromkeys(words) if w not in ("and", "or", "not")]


def _fail(path: Path, message: str) -> TopologyError:
    return TopologyError(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {message}")


def load(path: Path) -> Topology:
    """Read and validate one description; a mistake raises :class:`TopologyError` naming the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(path, f"cannot read it: {exc}") from exc
    if not isinstance(raw, dict):
        raise _fail(path, "must be a mapping with summary, hosts, checks, ci")
    unknown = set(raw) - _KEYS
    if unknown:
        raise _fail(
            path, f"unknown field(s) {', '.join(sorted(unknown))}: allowed are {', '.join(sorted(_KEYS))}"
        )
    for key in ("summary", "hosts", "checks", "ci", "order"):
        if key not in raw:
            raise _fail(path, f"missing field '{key}'")
    hosts = raw["hosts"]
    if not isinstance(hosts, dict) or not hosts:
        raise _fail(path, "'hosts' must map each host name to its list of inventory groups")
    for host, groups in hosts.items():
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise _fail(path, f"hosts.{host} must be a list of group names")
    checks = raw["checks"]
    if not isinstance(checks, dict):
        raise _fail(path, "'checks' must be a mapping with paths, markers, min_executed")
    unknown = set(checks) - _CHECK_KEYS
    if unknown:
        raise _fail(path, f"unknown field(s) checks.{', checks.'.join(sorted(unknown))}")
    for key in ("paths", "markers", "min_executed"):
        if key not in checks:
            raise _fail(path, f"missing field 'checks.{key}'")
    if not isinstance(checks["paths"], list) or not checks["paths"]:
        raise _fail(path, "'checks.paths' must be a non-empty list of test paths")
    for p in checks["paths"]:
        if not (ROOT / p).exists():
            raise _fail(path, f"checks.paths: {p} does not exist")
    if not isinstance(checks["min_executed"], int) or checks["min_executed"] < 1:
        raise _fail(
            path, "'checks.min_executed' must be a whole number >= 1 (a run that checks nothing is red)"
        )
    if raw["ci"] not in CI_MODES:
        raise _fail(path, f"'ci' must be one of {', '.join(CI_MODES)}, not {raw['ci']!r}")
    if raw["ci"] == "matrix" and not raw.get("covered_by"):
        raise _fail(path, "'ci: matrix' needs 'covered_by': the topology whose run executes these checks")
    proof = raw.get("proof") or []
    if not isinstance(proof, list) or not all(isinstance(d, str) for d in proof):
        raise _fail(path, "'proof' must be a list of defect names (gauntlet.nemesis.defects)")
    if proof:
        from gauntlet.nemesis import defects  # imports the clients: only for a description that names some

        for d in proof:
            if d not in defects.DEFECTS:
                known = ", ".join(sorted(defects.DEFECTS))
                raise _fail(path, f"proof: {d!r} is no defect; the catalogue has {known}")
    return Topology(
        name=path.parent.name,
        summary=str(raw["summary"]).strip(),
        hosts={h: tuple(g) for h, g in hosts.items()},
        checks=Checks(
            paths=tuple(checks["paths"]),
            markers=str(checks["markers"]),
            min_executed=int(checks["min_executed"]),
            keyword=checks.get("keyword"),
            pytest_args=tuple(shlex.split(str(checks.get("pytest_args", "")))),
        ),
        ci=str(raw["ci"]),
        order=int(raw["order"]),
        covered_by=raw.get("covered_by"),
        needs=raw.get("needs"),
        proof=tuple(proof),
    )


def all_topologies(root: Path = ROOT) -> list[Topology]:
    """Every description under ``molecule/``, in CI order."""
    found = [load(p) for p in sorted((root / "molecule").glob(f"*/{DESCRIPTION}"))]
    return sorted(found, key=lambda t: (t.order, t.name))


def get(name: str, root: Path = ROOT) -> Topology:
    """One topology by name, or a :class:`TopologyError` that lists the names there are."""
    path = root / "molecule" / name / DESCRIPTION
    if not path.exists():
        names = ", ".join(t.name for t in all_topologies(root))
        raise TopologyError(f"no topology '{name}' (molecule/{name}/{DESCRIPTION}): choose one of {names}")
    return load(path)


def readme_table(topologies: Sequence[Topology]) -> str:
    """The README's table of topologies (the unit test requires the README to contain exactly this)."""
    rows = [
        "| scenario | hosts | checks (pytest markers) | in `make test` |",
        "|---|---|---|---|",
    ]
    for t in topologies:
        if t.ci == "make-test":
            where = "yes" if not t.needs else f"yes, {t.needs}"
        else:
            where = f"CI matrix; its checks run in `make test` through `{t.covered_by}`"
        markers = ", ".join(f"`{m}`" for m in t.markers)
        rows.append(f"| `{t.name}` | {t.summary} | {markers} | {where} |")
    return "\n".join(rows)


def _verify(t: Topology, inventory: str | None, extra: Sequence[str]) -> int:
    """Run the topology's checks, streaming pytest's output to stdout and to ``GAUNTLET_VERIFY_LOG``."""
    if not inventory:
        molecule_inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
        if not molecule_inventory:
            print("verify: no inventory: pass --inventory PATH or run through Molecule", file=sys.stderr)
            return 4
        inventory = str(Path(molecule_inventory).parent)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *t.checks.pytest_args_list(),
        "-p",
        "no:cacheprovider",
        "-v",
        "--durations=10",
        f"--inventory={inventory}",
        f"--min-executed={t.checks.min_executed}",
        *extra,
    ]
    log_path = os.environ.get("GAUNTLET_VERIFY_LOG")
    print("$ " + shlex.join(cmd), flush=True)
    log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed below
    try:
        if log:
            log.write("$ " + shlex.join(cmd) + "\n")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if log:
                log.write(line)
        return proc.wait()
    finally:
        if log:
            log.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m gauntlet.topologies", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", help="topology names in CI order")
    p_list.add_argument("--make-test", action="store_true", help="only those `make test` runs")
    p_args = sub.add_parser("pytest-args", help="the pytest selection of one topology")
    p_args.add_argument("name")
    p_verify = sub.add_parser("verify", help="run one topology's checks")
    p_verify.add_argument("name")
    p_verify.add_argument("--inventory")
    sub.add_parser("readme-table", help="the README's topology table")
    p_proof = sub.add_parser("proof", help="the planted defects of one topology's proof (none: nothing)")
    p_proof.add_argument("name")
    args, extra = parser.parse_known_args(argv)
    try:
        if args.cmd == "list":
            ts = all_topologies()
            print(" ".join(t.name for t in ts if t.ci == "make-test" or not args.make_test))
        elif args.cmd == "pytest-args":
            print(shlex.join(get(args.name).checks.pytest_args_list()))
        elif args.cmd == "proof":
            print(" ".join(get(args.name).proof))
        elif args.cmd == "readme-table":
            print(readme_table(all_topologies()))
        else:
            extra = [*extra, *shlex.split(os.environ.get("GAUNTLET_PYTEST_ARGS", ""))]
            return _verify(get(args.name), args.inventory, extra)
    except TopologyError as exc:
        print(f"topology: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
