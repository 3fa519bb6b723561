"""Shell commands that start and undo each fault on a host. Pure functions: unit-tested without hosts.

Network faults live in one iptables chain of ours, ``GAUNTLET``, jumped to from INPUT and OUTPUT, so that
healing is one flush and never touches the host's own rules. They only match traffic to and from the
cluster's own peer addresses: the controller's connection to a host (SSH on staging) is never cut.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

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


def _delete_if_present(specs: Iterable[str]) -> str:
    """Delete each rule of our chain that is still there: an undo that can run twice (a dead-man timer or
    ``gauntlet heal`` may have run it first, a restarted container lost it) and fails only when a rule that
    is there cannot be deleted."""
    steps = [
        f"if iptables -w -C {CHAIN} {spec} 2>/dev/null; then iptables -w -D {CHAIN} {spec} || rc=1; fi"
        for spec in specs
    ]
    return "; ".join(["rc=0", *steps, '[ "$rc" = 0 ]']) if steps else "true"


def drop_from(peers: Iterable[str]) -> tuple[str, str]:
    """(start, undo): drop all traffic to and from ``peers`` (one side of a partition)."""
    specs = [f"{spec} -m comment --comment {COMMENT} -j DROP" for _, spec in _rules(peers)]
    start = [ensure_chain()] + [f"iptables -w -A {CHAIN} {spec}" for spec in specs]
    return "; ".join(start), _delete_if_present(specs)


def loss_from(peers: Iterable[str], probability: float) -> tuple[str, str]:
    """(start, undo): drop a random share ``probability`` (0..1) of packets to and from ``peers`` (the
    cluster's peers only: the controller's traffic is never matched)."""
    if not 0 < probability <= 1:
        raise ValueError(f"loss probability must be in (0, 1], not {probability}")
    stat = f" -m statistic --mode random --probability {probability:.4f}"
    specs = [f"{spec} -m comment --comment {COMMENT} -j DROP" for _, spec in _rules(peers, stat)]
    start = [ensure_chain()] + [f"iptables -w -A {CHAIN} {spec}" for spec in specs]
    return "; ".join(start), _delete_if_present(specs)


def flush() -> str:
    """Remove every network rule of ours on a host: our chain flushed, unhooked from INPUT and OUTPUT, and
    deleted (the next fault makes it again)."""
    return (
        f"iptables -w -F {CHAIN} 2>/dev/null; "
        f"while iptables -w -D INPUT -j {CHAIN} 2>/dev/null; do :; done; "
        f"while iptables -w -D OUTPUT -j {CHAIN} 2>/dev/null; do :; done; "
        f"iptables -w -X {CHAIN} 2>/dev/null; true"
    )


def has_netem() -> str:
    """A command that exits 0 when the host's kernel offers the netem qdisc (tried on a dummy device)."""
    return (
        "ip link add gauntlet-probe type dummy 2>/dev/null; "
        "tc qdisc add dev gauntlet-probe root netem delay 1ms 2>/dev/null; rc=$?; "
        "ip link del gauntlet-probe 2>/dev/null; exit $rc"
    )


# Traffic shaping lives under a root qdisc of ours, an htb with this handle: only packets to the cluster's
# peers are classified into our classes (u32 filters on their addresses); everything else -- the
# controller's SSH, clients outside the cluster -- is unclassified and leaves through htb's direct queue,
# unshaped. An undo removes its own filters and class, and our root only when no class of ours is left; a
# root qdisc that is not ours (handle other than the kernel's default 0:) is never replaced: the fault
# refuses to start.
QDISC_HANDLE = "9a17"
# Per shaping fault: (filter prio, class minor). Filters of a lower prio match first, so where both are
# in force on one host the delay wins for the peers both name.
DELAY_CLASS = (10, 10)
BANDWIDTH_CLASS = (20, 20)
DELAY_LEAF = "9a10"


def _peer_ip(addr: str) -> str:
    """An address as u32 matches it: a literal IPv4 address as is, a name resolved on the host."""
    try:
        if ipaddress.ip_address(addr).version == 4:
            return addr
    except ValueError:
        pass
    return f"$(getent ahostsv4 {shlex.quote(addr)} | awk 'NR == 1 {{print $1}}')"


