"""The nemesis: faults on hosts, each a context manager that undoes itself even when the test fails.

Every fault start and stop is written to the history, so checkers and the report can line client
operations up against what was done to the cluster. Faults run over the host's own connection (podman or
SSH, see :class:`~gauntlet.cluster.Host`); the only podman-specific faults are ``crash`` and
``pause_host`` on container hosts, which act on the container itself.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from gauntlet.cluster import Cluster, Host
from gauntlet.errors import FaultError
from gauntlet.history import History
from gauntlet.nemesis import commands

log = logging.getLogger(__name__)
HostLike = Host | str


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
            if h.connection == "podman" and not self._container_running(h):
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
    def kill(self, host: HostLike, service: str) -> Any:
        """SIGKILL a service's processes and keep it down; started again on exit."""
        h = self._host(host)
        start, undo = commands.kill_unit(service)
        return self._fault(
            "kill", lambda: self._sh(h, start), lambda: self._sh(h, undo), host=h.name, service=service
        )

    def pause(self, host: HostLike, service: str) -> Any:
        """SIGSTOP a service's processes (a GC pause, a hung process); SIGCONT on exit."""
        h = self._host(host)
        start, undo = commands.pause_unit(service)
        return self._fault(
            "pause", lambda: self._sh(h, start), lambda: self._sh(h, undo), host=h.name, service=service
        )

    @contextmanager
    def restart(self, host: HostLike, service: str) -> Iterator[None]:
        """Restart a service (recorded as an instant fault)."""
        h = self._host(host)
        self.history.fault("restart", "start", host=h.name, service=service)
        try:
            self._sh(h, f"systemctl restart {service}")
            yield
        finally:
            self.history.fault("restart", "stop", host=h.name, service=service)

    def crash(self, host: HostLike) -> Any:
        """Crash a whole host: every process dies at once. Container hosts: ``podman kill`` then ``start``
        on exit (systemd boots again, same address). SSH hosts: SIGKILL all the host's cluster services at
        once, started again on exit."""
        h = self._host(host)
        if h.connection == "podman":
            addresses: dict[str, str] = {}

            def kill() -> None:
                addresses.update(self._podman_addresses(h))
                self._podman("kill", h)

            return self._fault(
                "crash",
                kill,
                lambda: self._podman_start(h, addresses),
                host=h.name,
                how="podman kill",
            )
        units = h.services
        if not units:
            raise FaultError(
                f"crash({h.name}): no services known for it; set gauntlet_services in the inventory"
            )
        kills = "; ".join(commands.kill_unit(u)[0] for u in units)
        starts = "; ".join(commands.kill_unit(u)[1] for u in units)
        return self._fault(
            "crash",
            lambda: self._sh(h, kills),
            lambda: self._sh(h, starts),
            host=h.name,
            how="SIGKILL " + " ".join(units),
        )

    def _podman(self, verb: str, h: Host) -> None:
        r = subprocess.run(["podman", verb, h.container], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise FaultError(f"podman {verb} {h.container}: {r.stderr.strip()}")

    def _podman_addresses(self, h: Host) -> dict[str, str]:
        """The container's address on each of its networks (network name -> IPv4)."""
        r = subprocess.run(
            ["podman", "inspect", "-f", "{{json .NetworkSettings.Networks}}", h.container],
            capture_output=True,
            text=True,
            timeout=30,
        )
        try:
            networks = json.loads(r.stdout or "{}") or {}
        except ValueError:
            return {}
        return {name: n["IPAddress"] for name, n in networks.items() if n.get("IPAddress")}

    def _podman_start(self, h: Host, addresses: dict[str, str] | None = None) -> None:
        # A killed container may get another address from podman's IPAM when it starts again (seen here:
        # 10.89.2.3 -> .5), which breaks certificates and peer lists; re-attach it with its old address.
        for network, ip in (addresses or {}).items():
            subprocess.run(
                ["podman", "network", "disconnect", network, h.container], capture_output=True, timeout=60
            )
            r = subprocess.run(
                ["podman", "network", "connect", "--ip", ip, network, h.container],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if r.returncode != 0:
                log.warning("could not re-attach %s to %s with %s: %s", h.name, network, ip, r.stderr.strip())
        self._podman("start", h)
        # Wait for systemd in the container to be up again before the test goes on.
        subprocess.run(
            ["podman", "exec", h.container, "timeout", "60", "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            timeout=90,
        )

    def _container_running(self, h: Host) -> bool:
        r = subprocess.run(
            ["podman", "inspect", "-f", "{{.State.Running}}", h.container],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return r.stdout.strip() == "true"

    # -- network faults ----------------------------------------------------------------------------------
    def _peer_addresses(self, exclude: Iterable[Host]) -> list[str]:
        skip = {h.name for h in exclude}
        return [h.address for h in self.cluster.hosts.values() if h.name not in skip]

    def partition(self, side_a: Iterable[HostLike], side_b: Iterable[HostLike]) -> Any:
        """Cut all traffic between two sets of hosts, both ways (iptables DROP on every host of both)."""
        a, b = self._hosts(side_a), self._hosts(side_b)
        if not a or not b or {h.name for h in a} & {h.name for h in b}:
            raise FaultError("partition needs two non-empty, disjoint sides")
        plans = [(h, commands.drop_from(o.address for o in b)) for h in a]
        plans += [(h, commands.drop_from(o.address for o in a)) for h in b]

        def start() -> None:
            for h, (s, _) in plans:
                self._sh(h, s)

        def undo() -> None:
            for h, (_, u) in plans:
                self._sh(h, u)

        return self._fault("partition", start, undo, side_a=[h.name for h in a], side_b=[h.name for h in b])

    def isolate(self, host: HostLike) -> Any:
        """Partition one host from every other host of the cluster (the controller can still reach it)."""
        h = self._host(host)
        others = [o for o in self.cluster.hosts.values() if o.name != h.name]
        return self.partition([h], others)

    def loss(self, host: HostLike, pct: float) -> Any:
        """Drop ``pct`` percent of packets between ``host`` and its peers (iptables statistic match)."""
        h = self._host(host)
        s, u = commands.loss_from(self._peer_addresses([h]), pct / 100.0)
        return self._fault("loss", lambda: self._sh(h, s), lambda: self._sh(h, u), host=h.name, pct=pct)

    def bandwidth(self, host: HostLike, kbit: int) -> Any:
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

    def latency(self, host: HostLike, ms: int, jitter_ms: int = 0) -> Any:
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
