"""The custom server (five Raft KV members) under faults of the host's resources, each on one member while a
recorded workload runs: its clock jumped forward or set back (libfaketime through the unit's environment),
the disk under its data directory full, and its CPU or memory held down (the container's cgroup limits, or
a stress unit on SSH hosts). Every fault is first shown to have taken effect (the member's own clock as its
HTTP Date header tells it, the data directory with no space left, the cgroup limit in force); then the
cluster must keep acknowledging operations, elect at most one leader per term, stay linearizable, and, when
the fault ends, have the member back with the same log as the others.
BENCH: the clock offset the member served with, seconds to serve again after the disk has space again, and
operations per second under CPU or memory pressure."""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import ssl
import time
from collections.abc import Iterator

import pytest

from checklib.custom import (
    GROUP,
    Workload,
    assert_linearizable,
    client,
    fresh_keys,
    leader,
    put_until_ok,
    term_leaders,
    unit,
)
from gauntlet.bench import Bench, wait_for
from gauntlet.clients.base import ClientError, Fail, Info
from gauntlet.clients.declared import DeclaredClient
from gauntlet.cluster import Cluster, Host
from gauntlet.history import History
from gauntlet.nemesis import Nemesis

pytestmark = [pytest.mark.custom, pytest.mark.usefixtures("reference_server")]

# The member's clock as it serves must be off by the fault's offset, give or take this (request time and
# libfaketime's one-second cache).
CLOCK_TOLERANCE_S = 5.0
# A member back from a fault must serve again within this long (a restart and catching up with the log).
BACK_BOUND_S = 60.0
# Writes the check sends through the member whose disk is full.
DISK_FULL_ATTEMPTS = 5
# Bulk writes while the disk is full: 160 x 32 KiB = 5 MiB, past the 4 MiB of headroom the fault leaves.
BULK_WRITES = 160
BULK_VALUE_BYTES = 32 * 1024


@pytest.fixture(autouse=True)
def one_log_after(admin: DeclaredClient) -> Iterator[None]:
    """Every check leaves every member applying one log, with one leader agreed."""
    admin.wait_for_ready(60)
    yield
    admin.wait_for_ready(90)
    names = [m.name for m in admin.members]
    wait_for(
        lambda: len({admin.status(n)["last_applied"] for n in names}) == 1,
        30,
        0.2,
        "every member applying one log",
    )


def served_clock_offset(cluster: Cluster, host: Host) -> float:
    """Seconds the member's own clock is ahead of the controller's (negative: behind), from the Date header
    its HTTP server stamps on an answer (python's http.server reads time.time())."""
    crt, key = cluster.client_cert()
    ctx = ssl.create_default_context(cafile=str(cluster.ca_cert))
    ctx.load_cert_chain(str(crt), str(key))
    port = int(cluster.setting("custom_server_client_port", GROUP))
    conn = http.client.HTTPSConnection(host.address, port, timeout=5, context=ctx)
    try:
        before = time.time()
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        after = time.time()
    finally:
        conn.close()
    stamped = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    return stamped - (before + after) / 2


def off_by(cluster: Cluster, host: Host, offset_s: float) -> float | None:
    """The member's served clock offset when it is within the tolerance of ``offset_s``, else None."""
    seen = served_clock_offset(cluster, host)
    return seen if abs(seen - offset_s) <= CLOCK_TOLERANCE_S else None


def samples_of(admin: DeclaredClient) -> list[dict]:
    """Every member's /cluster answer now (members that do not answer are left out)."""
    out = []
    for m in admin.members:
        with contextlib.suppress(ClientError):
            out.append(admin.status(m.name))
    return out