def _peer_dev(peers: list[str]) -> str:
    """The device the host reaches its (first) peer through: where shaping must sit."""
    return (
        f"dev=$(ip -o route get {_peer_ip(peers[0])} 2>/dev/null "
        "| awk '{for (i = 1; i < NF; i++) if ($i == \"dev\") {print $(i + 1); exit}}')"
    )


def _shaping(peers: Iterable[str], which: tuple[int, int], klass: str, leaf: str = "") -> tuple[str, str]:
    addrs = sorted(set(peers))
    if not addrs:
        raise ValueError("shaping needs at least one peer address")
    prio, minor = which
    root = f"{QDISC_HANDLE}:"
    classid = f"{QDISC_HANDLE}:{minor}"
    refuse = (
        'echo "gauntlet: $dev has a root qdisc that is not ours ($root): shaping would replace it; '
        'remove it or run this fault elsewhere" >&2; exit 1'
    )
    start = [
        _peer_dev(addrs),
        f'[ -n "$dev" ] || {{ echo "gauntlet: no route to {addrs[0]} to shape" >&2; exit 1; }}',
        "root=$(tc qdisc show dev \"$dev\" root | awk '{print $2, $3; exit}')",
        f'case "$root" in "htb {root}") ;; ""|*" 0:") tc qdisc add dev "$dev" root handle {root} htb '
        f"default 0 direct_qlen 1000 || exit 1 ;; *) {refuse} ;; esac",
        f'tc class add dev "$dev" parent {root} classid {classid} htb {klass}',
    ]
    if leaf:
        start.append(f'tc qdisc add dev "$dev" parent {classid} {leaf}')
    start += [
        f'tc filter add dev "$dev" parent {root} protocol ip prio {prio} u32 match ip dst {_peer_ip(a)}/32 '
        f"flowid {classid}"
        for a in addrs
    ]
    undo = [
        _peer_dev(addrs),
        f'if tc qdisc show dev "$dev" root 2>/dev/null | grep -q " {root} "; then '
        f'tc filter del dev "$dev" parent {root} prio {prio} 2>/dev/null; '
        f'tc class del dev "$dev" classid {classid} 2>/dev/null; '
        f'tc class show dev "$dev" | grep -q . || tc qdisc del dev "$dev" root; fi',
    ]
    return "; ".join(start), "; ".join(undo)


def netem_delay(peers: Iterable[str], ms: int, jitter_ms: int = 0) -> tuple[str, str]:
    """(start, undo): delay packets to ``peers`` by ``ms`` (± ``jitter_ms``) with a netem leaf under our htb
    root; the host's other traffic (the controller's included) is not delayed."""
    jitter = f" {jitter_ms}ms distribution normal" if jitter_ms else ""
    return _shaping(peers, DELAY_CLASS, "rate 10gbit", f"handle {DELAY_LEAF}: netem delay {ms}ms{jitter}")


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


