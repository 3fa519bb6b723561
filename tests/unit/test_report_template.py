"""The report page's template: what a run left on disk is shown as text, never run as markup; and the
template ships with the package."""

import fnmatch
import json
import tomllib
from pathlib import Path

from gauntlet.report import build_report

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
# Closes the title attribute of a matrix cell and opens a handler, if quotes were not escaped.
ATTRIBUTE = '" onmouseover="alert(2)'


def _xml_attr(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_run_values_are_escaped_in_the_page(tmp_path):
    run = tmp_path / "etcd"
    run.mkdir()
    (run / "junit.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="1">'
        f'<testcase classname="tests.t" name="{_xml_attr("test_" + SCRIPT)}" time="1">'
        f'<failure message="{_xml_attr(SCRIPT + ATTRIBUTE)}">trace</failure>'
        "</testcase></testsuite></testsuites>"
    )
    (run / "bench.jsonl").write_text(
        json.dumps({"name": SCRIPT, "value": 1, "unit": SCRIPT, "context": {"fault": SCRIPT}}) + "\n"
    )
    (run / "topology.json").write_text(json.dumps({"hosts": [{"name": SCRIPT, "groups": [SCRIPT]}]}))
    page = build_report(tmp_path, title=SCRIPT).read_text()
    assert SCRIPT not in page
    assert page.count("<script>") == 1  # the page's own (it counts the decoded plots)
    assert ATTRIBUTE not in page and "&#34; onmouseover=&#34;alert(2)" in page
    # Title, check name (matrix, broken, checks), message, figure, unit, fault, host, group: each as text.
    assert page.count(ESCAPED) >= 10, page.count(ESCAPED)


def test_the_template_is_package_data():
    """setuptools ships only the data files pyproject names: every template must match one of its globs."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "gauntlet.report"
    ]
    package = ROOT / "src" / "gauntlet" / "report"
    templates = [p.relative_to(package).as_posix() for p in (package / "templates").iterdir()]
    assert "templates/report.html.j2" in templates
    for t in templates:
        assert any(fnmatch.fnmatch(t, g) for g in globs), (t, globs)
