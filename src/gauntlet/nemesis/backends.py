"""What differs per connection kind: a whole-host crash (container hosts: the container itself; SSH hosts: the
host's cluster services through systemd), CPU and memory pressure (container hosts: the container's cgroup
limits, written on the controller; SSH hosts: a stress unit on the host), and how one command runs privileged
(container hosts: ``podman exec --privileged``, as the container itself only has NET_ADMIN; SSH hosts: the
normal connection, root through become). Everything else the nemesis does runs as shell commands over the
host's own connection and needs no backend."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gauntlet.cluster import DEFAULT_COMMAND_TIMEOUT, CommandFailed, CommandResult, Host
from gauntlet.errors import FaultError
from gauntlet.nemesis import commands

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """A fault ready to run on one host: start it, undo it, and how (for the history)."""

    start: Callable[[], None]
    undo: Callable[[], None]
    how: str
    # (start, undo) as shell commands on the host itself, when the fault is made of them: the nemesis then
    # leaves the undo on the host with a dead-man timer (a podman kill cannot: the host is gone).
    commands: tuple[str, str] | None = None


class HostBackend(Protocol):
    """What differs between container hosts and real (SSH) hosts."""

    def crash(self, host: Host) -> Plan:
        """Every process of the host dies at once; the undo brings the host's cluster services back."""
        ...

    def reachable(self, host: Host) -> bool:
        """Whether commands can run on the host now (a crashed container cannot run any)."""
        ...

    def run_privileged(
        self, host: Host, command: str, check: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """Run one shell command on the host with every privilege root has there (mounts: the disk fault)."""
        ...

    def pressure(
        self, host: Host, cpu: float | None, memory_mb: int | None, tag: str, bound_s: float
    ) -> Plan:
        """Hold the host's cluster services to ``cpu`` CPUs and/or ``memory_mb`` MiB; the undo lifts it."""
        ...

    def restore_limits(self, host: Host) -> None:
        """Give back every limit a pressure fault of ours left in force on the host (for ``gauntlet heal``)."""
        ...


class ContainerBackend:
    """Container hosts: ``podman kill`` the container, ``podman start`` it again with its old addresses."""

    def crash(self, host: Host) -> Plan:
        addresses: dict[str, tuple[str, str]] = {}

        def kill() -> None:
            addresses.update(self.addresses(host))
            self._podman("kill", host)

        return Plan(kill, lambda: self.start(host, addresses), "podman kill")

    def reachable(self, host: Host) -> bool:
        r = subprocess.run(
            ["podman", "inspect", "-f", "{{.State.Running}}", host.container],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return r.stdout.strip() == "true"

    @staticmethod
    def _podman(verb: str, host: Host) -> None:
        r = subprocess.run(["podman", verb, host.container], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise FaultError(f"podman {verb} {host.container}: {r.stderr.strip()}")

    @staticmethod
    def addresses(host: Host) -> dict[str, tuple[str, str]]:
        """The container's addresses on each of its networks (network name -> (IPv4, MAC))."""
        r = subprocess.run(
            ["podman", "inspect", "-f", "{{json .NetworkSettings.Networks}}", host.container],
            capture_output=True,
            text=True,
            timeout=30,
        )
        try:
            networks = json.loads(r.stdout or "{}") or {}
        except ValueError:
            return {}
        return {
            name: (n["IPAddress"], n.get("MacAddress") or "")
            for name, n in networks.items()
            if n.get("IPAddress")
        }

    def start(self, host: Host, addresses: dict[str, tuple[str, str]] | None = None) -> None:
        """Start a killed container again, on its old addresses, and wait for its systemd to be up."""
        # A killed container may get another address from podman's IPAM when it starts again (seen here:
        # 10.89.2.3 -> .5), which breaks certificates and peer lists; re-attach it with its old address --
        # and its old MAC: with a new one, the peers' and the controller's ARP entries for the old one went
        # stale and the restarted member stayed unreachable for over 90 s (seen here after a crash of a
        # raftkv follower: host ARP entry FAILED until flushed).
        for network, (ip, mac) in (addresses or {}).items():
            subprocess.run(
                ["podman", "network", "disconnect", network, host.container], capture_output=True, timeout=60
            )
            mac_args = ["--mac-address", mac] if mac else []
            r = subprocess.run(
                ["podman", "network", "connect", "--ip", ip, *mac_args, network, host.container],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if r.returncode != 0:
                log.warning(
                    "could not re-attach %s to %s with %s: %s", host.name, network, ip, r.stderr.strip()
                )
        self._podman("start", host)
        subprocess.run(
            ["podman", "exec", host.container, "timeout", "60", "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            timeout=90,
        )

    def run_privileged(
        self, host: Host, command: str, check: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """``podman exec --privileged``: the container runs with NET_ADMIN only, so a mount fails in a plain
        exec ("permission denied") and works in a privileged one (measured on the gauntlet image). Bounded as
        :meth:`Host.run` is (coreutils ``timeout`` inside, and the exec itself on the controller)."""
        limit = DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout
        cmd = f"timeout {max(1, int(limit))} sh -c {shlex.quote(command)}" if limit > 0 else command
        try:
            r = subprocess.run(
                ["podman", "exec", "--privileged", host.container, "sh", "-c", cmd],
                capture_output=True,
                text=True,
                timeout=limit + 30 if limit > 0 else None,
            )
            result = CommandResult(host.name, cmd, r.returncode, r.stdout, r.stderr)
        except subprocess.TimeoutExpired:
            result = CommandResult(host.name, cmd, 124, "", f"podman exec gave no answer within {limit:g} s")
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    # -- CPU and memory pressure: the container's own cgroup (v1), written on the controller -------------------
    # Measured on this controller (cgroup v1): `podman update --cpus 0.2` applies a quota but nothing podman
    # offers lifts it again (--cpus 0, --cpu-quota -1, --memory -1/0/max are refused or ignored), and inside
    # the container /sys/fs/cgroup is read-only even privileged. Writing the cgroup files does both; a python
    # busy loop in the container got 0.20 CPU with quota 20000 / period 100000. The old values are kept in
    # the container (/run/gauntlet/faults/<tag>.limits) so that `gauntlet heal` gives them back: no dead-man
    # timer can run on the controller.
    def cgroup_dirs(self, host: Host) -> tuple[Path, Path]:
        """The container's cpu and memory cgroup directories (from podman's own CgroupPath, not a guess)."""
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            raise FaultError(
                f"pressure on {host.name}: this controller runs cgroup v2, which the pressure fault does not "
                "support yet (it writes cgroup v1 cpu.cfs_quota_us and memory.limit_in_bytes)"
            )
        r = subprocess.run(
            ["podman", "inspect", "-f", "{{.State.CgroupPath}}", host.container],
            capture_output=True,
            text=True,
            timeout=30,
        )
        rel = r.stdout.strip().lstrip("/")
        if r.returncode != 0 or not rel or ".." in rel.split("/"):
            raise FaultError(
                f"pressure on {host.name}: no cgroup path from podman inspect: {r.stderr.strip()}"
            )
        return CGROUP_ROOT / "cpu" / rel, CGROUP_ROOT / "memory" / rel

    def pressure(
        self, host: Host, cpu: float | None, memory_mb: int | None, tag: str, bound_s: float
    ) -> Plan:
        record = f"{commands.STATE_DIR}/{tag}{LIMITS_SUFFIX}"
        cpu_dir, mem_dir = self.cgroup_dirs(host)
        wanted: dict[str, int] = {}
        if cpu is not None:
            period = int(_read(cpu_dir / "cpu.cfs_period_us"))
            wanted["cpu.cfs_quota_us"] = max(1000, round(cpu * period))  # the kernel's least quota: 1 ms
        if memory_mb is not None:
            wanted["memory.limit_in_bytes"] = memory_mb << 20
            if (mem_dir / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: no escape to swap
                wanted["memory.memsw.limit_in_bytes"] = memory_mb << 20
        dirs = {"cpu.cfs_quota_us": cpu_dir}
        dirs.update({k: mem_dir for k in wanted if k.startswith("memory.")})

        def start() -> None:
            old = {k: _read(dirs[k] / k) for k in wanted}
            body = json.dumps({"written_ns": time.time_ns(), "old": old})
            host.run(f"mkdir -p {commands.STATE_DIR} && printf %s {shlex.quote(body)} > {record}", check=True)
            _write_limits(cpu_dir, mem_dir, {k: str(v) for k, v in wanted.items()})

        def undo() -> None:
            got = host.run(f"cat {record} 2>/dev/null", check=False)
            if not got.ok or not got.stdout.strip():
                return  # never written (the start failed before), or gauntlet heal gave the limits back
            _write_limits(cpu_dir, mem_dir, _old_values(host, got.stdout))
            host.run(f"rm -f {record}", check=True)

        how = " ".join(f"{k}={v}" for k, v in wanted.items())
        return Plan(start, undo, f"cgroup {how}")

    def restore_limits(self, host: Host) -> None:
        """Every record of ours in the container, newest first: its old limits written back, then removed. Only
        the files a pressure fault writes, in the container's own cgroup, are ever written."""
        r = host.run(
            f'for f in {commands.STATE_DIR}/*{LIMITS_SUFFIX}; do [ -f "$f" ] && echo "$f" && cat "$f" '
            "&& echo; done; true",
            check=True,
        )
        lines = [line for line in r.stdout.splitlines() if line.strip()]
        records = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
        if not records:
            return
        cpu_dir, mem_dir = self.cgroup_dirs(host)
        for path, body in sorted(records, key=lambda rec: -int(json.loads(rec[1]).get("written_ns", 0))):
            _write_limits(cpu_dir, mem_dir, _old_values(host, body))
            host.run(f"rm -f {shlex.quote(path)}", check=True)


# The cgroup v1 hierarchy on the controller (tests point it elsewhere).
CGROUP_ROOT = Path("/sys/fs/cgroup")
LIMITS_SUFFIX = ".limits"
# The cgroup files a pressure fault writes: a record naming any other is refused.
LIMIT_FILES = ("cpu.cfs_quota_us", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
# cgroup v1 reads "no memory limit" as this page-aligned LONG_MAX; written back as -1.
UNLIMITED_BYTES = 1 << 62


def _read(path: Path) -> str:
    return path.read_text().strip()


def _old_values(host: Host, body: str) -> dict[str, str]:
    try:
        old = json.loads(body)["old"]
        if not isinstance(old, dict) or not set(old) <= set(LIMIT_FILES):
            raise ValueError(sorted(old))
        return {k: str(int(v)) for k, v in old.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise FaultError(
            f"{host.name}: a pressure record of ours is unreadable ({exc}): {body[:200]}"
        ) from None


def _limit(value: str) -> str:
    return "-1" if int(value) >= UNLIMITED_BYTES else value


def _write_limits(cpu_dir: Path, mem_dir: Path, values: dict[str, str]) -> None:
    """Write cgroup v1 limits. Memory: the kernel keeps limit <= memsw (memory + swap) limit, so a lower
    limit is written before its memsw limit, a higher one after (lifting a limit: memsw -1 first)."""
    if "cpu.cfs_quota_us" in values:
        (cpu_dir / "cpu.cfs_quota_us").write_text(_limit(values["cpu.cfs_quota_us"]))
    limit, memsw = values.get("memory.limit_in_bytes"), values.get("memory.memsw.limit_in_bytes")
    order = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    if limit is not None and int(limit) > int(_read(mem_dir / "memory.limit_in_bytes")):
        order.reverse()
    for name in order:
        value = limit if name == "memory.limit_in_bytes" else memsw
        if value is not None:
            (mem_dir / name).write_text(_limit(value))


class SshBackend:
    """Real hosts: SIGKILL every cluster service of the host at once (the controller's SSH stays up), start
    them again on undo. The services come from the host's groups or ``gauntlet_services``."""

    def crash(self, host: Host) -> Plan:
        units = host.services
        if not units:
            raise FaultError(
                f"crash({host.name}): no services known for it; set gauntlet_services in the inventory"
            )
        kills = "; ".join(commands.kill_unit(u)[0] for u in units)
        starts = "; ".join(commands.kill_unit(u)[1] for u in units)
        return Plan(_sh(host, kills), _sh(host, starts), "SIGKILL " + " ".join(units), (kills, starts))

    def reachable(self, host: Host) -> bool:
        return True

    def run_privileged(
        self, host: Host, command: str, check: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """The normal connection: commands on SSH hosts already run as root (become)."""
        return host.run(command, check=check, timeout=timeout)

    def pressure(
        self, host: Host, cpu: float | None, memory_mb: int | None, tag: str, bound_s: float
    ) -> Plan:
        """A stress unit on the host (:func:`commands.stress`): with ``cpu``, twice as many busy loops as the
        host has CPUs (``cpu`` itself only says CPU pressure is wanted: the loops compete with the services at
        equal weight, they do not cap them); with ``memory_mb``, that much memory held resident."""
        hogs = 2 * nproc(host) if cpu is not None else 0
        start, undo = commands.stress(tag, hogs, memory_mb or 0, bound_s)
        how = f"stress unit {commands.STRESS_UNIT_PREFIX}{tag}: {hogs} busy loops, {memory_mb or 0} MiB held"
        return Plan(_sh(host, start), _sh(host, undo), how, (start, undo))

    def restore_limits(self, host: Host) -> None:
        """Nothing: a stress unit is stopped by the host's own heal (its undo script, RuntimeMaxSec)."""


def nproc(host: Host) -> int:
    """How many CPUs the host has (``nproc`` there)."""
    out = host.run("nproc", check=True).stdout.strip()
    try:
        return int(out)
    except ValueError:
        raise FaultError(f"{host.name}: nproc printed {out!r}") from None


def _sh(host: Host, command: str) -> Callable[[], None]:
    def run() -> None:
        host.run(command, check=True)

    return run


def backend_for(host: Host) -> HostBackend:
    """The backend of the host's connection kind (chosen from the inventory, never by the test)."""
    return ContainerBackend() if host.connection == "podman" else SshBackend()
