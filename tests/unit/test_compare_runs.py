"""The staging proof's reading of a JUnit report: an xfail is a verdict, a plain skip is not."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.integration.test_nats" name="test_a[kill]" time="1"/>
<testcase classname="tests.integration.test_nats" name="test_a[bitflip]" time="1">
  <skipped type="pytest.xfail" message="replica block files disagree: seq 280-283"/></testcase>
<testcase classname="tests.integration.test_etcd" name="test_b" time="0">
  <skipped type="pytest.skip" message="ssh unreachable"/></testcase>
<testcase classname="tests.integration.test_etcd" name="test_c" time="1">
  <failure message="assert 1 == 2"/></testcase>
</testsuite></testsuites>
"""


def _compare_runs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "tests/staging/compare_runs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xfail_is_read_apart_from_a_plain_skip(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)
    outcomes = _compare_runs().junit_outcomes(str(report))
    assert outcomes == {
        "tests.integration.test_nats::test_a[kill]": "passed",
        "tests.integration.test_nats::test_a[bitflip]": "xfailed",
        "tests.integration.test_etcd::test_b": "skipped",
        "tests.integration.test_etcd::test_c": "failed",
    }


def test_only_passed_and_xfailed_count_as_a_verdict() -> None:
    verdicts = _compare_runs().RAN_TO_A_VERDICT
    assert "xfailed" in verdicts and "passed" in verdicts
    assert not {"skipped", "failed", "error", "did not run"} & set(verdicts)
