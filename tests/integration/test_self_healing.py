"""Hosts heal themselves: a test process killed (SIGKILL, no teardown) in the middle of a partition leaves
hosts that undo it by themselves within the fault bound (each fault arms a dead-man timer on its host), and
``gauntlet heal --inventory`` removes every fault of ours that a killed run left, at once.

Judged on the hosts' real behaviour: a peer's service port is unreachable from the cut host while the fault
holds and reachable again after; our iptables chain is empty and our heal timers are gone."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gauntlet.bench import Bench, wait_for
from gauntlet.cluster import Cluster, Host
from gauntlet.nemesis import Nemesis
from gauntlet.nemesis.commands import CHAIN

pytestmark = pytest.mark.custom

ROOT = Path(__file__).resolve().parents[2]
# The bound the killed process's faults are armed with: short, so the check is quick; the margin covers the
# timer's accuracy (1 s) and the probes.
BOUND_S = 15
MARGIN_S = 20

# A test process that partitions the first host from the others and never gets to undo it.
CHILD = """
import sys, time
from gauntlet.cluster import Cluster
from gauntlet.nemesis import Nemesis
cluster = Cluster.from_inventory(sys.argv[1])
nemesis = Nemesis(cluster, fault_bound_s=float(sys.argv[2]))
hosts = list(cluster.hosts.values())
with nemesis.{fault}:
    print("FAULT-IN-FORCE", flush=True)
    time.sleep(300)
"""


def port_of(cluster: Cluster) -> int:
    """The service port the probes use (the custom server's client port, from the role's values)."""
    return int(cluster.setting("custom_server_client_port", "custom_server"))


def reaches(src: Host, dst: Host, port: int) -> bool:
    """Whether ``src`` opens a TCP connection to ``dst``:``port`` within 2 s (the real path, not our rules)."""
    probe = f"timeout 2 bash -c {shlex.quote(f'</dev/tcp/{dst.address}/{port}')}"
    return src.run(probe, timeout=10).ok


def ours_left(host: Host) -> str:
    """What of ours is still in force on ``host`` ("" when nothing): DROP rules in our chain, heal timers."""
    rules = host.run(
        f"iptables -w -S {CHAIN} 2>/dev/null | grep -c -- '-j DROP' || true", timeout=20
    ).stdout.strip()
    timers = host.run("systemctl list-units --all --plain --no-legend 'gauntlet-heal-*' | wc -l", timeout=20)
    left = []
    if rules not in ("", "0"):
        left.append(f"{rules} DROP rules in {CHAIN}")
    if timers.stdout.strip() not in ("", "0"):
        left.append(f"{timers.stdout.strip()} gauntlet-heal units")
    return ", ".join(left)


@contextmanager
def killed_mid_fault(cluster: Cluster, fault: str, bound: float) -> Iterator[float]:
    """Run a test process that starts ``fault`` (a Nemesis call on ``hosts``) armed with ``bound``, wait until
    it is in force, SIGKILL the process; yield the monotonic time of the kill. Heals every host at the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(fault=fault), str(cluster.source), str(bound)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints one line once the fault holds (or dies)
        assert line.strip() == "FAULT-IN-FORCE", (
            f"the test process did not start the fault: {child.stderr.read() if child.poll() is not None else line}"
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        yield time.monotonic()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        Nemesis(cluster).heal()


def test_a_killed_test_process_leaves_a_partition_that_heals_itself_within_the_bound(
    cluster: Cluster, bench: Bench
) -> None:
    """The test process is SIGKILLed while the first host is isolated: the partition holds (a peer's port
    is unreachable from it), then every host undoes it by itself within the bound, with nothing of ours
    left."""
    hosts = list(cluster.hosts.values())
    cut, peer, port = hosts[0], hosts[1], port_of(cluster)
    assert reaches(cut, peer, port), f"{cut.name} does not reach {peer.name}:{port} before any fault"
    with killed_mid_fault(cluster, "isolate(hosts[0])", BOUND_S) as killed_at:
        assert not reaches(cut, peer, port), f"{cut.name} still reaches {peer.name}:{port}: no partition held"
        wait_for(
            lambda: reaches(cut, peer, port) and not any(ours_left(h) for h in hosts),
            BOUND_S + MARGIN_S,
            0.5,
            f"every host healed by itself within {BOUND_S} s of the fault",
        )
        healed_s = time.monotonic() - killed_at
    bench.record("self_heal_after_killed_run_seconds", round(healed_s, 1), "s", bound_s=BOUND_S)


def test_gauntlet_heal_removes_every_fault_a_killed_run_left(cluster: Cluster, bench: Bench) -> None:
    """A killed run left a partition (armed with a long bound): ``gauntlet heal --inventory`` removes it at
    once, exits 0 and names every host."""
    hosts = list(cluster.hosts.values())
    cut, peer, port = hosts[0], hosts[1], port_of(cluster)
    with killed_mid_fault(cluster, "isolate(hosts[0])", 600):
        assert not reaches(cut, peer, port), f"{cut.name} still reaches {peer.name}:{port}: no partition held"
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "gauntlet.cli", "heal", "--inventory", str(cluster.source)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        heal_s = time.monotonic() - t0
        assert r.returncode == 0, f"gauntlet heal exited {r.returncode}: {r.stdout}{r.stderr}"
        assert all(h.name in r.stdout for h in hosts), f"gauntlet heal did not name every host: {r.stdout}"
        assert reaches(cut, peer, port), (
            f"{cut.name} still cannot reach {peer.name}:{port} after gauntlet heal"
        )
        left = {h.name: ours_left(h) for h in hosts}
        assert not any(left.values()), f"left after gauntlet heal: {left}"
    bench.record("gauntlet_heal_seconds", round(heal_s, 1), "s", hosts=len(hosts))
