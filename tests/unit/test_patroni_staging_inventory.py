"""The staging example inventory carries what the Patroni topology needs: the groups of the `patroni`
scenario, the shared values every role reads, Patroni timings that keep its rule, synchronous mode (the
checks promise zero loss), and certificates that name the load balancer (verify-full through HAProxy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gauntlet.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("ansible-inventory") is None, reason="ansible-inventory not installed"
)


@pytest.fixture(scope="module")
def staging() -> Cluster:
    return Cluster.from_inventory(ROOT / "inventories" / "staging")


def scenario_groups() -> set[str]:
    molecule = yaml.safe_load((ROOT / "molecule" / "patroni" / "molecule.yml").read_text())
    return {g for p in molecule["platforms"] for g in p["groups"]}


def test_staging_has_the_groups_of_the_patroni_scenario(staging: Cluster) -> None:
    for group in scenario_groups():
        assert staging.has_group(group) and staging.group(group), f"inventories/staging lacks group {group}"


def test_staging_sets_the_shared_values_for_every_patroni_group(staging: Cluster) -> None:
    for group in scenario_groups():
        for name in ("gauntlet_pki_dir", "gauntlet_secrets_dir"):
            assert staging.var(name, None, group=group), f"{name} is not set for group {group}"


def test_staging_patroni_timings_keep_the_rule_and_sync_mode_is_on(staging: Cluster) -> None:
    v = lambda n: staging.setting(n, "postgres")  # noqa: E731
    ttl, loop_wait, retry = (
        int(v("patroni_ttl")),
        int(v("patroni_loop_wait")),
        int(v("patroni_retry_timeout")),
    )
    assert loop_wait + 2 * retry <= ttl
    assert v("patroni_synchronous_mode") is True


def test_staging_member_certificates_name_the_load_balancer(staging: Cluster) -> None:
    sans = staging.setting("pki_extra_sans", "postgres")
    for lb in staging.group("haproxy"):
        assert f"DNS:{lb.name}" in sans, f"pki_extra_sans of group postgres lacks DNS:{lb.name}: {sans}"