def shape_bandwidth(peers: Iterable[str], kbit: int) -> tuple[str, str]:
    """(start, undo): limit egress to ``peers`` to ``kbit`` kbit/s (an htb class under our root); the host's
    other traffic (the controller's included) is not limited."""
    if kbit <= 0:
        raise ValueError(f"bandwidth must be positive, not {kbit} kbit/s")
    burst = max(kbit // 8, 16)  # about 1/8 s worth of traffic, and at least 16 kbit
    return _shaping(peers, BANDWIDTH_CLASS, f"rate {kbit}kbit ceil {kbit}kbit burst {burst}kbit")


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


# -- hosts that heal themselves ------------------------------------------------------------------------------
# Every fault started on a host leaves its undo there as a script, and a transient systemd timer that runs it
# after a bound: a controller that dies (or loses the host) mid-fault cannot leave the host broken for longer.
# The normal undo stops the timer and runs the script; `gauntlet heal` runs every script left and removes
# every other trace of ours. /run is a tmpfs: a rebooted host has neither the faults nor their records.
STATE_DIR = "/run/gauntlet/faults"
HEAL_UNIT_PREFIX = "gauntlet-heal-"
# Printed by arm() when the host has no systemd: the fault runs without a timer (`gauntlet heal` still finds
# its script).
NO_TIMER = "gauntlet-no-timer"
# The exit status of an undo whose fault had already been undone by its timer or by `gauntlet heal`.
ALREADY_UNDONE = 3
# Present on a host whose PID 1 is systemd (sd_booted(3)'s own test).
SYSTEMD_DIR = "/run/systemd/system"


def heal_unit(fault_id: str) -> str:
    """The transient unit (``.timer`` + ``.service``) that heals fault ``fault_id`` on its host."""
    return f"{HEAL_UNIT_PREFIX}{fault_id}"


def undo_script(fault_id: str) -> str:
    """Where the host keeps the undo of fault ``fault_id`` while it is in force."""
    return f"{STATE_DIR}/{fault_id}.sh"


def arm(fault_id: str, undo: str, bound_s: float) -> str:
    """Leave ``undo`` on the host as a script that removes itself once it succeeded, and (where the host runs
    systemd, and ``bound_s`` > 0) a dead-man timer that runs it after ``bound_s`` seconds. Prints
    :data:`NO_TIMER` when no timer was armed."""
    script = undo_script(fault_id)
    body = f"#!/bin/sh\n# undo of gauntlet fault {fault_id}\n{{ {undo}\n}} && rm -f {script}\n"
    write = f"mkdir -p {STATE_DIR} && printf %s {shlex.quote(body)} > {script} && chmod 0700 {script}"
    if bound_s <= 0:
        return f"{write} && echo {NO_TIMER}"
    timer = shlex.join(
        [
            "systemd-run",
            "--quiet",
            "--collect",
            f"--unit={heal_unit(fault_id)}",
            f"--on-active={max(1, round(bound_s))}s",
            # A timer's default accuracy is a minute: the heal would come up to 60 s after the bound.
            "--timer-property=AccuracySec=1s",
            "/bin/sh",
            script,
        ]
    )
    return (
        f"{write} && if [ -d {SYSTEMD_DIR} ] && command -v systemd-run >/dev/null; then {timer}; "
        f"else echo {NO_TIMER}; fi"
    )


def disarm_and_undo(fault_id: str, bound_s: float) -> str:
    """Stop the fault's timer and run its undo; exit :data:`ALREADY_UNDONE` naming why when the undo had
    already run (the fault outlived its bound, or `gauntlet heal` ran): the fault was not held to its end."""
    script = undo_script(fault_id)
    why = (
        f"gauntlet: fault {fault_id} was undone before its end: its dead-man timer fired (bound {bound_s:g} s, "
        "GAUNTLET_FAULT_BOUND_S) or gauntlet heal ran"
    )
    return (
        f"systemctl stop {heal_unit(fault_id)}.timer 2>/dev/null; "
        f"if [ -f {script} ]; then /bin/sh {script}; else echo {shlex.quote(why)} >&2; exit {ALREADY_UNDONE}; fi"
    )


def heal_host() -> str:
    """Remove every fault of ours from a host: stop our dead-man timers, run every undo left (units stopped
    or paused by us started or continued, rules deleted, clocks and disks given back), stop the delayer and
    our stress units, remove our iptables chain and our qdiscs. Exits non-zero, naming it, when an undo
    failed."""
    return "; ".join(
        [
            "rc=0",
            f"if [ -d {SYSTEMD_DIR} ]; then systemctl stop '{HEAL_UNIT_PREFIX}*.timer' 2>/dev/null; fi",
            f'for f in {STATE_DIR}/*.sh; do [ -f "$f" ] || continue; /bin/sh "$f" '
            '|| { echo "gauntlet heal: the undo $f failed" >&2; rc=1; }; done',
            f"systemctl stop {DELAYER_UNIT} 2>/dev/null",
            f"if [ -d {SYSTEMD_DIR} ]; then systemctl stop '{STRESS_UNIT_PREFIX}*.service' 2>/dev/null; fi",
            f"if command -v iptables >/dev/null; then {flush()}; fi",
            "if command -v tc >/dev/null; then for dev in $(ls /sys/class/net); do "
            f'if tc qdisc show dev "$dev" root 2>/dev/null | grep -q " {QDISC_HANDLE}: "; then '
            f'tc qdisc del dev "$dev" root || {{ echo "gauntlet heal: our qdisc on $dev stays" >&2; rc=1; }}; '
            "fi; done; fi",
            '[ "$rc" = 0 ]',
        ]
    )


# -- resource faults: the clock, a full disk, CPU and memory pressure ------------------------------------------
# Printed by an undo that found its fault already ended early in part (a dead-man timer that could only undo
# it in part ran first): the nemesis then fails the fault at its end, as it does for ALREADY_UNDONE.
UNDONE_EARLY = "gauntlet-undone-early"
RUN_DIR = "/run/gauntlet"
# systemd's runtime unit directory: drop-ins here vanish on reboot, as our faults do.
UNIT_RUNTIME_DIR = "/run/systemd/system"
# Where Debian's libfaketime package puts the library (multiarch: one directory per architecture).
FAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")
# How long a faked process keeps the offset it read before it reads the file again. Measured on a Debian 12
# container (python3, 100,000 time.time() calls): FAKETIME_NO_CACHE=1 (a file read per call) took 0.156 s,
# a 1 s cache 0.010 s (0.009 s without libfaketime); a jump written to the file showed within the second.
FAKETIME_CACHE_S = 1
# Unit names and paths go into sh commands, drop-in paths and /proc/self/mountinfo matches: plain ones only.
_SAFE_UNIT = re.compile(r"[A-Za-z0-9:_.@-]+")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._@+/-]*")


