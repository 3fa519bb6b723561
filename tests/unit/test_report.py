"""The report page: built from a run directory, and rendered by a real (headless) browser."""

import json
import shutil
import subprocess

import pytest

from gauntlet.history import History
from gauntlet.report import build_report

METRICS = ("rto", "lost", "staleness", "lag", "election")

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.integration.test_etcd" name="test_one_leader" time="1.5"/>
<testcase classname="tests.integration.test_etcd" name="test_failover" time="20.1">
  <failure message="AssertionError: two leaders">trace</failure></testcase>
<testcase classname="tests.integration.test_etcd" name="test_latency" time="0.0">
  <skipped message="no netem"/></testcase>
</testsuite></testsuites>"""


def make_run(directory):
    directory.mkdir(parents=True)
    (directory / "junit.xml").write_text(JUNIT)
    figures = [
        ("rto_kill_seconds", 7.25, "s"),
        ("patroni_writes_lost_kill", 0, "writes"),
        ("coherence_failover_max_staleness_kill_seconds", 0.42, "s"),
        ("patroni_replication_visible_all_replicas", 0.03, "s"),
        ("sentinel_failover_seconds", 3.1, "s"),
    ]
    (directory / "bench.jsonl").write_text(
        "".join(
            json.dumps({"name": n, "value": v, "unit": u, "context": {"fault": "kill"}}) + "\n"
            for n, v, u in figures
        )
    )
    (directory / "topology.json").write_text(
        json.dumps(
            {
                "inventory": "x",
                "groups": {"etcd": ["e1"]},
                "hosts": [
                    {
                        "name": "e1",
                        "groups": ["etcd"],
                        "address": "10.0.0.2",
                        "connection": "podman",
                        "packages": {"etcd-server": "3.4.23"},
                    }
                ],
            }
        )
    )
    h = History(directory / "histories" / "test_failover.jsonl")
    for i in range(30):
        with h.op(f"w{i % 3}", "write", i) as out:
            if 10 <= i < 15:
                out.fail("connection refused")
        if i == 9:
            h.fault("kill", "start", host="e1", service="etcd")
        if i == 12:
            h.mark("new-leader", leader="e2")
        if i == 15:
            h.fault("kill", "stop", host="e1", service="etcd")
    h.close()


def test_report_lists_checks_figures_topology_and_plots(tmp_path):
    make_run(tmp_path / "etcd")
    page = build_report(tmp_path).read_text()
    assert page.count('class="check"') == 3
    assert 'class="failed">failed' in page and "two leaders" in page
    assert "rto_kill_seconds" in page and "7.25" in page  # headline figure
    assert "etcd-server 3.4.23" in page
    # One timeline, and one panel per figure kind: each has its plot (none says "no figure").
    assert page.count('<img class="plot"') == 6
    for metric in METRICS:
        assert f'<figure class="metric" data-metric="{metric}">' in page, metric
    assert "metric-missing" not in page
    assert "election_seconds test_failover" in page  # derived from the history: kill start -> new-leader mark


def test_empty_report_says_nothing_was_tested(tmp_path):
    assert "nothing was tested" in build_report(tmp_path).read_text()


def test_report_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium")
    if not browser:
        pytest.skip("chromium is not installed (make setup installs Debian's chromium)")
    make_run(tmp_path / "etcd")
    page = build_report(tmp_path)
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # The page's script counts the plots that decoded with a real size: every plot must have.
    assert 'data-images-loaded="6"' in dom and 'data-images-total="6"' in dom, dom[:500]
    assert "rto_kill_seconds" in dom
    # Every figure panel the issue names is in the rendered page with its image: RTO per fault, writes lost,
    # max staleness, replication lag, election times.
    for metric in METRICS:
        assert f'data-metric="{metric}"><img class="plot"' in dom, metric
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1200,2000",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000  # a rendered page with a plot, not a blank one
