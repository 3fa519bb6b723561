"""The redis and redis_sentinel roles refuse bad topology input before they touch a host.

Runs the real roles with ansible-playbook against the controller itself in check mode (so that nothing could
be changed even if a check let the input through) and reads the failure message. The other group members are
inventory entries only: the play runs on localhost, so they are never contacted. (A wrong Redis password is
a runtime fact, refused by the role's replication-link check: tests/integration/test_sentinel.py.)
"""

from __future__ import annotations

from pathlib import Path

from role_support import ansible_playbook, needs_ansible_playbook, play_for

pytestmark = needs_ansible_playbook


def run_role(tmp_path: Path, role: str, group: str, members: int, **extra: object) -> str:
    """Run ``role`` on localhost, a member of ``group`` with ``members`` hosts; return its output (it must fail)."""
    (tmp_path / "play.yml").write_text(play_for(role))
    others = "\n".join(f"peer{i} ansible_host=192.0.2.{i}" for i in range(1, members))
    (tmp_path / "hosts.ini").write_text(
        f"localhost ansible_connection=local\n[{group}]\nlocalhost\n{others}\n"
    )
    variables = {
        "gauntlet_pki_dir": str(tmp_path / "pki"),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        **extra,
    }
    r = ansible_playbook(tmp_path / "play.yml", str(tmp_path / "hosts.ini"), variables)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0, f"the role accepted the input: {out[-2000:]}"
    return out


def test_sentinel_quorum_larger_than_sentinel_count_is_refused(tmp_path: Path) -> None:
    """Quorum 4 with 3 Sentinels: stops at the first task, naming the knob and the valid range."""
    out = run_role(
        tmp_path,
        "gauntlet.cluster.redis_sentinel",
        "sentinel",
        3,
        redis_sentinel_quorum=4,
        redis_sentinel_primary="peer1",
        redis_sentinel_primary_address="192.0.2.1",
    )
    assert "redis_sentinel_quorum is 4 but group 'sentinel' (redis_sentinel_group) has 3 Sentinel(s)" in out
    assert "Fix: set redis_sentinel_quorum between 1 and 3" in out
    assert "Install Sentinel" not in out


def test_sentinel_quorum_within_count_passes_the_check(tmp_path: Path) -> None:
    """The same play with quorum 2 gets past the quorum check (it then fails later, on the missing pki
    files in check mode): the check refuses only what it should."""
    (tmp_path / "pki").mkdir()
    r_out = run_role(
        tmp_path,
        "gauntlet.cluster.redis_sentinel",
        "sentinel",
        3,
        redis_sentinel_quorum=2,
        redis_sentinel_primary="peer1",
        redis_sentinel_primary_address="192.0.2.1",
        redis_sentinel_packages=[],
    )
    assert "redis_sentinel_quorum is" not in r_out
    assert "Copy the CA certificate and this host's certificate" in r_out, r_out[-2000:]


def test_redis_cluster_with_two_masters_is_refused(tmp_path: Path) -> None:
    """2 hosts x 2 ports with 1 replica each = 2 masters: stops before installing, naming the fix."""
    out = run_role(
        tmp_path,
        "gauntlet.cluster.redis",
        "redis_cluster",
        2,
        redis_mode="cluster",
        redis_address="127.0.0.1",
    )
    assert "a Redis Cluster needs at least 3 masters" in out
    assert "gives 2 master(s) with redis_cluster_replicas=1" in out
    assert (
        "Fix: add hosts to the group, add ports to redis_cluster_ports, or lower redis_cluster_replicas"
        in out
    )
    assert "Install Redis" not in out


def test_redis_cluster_replica_count_not_dividing_instances_is_refused(tmp_path: Path) -> None:
    """3 hosts x 2 ports with 2 replicas per master: 6 instances give 2 masters: refused the same way."""
    out = run_role(
        tmp_path,
        "gauntlet.cluster.redis",
        "redis_cluster",
        3,
        redis_mode="cluster",
        redis_address="127.0.0.1",
        redis_cluster_replicas=2,
    )
    assert "a Redis Cluster needs at least 3 masters" in out and "redis_cluster_replicas=2" in out
    assert "Install Redis" not in out