def unit_name(service: str) -> str:
    """The systemd unit a service name means (``raftkv`` -> ``raftkv.service``); ValueError for a name that is
    not a plain unit name."""
    if not _SAFE_UNIT.fullmatch(service) or service.startswith("-"):
        raise ValueError(f"{service!r} is not a systemd service name")
    return service if service.endswith(".service") else f"{service}.service"


def find_faketime() -> str:
    """A command that prints the path of libfaketime.so.1 on the host (nothing when it is not installed)."""
    return f"ls {' '.join(FAKETIME_GLOBS)} 2>/dev/null | head -n 1"


def clock_dropin(unit: str) -> str:
    """The runtime drop-in of ours that runs ``unit`` under libfaketime."""
    return f"{UNIT_RUNTIME_DIR}/{unit}.d/gauntlet-clock.conf"


def clock_file(unit: str) -> str:
    """The file libfaketime reads the offset of ``unit``'s processes from."""
    return f"{RUN_DIR}/clock-{unit.removesuffix('.service')}"


def faketime_offset(seconds: float) -> str:
    """An offset as libfaketime reads it from its timestamp file: ``+120``, ``-0.5``, ``+0``."""
    text = f"{seconds:+.3f}".rstrip("0").rstrip(".")
    return "+0" if text in ("+", "-", "-0") else text


def _write(path: str, content: str) -> str:
    return f"printf %s {shlex.quote(content)} > {path}"


def write_file(path: str, content: str) -> str:
    """Shell command that writes ``content`` to ``path`` (replacing it)."""
    return _write(path, content)


