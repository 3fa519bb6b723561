"""The ``gauntlet`` command line (src/gauntlet/cli.py): version, option validation, exit statuses, the run
directory it makes and removes, and no matplotlib for --help. Nothing here runs Molecule or a playbook."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gauntlet import cli

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


# -- --version ---------------------------------------------------------------------------------------------
def test_version_is_the_distributions():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"] == cli.DISTRIBUTION
    r = invoke("--version")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"gauntlet {importlib.metadata.version(cli.DISTRIBUTION)}"


def test_version_unknown_when_not_installed(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.package_version() == "unknown"


# -- options of the other mode: a usage error, never ignored ------------------------------------------------
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--topology", "default", "--inventory", "."], "--inventory"),
        ([], "--topology NAME or --inventory PATH"),
        (["--inventory", ".", "--keep"], "--keep"),
        (["--inventory", ".", "--idempotence"], "--idempotence"),
        (["--inventory", ".", "--prove"], "--prove"),
        (["--topology", "default", "--skip-provision"], "--skip-provision"),
    ],
)
def test_an_option_of_the_other_mode_is_a_usage_error(args, named, tmp_path):
    r = invoke("run", "--report", str(tmp_path / "report"), *args)
    assert r.exit_code == cli.EXIT_USAGE == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], r.output
    assert not (tmp_path / "report").exists()  # nothing made, nothing removed


# -- exit statuses ------------------------------------------------------------------------------------------
def test_exit_codes_are_distinct_and_documented():
    codes = [
        cli.EXIT_OK,
        cli.EXIT_CHECKS_FAILED,
        cli.EXIT_USAGE,
        cli.EXIT_PROVISION_FAILED,
        cli.EXIT_INVENTORY,
    ]
    assert codes == [0, 1, 2, 3, 4]
    readme = (ROOT / "README.md").read_text()
    for code in codes:
        assert f"\n{code}  " in cli.__doc__
        assert f"| {code} |" in readme


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        ("verify", 1),
        ("prove", 1),
        ("create", 3),
        ("converge", 3),
        ("idempotence", 3),
        ("destroy", 3),
        (None, 3),
    ],
)
def test_topology_exit_code_from_the_failed_phase(tmp_path, phase, code):
    if phase:
        (tmp_path / cli.FAILED_PHASE).write_text(phase + "\n")
    assert cli.topology_exit_code(2, tmp_path) == code
    assert cli.topology_exit_code(0, tmp_path) == 0


def test_pytest_exit_code():
    assert [cli.pytest_exit_code(rc) for rc in (0, 1, 2, 3, 4, 5)] == [0, 1, 1, 1, 4, 1]


def test_unreadable_inventory_is_exit_4(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "hosts.yml").write_text("all: {}\n")  # parses, but no hosts
    r = invoke("run", "--inventory", str(empty), "--report", str(tmp_path / "report"))
    assert r.exit_code == cli.EXIT_INVENTORY == 4, r.output
    assert "cannot read the inventory" in r.output
    assert not (tmp_path / "report").exists()


# -- the run directory --------------------------------------------------------------------------------------
@pytest.mark.parametrize("inventory", [".", "..", "/", "./", "inventories/staging/", "a/.hidden"])
def test_run_dir_name_is_one_safe_part(inventory, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    name = cli.run_dir_name(None, inventory)
    assert name and name not in {".", ".."} and "/" not in name and not name.startswith(".")
    assert (tmp_path / "report" / name).resolve().parent == (tmp_path / "report").resolve()


def test_run_dir_name_of_dot_is_the_directorys_own(monkeypatch, tmp_path):
    inv = tmp_path / "staging"
    inv.mkdir()
    monkeypatch.chdir(inv)
    assert cli.run_dir_name(None, ".") == "staging"
    assert cli.run_dir_name("default", None) == "default"


def test_run_dir_is_made_with_its_marker_and_replaced_next_time(tmp_path):
    report = tmp_path / "report"
    d = cli.prepare_run_dir(report, "staging")
    assert (d / cli.RUN_MARKER).is_file() and d.parent == report.resolve()
    (d / "old.jsonl").write_text("{}\n")
    d = cli.prepare_run_dir(report, "staging")
    assert not (d / "old.jsonl").exists() and (d / cli.RUN_MARKER).is_file()


def test_refuses_to_remove_what_it_did_not_make(tmp_path):
    report = tmp_path / "report"
    (report / "mine").mkdir(parents=True)
    (report / "mine" / "precious").write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / cli.RUN_MARKER).write_text("")
    (report / "link").symlink_to(elsewhere)
    for name in ("mine", "link", "..", ".", "", "a/b"):
        with pytest.raises(click.UsageError):
            cli.prepare_run_dir(report, name)
    assert (report / "mine" / "precious").exists() and (elsewhere / cli.RUN_MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "report"]


def test_run_inventory_dot_never_removes_the_report(tmp_path, monkeypatch):
    """`gauntlet run --inventory .` once named its run directory '.', so removed the whole report."""
    report = tmp_path / "report"
    report.mkdir()
    (report / "keep.txt").write_text("x")
    monkeypatch.chdir(report)
    name = cli.run_dir_name(None, ".")
    d = cli.prepare_run_dir(report, name)
    assert d != report.resolve() and (report / "keep.txt").exists()


# -- --help without matplotlib ------------------------------------------------------------------------------
def test_help_does_not_import_matplotlib():
    code = (
        "import sys, gauntlet.cli\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from click.testing import CliRunner\n"
        "for args in (['--help'], ['run', '--help'], ['report', '--help']):\n"
        "    r = CliRunner().invoke(gauntlet.cli.main, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("code", [1, 3, 4])
def test_a_failed_run_exits_with_its_code(code):
    failure, what = cli.FAILURES[code]

    def fail() -> None:
        raise failure(what)

    r = CliRunner().invoke(click.Command("x", callback=fail), [])
    assert r.exit_code == code and what in r.output