@pytest.mark.parametrize(("fault", "offset_s"), [("clock_jump", 120.0), ("clock_skew", -300.0)])
def test_a_members_clock_off_keeps_one_leader_per_term_and_the_history_linearizable(
    fault: str,
    offset_s: float,
    cluster: Cluster,
    admin: DeclaredClient,
    history: History,
    nemesis: Nemesis,
    bench: Bench,
) -> None:
    """The leader's clock jumps two minutes ahead while it runs (its timers all expire at once), or a
    follower runs five minutes behind from a restart: the member really serves with that clock, and the
    cluster keeps acknowledging operations, one leader per term, linearizable. Raft must not trust clocks."""
    lead = leader(cluster, admin)
    target = lead if fault == "clock_jump" else next(h for h in cluster.group(GROUP) if h.name != lead.name)
    samples: list[dict] = []
    work = Workload(cluster, history, fresh_keys(f"{fault}", 4)).start()
    try:
        work.wait_ops(20, 30)
        with getattr(nemesis, fault)(target, unit(cluster), offset_s):
            seen = wait_for(
                lambda: off_by(cluster, target, offset_s),
                30,
                0.5,
                f"{target.name} serving with its clock {offset_s:+.0f} s off",
            )
            samples += samples_of(admin)
            work.wait_ops(40, 60, f"operations with {target.name}'s clock {offset_s:+.0f} s off")
            samples += samples_of(admin)
        admin.wait_for_ready(BACK_BOUND_S)
        work.wait_ops(20, 30, "operations after the clock is right again")
        samples += samples_of(admin)
        after = served_clock_offset(cluster, target)
    finally:
        counts = work.stop()
    bench.record(
        f"raftkv_{fault}_served_offset_seconds", round(seen, 1), "s", host=target.name, asked=offset_s
    )
    print(
        f"{fault} {offset_s:+.0f}s on {target.name}: served {seen:+.1f}s, after {after:+.1f}s, ops {counts}"
    )
    assert abs(after) <= CLOCK_TOLERANCE_S, f"{target.name}'s clock still {after:+.1f} s off after the fault"
    split = {t: ls for t, ls in term_leaders(samples).items() if len(ls) > 1}
    assert split == {}, f"two leaders in one term: {split}"
    assert_linearizable(history)


