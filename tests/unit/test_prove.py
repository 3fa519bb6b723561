"""The planted-defect prover and catalogue: a defect counts as caught only when its check failed for the
expected reason, and proven only when the same check passes again after the undo; the undo always runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gauntlet import prove
from gauntlet.nemesis import defects
from gauntlet.nemesis.defects import Defect

ROOT = Path(__file__).resolve().parents[2]
RED = "E   AssertionError: 3 acknowledged writes lost: [1, 2, 3]\nFAILED t.py::test_x\n"


def defect(calls: list[str], **kw: Any) -> Defect:
    return Defect(
        kw.pop("name", "d"),
        "a planted bug",
        "tests/integration/x.py::test_x",
        kw.pop("reason", r"acknowledged writes lost"),
        (),
        plant=kw.pop("plant", lambda c: calls.append("plant")),
        undo=kw.pop("undo", lambda c: calls.append("undo")),
        **kw,
    )


def runner(results: dict[str, prove.CheckRun], calls: list[str]) -> prove.Runner:
    def run(d: Defect, phase: str, env: dict[str, str]) -> prove.CheckRun:
        calls.append(f"run {phase} {sorted(env)}")
        return results[phase]

    return run


def one(results: dict[str, prove.CheckRun], **kw: Any) -> tuple[prove.ProofRow, list[str]]:
    calls: list[str] = []
    row = prove.prove_one(None, defect(calls, **kw), runner(results, calls), lambda _: None)  # type: ignore[arg-type]
    return row, calls


def test_caught_for_its_reason_and_restored_holds() -> None:
    row, calls = one({"planted": prove.CheckRun(1, RED), "undone": prove.CheckRun(0, "1 passed")})
    assert row.held and row.caught and row.restored and row.reason_matched
    assert calls == ["plant", "run planted []", "undo", "run undone []"]
    assert "acknowledged writes lost" in row.detail


def test_a_check_that_passes_with_the_defect_planted_missed_it() -> None:
    row, _ = one({"planted": prove.CheckRun(0, "1 passed"), "undone": prove.CheckRun(0, "1 passed")})
    assert not row.caught and not row.held
    assert "passed with the defect planted" in row.detail


def test_the_reason_in_the_tracebacks_source_listing_is_not_a_catch() -> None:
    # pytest prints the failing test's source: its own failure messages stand there whatever happened
    listing = (
        "    def test_x():\n"
        "        if lost:\n"
        '            pytest.fail(f"acknowledged writes lost: {lost}")\n'
        '>       assert asked, "nobody was asked: nothing was judged"\n'
        "E       AssertionError: nobody was asked: nothing was judged\n"
        "FAILED t.py::test_x - AssertionError: nobody was asked\n"
    )
    row, _ = one({"planted": prove.CheckRun(1, listing), "undone": prove.CheckRun(0, "")})
    assert not row.caught and not row.reason_matched, row.detail
    assert "nothing was judged" in row.detail


def test_failing_for_another_reason_is_not_caught() -> None:
    other = "E   TimeoutError: a whole Patroni cluster not reached within 120s\n"
    row, _ = one({"planted": prove.CheckRun(1, other), "undone": prove.CheckRun(0, "")})
    assert not row.caught and not row.reason_matched
    assert "not for /acknowledged writes lost/" in row.detail and "TimeoutError" in row.detail


@pytest.mark.parametrize("rc", [2, 4, 5])
def test_a_check_that_did_not_run_caught_nothing(rc: int) -> None:
    """Usage errors, an unreadable inventory, no test collected: not a failure of the check."""
    row, _ = one({"planted": prove.CheckRun(rc, RED), "undone": prove.CheckRun(0, "")})
    assert not row.caught
    assert f"pytest exit {rc}" in row.detail


def test_a_check_still_red_after_the_undo_is_not_proven() -> None:
    row, _ = one({"planted": prove.CheckRun(1, RED), "undone": prove.CheckRun(1, RED)})
    assert row.caught and not row.restored and not row.held
    assert "after the undo the check still fails" in row.detail


def test_the_undo_runs_when_the_check_run_breaks() -> None:
    calls: list[str] = []

    def broken(d: Defect, phase: str, env: dict[str, str]) -> prove.CheckRun:
        raise TimeoutError("pytest hung")

    row = prove.prove_one(None, defect(calls), broken, lambda _: None)  # type: ignore[arg-type]
    assert calls == ["plant", "undo"]
    assert not row.held and "TimeoutError: pytest hung" in row.detail


def test_the_undo_runs_when_the_plant_fails_half_way() -> None:
    calls: list[str] = []

    def half(c: Any) -> None:
        calls.append("plant")
        raise RuntimeError("reload failed")

    row = prove.prove_one(None, defect(calls, plant=half), runner({}, calls), lambda _: None)  # type: ignore[arg-type]
    assert calls == ["plant", "undo"] and not row.planted and "reload failed" in row.detail


def test_a_patch_defect_runs_its_check_with_the_planted_env() -> None:
    calls: list[str] = []
    d = defect(calls, plant=None, undo=None, patch=lambda: None)
    results = {"planted": prove.CheckRun(1, RED), "undone": prove.CheckRun(0, "")}
    row = prove.prove_one(None, d, runner(results, calls), lambda _: None)  # type: ignore[arg-type]
    assert row.held
    assert calls == [f"run planted ['{defects.PLANTED_ENV}']", "run undone []"]


def test_proof_rows_round_trip_and_bench_lines(tmp_path: Path) -> None:
    rows = [prove.ProofRow("a", "t::a", True, True, True, True, 3.0), prove.ProofRow("b", "t::b", True)]
    prove.write_proof(tmp_path, rows)
    assert prove.read_proof(tmp_path) == rows
    assert prove.bench_lines(rows) == [
        "BENCH fidelity_planted=2 defects",
        "BENCH fidelity_caught=1 defects",
    ]


def test_unknown_defect_names_the_known_ones() -> None:
    with pytest.raises(defects.UnknownDefect, match=r"the catalogue has: .*patroni_async_replication"):
        defects.get("no_such_defect")


@pytest.mark.parametrize("name", list(defects.DEFECTS))
def test_every_defects_check_exists(name: str) -> None:
    """A defect names a real test (file and function), and a reason that is a valid expression."""
    d = defects.get(name)
    path, _, test = d.check.partition("::")
    source = (ROOT / path).read_text()
    function = test.split("[")[0]
    assert re.search(rf"^def {function}\(", source, re.M), f"{d.check}: no test {function} in {path}"
    re.compile(d.reason)
    assert (d.plant is None) == (d.undo is None), f"{name}: a plant needs its undo"
    assert (d.plant is not None) != (d.patch is not None), f"{name}: planted one way, plant/undo or patch"


def test_the_planted_patch_is_applied_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[str] = []
    monkeypatch.setitem(
        defects.DEFECTS, "t", Defect("t", "", "x::y", "r", (), patch=lambda: applied.append("t"))
    )
    monkeypatch.delenv(defects.PLANTED_ENV, raising=False)
    assert defects.apply_planted_patch() is None and not applied
    monkeypatch.setenv(defects.PLANTED_ENV, "t")
    assert defects.apply_planted_patch() == "t" and applied == ["t"]
