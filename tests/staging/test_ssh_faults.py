"""The nemesis on SSH hosts: every fault acts through the host's own tools (systemd, signals, iptables, the
NFQUEUE delayer) over the inventory's SSH connection, never cuts the controller's own session, and is undone.

Run against a provisioned inventory whose hosts use ``ansible_connection: ssh`` (scripts/staging-proof.sh
runs it after the README's staging commands); skipped when the inventory has no SSH host. Topology-neutral:
it acts on whatever services the hosts' groups run (``Host.services``) and probes with the SSH port, which
every SSH host listens on.
"""

from __future__ import annotations

import time

import pytest

from gauntlet.bench import Bench, wait_for
from gauntlet.cluster import Cluster, Host
from gauntlet.history import History
from gauntlet.nemesis import Nemesis

# How long a killed or paused service may take to be running again after the fault is undone.
RECOVER_S = 120.0
DELAY_MS = 200


@pytest.fixture(scope="module")
def ssh_hosts(cluster: Cluster) -> list[Host]:
    hosts = [h for h in cluster.hosts.values() if h.connection == "ssh"]
    if len(hosts) < 2:
        pytest.skip(f"inventory {cluster.source} has fewer than two SSH hosts")
    return hosts


@pytest.fixture(scope="module")
def served(ssh_hosts: list[Host]) -> Host:
    """An SSH host that runs at least one of the cluster's services."""
    for h in ssh_hosts:
        if h.services:
            return h
    pytest.skip("inventory has no SSH host that runs a known service (set gauntlet_services)")


def main_pid(h: Host, unit: str) -> int:
    return int(h.run(f"systemctl show -p MainPID --value {unit}", check=True).stdout.strip() or 0)


def active(h: Host, unit: str) -> bool:
    return h.run(f"systemctl is-active --quiet {unit}").ok


def connect_ms(src: Host, dst: Host) -> float | None:
    """Milliseconds for ``src`` to open a TCP connection to ``dst``'s SSH port (None: no connection in 3 s)."""
    port = dst.ssh_settings.port
    probe = (
        "import socket, time\n"
        "t = time.monotonic()\n"
        f"s = socket.create_connection(({dst.address!r}, {port}), 3)\n"
        "print((time.monotonic() - t) * 1000)\n"
    )
    r = src.run(["python3", "-c", probe], timeout=10)
    return float(r.stdout.strip()) if r.ok else None


def test_crash_kills_every_service_of_the_host_and_restarts_them(
    served: Host, nemesis: Nemesis, history: History
) -> None:
    """crash(host) on an SSH host: every cluster service of the host is SIGKILLed at once and stays down;
    on exit each is started again (new processes)."""
    units = served.services
    before = {u: main_pid(served, u) for u in units}
    assert all(before.values()), f"services of {served.name} not running before the crash: {before}"
    with nemesis.crash(served):
        start = next(o for o in reversed(history.faults()) if o.f == "crash:start")
        assert "SIGKILL" in (start.value or {}).get("how", ""), f"crash on an SSH host used {start.value}"
        down = {u: active(served, u) for u in units}
        assert not any(down.values()), f"still active during the crash of {served.name}: {down}"
        assert served.run("true").ok, "the controller lost its SSH session during the crash"
    wait_for(
        lambda: all(active(served, u) for u in units), RECOVER_S, 0.5, f"{units} active on {served.name}"
    )
    after = {u: main_pid(served, u) for u in units}
    assert all(after[u] and after[u] != before[u] for u in units), f"not restarted: {before} -> {after}"


def test_pause_stops_a_service_and_continues_it(served: Host, nemesis: Nemesis) -> None:
    """pause(host, service): every process of the unit is stopped (state T) and continued on exit."""
    unit = served.services[0]
    pid = main_pid(served, unit)
    state = lambda: served.run(f"ps -o stat= -p {pid}", check=True).stdout.strip()  # noqa: E731
    assert not state().startswith("T")
    with nemesis.pause(served, unit):
        assert state().startswith("T"), f"{unit} on {served.name} is in state {state()!r} while paused"
    wait_for(lambda: not state().startswith("T"), 10, 0.2, f"{unit} on {served.name} continued")
    assert main_pid(served, unit) == pid, "pause must not restart the service"


def test_isolate_cuts_the_peers_but_not_the_controller(ssh_hosts: list[Host], nemesis: Nemesis) -> None:
    """isolate(host) with iptables: the host and its peers cannot reach each other either way, while the
    controller's SSH session to it keeps working (its address is not a peer's)."""
    victim, peer = ssh_hosts[0], ssh_hosts[1]
    assert connect_ms(victim, peer) is not None and connect_ms(peer, victim) is not None
    with nemesis.isolate(victim):
        assert victim.run("true").ok, "the controller's SSH session to the isolated host was cut"
        assert connect_ms(victim, peer) is None, f"{victim.name} still reaches {peer.name}"
        assert connect_ms(peer, victim) is None, f"{peer.name} still reaches {victim.name}"
    assert connect_ms(victim, peer) is not None, "the partition was not healed"


def test_latency_delays_traffic_to_peers_only(ssh_hosts: list[Host], nemesis: Nemesis, bench: Bench) -> None:
    """latency(host, 200 ms): connections from the host to a peer take about 200 ms longer (netem, or the
    NFQUEUE delayer where the kernel has no netem); the controller's commands on it do not slow down."""
    src, dst = ssh_hosts[0], ssh_hosts[1]

    def median_connect() -> float:
        samples = sorted(connect_ms(src, dst) or float("inf") for _ in range(5))
        return samples[2]

    def median_run_ms() -> float:
        samples = []
        for _ in range(5):
            t = time.monotonic()
            src.run("true", check=True)
            samples.append((time.monotonic() - t) * 1000)
        return sorted(samples)[2]

    base, base_run = median_connect(), median_run_ms()
    with nemesis.latency(src, DELAY_MS):
        mechanism = (nemesis.history.faults()[-1].value or {}).get("mechanism")
        slow, slow_run = median_connect(), median_run_ms()
    after = median_connect()
    bench.record("ssh_latency_connect_ms", slow, "ms", baseline_ms=round(base, 1), mechanism=mechanism)
    bench.record("ssh_controller_command_ms_under_latency", slow_run, "ms", baseline_ms=round(base_run, 1))
    assert slow - base >= 0.75 * DELAY_MS, (
        f"connects {src.name} -> {dst.name}: {slow:.0f} ms under {DELAY_MS} ms latency ({mechanism}), "
        f"baseline {base:.0f} ms: the delay did not apply"
    )
    assert after < base + DELAY_MS / 2, f"connects still slow after the fault was undone: {after:.0f} ms"
