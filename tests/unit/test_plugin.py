"""The pytest plugin: markers skip with the reason when the inventory lacks their groups; no empty green."""

import tempfile
import textwrap
from pathlib import Path

from gauntlet.cluster import Cluster

REDIS_INVENTORY = "all:\n  children:\n    redis:\n      hosts:\n        r1: {ansible_connection: podman}\n"

# Load an inventory once here, outside the in-process pytester runs: pytester drops the modules a run
# imported, and Ansible imported a second time beside the first one's YAML constructors fails.
_warm = Path(tempfile.mkdtemp()) / "hosts.yml"
_warm.write_text(REDIS_INVENTORY)
Cluster.from_inventory(_warm)

pytest_plugins = ["pytester"]


def test_marker_without_its_group_is_skipped_with_the_reason(pytester, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  children:\n    redis:\n      hosts:\n        r1: {ansible_connection: podman}\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.etcd
            def test_needs_etcd(cluster):
                raise AssertionError("must not run")

            def test_asks_for_a_group_it_lacks(cluster):
                cluster.group("custom_server")

            def test_has_redis(cluster):
                assert [h.name for h in cluster.group("redis")] == ["r1"]

            @pytest.fixture(scope="module")
            def nodes(cluster):
                return cluster.group("redis_cluster")

            def test_fixture_asks_for_a_group_it_lacks(nodes):
                raise AssertionError("must not run")

            def test_again_through_the_module_fixture(nodes):
                raise AssertionError("must not run")
            """
        )
    )
    pytester.makeini("[pytest]\nmarkers =\n    etcd: x\n")
    result = pytester.runpytest(f"--inventory={inv}", "-rs")
    # A test body that asks for a group the inventory lacks fails: its selection promised the group.
    result.assert_outcomes(passed=1, skipped=3, failed=1)
    result.stdout.fnmatch_lines(["*GroupMissing*has no hosts in group 'custom_server'*"])
    result.stdout.fnmatch_lines(["*has no group etcd*"])
    result.stdout.fnmatch_lines(["*SKIPPED [[]2[]]*has no hosts in group 'redis_cluster'*"])


def test_no_inventory_skips_host_tests(pytester, monkeypatch):
    monkeypatch.delenv("GAUNTLET_INVENTORY", raising=False)
    monkeypatch.delenv("MOLECULE_INVENTORY_FILE", raising=False)
    pytester.makepyfile("def test_host(cluster):\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no inventory: pass --inventory*"])


def test_bench_lines_appear_in_the_summary(pytester, tmp_path):
    pytester.makepyfile("def test_b(bench):\n    bench.record('x_seconds', 1.5, 's', run=1)\n")
    result = pytester.runpytest(f"--report-dir={tmp_path}")
    result.stdout.fnmatch_lines(["BENCH x_seconds=1.5 s (run=1)"])
    assert (tmp_path / "bench.jsonl").exists()


def test_an_unreadable_inventory_is_one_line_and_red(pytester, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all: [this is: not an inventory\n")
    pytester.makepyfile("def test_host(cluster):\n    pass\n")
    result = pytester.runpytest(f"--inventory={inv}")
    assert result.ret == 4
    lines = [line for line in result.stderr.lines if "gauntlet: cannot read the inventory" in line]
    assert len(lines) == 1 and str(inv) in lines[0]


def test_a_run_whose_checks_all_skip_is_red(pytester, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(REDIS_INVENTORY)
    pytester.makepyfile("import pytest\n\n@pytest.mark.etcd\ndef test_needs_etcd(cluster):\n    pass\n")
    pytester.makeini("[pytest]\nmarkers =\n    etcd: x\n")
    result = pytester.runpytest(f"--inventory={inv}")
    result.assert_outcomes(skipped=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*gauntlet: RED: no check executed of the 1 collected*"])


def test_a_skip_for_another_reason_than_the_inventory_fails(pytester, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(REDIS_INVENTORY)
    pytester.makepyfile(
        "import pytest\n\n"
        "def test_gives_up(cluster):\n    pytest.skip('the service looked busy')\n\n"
        "def test_inventory_lacks(cluster):\n    pytest.skip('inventory has no spare host')\n\n"
        "def test_runs(cluster):\n    pass\n"
    )
    result = pytester.runpytest(f"--inventory={inv}", "-rs")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*skipped for a reason other than something the inventory lacks*busy*"])


def test_fewer_checks_than_min_executed_is_red(pytester, tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(REDIS_INVENTORY)
    pytester.makepyfile("def test_one(cluster):\n    pass\n\ndef test_two(cluster):\n    pass\n")
    result = pytester.runpytest(f"--inventory={inv}", "--min-executed=3")
    result.assert_outcomes(passed=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*gauntlet: RED: only 2 checks executed, the topology needs at least 3*"])
    assert pytester.runpytest(f"--inventory={inv}", "--min-executed=2").ret == 0


def test_a_declared_check_is_not_skipped_for_the_custom_group_it_does_not_need(pytester, tmp_path):
    """A check marked ``declared`` runs on whichever group its custom_server_api names (etcd's gateway in
    the etcd topology): the custom marker's group must not skip it. Without the exemption it is skipped."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(REDIS_INVENTORY)
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.custom
            @pytest.mark.declared
            def test_declared(cluster):
                assert cluster.group("redis")

            @pytest.mark.custom
            def test_custom_only(cluster):
                raise AssertionError("must not run")
            """
        )
    )
    pytester.makeini("[pytest]\nmarkers =\n    custom: x\n    declared: x\n")
    result = pytester.runpytest(f"--inventory={inv}", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*has no group custom_server*"])
