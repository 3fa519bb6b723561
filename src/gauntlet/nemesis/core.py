"""The nemesis: faults on hosts, each a context manager that undoes itself even when the test fails.

Every fault start and stop is written to the history, so checkers and the report can line client
operations up against what was done to the cluster. Faults run over the host's own connection (podman or
SSH, see :class:`~gauntlet.cluster.Host`); the one fault that differs per connection kind, ``crash``, goes
through :mod:`gauntlet.nemesis.backends`. Faults by name, as checks and schedules pick them:
:mod:`gauntlet.nemesis.catalogue`; partition shapes (grudges): :mod:`gauntlet.nemesis.grudge`.

Hosts heal themselves: every fault started on a host leaves its undo there and arms a dead-man timer (a
transient systemd unit ``gauntlet-heal-<fault id>``) that runs it after a bound -- ``fault_bound_s``, else
``$GAUNTLET_FAULT_BOUND_S``, else 300 s; 0 arms none -- unless the normal undo disarms it first. An undo that
finds its fault already undone (it outlived the bound) fails, naming why: the fault was not held to its end.
Hosts without systemd get no timer (logged); ``gauntlet heal`` still finds the undo they keep.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib import resources
from typing import Any, Protocol, TypeVar

from gauntlet.cluster import Cluster, Host
from gauntlet.errors import FaultError
from gauntlet.history import History
from gauntlet.nemesis import backends, commands, grudge
from gauntlet.nemesis.grudge import Grudge

log = logging.getLogger(__name__)
HostLike = Host | str
T = TypeVar("T")

BOUND_ENV = "GAUNTLET_FAULT_BOUND_S"
DEFAULT_FAULT_BOUND_S = 300.0
# How long heal waits for one host before it names that host and goes on to the next.
HEAL_TIMEOUT_S = 60.0


def resolve_fault_bound(value: float | None = None) -> float:
    """The dead-man bound in seconds: ``value``, else ``$GAUNTLET_FAULT_BOUND_S``, else 300; 0 arms no timer."""
    if value is None:
        raw = os.environ.get(BOUND_ENV, "").strip()
        if not raw:
            return DEFAULT_FAULT_BOUND_S
        try:
            value = float(raw)
        except ValueError:
            raise FaultError(f"{BOUND_ENV}={raw!r} is not a number of seconds (0 arms no timer)") from None
    if value < 0:
        raise FaultError(f"the fault bound must be 0 (no timer) or more seconds, not {value:g}")
    return value


class SwitchoverAPI(Protocol):
    """The one call a planned switchover needs of a Patroni REST client (e.g. ``clients.postgres.PatroniAPI``)."""

    def request(
        self, method: str, path: str, body: Any = None, auth: bool = False, timeout: float | None = None
    ) -> tuple[int, Any]: ...


# The free space a disk-full fault's tmpfs has above what the data directory uses, before the filler takes it:
# room for the copy to fit (tmpfs counts whole pages) and for the service to start.
DISK_HEADROOM_KB = 4096


class DiskSpace:
    """What a :meth:`Nemesis.disk_full` block holds: ``release()`` gives the space back (the filler is
    deleted and the tmpfs grown by 64 MiB; it stays mounted until the block ends), recorded in the history as a mark
    ``disk_full:release``."""

    def __init__(self, nemesis: Nemesis, host: Host, release_command: str, path: str) -> None:
        self._nemesis, self._host, self._command, self.path = nemesis, host, release_command, path
        self.released = False

    def release(self) -> None:
        """Delete the filler: writes under ``path`` succeed again. Once; a second call does nothing."""
        if self.released:
            return
        # growing the tmpfs is a remount: CAP_SYS_ADMIN, like the mount itself
        backends.backend_for(self._host).run_privileged(self._host, self._command, check=True)
        self.released = True
        self._nemesis.history.mark("disk_full:release", host=self._host.name, path=self.path)


@contextmanager
def _holding(fault: AbstractContextManager[None], held: T) -> Iterator[T]:
    with fault:
        yield held


class Nemesis:
    """Inject faults into a :class:`Cluster`, recording each into a :class:`History`."""

    def __init__(
        self, cluster: Cluster, history: History | None = None, fault_bound_s: float | None = None
    ) -> None:
        self.cluster = cluster
        self.history = history or History()
        # After this many seconds a host undoes a fault of ours by itself (its dead-man timer).
        self.fault_bound_s = resolve_fault_bound(fault_bound_s)
        # Undo callbacks of faults still active, newest last: heal() runs them in reverse.
        self._active: list[tuple[str, Callable[[], None]]] = []
        self._netem: dict[str, bool] = {}
        self._untimed: set[str] = set()  # hosts seen without systemd (warned once)

    # -- plumbing ----------------------------------------------------------------------------------------
    def _host(self, h: HostLike) -> Host:
        return h if isinstance(h, Host) else self.cluster[h]

    def _hosts(self, hs: Iterable[HostLike]) -> list[Host]:
        return [self._host(h) for h in hs]

    def _sh(self, host: Host, command: str) -> None:
        self.cluster.run(host, command, check=True)

    @contextmanager
    def _fault(
        self, name: str, start: Callable[[], None], undo: Callable[[], None], **detail: Any
    ) -> Iterator[None]:
        """Start a fault, record it, and guarantee its undo (at block exit, or by heal())."""
        self.history.fault(name, "start", **detail)
        try:
            start()
        except Exception as exc:
            self.history.fault(name, "stop", error=str(exc), **detail)
            try:
                undo()
            except Exception:  # the start failed half-way; undo what we can and report the start failure
                log.exception("undo of a failed %s start also failed", name)
            raise FaultError(f"{name} could not start: {exc}") from exc
        entry = (name, undo)
        self._active.append(entry)
        try:
            yield
        finally:
            if entry in self._active:
                self._active.remove(entry)
                try:
                    undo()
                finally:
                    self.history.fault(name, "stop", **detail)

    def _host_fault(
        self,
        name: str,
        plans: Sequence[tuple[Host, str, str]],
        privileged: bool = False,
        **detail: Any,
    ) -> AbstractContextManager[None]:
        """A fault made of shell commands, (host, start, undo) per host: before its start each host keeps the
        undo and arms its dead-man timer; the undo disarms the timer and runs it, on every host armed (the
        errors of all of them reported together). ``privileged``: both run with every privilege root has on
        the host (:meth:`backends.HostBackend.run_privileged`: mounts in a container)."""
        fault_id = f"{name}-{secrets.token_hex(4)}"
        bound = self.fault_bound_s
        armed: list[Host] = []

        def run(h: Host, command: str) -> Any:
            if privileged:
                return backends.backend_for(h).run_privileged(h, command, check=True)
            return self.cluster.run(h, command, check=True)

        def start() -> None:
            for h, start_cmd, undo_cmd in plans:
                armed.append(h)  # before the command: a start that fails half-way is undone here too
                # One round trip: the timer is armed, then the fault starts (only if the arming worked).
                both = f"{commands.arm(fault_id, undo_cmd, bound)} && {{ {start_cmd}\n}}"
                out = run(h, both)
                if commands.NO_TIMER in (out.stdout or "") and bound > 0 and h.name not in self._untimed:
                    self._untimed.add(h.name)
                    log.warning(
                        "%s has no systemd: its faults run without a dead-man timer (gauntlet heal undoes "
                        "them)",
                        h.name,
                    )

        def undo() -> None:
            errors = []
            for h in armed:
                try:
                    out = run(h, commands.disarm_and_undo(fault_id, bound))
                except Exception as exc:
                    errors.append(str(exc))
                    continue
                if commands.UNDONE_EARLY in (out.stdout or ""):
                    errors.append(
                        f"on {h.name}: fault {fault_id} was undone in part before its end: its dead-man timer "
                        f"fired (bound {bound:g} s, {BOUND_ENV}); this undo finished it"
                    )
            armed.clear()
            if errors:
                raise FaultError(f"{name} could not be undone: " + "; ".join(errors))

        return self._fault(name, start, undo, **detail)

    def heal(self) -> dict[str, str]:
        """Undo every fault still active (newest first), then remove every fault of ours from every host
        (:meth:`heal_hosts`). Raises :class:`FaultError` when an undo failed; returns the hosts that could not
        be healed (name -> why; a host that does not answer is named and the others are still healed)."""
        errors = []
        while self._active:
            name, undo = self._active.pop()
            try:
                undo()
            except Exception as exc:
                errors.append(f"{name}: {exc}")
            self.history.fault(name, "stop", healed=True)
        unhealed = self.heal_hosts()
        self.history.fault("heal", "stop")
        if errors:
            also = "; hosts not healed: " + "; ".join(f"{h}: {why}" for h, why in unhealed.items())
            raise FaultError("heal could not undo: " + "; ".join(errors) + (also if unhealed else ""))
        for h, why in unhealed.items():
            log.warning("heal could not heal %s: %s", h, why)
        return unhealed

    def heal_hosts(
        self, timeout: float = HEAL_TIMEOUT_S, say: Callable[[str, str], None] | None = None
    ) -> dict[str, str]:
        """Remove every fault of ours from every host (:func:`commands.heal_host`), whoever started it: our
        timers stopped, every undo left run, our chain and qdiscs removed. A host that fails or does not
        answer within ``timeout`` is named (name -> why) and the next one is healed. A container that is not
        running holds nothing of ours (its rules, /run and processes went with it) and is skipped. ``say``
        hears each host's outcome (name, "healed" / "not running" / "could not heal: why")."""
        unhealed: dict[str, str] = {}
        for h in self.cluster.hosts.values():
            outcome = "healed"
            try:
                if not backends.backend_for(h).reachable(h):
                    outcome = "not running: nothing of ours is in force there"
                else:
                    backend = backends.backend_for(h)
                    # Privileged: a disk fault's undo unmounts, which a plain exec in a container cannot.
                    r = backend.run_privileged(h, commands.heal_host(), timeout=timeout)
                    if r.rc == 124:
                        unhealed[h.name] = f"no answer within {timeout:g} s"
                    elif not r.ok:
                        lines = (r.stderr or r.stdout or "").strip().splitlines()
                        unhealed[h.name] = f"exit {r.rc}: {lines[-1] if lines else 'no output'}"
                    backend.restore_limits(h)  # limits a pressure fault wrote on the controller
            except Exception as exc:  # an unreachable host must not stop the others from being healed
                unhealed[h.name] = f"{type(exc).__name__}: {exc}"
            if h.name in unhealed:
                outcome = f"could not heal: {unhealed[h.name]}"
            if say:
                say(h.name, outcome)
        return unhealed

    @property
    def active(self) -> list[str]:
        """Names of faults currently in force."""
        return [n for n, _ in self._active]

    # -- process faults ------------------------------------------------------------------------------------
    def kill(self, host: HostLike, service: str) -> AbstractContextManager[None]:
        """SIGKILL a service's processes and keep it down; started again on exit."""
        h = self._host(host)
        start, undo = commands.kill_unit(service)
        return self._host_fault("kill", [(h, start, undo)], host=h.name, service=service)

    def pause(self, host: HostLike, service: str) -> AbstractContextManager[None]:
        """SIGSTOP a service's processes (a GC pause, a hung process); SIGCONT on exit."""
        h = self._host(host)
        start, undo = commands.pause_unit(service)
        return self._host_fault("pause", [(h, start, undo)], host=h.name, service=service)

    def restart(self, host: HostLike, service: str) -> AbstractContextManager[None]:
        """Restart a service (an instant fault: the restart is done when the block starts)."""
        h = self._host(host)
        return self._fault(
            "restart",
            lambda: self._sh(h, commands.restart_unit(service)),
            lambda: None,
            host=h.name,
            service=service,
        )

    def crash(self, host: HostLike) -> AbstractContextManager[None]:
        """Crash a whole host: every process dies at once, and comes back on exit. How depends on the host's
        connection (see :mod:`gauntlet.nemesis.backends`): container hosts are ``podman kill``ed and started
        again (systemd boots, same address); on SSH hosts all the host's cluster services are SIGKILLed at
        once and started again."""
        h = self._host(host)
        plan = backends.backend_for(h).crash(h)
        if plan.commands:  # SSH hosts: commands on the host itself, so it heals itself as well
            return self._host_fault("crash", [(h, *plan.commands)], host=h.name, how=plan.how)
        return self._fault("crash", plan.start, plan.undo, host=h.name, how=plan.how)

    def postgres_crash(self, host: HostLike) -> AbstractContextManager[None]:
        """SIGKILL PostgreSQL's postmaster while its manager (Patroni) lives on: the manager restarts it in
        place. An instant fault: nothing is undone at exit, the stop only marks the end of the window."""
        h = self._host(host)
        return self._fault(
            "postgres_crash", lambda: self._sh(h, commands.kill_postmaster()), lambda: None, host=h.name
        )

    def corrupt_file(self, host: HostLike, pattern: str, how: str) -> AbstractContextManager[None]:
        """Damage the newest data file matching the glob ``pattern`` on a host -- ``truncate``: cut to half its
        size, ``bitflip``: one bit of its middle byte flipped -- as Jepsen did to a stopped minority member of
        NATS JetStream. Stop the service first (e.g. inside :meth:`kill`) and start it after. An instant
        fault: the damage is the point and is not undone; the history marks which file and its old size."""
        h = self._host(host)
        try:
            command = commands.corrupt_newest(pattern, how)
        except ValueError as exc:
            raise FaultError(f"corrupt_file: {exc}") from None

        def start() -> None:
            damaged = h.run(command, check=True).stdout.strip()
            self.history.mark("corrupt_file:damaged", host=h.name, how=how, file=damaged)

        return self._fault("corrupt_file", start, lambda: None, host=h.name, pattern=pattern, how=how)

    def switchover(self, host: HostLike, api: SwitchoverAPI, candidate: str) -> AbstractContextManager[None]:
        """A planned Patroni switchover from the leader ``host`` to ``candidate`` through the REST API
        (``POST /switchover`` with credentials; ``api`` is the leader's). Nothing to undo: the new leader
        stays, the old one rejoins as a replica by itself."""
        h = self._host(host)

        def start() -> None:
            code, body = api.request(
                "POST", "/switchover", {"leader": h.name, "candidate": candidate}, auth=True, timeout=60
            )
            if code != 200:
                raise FaultError(f"POST /switchover answered {code}: {body}")

        return self._fault("switchover", start, lambda: None, host=h.name, leader=h.name, candidate=candidate)

    # -- resource faults: the clock, a full disk, CPU and memory ---------------------------------------------
    def _faketime(self, h: Host, name: str) -> str:
        lib: str = h.run(commands.find_faketime()).stdout.strip()
        if not lib:
            raise FaultError(
                f"{name}: libfaketime is not installed on {h.name}: keep libfaketime in "
                "common_fault_tool_packages (role common) and run the playbook, or apt-get install libfaketime"
            )
        return lib

    def clock_skew(self, host: HostLike, service: str, offset_s: float) -> AbstractContextManager[None]:
        """Run ``service`` with its clocks ``offset_s`` seconds off (negative: behind) from its restart to the
        end of the block, through libfaketime: a runtime drop-in of the unit
        (``/run/systemd/system/<unit>.d/gauntlet-clock.conf``) sets LD_PRELOAD and the offset file
        (``/run/gauntlet/clock-<unit>``), then the unit restarts. On exit the drop-in and the file go, and the
        unit restarts on the real clock. libfaketime fakes the clocks of dynamically linked programs only:
        the reference server (python3) and C servers see the offset; Go binaries (etcd) do not call libc for
        the time and ignore it. Measured under python3: time.time() and time.monotonic() both move by the
        offset (libfaketime fakes CLOCK_MONOTONIC too). Needs the libfaketime package on the host
        (``common_fault_tool_packages``); a missing one is a FaultError naming the fix."""
        h = self._host(host)
        try:
            s, u = commands.clock_offset(service, offset_s, self._faketime(h, "clock_skew"))
        except ValueError as exc:
            raise FaultError(f"clock_skew: {exc}") from None
        return self._host_fault("clock_skew", [(h, s, u)], host=h.name, service=service, offset_s=offset_s)

    def clock_jump(self, host: HostLike, service: str, jump_s: float) -> AbstractContextManager[None]:
        """Make the clocks of a running ``service`` jump by ``jump_s`` seconds (negative: back) without a
        restart: as :meth:`clock_skew` with no offset, then, once the unit is active again and its process
        has read the real time, the offset file is rewritten to ``jump_s`` (the process reads it again
        within a second). Measured under python3: time.time() and time.monotonic() both jump, backwards too
        (a monotonic clock that goes back: what a real one never does, and code that trusts it may not
        survive). Go binaries (etcd) ignore libfaketime. Undone as :meth:`clock_skew` is."""
        h = self._host(host)
        try:
            s, u = commands.clock_jump(service, jump_s, self._faketime(h, "clock_jump"))
        except ValueError as exc:
            raise FaultError(f"clock_jump: {exc}") from None
        return self._host_fault("clock_jump", [(h, s, u)], host=h.name, service=service, jump_s=jump_s)

    def jump_clock(self, host: HostLike, service: str, jump_s: float) -> None:
        """Inside a :meth:`clock_skew` block of the same ``service``: its clocks jump to ``jump_s`` seconds off
        the real time now (the offset file rewritten; the process reads it within a second), while the test
        holds what it needs in place -- :meth:`clock_jump` jumps as soon as the unit restarted, before its
        process holds anything. Measured under python3: a thread in a timed wait at the jump (an Event or
        lock timeout) wakes ``-jump_s`` seconds late. The block's undo restarts the unit on the real clock.
        Recorded as a mark."""
        h = self._host(host)
        unit = commands.unit_name(service)
        h.run(
            commands.write_file(commands.clock_file(unit), commands.faketime_offset(jump_s) + "\n"),
            check=True,
        )
        self.history.mark("clock_jump_now", host=h.name, service=service, jump_s=jump_s)

    def disk_full(
        self, host: HostLike, path: str, service: str, headroom_kb: int = DISK_HEADROOM_KB
    ) -> AbstractContextManager[DiskSpace]:
        """The disk under a member's data directory ``path`` fills up while ``service`` runs on it: the unit
        stops; a tmpfs of (what ``path`` uses + ``headroom_kb``) KiB is mounted on a staging directory under
        /run/gauntlet/; ``path`` is copied there (``cp -a``) and the copy bound over ``path``; the unit
        starts; a filler file fills the tmpfs until ENOSPC. The block gets a :class:`DiskSpace` whose
        ``release()`` deletes the filler and grows the tmpfs (space returns, the mount stays): a check can measure the service
        coming back between release and exit. On exit: the filler goes; the unit stops; the bind is unmounted
        (the real directory is back) and its contents replaced by the tmpfs copy (what the service wrote
        during the fault survives); the tmpfs is unmounted; the unit starts.

        Mounting needs CAP_SYS_ADMIN: container hosts run these commands with ``podman exec --privileged``,
        SSH hosts as root. The dead-man timer in a container has no CAP_SYS_ADMIN and cannot unmount: after
        the bound it only deletes the filler and starts the unit again (on the tmpfs); ``gauntlet heal`` (run
        on the controller, privileged) does the full undo, and so does the block's own exit, which then fails
        saying the fault was undone in part before its end. On SSH hosts the timer does the full undo. The
        tmpfs lives in RAM: keep data directories small. Files a service preallocated (etcd's WAL) take
        writes without new space and do not fail."""
        h = self._host(host)
        try:
            plan = commands.disk_full(path, service, secrets.token_hex(4), headroom_kb)
        except ValueError as exc:
            raise FaultError(str(exc)) from None
        fault = self._host_fault(
            "disk_full",
            [(h, plan.start, plan.undo)],
            privileged=True,
            host=h.name,
            path=path,
            service=service,
            headroom_kb=headroom_kb,
        )
        return _holding(fault, DiskSpace(self, h, plan.release, path))

    def pressure(
        self, host: HostLike, cpu: float | None = None, memory_mb: int | None = None
    ) -> AbstractContextManager[None]:
        """Hold a host to ``cpu`` CPUs (0.2: a fifth of one) and/or ``memory_mb`` MiB for the block. Container
        hosts: the container's own cgroup v1 limits (cpu.cfs_quota_us = cpu x cfs_period_us,
        memory.limit_in_bytes and memory.memsw.limit_in_bytes), written on the controller; the old values are
        read first, kept in the container (/run/gauntlet/faults/<tag>.limits, for ``gauntlet heal``: no
        dead-man timer can run on the controller) and written back exactly on exit. SSH hosts: a stress unit
        (``gauntlet-stress-<tag>``) with 2 x nproc busy loops when ``cpu`` is given and ``memory_mb`` MiB held
        resident, stopped on exit or by systemd after the fault bound (RuntimeMaxSec, its dead-man)."""
        h = self._host(host)
        if cpu is None and memory_mb is None:
            raise FaultError("pressure needs cpu= (CPUs, e.g. 0.2) or memory_mb= (MiB), or both")
        if memory_mb is not None and (not isinstance(memory_mb, int) or memory_mb <= 0):
            raise FaultError(f"pressure: memory_mb must be a positive number of MiB, not {memory_mb!r}")
        if cpu is not None:
            cpus = backends.nproc(h)
            if not 0 < cpu <= cpus:
                raise FaultError(f"pressure: cpu must be in (0, {cpus}] (the CPUs {h.name} has), not {cpu:g}")
        tag = secrets.token_hex(4)
        plan = backends.backend_for(h).pressure(h, cpu, memory_mb, tag, self.fault_bound_s)
        detail: dict[str, Any] = {"host": h.name, "cpu": cpu, "memory_mb": memory_mb, "how": plan.how}
        if plan.commands:  # SSH hosts: a unit on the host itself, which heals itself as well
            return self._host_fault("pressure", [(h, *plan.commands)], **detail)
        return self._fault("pressure", plan.start, plan.undo, **detail)

    # -- network faults ----------------------------------------------------------------------------------
    # Every rule names cluster peers' addresses only: the controller's own traffic is never matched (a host
    # reached with connection local is the controller itself, and is never cut).
    def _addresses(self, hosts: Iterable[Host]) -> list[str]:
        hosts = list(hosts)
        local = [h.name for h in hosts if getattr(h, "connection", "") == "local"]
        if local:
            raise FaultError(
                f"{', '.join(local)} is reached with connection local: it is the controller, whose traffic a "
                "fault never cuts"
            )
        return [h.address for h in hosts]

    def _peer_addresses(self, exclude: Iterable[Host]) -> list[str]:
        skip = {h.name for h in exclude}
        return self._addresses(h for h in self.cluster.hosts.values() if h.name not in skip)

    def partition(
        self, side_a: Iterable[HostLike], side_b: Iterable[HostLike]
    ) -> AbstractContextManager[None]:
        """Cut all traffic between two sets of hosts, both ways (iptables DROP on every host of both)."""
        return self._cut("partition", self._hosts(side_a), self._hosts(side_b))

    def isolate(self, host: HostLike) -> AbstractContextManager[None]:
        """Partition one host from every other host of the cluster (the controller can still reach it):
        Jepsen's ``:one``. Recorded as ``isolate``, with the same sides a partition records."""
        h = self._host(host)
        others = [o for o in self.cluster.hosts.values() if o.name != h.name]
        return self._cut("isolate", [h], others)

    def isolate_from_peers(
        self, host: HostLike, clients: Iterable[str] = ("haproxy",)
    ) -> AbstractContextManager[None]:
        """Cut one host off from every other host of the cluster except those of the ``clients`` groups (the
        load balancers its clients come through): its peers and the DCS lose it, its clients do not. The
        partition real networks produce, and the one that shows what a leader acknowledges alone."""
        h = self._host(host)
        keep = set(clients)
        others = [o for o in self.cluster.hosts.values() if o.name != h.name and not (o.groups & keep)]
        return self._cut("isolate_from_peers", [h], others)

    def _cut(self, name: str, a: list[Host], b: list[Host]) -> AbstractContextManager[None]:
        if not a or not b or {h.name for h in a} & {h.name for h in b}:
            raise FaultError(f"{name} needs two non-empty, disjoint sides")
        plans = [(h, *commands.drop_from(self._addresses(b))) for h in a]
        plans += [(h, *commands.drop_from(self._addresses(a))) for h in b]
        return self._host_fault(name, plans, side_a=[h.name for h in a], side_b=[h.name for h in b])

    def partition_grudge(
        self, cut: Grudge, name: str = "partition_grudge", **detail: Any
    ) -> AbstractContextManager[None]:
        """Apply a grudge (:mod:`gauntlet.nemesis.grudge`): every host named in it drops traffic to and from
        each peer it must not reach, both ways; every other pair, and the controller, still reach each other.
        Recorded as ``name`` with the grudge (sorted pairs) and ``detail``."""
        if not cut:
            raise FaultError(f"{name}: the grudge cuts nothing")
        nodes = sorted({n for p in cut for n in p})
        hosts = {n: self._host(n) for n in nodes}
        drops = grudge.drops(nodes, cut)
        plans = [(hosts[n], *commands.drop_from(self._addresses(hosts[p] for p in drops[n]))) for n in nodes]
        return self._host_fault(name, plans, grudge=[list(p) for p in sorted(cut)], **detail)

    def _members(self, members: Iterable[HostLike] | None) -> list[str]:
        """Host names of ``members`` in the order given (default: every host of the cluster, by name)."""
        if members is None:
            return list(self.cluster.hosts)
        return [self._host(m).name for m in members]

    def partition_majority(
        self,
        members: Iterable[HostLike] | None = None,
        seed: int | None = None,
        minority: Iterable[HostLike] | None = None,
    ) -> AbstractContextManager[None]:
        """Jepsen's ``:majority``: ``members`` (default: every host) split into a majority and a minority side
        (``(n - 1) // 2`` members, drawn with ``seed`` or named by ``minority``), cut from each other."""
        try:
            cut, big, small = grudge.split(
                self._members(members), seed, None if minority is None else self._members(minority)
            )
        except ValueError as exc:
            raise FaultError(f"partition_majority: {exc}") from None
        return self.partition_grudge(cut, "partition_majority", majority=big, minority=small, seed=seed)

    def partition_ring(
        self, members: Iterable[HostLike] | None = None, seed: int | None = None
    ) -> AbstractContextManager[None]:
        """A ring: each of ``members`` (default: every host), in the order given (shuffled by ``seed`` if one
        is given), reaches only its two neighbours; Jepsen's ``:majorities-ring`` on 5. At least 4 members."""
        order = self._members(members)
        if seed is not None:
            random.Random(seed).shuffle(order)
        try:
            cut = grudge.ring(order)
        except ValueError as exc:
            raise FaultError(f"partition_ring: {exc}") from None
        return self.partition_grudge(cut, "partition_ring", ring=order)

    def partition_bridge(
        self, members: Iterable[HostLike] | None = None, via: HostLike | None = None
    ) -> AbstractContextManager[None]:
        """Jepsen's ``bridge``: ``members`` (default: every host) cut in two halves joined by one member that
        reaches both (``via``, else the middle one of the order given)."""
        try:
            cut, middle = grudge.bridge(self._members(members), None if via is None else self._host(via).name)
        except ValueError as exc:
            raise FaultError(f"partition_bridge: {exc}") from None
        return self.partition_grudge(cut, "partition_bridge", bridge=middle)

    def loss(self, host: HostLike, pct: float) -> AbstractContextManager[None]:
        """Drop ``pct`` percent of packets between ``host`` and its peers (iptables statistic match; only
        packets to and from cluster peers)."""
        h = self._host(host)
        s, u = commands.loss_from(self._peer_addresses([h]), pct / 100.0)
        return self._host_fault("loss", [(h, s, u)], host=h.name, pct=pct)

    def bandwidth(self, host: HostLike, kbit: int) -> AbstractContextManager[None]:
        """Limit a host's egress bandwidth to its peers (an htb class of ours; other traffic is not limited,
        and a root qdisc that is not ours makes it refuse)."""
        h = self._host(host)
        s, u = commands.shape_bandwidth(self._peer_addresses([h]), kbit)
        return self._host_fault("bandwidth", [(h, s, u)], host=h.name, kbit=kbit)

    def has_netem(self, host: HostLike) -> bool:
        """Whether the host's kernel has the netem qdisc (asked once per host)."""
        h = self._host(host)
        if h.name not in self._netem:
            self._netem[h.name] = h.run(commands.has_netem()).ok
        return self._netem[h.name]

    def latency(self, host: HostLike, ms: int, jitter_ms: int = 0) -> AbstractContextManager[None]:
        """Delay a host's outgoing packets to its peers by ``ms`` (± ``jitter_ms``): netem under our htb root
        where the kernel has it, else an NFQUEUE delayer on the host; other traffic is not delayed. The history
        says which ran."""
        h = self._host(host)
        if self.has_netem(h):
            s, u = commands.netem_delay(self._peer_addresses([h]), ms, jitter_ms)
            mechanism = "netem"
        else:
            self._install_delayer(h)
            s, u = commands.nfqueue_delay(self._peer_addresses([h]), ms, jitter_ms)
            mechanism = "nfqueue"
        log.info("latency on %s: %d ms via %s", h.name, ms, mechanism)
        return self._host_fault(
            "latency",
            [(h, s, u)],
            host=h.name,
            ms=ms,
            jitter_ms=jitter_ms,
            mechanism=mechanism,
        )

    def _install_delayer(self, h: Host) -> None:
        script = resources.files("gauntlet.nemesis").joinpath("nfqueue_delay.py").read_text()
        self._sh(h, f"mkdir -p {commands.DELAYER_PATH.rsplit('/', 1)[0]}")
        h.put(commands.DELAYER_PATH, script, mode="0755")