def clock_offset(service: str, offset_s: float, faketime: str) -> tuple[str, str]:
    """(start, undo): run ``service`` under libfaketime (``faketime``: the library's path on the host) with its
    clocks ``offset_s`` seconds off (negative: behind), through a runtime drop-in that sets LD_PRELOAD and the
    offset file, then a restart. The undo removes both, reloads and restarts: the unit runs on the real clock
    again. Both can run twice."""
    unit = unit_name(service)
    dropin, offset = clock_dropin(unit), clock_file(unit)
    env = f"LD_PRELOAD={faketime} FAKETIME_TIMESTAMP_FILE={offset} FAKETIME_CACHE_DURATION={FAKETIME_CACHE_S}"
    start = [
        f"mkdir -p {RUN_DIR} {dropin.rsplit('/', 1)[0]}",
        _write(offset, faketime_offset(offset_s) + "\n"),
        _write(
            dropin, f"# gauntlet clock fault: {unit} runs under libfaketime\n[Service]\nEnvironment={env}\n"
        ),
        "systemctl daemon-reload",
        f"systemctl restart {unit}",
    ]
    undo = [
        f"rm -f {dropin} {offset}",
        f"rmdir {dropin.rsplit('/', 1)[0]} 2>/dev/null",
        "systemctl daemon-reload",
        f"systemctl restart {unit}",
    ]
    return " && ".join(start), "; ".join(undo[:3]) + f" && {undo[3]}"


# How long a clock jump waits for its unit to be active again before it jumps (a unit that does not come back
# is a failed start).
JUMP_WAIT_S = 30


def clock_jump(service: str, jump_s: float, faketime: str) -> tuple[str, str]:
    """(start, undo): as :func:`clock_offset` with ``+0``; once the unit is active again (and its process has
    run a second on the real time), the offset file is rewritten to ``jump_s``: the running process sees its
    clocks jump, with no restart. The undo is :func:`clock_offset`'s."""
    unit = unit_name(service)
    start, undo = clock_offset(service, 0, faketime)
    wait = (
        f"for i in $(seq {JUMP_WAIT_S * 10}); do systemctl is-active --quiet {unit} && break; sleep 0.1; done; "
        f"systemctl is-active --quiet {unit} || {{ echo 'gauntlet: {unit} is not active after its restart "
        f"under libfaketime: no clock to jump' >&2; exit 1; }}"
    )
    jump = _write(clock_file(unit), faketime_offset(jump_s) + "\n")
    return f"{start} && {{ {wait}; }} && sleep {FAKETIME_CACHE_S + 0.5:g} && {jump}", undo


def _mounted(mountpoint: str, source: str) -> str:
    """A test that ``mountpoint`` is a mount of our tmpfs ``source`` (the tmpfs itself or a bind of part of
    it): read from /proc/self/mountinfo, whose fifth field is the mount point and whose source follows the
    fstype after the ``-``."""
    return (
        f"awk -v m={mountpoint} -v s={source} "
        '\'{for (i = 7; i < NF; i++) if ($i == "-") break} $5 == m && $(i + 1) == "tmpfs" && $(i + 2) == s '
        "{f = 1} END {exit !f}' /proc/self/mountinfo"
    )


@dataclass(frozen=True)
class DiskFull:
    """The shell commands of one disk-full fault on one host (see :meth:`Nemesis.disk_full`)."""

    start: str
    release: str
    undo: str
    stage: str  # the tmpfs, mounted here; the data directory's copy is ``<stage>/data``
    filler: str


# Damage to a stopped member's data file, as Jepsen did to NATS (2025): half the file cut off, or one bit flipped
# in its middle. python3 is on every host Ansible manages.
CORRUPTIONS = ("truncate", "bitflip")
_GLOB = re.compile(r"/[A-Za-z0-9._@+/*-]*")
_FLIP = (
    "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = len(b) // 2; b[i] ^= 0x10; "
    "open(p, 'wb').write(b)"
)


def corrupt_newest(pattern: str, how: str) -> str:
    """Damage the newest file (by version sort of the name) that the glob ``pattern`` matches: ``truncate`` cuts
    it to half its size, ``bitflip`` flips one bit in its middle byte. Prints the file and its size before."""
    if how not in CORRUPTIONS:
        raise ValueError(f"corruption must be {' or '.join(CORRUPTIONS)}, not {how!r}")
    if not _GLOB.fullmatch(pattern) or "/../" in f"{pattern}/":
        raise ValueError(f"corrupt needs an absolute glob of plain characters, not {pattern!r}")
    damage = 'truncate -s $((size / 2)) "$f"' if how == "truncate" else f'python3 -c "{_FLIP}" "$f"'
    return (
        f"f=$(ls -1 {pattern} 2>/dev/null | sort -V | tail -n 1); "
        f"[ -n \"$f\" ] || {{ echo 'gauntlet: no file matches {pattern}' >&2; exit 1; }}; "
        f'size=$(stat -c %s "$f"); [ "$size" -gt 1 ] || {{ echo "gauntlet: $f is empty" >&2; exit 1; }}; '
        f'{damage} && echo "$f $size"'
    )


