"""Every fault by name: how to apply it (a context manager that undoes it), the name the history records it
under, and which hosts it can target. Parametrized fault checks and randomized schedules pick faults from
here by name, so a new fault kind is one new entry (and one :class:`~gauntlet.nemesis.core.Nemesis` method).

    fault = catalogue.get("isolate")
    with fault.apply(nemesis, leader):
        start = fault_start_op(history, fault.recorded_as)

A schedule passes one set of options (``service=``, ``ms=``…) for all its faults; each fault takes the ones it
uses and ignores the others. An option no fault knows is an error.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from gauntlet.cluster import Cluster, Host
from gauntlet.errors import FaultError
from gauntlet.nemesis.core import HostLike, Nemesis

# The Patroni members' inventory group (the postgres_crash and switchover faults act on Patroni only).
PATRONI_GROUP = "postgres"

Apply = Callable[..., AbstractContextManager[Any]]


@dataclass(frozen=True)
class Fault:
    """One fault kind."""

    name: str
    recorded_as: str  # ``f`` of its history entries: ``<recorded_as>:start`` / ``:stop``
    run: Apply  # (nemesis, target, **options it takes) -> context manager
    description: str
    takes: tuple[str, ...] = ()  # options it uses; those without a default are required
    defaults: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()  # it can target hosts of these groups only; () = any host
    # While held, the target is out of the cluster (down, frozen or cut off): a leader there loses its lead.
    outage: bool = False

    def apply(self, nemesis: Nemesis, target: HostLike, **options: Any) -> AbstractContextManager[Any]:
        """The fault on ``target`` as a context manager: started on entry, undone on exit (or by heal)."""
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"fault options {sorted(unknown)} unknown; faults take {sorted(OPTIONS)}")
        given = {**self.defaults, **{k: v for k, v in options.items() if k in self.takes}}
        missing = [k for k in self.takes if k not in given]
        if missing:
            raise TypeError(f"fault {self.name!r} needs {', '.join(missing)}")
        return self.run(nemesis, target, **given)

    def can_target(self, host: Host) -> bool:
        """Whether this fault applies to ``host`` (by its groups)."""
        return not self.groups or bool(set(self.groups) & host.groups)

    def applies_to(self, cluster: Cluster) -> bool:
        """Whether the cluster has any host this fault can target."""
        return any(self.can_target(h) for h in cluster.hosts.values())


class UnknownFault(KeyError):
    """A fault name the catalogue does not know; the message names the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def _others(nemesis: Nemesis, target: HostLike) -> list[HostLike]:
    name = target.name if isinstance(target, Host) else target
    return [other for other in nemesis.cluster.hosts if other != name]


def _partition(nemesis: Nemesis, target: HostLike, side_b: Iterable[HostLike] | None = None) -> Any:
    return nemesis.partition([target], side_b if side_b is not None else _others(nemesis, target))


def _shape_members(nemesis: Nemesis, target: HostLike, members: Iterable[HostLike] | None) -> list[str]:
    """The names of a shape's members (default: every host), which must hold the target."""
    names = [m.name if isinstance(m, Host) else m for m in members] if members is not None else None
    names = names if names is not None else list(nemesis.cluster.hosts)
    name = target.name if isinstance(target, Host) else target
    if name not in names:
        raise FaultError(f"the target {name} is not one of the members {', '.join(names)}")
    return names


