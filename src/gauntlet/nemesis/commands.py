"""Shell commands that start and undo each fault on a host. Pure functions: unit-tested without hosts.

Network faults live in one iptables chain of ours, ``GAUNTLET``, jumped to from INPUT and OUTPUT, so that
healing is one flush and never touches the host's own rules. They only match traffic to and from the
cluster's own peer addresses: the controller's connection to a host (SSH on staging) is never cut.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

CHAIN = "GAUNTLET"
COMMENT = "gauntlet-nemesis"


def ensure_chain() -> str:
    """Create the GAUNTLET chain and hook it first into INPUT and OUTPUT (idempotent)."""
    return (
        f"iptables -w -N {CHAIN} 2>/dev/null || true; "
        f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}; "
        f"iptables -w -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -w -I OUTPUT 1 -j {CHAIN}"
    )


def _rules(peers: Iterable[str], extra: str = "") -> list[tuple[str, str]]:
    rules = []
    for addr in sorted(set(peers)):
        rules.append(("INPUT", f"-s {addr}{extra}"))
        rules.append(("OUTPUT", f"-d {addr}{extra}"))
    return rules


def drop_from(peers: Iterable[str]) -> tuple[str, str]:
    """(start, undo): drop all traffic to and from ``peers`` (one side of a partition)."""
    rules = _rules(peers)
    start = [ensure_chain()] + [
        f"iptables -w -A {CHAIN} {spec} -m comment --comment {COMMENT} -j DROP" for _, spec in rules
    ]
    undo = [f"iptables -w -D {CHAIN} {spec} -m comment --comment {COMMENT} -j DROP" for _, spec in rules]
    return "; ".join(start), "; ".join(undo) or "true"


def loss_from(peers: Iterable[str], probability: float) -> tuple[str, str]:
    """(start, undo): drop a random share ``probability`` (0..1) of packets to and from ``peers``."""
    if not 0 < probability <= 1:
        raise ValueError(f"loss probability must be in (0, 1], not {probability}")
    stat = f" -m statistic --mode random --probability {probability:.4f}"
    rules = _rules(peers, stat)
    start = [ensure_chain()] + [
        f"iptables -w -A {CHAIN} {spec} -m comment --comment {COMMENT} -j DROP" for _, spec in rules
    ]
    undo = [f"iptables -w -D {CHAIN} {spec} -m comment --comment {COMMENT} -j DROP" for _, spec in rules]
    return "; ".join(start), "; ".join(undo)


def flush() -> str:
    """Undo every network rule of ours on a host (heal)."""
    return f"iptables -w -F {CHAIN} 2>/dev/null || true"


def default_iface() -> str:
    """A shell expression for the interface of the default route (or the first non-loopback one)."""
    return (
        "$(ip -o route show default 2>/dev/null | awk '{print $5; exit}' | grep . "
        "|| ip -o link show | awk -F': ' '$2 != \"lo\" {print $2; exit}' | cut -d@ -f1)"
    )


def has_netem() -> str:
    """A command that exits 0 when the host's kernel offers the netem qdisc (tried on a dummy device)."""
    return (
        "ip link add gauntlet-probe type dummy 2>/dev/null; "
        "tc qdisc add dev gauntlet-probe root netem delay 1ms 2>/dev/null; rc=$?; "
        "ip link del gauntlet-probe 2>/dev/null; exit $rc"
    )


def netem_delay(ms: int, jitter_ms: int = 0) -> tuple[str, str]:
    """(start, undo) for latency with netem on the default interface."""
    iface = default_iface()
    jitter = f" {jitter_ms}ms distribution normal" if jitter_ms else ""
    return (
        f"tc qdisc replace dev {iface} root netem delay {ms}ms{jitter}",
        f"tc qdisc del dev {iface} root 2>/dev/null || true",
    )


NFQUEUE_NUM = 7
DELAYER_PATH = "/usr/local/lib/gauntlet/nfqueue_delay.py"
DELAYER_UNIT = "gauntlet-delay"


