"""The clock, disk-full and pressure faults: the commands they run (the clock's under sh against a stand-in
systemctl), the cgroup limits a pressure fault writes on the controller and gives back exactly (against a
cgroup tree in a temporary directory), what gauntlet heal finds, and the inputs they refuse. No host."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_catalogue import FAKETIME, FakeCluster, FakeHost, Result

from gauntlet.errors import FaultError
from gauntlet.history import History
from gauntlet.nemesis import Nemesis, backends, commands


def nemesis(**kw: Any) -> tuple[Nemesis, FakeCluster, History]:
    cluster = FakeCluster(3)
    history = History()
    return Nemesis(cluster, history, **kw), cluster, history  # type: ignore[arg-type]


# -- the clock ------------------------------------------------------------------------------------------------
@pytest.fixture
def sh(tmp_path, monkeypatch):
    """Run a command under sh with a systemctl stand-in (its calls in $LOG) and our directories in tmp."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text('#!/bin/sh\necho "systemctl $*" >> "$LOG"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(commands, "RUN_DIR", str(tmp_path / "run-gauntlet"))
    monkeypatch.setattr(commands, "UNIT_RUNTIME_DIR", str(tmp_path / "units"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log")}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30)

    return run


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_clock_skew_runs_the_unit_under_libfaketime_and_the_undo_leaves_nothing_of_it(sh, tmp_path):
    before = files(tmp_path)
    start, undo = commands.clock_offset("raftkv", -300, FAKETIME)
    r = sh(start)
    assert r.returncode == 0, r.stderr
    dropin = tmp_path / "units/raftkv.service.d/gauntlet-clock.conf"
    assert (tmp_path / "run-gauntlet/clock-raftkv").read_text() == "-300\n"
    assert (
        f"Environment=LD_PRELOAD={FAKETIME} FAKETIME_TIMESTAMP_FILE={tmp_path}/run-gauntlet/clock-raftkv "
        "FAKETIME_CACHE_DURATION=1\n"
    ) in dropin.read_text()
    log = (tmp_path / "log").read_text().splitlines()
    assert log == ["systemctl daemon-reload", "systemctl restart raftkv.service"]  # reload before restart
    r = sh(undo)
    assert r.returncode == 0, r.stderr
    assert files(tmp_path) - before - {"log"} == {"run-gauntlet", "units"}  # only the (empty) parents stay
    assert (tmp_path / "log").read_text().splitlines()[2:] == [
        "systemctl daemon-reload",
        "systemctl restart raftkv.service",
    ]
    assert sh(undo).returncode == 0  # twice (a dead-man timer or gauntlet heal ran it first): still fine


def test_clock_jump_starts_at_zero_and_writes_the_jump_once_the_unit_is_active(sh, tmp_path):
    start, undo = commands.clock_jump("raftkv.service", 120, FAKETIME)
    assert undo == commands.clock_offset("raftkv", 0, FAKETIME)[1]
    assert start.index("printf %s '+0\n'") < start.index("systemctl restart")
    assert start.index("systemctl is-active --quiet raftkv.service") < start.index("printf %s '+120\n'")
    r = sh(start)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run-gauntlet/clock-raftkv").read_text() == "+120\n"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "+0"), (-0.0, "+0"), (120, "+120"), (-300, "-300"), (0.25, "+0.25")]
)
def test_offsets_are_written_as_libfaketime_reads_them(seconds, text):
    assert commands.faketime_offset(seconds) == text


def test_a_host_without_libfaketime_is_refused_in_one_line_naming_the_fix():
    n, cluster, history = nemesis()

    @dataclass
    class NoFaketime(FakeHost):
        def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
            self.commands.append(command)
            return Result()

    cluster.hosts["n1"] = NoFaketime("n1", "10.0.0.1")
    for fault in (lambda: n.clock_skew("n1", "raftkv", 5), lambda: n.clock_jump("n1", "raftkv", 5)):
        with pytest.raises(FaultError) as err:
            fault()
        assert len(str(err.value).splitlines()) == 1
        assert "libfaketime is not installed on n1" in str(err.value)
        assert "common_fault_tool_packages" in str(err.value)
    assert history.faults() == []


def test_a_clock_fault_arms_its_undo_and_records_the_offset():
    n, cluster, history = nemesis()
    with n.clock_skew("n1", "raftkv", -2.5):
        pass
    (start, stop) = history.faults()
    assert (start.f, stop.f) == ("clock_skew:start", "clock_skew:stop")
    assert start.value == {"host": "n1", "service": "raftkv", "offset_s": -2.5}
    armed = next(c for c in cluster["n1"].commands if "systemd-run" in c)
    assert "rm -f /run/systemd/system/raftkv.service.d/gauntlet-clock.conf" in armed  # the kept undo
    with pytest.raises(FaultError, match="not a systemd service name"):
        n.clock_skew("n1", "raftkv; reboot", 1)


# -- disk full ------------------------------------------------------------------------------------------------
def test_disk_full_refuses_a_path_that_is_not_absolute_and_a_headroom_that_is_not_positive():
    n, cluster, _ = nemesis()
    for path in ("var/lib/raftkv", "", "/", "/var/lib/../../etc", "/var/lib/raft kv", "/run/gauntlet"):
        with pytest.raises(FaultError, match="absolute path"):
            n.disk_full("n1", path, "raftkv")
    with pytest.raises(FaultError, match="positive headroom_kb"):
        n.disk_full("n1", "/var/lib/raftkv", "raftkv", headroom_kb=0)
    assert not any(h.commands for h in cluster.hosts.values())


def test_disk_full_undo_puts_the_data_written_meanwhile_back_before_it_unmounts_the_tmpfs():
    plan = commands.disk_full("/var/lib/raftkv/", "raftkv", "ab12", headroom_kb=512)
    s, u = plan.start, plan.undo
    # start: stopped, sized on the data, copied with owner and mode, bound, started, then filled
    steps = [
        "systemctl stop raftkv.service",
        "used=$(du -sk /var/lib/raftkv ",
        "mount -t tmpfs -o size=$((used + 512))k,mode=0700 gauntlet-disk-ab12 /run/gauntlet/disk-ab12",
        "cp -a /var/lib/raftkv /run/gauntlet/disk-ab12/data",
        "mount --bind /run/gauntlet/disk-ab12/data /var/lib/raftkv",
        "systemctl start raftkv.service",
        "cat /dev/zero > /run/gauntlet/disk-ab12/filler",
    ]
    assert [s.index(step) for step in steps] == sorted(s.index(step) for step in steps)
    # space returns: the filler goes and the tmpfs grows (a remount: privileged, like the mount)
    assert plan.release == (
        "rm -f /run/gauntlet/disk-ab12/filler && mount -o remount,size=$(( $(df --output=size -k "
        f"/run/gauntlet/disk-ab12 | tail -n 1) + {commands.RELEASE_KB} ))k /run/gauntlet/disk-ab12"
    )
    # undo: filler, bind, copy back (from our tmpfs only), tmpfs, start
    steps = [
        "rm -f /run/gauntlet/disk-ab12/filler",
        "umount /var/lib/raftkv",
        "find /var/lib/raftkv -mindepth 1 -delete && cp -a /run/gauntlet/disk-ab12/data/. /var/lib/raftkv/",
        "umount /run/gauntlet/disk-ab12 ",
        "systemctl start raftkv.service",
    ]
    assert u.endswith("; systemctl start raftkv.service")  # the unit starts last (after the copy back)
    assert [u.index(step) for step in steps[:-1]] == sorted(u.index(step) for step in steps[:-1])
    copy = u.index("find /var/lib/raftkv")
    assert "$5 == m" in u[u.rindex("if [ -f /run/gauntlet/disk-ab12.holds-data ]", 0, copy) : copy]
    # where it cannot unmount (a timer in a container) it gives the space back, restarts, and fails: kept
    assert "cannot unmount /var/lib/raftkv here" in u and "touch /run/gauntlet/disk-ab12.undone-early" in u


def test_the_mount_test_reads_mountinfo_as_the_kernel_writes_it(tmp_path):
    """The in-force test of the undo, on lines as /proc/self/mountinfo has them (a bind shows its root)."""
    info = tmp_path / "mountinfo"
    info.write_text(
        "700 650 0:90 / /run/gauntlet/disk-ab12 rw,relatime - tmpfs gauntlet-disk-ab12 rw,size=4096k\n"
        "701 640 0:90 /data /var/lib/raftkv rw,relatime shared:9 - tmpfs gauntlet-disk-ab12 rw,size=4096k\n"
        "702 640 0:91 / /var/lib/other rw - tmpfs tmpfs rw\n"
    )

    def mounted(mp: str) -> bool:
        test = commands._mounted(mp, "gauntlet-disk-ab12").replace("/proc/self/mountinfo", str(info))
        return subprocess.run(["sh", "-c", test], timeout=10).returncode == 0

    assert mounted("/var/lib/raftkv") and mounted("/run/gauntlet/disk-ab12")
    assert not mounted("/var/lib/other") and not mounted("/var/lib")


def test_disk_full_runs_privileged_yields_release_and_records_it():
    n, cluster, history = nemesis()
    with n.disk_full("n1", "/var/lib/raftkv", "raftkv") as space:
        space.release()
        space.release()  # once
    released = [c for c in cluster["n1"].commands if c.startswith("rm -f /run/gauntlet/disk-")]
    assert len(released) == 1
    assert [o.f for o in history.ops] == ["disk_full:start", "disk_full:release", "disk_full:stop"]
    assert history.faults()[0].value == {
        "host": "n1",
        "path": "/var/lib/raftkv",
        "service": "raftkv",
        "headroom_kb": commands_headroom(),
    }


def commands_headroom() -> int:
    from gauntlet.nemesis.core import DISK_HEADROOM_KB

    return DISK_HEADROOM_KB


@dataclass
class UndoneEarly(FakeHost):
    """A host whose dead-man timer undid the disk fault in part: the full undo says so on stdout."""

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        self.commands.append(command)
        return Result(stdout=commands.UNDONE_EARLY + "\n" if "gauntlet-heal-" in command else "")


def test_a_disk_fault_its_timer_undid_in_part_fails_at_its_end_saying_so():
    n, cluster, history = nemesis(fault_bound_s=5)
    cluster.hosts["n1"] = UndoneEarly("n1", "10.0.0.1")
    with (
        pytest.raises(
            FaultError, match=r"undone in part before its end: its dead-man timer fired \(bound 5 s"
        ),
        n.disk_full("n1", "/var/lib/raftkv", "raftkv"),
    ):
        pass
    assert [o.f for o in history.faults()] == ["disk_full:start", "disk_full:stop"]


# -- pressure ---------------------------------------------------------------------------------------------------
UNLIMITED = "9223372036854771712"


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """A cgroup v1 tree for one container in tmp (cpu and memory, no limits), found as podman inspect would."""
    cpu, mem = tmp_path / "cpu/libpod_parent/libpod-c0ffee", tmp_path / "memory/libpod_parent/libpod-c0ffee"
    cpu.mkdir(parents=True)
    mem.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (mem / "memory.limit_in_bytes").write_text(UNLIMITED + "\n")
    (mem / "memory.memsw.limit_in_bytes").write_text(UNLIMITED + "\n")
    monkeypatch.setattr(backends, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(backends.ContainerBackend, "cgroup_dirs", lambda self, host: (cpu, mem))
    return cpu, mem


@dataclass
class Container(FakeHost):
    """A container host whose /run/gauntlet/faults is a dict (the pressure records live there)."""

    connection: str = "podman"
    files: dict[str, str] | None = None

    def run(self, command: str, check: bool = False, timeout: float | None = None) -> Result:
        self.commands.append(command)
        self.files = self.files if self.files is not None else {}
        if command == "nproc":
            return Result(stdout="2\n")
        if command.startswith("mkdir -p") and " > " in command:
            body, path = command.split("printf %s ", 1)[1].rsplit(" > ", 1)
            self.files[path] = json.loads(body.strip("'"))
            return Result()
        if command.startswith("cat "):
            path = command.split()[1]
            return Result(stdout=json.dumps(self.files[path])) if path in self.files else Result(1)
        if command.startswith("rm -f "):
            self.files.pop(command.split()[2].strip("'"), None)
            return Result()
        if command.startswith("for f in"):
            out = "".join(f"{p}\n{json.dumps(b)}\n" for p, b in self.files.items())
            return Result(stdout=out)
        return Result()


def limits(cpu: Path, mem: Path) -> tuple[str, str, str]:
    return (
        (cpu / "cpu.cfs_quota_us").read_text().strip(),
        (mem / "memory.limit_in_bytes").read_text().strip(),
        (mem / "memory.memsw.limit_in_bytes").read_text().strip(),
    )


def test_container_pressure_writes_the_cgroup_limits_and_gives_back_exactly_the_old_ones(cgroup):
    cpu, mem = cgroup
    (cpu / "cpu.cfs_quota_us").write_text("300000\n")  # a limit the container already had: kept, not lifted
    n, cluster, history = nemesis()
    host = cluster.hosts["n1"] = Container("n1", "10.0.0.1")
    with n.pressure("n1", cpu=0.2, memory_mb=256):
        assert limits(cpu, mem) == ("20000", str(256 << 20), str(256 << 20))
        ((record, body),) = host.files.items()  # type: ignore[union-attr]
        assert record.startswith(commands.STATE_DIR) and record.endswith(".limits")
        assert body["old"] == {
            "cpu.cfs_quota_us": "300000",
            "memory.limit_in_bytes": UNLIMITED,
            "memory.memsw.limit_in_bytes": UNLIMITED,
        }
    assert limits(cpu, mem) == ("300000", "-1", "-1")  # unlimited is written as -1
    assert host.files == {}
    assert history.faults()[0].value["how"].startswith("cgroup cpu.cfs_quota_us=20000")


def test_memory_limits_are_written_in_the_order_the_kernel_accepts(cgroup, monkeypatch):
    """cgroup v1 refuses a limit above its memsw limit: lowering writes the limit first, lifting memsw."""
    cpu, mem = cgroup
    real_write = Path.write_text

    def kernel(self: Path, text: str, *a: Any, **k: Any) -> int:
        limit = (mem / "memory.limit_in_bytes").read_text().strip()
        memsw = (mem / "memory.memsw.limit_in_bytes").read_text().strip()
        value = str(backends.UNLIMITED_BYTES) if text.strip() == "-1" else text.strip()
        if self.name == "memory.limit_in_bytes" and int(value) > int(memsw):
            raise OSError(22, "Invalid argument: limit above memsw")
        if self.name == "memory.memsw.limit_in_bytes" and int(value) < int(limit):
            raise OSError(22, "Invalid argument: memsw below limit")
        return real_write(self, value + "\n")

    monkeypatch.setattr(Path, "write_text", kernel)
    n, cluster, _ = nemesis()
    cluster.hosts["n1"] = Container("n1", "10.0.0.1")
    with n.pressure("n1", memory_mb=64):
        assert limits(cpu, mem)[1:] == (str(64 << 20), str(64 << 20))
    assert limits(cpu, mem)[1:] == (str(backends.UNLIMITED_BYTES),) * 2


def test_gauntlet_heal_gives_back_the_limits_a_lost_controller_left(cgroup, monkeypatch):
    cpu, mem = cgroup
    n, cluster, _ = nemesis()
    host = cluster.hosts["n1"] = Container("n1", "10.0.0.1")
    left = [n.pressure("n1", cpu=0.5), n.pressure("n1", cpu=0.1)]
    for fault in left:
        fault.__enter__()  # the controller dies here: no exit
    assert limits(cpu, mem)[0] == "10000"
    monkeypatch.setattr(backends.ContainerBackend, "reachable", lambda self, h: True)
    monkeypatch.setattr(
        backends.ContainerBackend, "run_privileged", lambda self, h, c, check=False, timeout=None: h.run(c)
    )
    assert Nemesis(cluster, History(), fault_bound_s=0).heal_hosts() == {}  # type: ignore[arg-type]
    assert host.commands[-len(left) - 2] == commands.heal_host()  # the host's own heal ran too
    assert limits(cpu, mem)[0] == "-1"  # newest record first: the oldest old value is the last written
    assert host.files == {}


def test_a_record_naming_another_cgroup_file_is_refused(cgroup):
    host = Container(
        "n1", "10.0.0.1", files={"/run/gauntlet/faults/x.limits": {"old": {"cgroup.procs": "1"}}}
    )
    with pytest.raises(FaultError, match="unreadable"):
        backends.ContainerBackend().restore_limits(host)  # type: ignore[arg-type]


def test_pressure_refuses_nonsense_in_one_line():
    n, cluster, _ = nemesis()
    for kw, words in [
        ({}, "needs cpu= (CPUs, e.g. 0.2) or memory_mb="),
        ({"cpu": 0}, "cpu must be in (0, 2]"),
        ({"cpu": -1}, "cpu must be in (0, 2]"),
        ({"cpu": 2.5}, "cpu must be in (0, 2] (the CPUs n1 has), not 2.5"),
        ({"memory_mb": 0}, "memory_mb must be a positive number of MiB"),
        ({"memory_mb": -5}, "memory_mb must be a positive number of MiB"),
    ]:
        with pytest.raises(FaultError) as err:
            n.pressure("n1", **kw)
        assert words in str(err.value) and len(str(err.value).splitlines()) == 1
    assert all("systemd-run" not in c for c in cluster["n1"].commands)


def test_ssh_pressure_is_a_bounded_stress_unit_the_undo_and_heal_stop():
    n, cluster, history = nemesis(fault_bound_s=90)
    with n.pressure("n1", cpu=1, memory_mb=128):
        pass
    started = next(c for c in cluster["n1"].commands if "--unit=gauntlet-stress-" in c)
    assert "--property=RuntimeMaxSec=90s" in started
    tail = started.rsplit("python3 -c ", 1)[1]
    assert tail.split("' ", 1)[1].split()[:2] == ["4", "128"]  # 2 x nproc (2) busy loops, 128 MiB
    armed = next(c for c in cluster["n1"].commands if "--on-active=" in c)  # the kept undo, with the start
    assert armed.index("systemctl stop gauntlet-stress-") < armed.index("--unit=gauntlet-stress-")
    assert "gauntlet-heal-pressure-" in cluster["n1"].commands[-1]
    assert "busy loops" in history.faults()[0].value["how"]
    assert "systemctl stop 'gauntlet-stress-*.service'" in commands.heal_host()


def test_the_stress_process_holds_its_memory_and_says_ready(tmp_path):
    """The stress program itself, run here for a moment: ready once it holds the memory."""
    start, _ = commands.stress("ab", 0, 8, 0)
    program = start.split("python3 -c ", 1)[1]
    script = program[1 : program.index("' 0 8 ")].replace("'\"'\"'", "'")
    ready = tmp_path / "ready"
    proc = subprocess.Popen(["python3", "-c", script, "0", "8", str(ready)])
    try:
        for _ in range(100):
            if ready.exists():
                break
            subprocess.run(["sleep", "0.05"])
        assert ready.exists()
        rss_kb = int(
            next(
                line
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS")
            ).split()[1]
        )
        assert rss_kb > 8 * 1024
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_corrupt_newest_damages_only_the_newest_matching_file(tmp_path, how):
    """The newest block by version sort (2.blk before 10.blk) is cut to half or has one bit flipped; the
    others are untouched; the command prints the file and its old size."""
    from gauntlet.nemesis import commands as c

    blocks = {n: bytes(range(256)) * 4 for n in ("1.blk", "2.blk", "10.blk")}
    for name, data in blocks.items():
        (tmp_path / name).write_bytes(data)
    r = subprocess.run(
        ["sh", "-c", c.corrupt_newest(f"{tmp_path}/*.blk", how)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "10.blk"), "1024"]
    damaged = (tmp_path / "10.blk").read_bytes()
    if how == "truncate":
        assert damaged == blocks["10.blk"][:512]
    else:
        diff = [i for i, (a, b) in enumerate(zip(damaged, blocks["10.blk"], strict=True)) if a != b]
        assert diff == [512] and damaged[512] ^ blocks["10.blk"][512] == 0x10
    assert (tmp_path / "1.blk").read_bytes() == blocks["1.blk"] == (tmp_path / "2.blk").read_bytes()


def test_corrupt_refuses_nothing_to_damage_and_bad_input(tmp_path):
    from gauntlet.nemesis import commands as c

    r = subprocess.run(
        ["sh", "-c", c.corrupt_newest(f"{tmp_path}/*.blk", "truncate")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "no file matches" in r.stderr
    with pytest.raises(ValueError, match="truncate or bitflip"):
        c.corrupt_newest("/var/lib/nats/*.blk", "zero")
    with pytest.raises(ValueError, match="absolute glob"):
        c.corrupt_newest("relative/*.blk", "truncate")