def _majority(
    nemesis: Nemesis, target: HostLike, members: Iterable[HostLike] | None, seed: int | None
) -> Any:
    """The target on the minority side, with the rest of that side drawn by ``seed``."""
    names = _shape_members(nemesis, target, members)
    name = target.name if isinstance(target, Host) else target
    others = sorted(n for n in names if n != name)
    drawn = random.Random(seed).sample(others, max(0, (len(names) - 1) // 2 - 1))
    return nemesis.partition_majority(names, seed, minority=[name, *drawn])


def _ring(nemesis: Nemesis, target: HostLike, members: Iterable[HostLike] | None, seed: int | None) -> Any:
    return nemesis.partition_ring(_shape_members(nemesis, target, members), seed)


def _bridge(nemesis: Nemesis, target: HostLike, members: Iterable[HostLike] | None) -> Any:
    return nemesis.partition_bridge(_shape_members(nemesis, target, members), via=target)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault(
            "kill",
            "kill",
            lambda n, t, service: n.kill(t, service),
            "SIGKILL a service's processes and keep it down; started again on exit",
            takes=("service",),
            outage=True,
        ),
        Fault(
            "crash",
            "crash",
            lambda n, t: n.crash(t),
            "every process of the host dies at once (podman kill / SIGKILL all its services); back on exit",
            outage=True,
        ),
        Fault(
            "pause",
            "pause",
            lambda n, t, service: n.pause(t, service),
            "SIGSTOP a service's processes (a hung process); SIGCONT on exit",
            takes=("service",),
            outage=True,
        ),
        Fault(
            "restart",
            "restart",
            lambda n, t, service: n.restart(t, service),
            "restart a service (instant)",
            takes=("service",),
        ),
        Fault(
            "isolate",
            "isolate",
            lambda n, t: n.isolate(t),
            "cut the host off from every other host of the cluster, both ways; healed on exit",
            outage=True,
        ),
        Fault(
            "isolate_from_peers",
            "isolate_from_peers",
            lambda n, t: n.isolate_from_peers(t),
            "cut the host off from its peers and the DCS while its clients still reach it through the "
            "load balancers (group haproxy); healed on exit",
            outage=True,
        ),
        Fault(
            "partition",
            "partition",
            _partition,
            "cut the target (side a) off from side_b (default: every other host), both ways",
            takes=("side_b",),
            defaults={"side_b": None},
        ),
        Fault(
            "partition_majority",
            "partition_majority",
            _majority,
            "Jepsen's :majority: the members (default: every host) split into a majority side and a minority "
            "side holding the target (the rest of it drawn by seed), cut from each other; healed on exit",
            takes=("members", "seed"),
            defaults={"members": None, "seed": None},
        ),
        Fault(
            "partition_ring",
            "partition_ring",
            _ring,
            "a ring of the members (default: every host; order shuffled by seed): each reaches only its two "
            "neighbours (Jepsen's :majorities-ring on 5); at least 4 members; healed on exit",
            takes=("members", "seed"),
            defaults={"members": None, "seed": None},
        ),
        Fault(
            "partition_bridge",
            "partition_bridge",
            _bridge,
            "Jepsen's bridge: the members (default: every host) cut in two halves joined by the target, "
            "which reaches both; healed on exit",
            takes=("members",),
            defaults={"members": None},
        ),
        Fault(
            "latency",
            "latency",
            lambda n, t, ms, jitter_ms: n.latency(t, ms, jitter_ms),
            "delay the host's packets to its peers by ms (± jitter_ms): netem under our htb root, or the "
            "NFQUEUE delayer; other traffic is not delayed",
            takes=("ms", "jitter_ms"),
            defaults={"ms": 200, "jitter_ms": 0},
        ),
        Fault(
            "loss",
            "loss",
            lambda n, t, pct: n.loss(t, pct),
            "drop pct percent of the packets between the host and its peers",
            takes=("pct",),
            defaults={"pct": 30.0},
        ),
        Fault(
            "bandwidth",
            "bandwidth",
            lambda n, t, kbit: n.bandwidth(t, kbit),
            "limit the host's egress to its peers to kbit kbit/s (an htb class of ours; other traffic is "
            "not limited)",
            takes=("kbit",),
            defaults={"kbit": 256},
        ),
        Fault(
            "clock_skew",
            "clock_skew",
            lambda n, t, service, offset_s: n.clock_skew(t, service, offset_s),
            "restart a service with its clocks offset_s seconds off (libfaketime: dynamically linked programs "
            "only, not Go binaries such as etcd); restarted on the real clock on exit",
            takes=("service", "offset_s"),
            defaults={"offset_s": 60.0},
        ),
        Fault(
            "clock_jump",
            "clock_jump",
            lambda n, t, service, jump_s: n.clock_jump(t, service, jump_s),
            "make a running service's wall and monotonic clocks jump by jump_s seconds (libfaketime, after a "
            "restart under it; not Go binaries); restarted on the real clock on exit",
            takes=("service", "jump_s"),
            defaults={"jump_s": 60.0},
        ),
        Fault(
            "disk_full",
            "disk_full",
            lambda n, t, path, service, headroom_kb: n.disk_full(t, path, service, headroom_kb),
            "the service's data directory path runs out of space (a filled tmpfs copy bound over it; the block "
            "gets release()); the data written meanwhile is copied back on exit",
            takes=("path", "service", "headroom_kb"),
            defaults={"headroom_kb": 4096},
        ),
        Fault(
            "pressure",
            "pressure",
            lambda n, t, cpu, memory_mb: n.pressure(t, cpu, memory_mb),
            "hold the host to cpu CPUs and/or memory_mb MiB (container: its cgroup limits; SSH host: a stress "
            "unit); lifted on exit",
            takes=("cpu", "memory_mb"),
            defaults={"cpu": 0.2, "memory_mb": None},
        ),
        Fault(
            "postgres_crash",
            "postgres_crash",
            lambda n, t: n.postgres_crash(t),
            "SIGKILL PostgreSQL's postmaster while Patroni lives: restarted in place (instant)",
            groups=(PATRONI_GROUP,),
        ),
        Fault(
            "switchover",
            "switchover",
            lambda n, t, api, candidate: n.switchover(t, api, candidate),
            "planned Patroni switchover from the leader (target) to candidate via the leader's REST api",
            takes=("api", "candidate"),
            groups=(PATRONI_GROUP,),
        ),
    ]
}

OPTIONS = frozenset(o for f in FAULTS.values() for o in f.takes)


def get(name: str) -> Fault:
    """The fault called ``name``; :class:`UnknownFault` (naming the known ones) if there is none."""
    try:
        return FAULTS[name]
    except KeyError:
        raise UnknownFault(
            f"unknown fault {name!r}; the catalogue has: {', '.join(sorted(FAULTS))}"
        ) from None


def names(*, outage: bool | None = None, cluster: Cluster | None = None) -> list[str]:
    """Fault names in catalogue order: all, or those that are (not) outages, or those that apply to
    ``cluster``."""
    return [
        f.name
        for f in FAULTS.values()
        if (outage is None or f.outage == outage) and (cluster is None or f.applies_to(cluster))
    ]