def nfqueue_delay(peers: Iterable[str], ms: int, jitter_ms: int = 0) -> tuple[str, str]:
    """(start, undo) for latency without netem: outgoing packets to ``peers`` go through NFQUEUE to a
    small delayer (``nfqueue_delay.py``, copied to the host) run as a transient systemd unit."""
    unit = DELAYER_UNIT
    bound = (
        f"awk '$1 == {NFQUEUE_NUM} {{b = 1}} END {{exit !b}}' /proc/net/netfilter/nfnetlink_queue 2>/dev/null"
    )
    run = shlex.join(
        [
            "systemd-run",
            f"--unit={unit}",
            "--collect",
            "python3",
            DELAYER_PATH,
            "--queue",
            str(NFQUEUE_NUM),
            "--delay-ms",
            str(ms),
            "--jitter-ms",
            str(jitter_ms),
        ]
    )
    # --queue-bypass: if the delayer is not (yet) listening, packets pass instead of being dropped.
    rules = [
        f"-d {addr} -m comment --comment {COMMENT} -j NFQUEUE --queue-num {NFQUEUE_NUM} --queue-bypass"
        for addr in sorted(set(peers))
    ]
    start = [
        ensure_chain(),
        f"systemctl stop {unit} 2>/dev/null || true",
        run,
        # Wait until the delayer has bound the queue (the kernel lists it), not just until its unit is active:
        # with --queue-bypass, packets queued before the bind pass undelayed and the fault would not apply.
        f"for i in $(seq 100); do {bound} && break; sleep 0.1; done",
        f"{bound} || {{ echo 'the NFQUEUE delayer did not bind queue {NFQUEUE_NUM}' >&2; exit 1; }}",
    ]
    start += [f"iptables -w -A {CHAIN} {r}" for r in rules]
    undo = [f"iptables -w -D {CHAIN} {r} 2>/dev/null || true" for r in rules]
    undo += [f"systemctl stop {unit} 2>/dev/null || true"]
    return "; ".join(start), "; ".join(undo)


def tbf_bandwidth(kbit: int) -> tuple[str, str]:
    """(start, undo): limit egress bandwidth of the default interface with a token bucket."""
    if kbit <= 0:
        raise ValueError(f"bandwidth must be positive, not {kbit} kbit/s")
    iface = default_iface()
    burst = max(kbit // 8, 16)  # about 1/8 s worth of traffic, and at least 16 kbit
    return (
        f"tc qdisc replace dev {iface} root tbf rate {kbit}kbit burst {burst}kbit latency 400ms",
        f"tc qdisc del dev {iface} root 2>/dev/null || true",
    )


def signal_unit(unit: str, signal: str) -> str:
    """Send ``signal`` to every process of a systemd unit (its whole cgroup: PostgreSQL backends too)."""
    return f"systemctl kill --signal={signal} {shlex.quote(unit)}"


# How long the stop after a SIGKILL may wait before systemd is made to look at the unit's cgroup again.
# Seen here: systemd in a cgroup-v1 container missed the "cgroup empty" event of a unit killed while it
# was starting (redis-server@6379, TimeoutStopSec=infinity) and its stop job waited in final-sigterm for
# 15 minutes, until a daemon-reload made it see the cgroup was empty.
STOP_WAIT_S = 15


def kill_unit(unit: str) -> tuple[str, str]:
    """(start, undo): SIGKILL a unit's processes and keep it down (no Restart=) until undone. The stop is
    bounded: if it hangs, a daemon-reload lets systemd notice the empty cgroup and finish it."""
    u = shlex.quote(unit)
    stop = f"timeout {STOP_WAIT_S} systemctl stop {u} 2>/dev/null"
    return (
        f"systemctl kill --signal=SIGKILL {u}; {stop} || {{ systemctl daemon-reload; {stop}; }}; "
        f"systemctl reset-failed {u} 2>/dev/null; true",
        f"systemctl start {u}",
    )


def pause_unit(unit: str) -> tuple[str, str]:
    """(start, undo): SIGSTOP every process of a unit; SIGCONT them."""
    return signal_unit(unit, "SIGSTOP"), signal_unit(unit, "SIGCONT")


def restart_unit(unit: str) -> str:
    """Restart a unit (stop, start: its processes are new)."""
    return f"systemctl restart {shlex.quote(unit)}"


# Where the PostgreSQL roles keep their data directories (Debian layout: /var/lib/postgresql/<major>/main).
POSTMASTER_PID = "/var/lib/postgresql/*/main/postmaster.pid"


def kill_postmaster() -> str:
    """SIGKILL PostgreSQL's postmaster (its pid is the first line of postmaster.pid), not its manager."""
    return f"kill -9 $(head -1 {POSTMASTER_PID})"