# How much larger the tmpfs grows when a full disk's space returns (KiB).
RELEASE_KB = 64 * 1024


def disk_full(path: str, service: str, tag: str, headroom_kb: int = 4096) -> DiskFull:
    """The commands of a full disk under ``path`` (a data directory) for ``service``:

    start: stop the unit; mount a tmpfs of (the KiB ``path`` uses + ``headroom_kb``) on a staging directory of
    ours (``/run/gauntlet/disk-<tag>``); copy ``path`` into it (``cp -a``: owner, mode, times kept); bind that
    copy over ``path``; start the unit; fill the tmpfs with a filler file (beside the copy, not in it) until
    ENOSPC. release: delete the filler and grow the tmpfs by ``RELEASE_KB`` (space returns, the mount stays). undo: delete the filler; stop the
    unit; unmount the bind (the real directory is back); replace the real directory's contents with the
    tmpfs copy (what the service wrote during the fault survives); unmount the tmpfs; start the unit.

    The undo runs again where it stopped (each step looks at what is mounted, and a marker says the copy
    holds the data). Where it cannot unmount (a dead-man timer in a container: no CAP_SYS_ADMIN) it deletes
    the filler, starts the unit again on the tmpfs, marks that it did, and fails: its script stays for
    ``gauntlet heal`` (which runs privileged) to finish, and the fault's own undo says it ended early."""
    if not _SAFE_PATH.fullmatch(path) or path.rstrip("/") in ("", "/run", RUN_DIR) or "/../" in f"{path}/":
        raise ValueError(f"disk_full needs an absolute path of plain characters, not {path!r}")
    if headroom_kb <= 0:
        raise ValueError(f"disk_full needs a positive headroom_kb, not {headroom_kb}")
    if not re.fullmatch(r"[0-9a-f]+", tag):
        raise ValueError(f"disk_full tag {tag!r} is not hex")
    path = path.rstrip("/")
    unit = unit_name(service)
    stage = f"{RUN_DIR}/disk-{tag}"
    data, filler, source = f"{stage}/data", f"{stage}/filler", f"gauntlet-disk-{tag}"
    holds_data = f"{RUN_DIR}/disk-{tag}.holds-data"  # the service ran on the copy: it holds the newest data
    early = f"{RUN_DIR}/disk-{tag}.undone-early"
    start = " && ".join(
        [
            f"[ -d {path} ] || {{ echo 'gauntlet: {path} is not a directory on this host' >&2; exit 1; }}",
            f"systemctl stop {unit}",
            f"used=$(du -sk {path} | cut -f1)",
            f"mkdir -p {stage}",
            f"mount -t tmpfs -o size=$((used + {headroom_kb}))k,mode=0700 {source} {stage}",
            f"cp -a {path} {data}",
            f"mount --bind {data} {path}",
            f"touch {holds_data}",
            f"systemctl start {unit}",
            # cat writes until the tmpfs refuses (ENOSPC), which is the point: its failure is expected.
            f"{{ cat /dev/zero > {filler} 2>/dev/null; true; }}",
            f'[ "$(df --output=avail -k {stage} | tail -n 1)" -eq 0 ] || '
            f"{{ echo 'gauntlet: the filler did not fill {stage}' >&2; exit 1; }}",
        ]
    )
    cannot_unmount = (
        f"systemctl reset-failed {unit} 2>/dev/null; systemctl start {unit}; touch {early}; echo 'gauntlet: cannot unmount {path} here (no CAP_SYS_ADMIN: "
        f"a dead-man timer in a container): filler deleted, {unit} started on the tmpfs; gauntlet heal (from "
        "the controller) finishes the undo' >&2; exit 1"
    )
    undo = "; ".join(
        [
            f"rm -f {filler}",
            f"if {_mounted(path, source)}; then systemctl stop {unit}; umount {path} || {{ {cannot_unmount}; }}; fi",
            # Only from our tmpfs, still mounted, is the real directory overwritten.
            f"if [ -f {holds_data} ]; then {_mounted(stage, source)} && systemctl stop {unit} && "
            f"find {path} -mindepth 1 -delete && "
            f"cp -a {data}/. {path}/ && rm -f {holds_data} || {{ echo 'gauntlet: could not copy the data of "
            f"{path} back from {data}: it stays there' >&2; exit 1; }}; fi",
            f"if {_mounted(stage, source)}; then umount {stage} || exit 1; fi",
            f"rmdir {stage} 2>/dev/null",
            f"if [ -f {early} ]; then rm -f {early}; echo {UNDONE_EARLY}; fi",
            # a service that crash-looped on the full disk may have hit systemd's start limit (seen in CI: the
            # Raft KV, SIGBUS on its mapped journal): "start of the service was attempted too often"
            f"systemctl reset-failed {unit} 2>/dev/null",
            f"systemctl start {unit}",
        ]
    )
    # Space returns as when an operator frees a lot of it or grows the volume: the filler goes and the tmpfs
    # grows by RELEASE_KB. Deleting the filler alone gives back only the headroom the service already ate
    # into (seen here: the Raft KV's journal, doubling to 8 MiB, still found no space after that).
    grow = f"mount -o remount,size=$(( $(df --output=size -k {stage} | tail -n 1) + {RELEASE_KB} ))k {stage}"
    return DiskFull(start, f"rm -f {filler} && {grow}", undo, stage, filler)


