"""The nemesis: faults on hosts, each a context manager that undoes itself even when the test fails.

Every fault start and stop is written to the history, so checkers and the report can line client
operations up against what was done to the cluster. Faults run over the host's own connection (podman or
SSH, see :class:`~gauntlet.cluster.Host`); the one fault that differs per connection kind, ``crash``, goes
through :mod:`gauntlet.nemesis.backends`. Faults by name, as checks and schedules pick them:
:mod:`gauntlet.nemesis.catalogue`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib import resources
from typing import Any, Protocol

from gauntlet.cluster import Cluster, Host
from gauntlet.errors import FaultError
from gauntlet.history import History
from gauntlet.nemesis import backends, commands

log = logging.getLogger(__name__)
HostLike = Host | str


class SwitchoverAPI(Protocol):
    """The one call a planned switchover needs of a Patroni REST client (e.g. ``clients.postgres.PatroniAPI``)."""

    def request(
        self, method: str, path: str, body: Any = None, auth: bool = False, timeout: float | None = None
    ) -> tuple[int, Any]: ...


class Nemesis:
    """Inject faults into a :class:`Cluster`, recording each into a :class:`History`."""

    def __init__(self, cluster: Cluster, history: History | None = None) -> None:
        self.cluster = cluster
        self.history = history or History()
        # Undo callbacks of faults still active, newest last: heal() runs them in reverse.
        self._active: list[tuple[str, Callable[[], None]]] = []
        self._netem: dict[str, bool] = {}

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

    def heal(self) -> None:
        """Undo every fault still active (newest first), then flush our network rules on every host."""
        errors = []
        while self._active:
            name, undo = self._active.pop()
            try:
                undo()
            except Exception as exc:
                errors.append(f"{name}: {exc}")
            self.history.fault(name, "stop", healed=True)
        for h in self.cluster.hosts.values():
            if not backends.backend_for(h).reachable(h):
                continue
            h.run(commands.flush())
        self.history.fault("heal", "stop")
        if errors:
            raise FaultError("heal could not undo: " + "; ".join(errors))

    @property
    def active(self) -> list[str]:
        """Names of faults currently in force."""
        return [n for n, _ in self._active]

    # -- process faults ------------------------------------------------------------------------------------
    def kill(self, host: HostLike, service: str) -> AbstractContextManager[None]:
        """SIGKILL a service's processes and keep it down; started again on exit."""
        h = self._host(host)
        start, undo = commands.kill_unit(service)
        return self._fault(
            "kill", lambda: self._sh(h, start), lambda: self._sh(h, undo), host=h.name, service=service
        )

    def pause(self, host: HostLike, service: str) -> AbstractContextManager[None]:
        """SIGSTOP a service's processes (a GC pause, a hung process); SIGCONT on exit."""
        h = self._host(host)
        start, undo = commands.pause_unit(service)
        return self._fault(
            "pause", lambda: self._sh(h, start), lambda: self._sh(h, undo), host=h.name, service=service
        )

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
        return self._fault("crash", plan.start, plan.undo, host=h.name, how=plan.how)

    def postgres_crash(self, host: HostLike) -> AbstractContextManager[None]:
        """SIGKILL PostgreSQL's postmaster while its manager (Patroni) lives on: the manager restarts it in
        place. An instant fault: nothing is undone at exit, the stop only marks the end of the window."""
        h = self._host(host)
        return self._fault(
            "postgres_crash", lambda: self._sh(h, commands.kill_postmaster()), lambda: None, host=h.name
        )

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

    # -- network faults ----------------------------------------------------------------------------------
    def _peer_addresses(self, exclude: Iterable[Host]) -> list[str]:
        skip = {h.name for h in exclude}
        return [h.address for h in self.cluster.hosts.values() if h.name not in skip]

    def partition(
        self, side_a: Iterable[HostLike], side_b: Iterable[HostLike]
    ) -> AbstractContextManager[None]:
        """Cut all traffic between two sets of hosts, both ways (iptables DROP on every host of both)."""
        return self._cut("partition", self._hosts(side_a), self._hosts(side_b))

    def isolate(self, host: HostLike) -> AbstractContextManager[None]:
        """Partition one host from every other host of the cluster (the controller can still reach it).
        Recorded as ``isolate``, with the same sides a partition records."""
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
        plans = [(h, commands.drop_from(o.address for o in b)) for h in a]
        plans += [(h, commands.drop_from(o.address for o in a)) for h in b]

        def start() -> None:
            for h, (s, _) in plans:
                self._sh(h, s)

        def undo() -> None:
            for h, (_, u) in plans:
                self._sh(h, u)

        return self._fault(name, start, undo, side_a=[h.name for h in a], side_b=[h.name for h in b])

    def loss(self, host: HostLike, pct: float) -> AbstractContextManager[None]:
        """Drop ``pct`` percent of packets between ``host`` and its peers (iptables statistic match)."""
        h = self._host(host)
        s, u = commands.loss_from(self._peer_addresses([h]), pct / 100.0)
        return self._fault("loss", lambda: self._sh(h, s), lambda: self._sh(h, u), host=h.name, pct=pct)

    def bandwidth(self, host: HostLike, kbit: int) -> AbstractContextManager[None]:
        """Limit a host's egress bandwidth (tbf qdisc)."""
        h = self._host(host)
        s, u = commands.tbf_bandwidth(kbit)
        return self._fault(
            "bandwidth", lambda: self._sh(h, s), lambda: self._sh(h, u), host=h.name, kbit=kbit
        )

    def has_netem(self, host: HostLike) -> bool:
        """Whether the host's kernel has the netem qdisc (asked once per host)."""
        h = self._host(host)
        if h.name not in self._netem:
            self._netem[h.name] = h.run(commands.has_netem()).ok
        return self._netem[h.name]

    def latency(self, host: HostLike, ms: int, jitter_ms: int = 0) -> AbstractContextManager[None]:
        """Delay a host's outgoing packets by ``ms`` (± ``jitter_ms``): netem where the kernel has it, else
        an NFQUEUE delayer on the host (only packets to cluster peers). The history says which ran."""
        h = self._host(host)
        if self.has_netem(h):
            s, u = commands.netem_delay(ms, jitter_ms)
            mechanism = "netem"
        else:
            self._install_delayer(h)
            s, u = commands.nfqueue_delay(self._peer_addresses([h]), ms, jitter_ms)
            mechanism = "nfqueue"
        log.info("latency on %s: %d ms via %s", h.name, ms, mechanism)
        return self._fault(
            "latency",
            lambda: self._sh(h, s),
            lambda: self._sh(h, u),
            host=h.name,
            ms=ms,
            jitter_ms=jitter_ms,
            mechanism=mechanism,
        )

    def _install_delayer(self, h: Host) -> None:
        script = resources.files("gauntlet.nemesis").joinpath("nfqueue_delay.py").read_text()
        self._sh(h, f"mkdir -p {commands.DELAYER_PATH.rsplit('/', 1)[0]}")
        h.put(commands.DELAYER_PATH, script, mode="0755")
