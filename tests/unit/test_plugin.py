"""The pytest plugin: markers skip with the reason when the inventory lacks their groups."""

import textwrap

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
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.fnmatch_lines(["*has no group etcd*", "*has no hosts in group 'custom_server'*"])
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
