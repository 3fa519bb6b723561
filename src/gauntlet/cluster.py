"""The one model of a cluster that tests use: hosts, groups, addresses, ports, certificates, commands.

Built from an Ansible inventory (see :mod:`gauntlet.inventory`). A host's connection decides how commands
reach it — ``podman exec`` for container hosts, SSH for real hosts — through testinfra, so a test written
against this model runs unchanged on Molecule containers and on staging machines.
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gauntlet.errors import GauntletError, GroupMissing, InventoryError
from gauntlet.inventory import Inventory

PODMAN_CONNECTIONS = {"podman", "containers.podman.podman"}
SSH_CONNECTIONS = {"ssh", "ansible.builtin.ssh", "paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh"}
LOCAL_CONNECTIONS = {"local", "ansible.builtin.local"}
# Every command on a host runs under coreutils' `timeout`, so none can hang a check forever (a wedged
# `systemctl`, a client waiting on a partitioned peer, a prompt). 120 s is above the slowest command a check
# runs without its own limit; a caller that needs longer (or shorter) passes ``timeout=``.
DEFAULT_COMMAND_TIMEOUT = 120.0


@dataclass
class CommandResult:
    """What a command on a host returned."""

    host: str
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class CommandFailed(GauntletError):
    """A command that had to succeed on a host did not."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(
            f"on {result.host}: `{result.command}` exited {result.rc}: {(result.stderr or result.stdout).strip()}"
        )
        self.result = result


