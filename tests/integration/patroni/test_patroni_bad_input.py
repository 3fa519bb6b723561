"""Bad input at converge, proved against the running topology: the real patroni role, run by ansible-playbook
on one replica of the inventory with one wrong value, stops with a message that names the fix, within a
bound, and before it changes anything (the member's Patroni configuration is untouched, the cluster whole).

Cases: a wrong replication password, a DCS that does not answer, a missing certificate, timings that break
``loop_wait + 2 * retry_timeout <= ttl``. (tests/unit/test_patroni_role_preflight.py proves the same
messages without hosts.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from checklib.ansible import run_play
from checklib.patroni import PatroniCluster
from gauntlet.bench import Bench

pytestmark = [pytest.mark.patroni]

# Facts of every member, DCS host and load balancer first (the role derives addresses from them: DCS
# endpoints, pg_hba's networks), then the role on one host.
PLAYBOOK = """
- name: Gather the facts the role derives addresses from
  hosts: etcd:postgres:haproxy
  gather_facts: true
  tasks: []

- name: Converge one member with bad input
  hosts: "{{ gauntlet_target }}"
  become: true
  gather_facts: false
  roles:
    - role: gauntlet.cluster.patroni
"""
# Fail fast: each case must stop within this many seconds, facts and the role's no-op install tasks included
# (about 30 s on an idle machine). The message proves the cause; the bound proves there was no hang.
BOUND_S = 180

CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    # name: (extra vars, fragments the failure message must contain)
    "wrong_replication_password": (
        {"patroni_replication_password": "not-the-cluster-password"},
        ["refuses patroni_replication_password", "password authentication failed"],
    ),
    "dcs_down": (
        {"patroni_etcd_hosts": ["127.0.0.1:2390", "127.0.0.2:2390"]},
        ["The DCS is not available", "127.0.0.1:2390"],
    ),
    "missing_certificate": (
        {"patroni_tls_cert_src": "/nonexistent/gauntlet/pg.crt"},
        [
            "/nonexistent/gauntlet/pg.crt does not exist on the controller",
            "run the gauntlet.cluster.pki role",
        ],
    ),
    "timing_rule": (
        {"patroni_ttl": 20, "patroni_loop_wait": 10, "patroni_retry_timeout": 10},
        ["loop_wait + 2 * retry_timeout <= ttl", "= 30 > patroni_ttl=20"],
    ),
}


def converge_with(pg: PatroniCluster, tmp_path: Path, target: str, extra: dict[str, Any]) -> tuple[int, str]:
    """Run the patroni role on ``target`` with ``extra`` vars; (exit code, output)."""
    run = run_play(
        pg.cluster.source, PLAYBOOK, tmp_path, {"gauntlet_target": target, **extra}, timeout=BOUND_S * 3
    )
    return run.rc, run.output


def config_digest(pg: PatroniCluster, name: str) -> str:
    return pg.by_name[name].run("sha256sum /etc/patroni/config.yml", check=True).stdout.split()[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_fast_with_a_clear_message(
    case: str, pg: PatroniCluster, tmp_path: Path, bench: Bench
) -> None:
    """The role stops with a message naming the fix, quickly, and leaves the member as it was."""
    extra, expected = CASES[case]
    leader = pg.wait_healthy()
    target = pg.replicas(leader)[0]
    before = config_digest(pg, target)
    t0 = time.monotonic()
    rc, out = converge_with(pg, tmp_path, target, extra)
    elapsed = time.monotonic() - t0
    bench.record(f"patroni_bad_input_{case}_seconds", elapsed, "s")
    flat = " ".join(out.split())
    assert rc != 0, f"the converge with {case} succeeded:\n{out[-3000:]}"
    for fragment in expected:
        assert fragment in flat, f"{fragment!r} not in the failure of {case}:\n{out[-3000:]}"
    assert "Write the Patroni configuration" not in out, f"{case} got as far as writing the configuration"
    assert elapsed < BOUND_S, f"{case} took {elapsed:.0f}s to fail (bound {BOUND_S}s)"
    assert config_digest(pg, target) == before, f"{case} changed /etc/patroni/config.yml on {target}"
    assert pg.wait_healthy(timeout=30)
