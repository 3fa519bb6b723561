"""The per-test backstop of the checks on hosts (gauntlet.backstop): a check that hangs fails with
pytest-timeout's message after the scaled bound, its teardown still runs, and the run goes on."""

import textwrap

import pytest

from gauntlet import backstop

pytest_plugins = ["pytester"]

INVENTORY = "all:\n  children:\n    redis:\n      hosts:\n        r1: {ansible_connection: podman}\n"
# 900 s x 0.002 = 1.8 s: short enough for a unit test, long enough for the inventory to be read first.
MULTIPLIER = "0.002"


@pytest.fixture
def short_bound(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> str:
    """An inventory path, with the backstop scaled down to 1.8 s for the pytest runs of the test."""
    monkeypatch.setenv(backstop.MULTIPLIER_ENV, MULTIPLIER)
    inv = pytester.path / "hosts.yml"
    inv.write_text(INVENTORY)
    return str(inv)


def test_a_hanging_check_fails_on_the_backstop_and_its_teardown_runs(pytester, short_bound):
    """Red without the backstop: the hanging check sleeps until the run's own limit kills it."""
    healed = pytester.path / "healed"
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import time
            import pytest

            @pytest.fixture
            def faults(cluster):
                yield
                open({str(healed)!r}, "w").write("healed")  # as the nemesis fixture heals

            def test_hangs(faults):
                time.sleep(60)

            def test_next_check_still_runs(cluster):
                pass
            """
        )
    )
    result = pytester.runpytest_subprocess(f"--inventory={short_bound}", "-p", "no:cacheprovider", timeout=30)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout (>1.8s) from pytest-timeout.*"])
    assert healed.read_text() == "healed"


def test_a_hypothesis_replay_after_the_timeout_is_bounded_too(pytester, short_bound):
    """Hypothesis replays a failed example to report it (the Patroni fault schedule's settings): the alarm
    fires again in the replay. Red with pytest-timeout's one-shot alarm: the replay sleeps its full minute."""
    pytester.makepyfile(
        textwrap.dedent(
            """
            import time
            from hypothesis import HealthCheck, Phase, given, settings, strategies as st

            @settings(max_examples=1, phases=[Phase.explicit, Phase.generate], deadline=None,
                      database=None, suppress_health_check=list(HealthCheck))
            @given(hold=st.just(60))
            def test_schedule(hold, cluster):
                time.sleep(hold)
            """
        )
    )
    result = pytester.runpytest_subprocess(f"--inventory={short_bound}", "-p", "no:cacheprovider", timeout=30)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout (>1.8s) from pytest-timeout.*"])


def test_without_pytest_timeout_a_run_on_hosts_is_a_usage_error(pytester, short_bound):
    pytester.makepyfile("def test_on_hosts(cluster):\n    pass\n")
    result = pytester.runpytest_subprocess(f"--inventory={short_bound}", "-p", "no:timeout")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*pytest-timeout is not installed*make setup*GAUNTLET_TIMEOUT_MULTIPLIER=0*"]
    )


@pytest.mark.parametrize(("raw", "seconds"), [(None, 900.0), ("", 900.0), ("2", 1800.0), ("0", 0.0)])
def test_the_multiplier_scales_the_bound(raw, seconds):
    environ = {} if raw is None else {backstop.MULTIPLIER_ENV: raw}
    assert backstop.host_test_timeout(environ) == seconds


@pytest.mark.parametrize("raw", ["fast", "-1", "nan", "inf"])
def test_a_multiplier_that_is_not_a_number_from_zero_up_is_a_usage_error(raw):
    with pytest.raises(pytest.UsageError, match=backstop.MULTIPLIER_ENV):
        backstop.timeout_multiplier({backstop.MULTIPLIER_ENV: raw})
