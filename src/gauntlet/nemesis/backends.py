"""How a whole-host fault reaches a host, per connection kind: container hosts (podman) act on the container
itself, SSH hosts on the host's cluster services through systemd. Everything else the nemesis does runs as
shell commands over the host's own connection and needs no backend."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gauntlet.cluster import Host
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


def _sh(host: Host, command: str) -> Callable[[], None]:
    def run() -> None:
        host.run(command, check=True)

    return run


def backend_for(host: Host) -> HostBackend:
    """The backend of the host's connection kind (chosen from the inventory, never by the test)."""
    return ContainerBackend() if host.connection == "podman" else SshBackend()