class Host:
    """One inventory host: where it is, what it runs, and how to run commands on it."""

    def __init__(self, cluster: Cluster, name: str, groups: frozenset[str]) -> None:
        self.cluster = cluster
        self.name = name
        self.groups = groups
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Host({self.name})"

    def var(self, name: str, default: Any = None) -> Any:
        """A rendered variable of this host: the inventory's, else a role default, else ``default``."""
        return self.cluster.inventory.var(self.name, name, default)

    def setting(self, name: str) -> Any:
        """A variable the roles define: the inventory's value, else the role default (roles/*/defaults);
        raises :class:`InventoryError` when neither defines it."""
        return self.cluster.inventory.var(self.name, name)

    @cached_property
    def connection(self) -> str:
        """``podman``, ``ssh`` or ``local``: how Ansible, testinfra and the nemesis reach this host."""
        conn = str(self.var("ansible_connection", "ssh"))
        if conn in PODMAN_CONNECTIONS:
            return "podman"
        if conn in SSH_CONNECTIONS:
            return "ssh"
        if conn in LOCAL_CONNECTIONS:
            return "local"
        raise InventoryError(f"host {self.name}: connection '{conn}' is not supported (use podman or ssh)")

    @cached_property
    def container(self) -> str:
        """The container name (podman hosts): ansible_host if set, else the inventory name."""
        return str(self.var("ansible_host", self.name))

    @cached_property
    def testinfra(self) -> Any:
        """The testinfra host object (podman:// or ssh://), made on first use."""
        import testinfra

        become = bool(self.var("ansible_become", False))
        if self.connection == "podman":
            return testinfra.get_host(f"podman://{self.container}")
        if self.connection == "local":
            return testinfra.get_host("local://", sudo=become)
        # SSH: OpenSSH with the arguments Ansible passes for the host (user, port, key, ssh args; the host-key
        # policy is OpenSSH's own reading of them: see gauntlet.ssh), one multiplexed connection per host.
        from gauntlet.ssh import make_testinfra_host

        return make_testinfra_host(self.ssh_settings, sudo=become)

    @cached_property
    def ssh_settings(self) -> Any:
        """How this host is reached over SSH (:class:`gauntlet.ssh.SSHSettings`), from its variables."""
        from gauntlet.ssh import ssh_settings

        return ssh_settings(self.name, self.var)

    @cached_property
    def address(self) -> str:
        """The address other hosts and the controller reach this host at.

        ``gauntlet_address`` if the inventory sets it; for SSH hosts ``ansible_host``; otherwise the host's
        first global IPv4 address, asked from the host itself.
        """
        explicit = self.var("gauntlet_address")
        if explicit:
            return str(explicit)
        if self.connection == "ssh" and self.var("ansible_host"):
            return str(self.var("ansible_host"))
        out = self.run("hostname -I", check=True).stdout.split()
        v4 = [a for a in out if "." in a]
        if not v4:
            raise InventoryError(f"host {self.name} has no IPv4 address (hostname -I printed {out})")
        return v4[0]

    @property
    def services(self) -> list[str]:
        """The systemd units of this host that belong to the cluster (for crash faults).

        A host var ``gauntlet_services`` (a list of unit names) if set; else the ``<role>_units`` of every
        role the playbooks run on this host's groups (roles/<role>/vars/main.yml), in the order they run.
        """
        explicit = self.var("gauntlet_services")
        if explicit:
            return list(explicit)
        units: list[str] = []
        for role in self.cluster.inventory.roles_of(self.name):
            for u in self.var(f"{role}_units") or []:
                if u not in units:
                    units.append(str(u))
        return units

    def run(
        self, command: str | list[str], check: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """Run a shell command on the host (as root: container hosts are root, SSH hosts use become).

        It is killed after ``timeout`` seconds (exit 124): :data:`DEFAULT_COMMAND_TIMEOUT` when ``None``; 0 (or
        less) runs it without a limit."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        limit = DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout
        if limit > 0:
            cmd = f"timeout {max(1, int(limit))} sh -c {shlex.quote(cmd)}"
        with self._lock:  # testinfra backends are not thread-safe per host
            r = self.testinfra.run(cmd)
        result = CommandResult(self.name, cmd, r.rc, r.stdout, r.stderr)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def put(self, path: str, content: str, mode: str = "0644") -> None:
        """Write a file on the host (small files: scripts, configs)."""
        quoted = shlex.quote(content)
        self.run(
            f"umask 022; printf %s {quoted} > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}",
            check=True,
        )


class Cluster:
    """Hosts, groups and settings of one topology, from its inventory."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.hosts: dict[str, Host] = {
            name: Host(self, name, entry.groups) for name, entry in sorted(inventory.hosts.items())
        }

    @classmethod
    def from_inventory(cls, source: str | Path) -> Cluster:
        """Load a cluster from any inventory source (file, directory, Molecule's inventory directory)."""
        return cls(Inventory(source))

    @property
    def source(self) -> str:
        return self.inventory.source

    def __getitem__(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise InventoryError(f"host {name} is not in inventory {self.source}") from None

    def group(self, name: str) -> list[Host]:
        """Hosts of a group, in inventory-name order; raises :class:`GroupMissing` when it is empty."""
        members = [h for h in self.hosts.values() if name in h.groups]
        if not members:
            raise GroupMissing(name, self.source)
        return members

    def has_group(self, name: str) -> bool:
        return any(name in h.groups for h in self.hosts.values())

    def groups(self) -> dict[str, list[str]]:
        return self.inventory.groups()

    def var(self, name: str, default: Any = None, group: str | None = None) -> Any:
        """A variable as the first host (of ``group``, if given) sees it: for values shared by a group."""
        hosts = self.group(group) if group else list(self.hosts.values())
        return self.inventory.var(hosts[0].name, name, default)

    def secret(self, name: str, group: str) -> str:
        """A password as the roles see it: the inventory's value if it sets one, else the secret the role
        default generated (``<gauntlet_secrets_dir>/<name without _password>``, ansible's password lookup).

        A relative ``gauntlet_secrets_dir`` is refused before any lookup runs: resolved against this
        process's directory instead of the playbook's, it would generate a second, different password."""
        secrets_dir = self.var("gauntlet_secrets_dir", None, group=group)
        if secrets_dir and not Path(str(secrets_dir)).is_absolute():
            raise InventoryError(
                f"gauntlet_secrets_dir must be an absolute controller path (got '{secrets_dir}'): set it in "
                f"group_vars/all of {self.source}"
            )
        value = self.var(name, None, group=group)
        if value:
            return str(value)
        path = Path(str(secrets_dir)) / name.removesuffix("_password") if secrets_dir else None
        if not path or not path.exists():
            raise InventoryError(
                f"{name} is not set in the inventory and no generated secret exists at {path}"
            )
        return path.read_text().split()[0]

    def setting(self, name: str, group: str) -> Any:
        """A role setting as the first host of ``group`` sees it: the inventory's value, else the default of
        the role that group runs; raises :class:`InventoryError` when neither defines it."""
        return self.group(group)[0].setting(name)

    def run(self, host: str | Host, command: str | list[str], check: bool = False) -> CommandResult:
        """Run a command on a host over its own connection (see :meth:`Host.run`)."""
        h = host if isinstance(host, Host) else self[host]
        return h.run(command, check=check)

    # -- certificates on the controller ---------------------------------------------------------------------
    @cached_property
    def pki_dir(self) -> Path:
        """Where the pki role keeps the CA and certificates on the controller (``gauntlet_pki_dir``)."""
        value = self.var("gauntlet_pki_dir")
        if not value:
            raise InventoryError(
                f"inventory {self.source} does not set gauntlet_pki_dir: add it to group_vars/all "
                "(the directory where the pki role writes the CA and certificates on the controller)"
            )
        return Path(value)

    @property
    def ca_cert(self) -> Path:
        """The cluster CA certificate (PEM)."""
        return self._pki_file("ca.crt")

    def client_cert(self, name: str = "gauntlet-client") -> tuple[Path, Path]:
        """A client certificate and key the pki role issued for tests (``pki_client_names``)."""
        return self._pki_file(f"clients/{name}.crt"), self._pki_file(f"clients/{name}.key")

    def host_cert(self, host: str) -> tuple[Path, Path]:
        """A host's server certificate and key as the pki role issued them."""
        return self._pki_file(f"hosts/{host}.crt"), self._pki_file(f"hosts/{host}.key")

    def _pki_file(self, rel: str) -> Path:
        p = self.pki_dir / rel
        if not p.exists():
            raise InventoryError(
                f"{p} does not exist: run the playbook (the pki role) against {self.source} first"
            )
        return p
