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
<testcase classname="tests.integration.test_etcd" name="test_writes_survive[kill-run1]" time="3.0"/>
<testcase classname="tests.integration.test_etcd" name="test_writes_survive[kill-run2]" time="3.0">
  <failure message="AssertionError: 2 acknowledged writes lost">trace</failure></testcase>
<testcase classname="tests.integration.test_etcd" name="test_writes_survive[pause]" time="3.0"/>
<testcase classname="tests.integration.test_etcd" name="test_bad_input[dcs_down]" time="1.0"/>
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
    assert page.count('class="check"') == 7
    assert 'class="failed">failed' in page and "two leaders" in page
    assert "rto_kill_seconds" in page and "7.25" in page
    assert "etcd-server 3.4.23" in page
    # One timeline, and one panel per figure kind: each has its plot (none says "no figure").
    assert page.count('<img class="plot"') == 6
    for metric in METRICS:
        assert f'<figure class="metric" data-metric="{metric}">' in page, metric
    assert "metric-missing" not in page
    assert "election_seconds test_failover" in page  # derived from the history: kill start -> new-leader mark


def test_report_leads_with_the_promise_matrix_per_fault(tmp_path):
    make_run(tmp_path / "etcd")
    page = build_report(tmp_path).read_text()
    # The first screen answers "did every promise hold?": before any timeline or figure.
    assert page.index("Not every promise held") < page.index('class="promises"') < page.index("<img")
    matrix = page[page.index('class="promises"') : page.index("</table>", page.index('class="promises"'))]
    header = matrix[: matrix.index("</tr>")]
    assert header.index("<th>—</th>") < header.index("<th>kill</th>") < header.index("<th>pause</th>")
    rows = matrix.split('<tr class="promise">')[1:]
    # Broken promises first; a cell is the worst of its runs (kill-run1 passed, kill-run2 failed).
    assert rows[0].startswith("<td>test_etcd::test_failover</td>")
    survive = next(r for r in rows if "test_writes_survive" in r)
    assert '<td class="failed"' in survive and '<td class="passed"' in survive
    assert survive.count("<td></td>") == 1  # not judged without a fault
    assert 'class="skipped"' in matrix  # a skip is shown as a skip, never as a pass
    # A parameter that names no fault is part of the promise, not a column.
    assert "<td>test_etcd::test_bad_input[dcs_down]</td>" in matrix and "<th>dcs_down</th>" not in header


def test_report_shows_each_figure_once_with_its_fault(tmp_path):
    make_run(tmp_path / "etcd")
    run = tmp_path / "etcd"
    with (run / "bench.jsonl").open("a") as fh:
        for stat in ("median", "p99", "max"):  # a series of one sample: one figure, not three
            fh.write(
                json.dumps(
                    {"name": f"patroni_rto_pause_{stat}", "value": 9.5, "unit": "s", "context": {"n": 1}}
                )
                + "\n"
            )
        fh.write(
            json.dumps({"name": "rto_kill_seconds", "value": 7.25, "unit": "s", "context": {"fault": "kill"}})
            + "\n"
        )  # an exact repeat
    page = build_report(tmp_path).read_text()
    table = page[page.index('class="figures"') :]
    table = table[: table.index("</table>")]
    assert table.count("patroni_rto_pause") == 1 and "_median" not in table
    assert table.count("rto_kill_seconds") == 1
    row = next(r for r in table.split('<tr class="figure">') if "patroni_rto_pause" in r)
    assert row.startswith("<td>pause</td>")  # the fault named by the figure's name
    assert "Headline figures" not in page


def test_a_run_that_checked_nothing_holds_no_promise(tmp_path):
    run = tmp_path / "etcd"
    run.mkdir()
    (run / "junit.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="1">'
        '<testcase classname="t" name="test_a" time="0"><skipped message="inventory has no etcd"/>'
        "</testcase></testsuite></testsuites>"
    )
    page = build_report(tmp_path).read_text()
    assert "NOTHING CHECKED" in page and "Not every promise held" in page


def _passing_run(directory):
    directory.mkdir()
    (directory / "junit.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="1">'
        '<testcase classname="t" name="test_a" time="1"/></testsuite></testsuites>'
    )


def test_report_shows_the_proof_table(tmp_path):
    """Defect, check, caught, passes again, seconds: every defect caught keeps the run green."""
    run = tmp_path / "default"
    _passing_run(run)
    rows = [
        {
            "defect": "haproxy_rw_to_replica",
            "check": "t::test_a",
            "planted": True,
            "caught": True,
            "reason_matched": True,
            "restored": True,
            "seconds": 14.0,
            "detail": "lands on pgha3",
        },
    ]
    (run / "proof.json").write_text(json.dumps(rows))
    page = build_report(tmp_path).read_text()
    assert "Planted-defect proof: 1 of 1 planted defects caught" in page
    assert "haproxy_rw_to_replica" in page and "lands on pgha3" in page
    assert "Every promise held" in page


def test_a_missed_defect_breaks_the_run(tmp_path):
    """Green checks that did not catch a planted defect are not trusted: the run holds no promise."""
    run = tmp_path / "default"
    _passing_run(run)
    rows = [
        {
            "defect": "cache_no_invalidation",
            "check": "t::test_a",
            "planted": True,
            "caught": False,
            "reason_matched": False,
            "restored": True,
            "seconds": 9.0,
            "detail": "passed with the defect",
        },
    ]
    (run / "proof.json").write_text(json.dumps(rows))
    page = build_report(tmp_path).read_text()
    assert "0 of 1 planted defects caught" in page and "MISSED" in page
    assert "Not every promise held" in page


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