STRESS_UNIT_PREFIX = "gauntlet-stress-"
# The stress process: CPU hogs (forked busy loops) and/or a block of memory it has written to (every page
# touched, so it is resident), then it sleeps until stopped. It says it is ready by creating argv[3].
_STRESS = """\
import os, sys, time
hogs, mib, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for _ in range(hogs):
    if os.fork() == 0:
        while True:
            pass
held = bytearray(mib << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
open(ready, "w").close()
while True:
    time.sleep(3600)
"""


def stress(tag: str, cpu_hogs: int, memory_mb: int, bound_s: float) -> tuple[str, str]:
    """(start, undo): a transient unit ``gauntlet-stress-<tag>`` running ``cpu_hogs`` busy loops and holding
    ``memory_mb`` MiB (either may be 0), stopped by systemd after ``bound_s`` seconds (RuntimeMaxSec: its own
    dead-man; 0: none). The start returns once the memory is held; the undo stops the unit."""
    if cpu_hogs < 0 or memory_mb < 0 or not cpu_hogs + memory_mb:
        raise ValueError(f"stress needs CPU hogs or memory (got {cpu_hogs} hogs, {memory_mb} MiB)")
    if not re.fullmatch(r"[0-9a-f]+", tag):
        raise ValueError(f"stress tag {tag!r} is not hex")
    unit = f"{STRESS_UNIT_PREFIX}{tag}"
    ready = f"{RUN_DIR}/stress-{tag}.ready"
    limit = [f"--property=RuntimeMaxSec={max(1, round(bound_s))}s"] if bound_s > 0 else []
    run = shlex.join(
        [
            *("systemd-run", "--quiet", "--collect", f"--unit={unit}", *limit),
            *("python3", "-c", _STRESS, str(cpu_hogs), str(memory_mb), ready),
        ]
    )
    start = (
        f"mkdir -p {RUN_DIR} && rm -f {ready} && {run} && "
        f"for i in $(seq 600); do [ -f {ready} ] && break; systemctl is-active --quiet {unit} || break; "
        f"sleep 0.1; done; [ -f {ready} ] || {{ echo 'gauntlet: the stress unit {unit} did not get ready "
        f"(not enough memory for {memory_mb} MiB?)' >&2; exit 1; }}"
    )
    undo = f"systemctl stop {unit} 2>/dev/null; rm -f {ready}; true"
    return start, undo