def test_a_full_disk_loses_no_acknowledged_write_and_the_member_is_back_when_space_returns(
    cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """The disk under the leader's data directory fills up: the directory really has no space, the other four
    keep acknowledging, every write sent through the full member is refused, left unknown, or acknowledged by
    the majority (never lost: the history stays linearizable); once space returns the member applies, within
    the bound, everything committed while it was full, and ends with the same log as the others."""
    lead = leader(cluster, admin)
    data_dir = str(lead.setting("custom_server_data_dir"))
    others = [m.name for m in admin.members if m.name != lead.name]
    through_full = client(cluster, history, retry_for=0).for_process("through-full-member")
    outcomes = {"ok": 0, "fail": 0, "info": 0}
    work = Workload(cluster, history, fresh_keys("disk-full", 4)).start()
    try:
        work.wait_ops(20, 30)
        with nemesis.disk_full(lead, data_dir, unit(cluster)) as disk:
            free = lead.run(f"df --output=avail -k {data_dir} | tail -1", timeout=20).stdout.strip()
            assert free == "0", f"{data_dir} on {lead.name} still has {free} KiB free: the disk is not full"
            work.wait_ops(40, 60, f"operations while {lead.name}'s disk is full")
            # more than the tmpfs's headroom, so the full member's log must grow past its preallocation
            bulk = client(cluster, history).for_process("bulk")
            for n in range(BULK_WRITES):
                put_until_ok(bulk, fresh_keys("disk-full-bulk")[0], f"{n}-" + "x" * BULK_VALUE_BYTES)
            restarts = lead.run(
                f"systemctl show -p NRestarts --value {unit(cluster)}", timeout=20
            ).stdout.strip()
            for n in range(DISK_FULL_ATTEMPTS):
                try:
                    through_full.put(fresh_keys("disk-full-member")[0], f"full-{n}", member=lead.name)
                    outcomes["ok"] += 1
                except Fail:
                    outcomes["fail"] += 1
                except Info:
                    outcomes["info"] += 1
            state = lead.run(f"systemctl is-active {unit(cluster)}", timeout=20).stdout.strip()
            committed = max(int(admin.status(n)["commit_index"]) for n in others)
            try:  # a member whose log cannot grow may be down (seen here: SIGBUS on its mapped journal)
                lag: int | str = committed - int(admin.status(lead.name)["last_applied"])
            except ClientError:
                lag = "down"
            disk.release()
            released = time.monotonic()
            wait_for(
                lambda: int(admin.status(lead.name)["last_applied"]) >= committed,
                BACK_BOUND_S,
                0.2,
                f"{lead.name} applying the log committed while its disk was full, once space returned",
            )
            back_s = time.monotonic() - released
            work.wait_ops(20, 30, "operations after space returned")
    finally:
        counts = work.stop()
    bench.record(
        "raftkv_disk_full_back_seconds",
        round(back_s, 2),
        "s",
        host=lead.name,
        unit_state=state,
        restarts_while_full=restarts,
        entries_behind_while_full=lag,
    )
    print(
        f"disk full on {lead.name} ({state} while full): writes through it {outcomes}; back in {back_s:.1f}s; {counts}"
    )
    assert sum(outcomes.values()) == DISK_FULL_ATTEMPTS
    assert_linearizable(history)


@pytest.mark.parametrize("resource", ["cpu", "memory"])
def test_cpu_or_memory_pressure_keeps_the_cluster_serving_and_safe(
    resource: str, cluster: Cluster, admin: DeclaredClient, history: History, nemesis: Nemesis, bench: Bench
) -> None:
    """The leader held to a tenth of a CPU, or a follower's memory held just above what it uses: the limit is
    in force, the cluster keeps acknowledging operations (BENCH: operations per second before and under the
    pressure), one leader per term, linearizable."""
    lead = leader(cluster, admin)
    target = lead if resource == "cpu" else next(h for h in cluster.group(GROUP) if h.name != lead.name)
    samples: list[dict] = []
    work = Workload(cluster, history, fresh_keys(f"pressure-{resource}", 4)).start()
    try:
        t0 = time.monotonic()
        work.wait_ops(40, 30)
        before = 40 / (time.monotonic() - t0)
        if resource == "cpu":
            fault, limit_file = nemesis.pressure(target, cpu=0.1), "cpu/cpu.cfs_quota_us"
        else:
            used = int(target.run("cat /sys/fs/cgroup/memory/memory.usage_in_bytes", timeout=20).stdout)
            mb = used // 2**20 + 32
            fault, limit_file = nemesis.pressure(target, memory_mb=mb), "memory/memory.limit_in_bytes"
        with fault:
            if target.connection == "podman":
                limit = target.run(f"cat /sys/fs/cgroup/{limit_file}", timeout=20).stdout.strip()
                assert limit not in ("-1", "9223372036854771712"), (
                    f"no {resource} limit in force on {target.name}"
                )
            t1 = time.monotonic()
            work.wait_ops(40, 90, f"operations with {target.name} under {resource} pressure")
            under = 40 / (time.monotonic() - t1)
            samples += samples_of(admin)
        admin.wait_for_ready(BACK_BOUND_S)
        samples += samples_of(admin)
    finally:
        counts = work.stop()
    bench.record(
        f"raftkv_ops_per_second_under_{resource}_pressure",
        round(under, 1),
        "ops/s",
        host=target.name,
        before=round(before, 1),
    )
    print(f"{resource} pressure on {target.name}: {before:.1f} ops/s before, {under:.1f} under; {counts}")
    split = {t: ls for t, ls in term_leaders(samples).items() if len(ls) > 1}
    assert split == {}, f"two leaders in one term: {split}"
    assert_linearizable(history)
