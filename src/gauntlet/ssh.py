"""SSH hosts for testinfra, reached the way Ansible reaches them: OpenSSH's own ``ssh`` with the arguments
Ansible's ssh connection passes for the host, so OpenSSH itself applies the inventory's settings (and
~/.ssh/config's: Include, Match, ProxyJump, agent, certificates, known_hosts and the host-key policy).

:func:`ssh_settings` resolves a host's connection options as Ansible does (ansible.cfg, the ``ANSIBLE_*``
environment, the host's ``ansible_*`` variables); :meth:`SSHSettings.ssh_args` lays them out in Ansible's
order (OpenSSH takes the FIRST value of an option, so the order is the policy) and adds only what the checks
need after them: one multiplexed connection per host (ControlMaster/ControlPersist, unless the arguments
choose otherwise) and BatchMode (nobody answers a prompt: an unknown host key is refused, not asked about).
Host-key checking is never turned off here; ``-o StrictHostKeyChecking=no`` is added only where Ansible adds
it, when Ansible's own ``host_key_checking`` is false for the host.

Why OpenSSH and not testinfra's paramiko backend (used before): on a loopback sshd, 200 ``run("true")`` (load
2-10 on 2 cores) took 44-54 ms each through that backend and 12-24 ms here (one ssh process per command over
the host's master connection), a 1.3 MB output 104-240 ms against 35-49 ms. paramiko with TCP_NODELAY did
tiny commands in 5-12 ms, but would keep our own re-implementation of OpenSSH's config and host-key handling
(Include/Match, ProxyJump, agent, certificates, @cert-authority), which is what the checks must match; their
commands are not on a workload's hot path (clients speak to the services directly).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from gauntlet.errors import GauntletError

# Ansible's ssh-connection options the checks use (their ini/env/vars sources come from Ansible itself).
ANSIBLE_OPTIONS = (
    "host",
    "port",
    "remote_user",
    "private_key_file",
    "host_key_checking",
    "ssh_args",
    "ssh_common_args",
    "ssh_extra_args",
    "timeout",
)
# What Ansible passes when no password is set: only non-interactive authentication.
NO_PASSWORD_ARGS = (
    "-o",
    "KbdInteractiveAuthentication=no",
    "-o",
    "PreferredAuthentications=gssapi-with-mic,gssapi-keyex,hostbased,publickey",
    "-o",
    "PasswordAuthentication=no",
)
CONTROL_PERSIST = "60s"
ACCEPT_NEW_HINT = "ansible_ssh_common_args: '-o StrictHostKeyChecking=accept-new'"
# What ssh itself prints when it (not the remote command) failed with exit status 255.
SSH_FAILURE = re.compile(
    r"^ssh: |Permission denied \(|Connection (closed|reset|refused|timed out)|kex_exchange_identification"
    r"|Could not resolve|No route to host|Network is unreachable|banner exchange|mux_client|ProxyJump|"
    r"ProxyCommand|UNPROTECTED PRIVATE KEY|Load key ",
    re.MULTILINE,
)


class SSHFailed(GauntletError):
    """ssh could not run a command on a host (unreachable, authentication, host key)."""


class HostKeyRefused(SSHFailed):
    """OpenSSH refused the host's key under the inventory's host-key policy (unknown or changed key)."""


def ssh_options(args: Sequence[str]) -> dict[str, str]:
    """The ``-o Key=Value`` options of an OpenSSH argument list, keys lower-cased; the first value of an
    option wins, as in ssh itself. Other arguments are ignored."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "-o" and i + 1 < len(args):
            opt, i = args[i + 1], i + 2
        elif tok.startswith("-o") and len(tok) > 2:
            opt, i = tok[2:], i + 1
        else:
            i += 1
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, _, value = opt.strip().partition(" ")
        opts.setdefault(key.strip().lower(), value.strip().strip('"'))
    return opts


def split_args(args: str | None) -> tuple[str, ...]:
    """An argument string as Ansible's ssh connection splits it (shell words)."""
    return tuple(a.strip() for a in shlex.split(args or "") if a.strip())


@dataclass(frozen=True)
class SSHSettings:
    """How one inventory host is reached over SSH: Ansible's ssh-connection options for it."""

    name: str
    host: str
    ansible_port: int | None = None  # None: OpenSSH's own (the arguments, ~/.ssh/config, or 22)
    user: str | None = None
    key_file: str | None = None
    host_key_checking: bool = True
    base_args: tuple[str, ...] = ()  # Ansible's ssh_args (ansible.cfg / ANSIBLE_SSH_ARGS / ansible_ssh_args)
    common_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    timeout: int = 10

    def ansible_args(self) -> list[str]:
        """The ``ssh`` options Ansible's ssh connection passes for this host, in its order."""
        args = list(self.base_args)
        if not self.host_key_checking:
            args += ["-o", "StrictHostKeyChecking=no"]
        if self.ansible_port is not None:
            args += ["-o", f"Port={self.ansible_port}"]
        if self.key_file:
            args += ["-o", f'IdentityFile="{self.key_file}"']
        args += NO_PASSWORD_ARGS
        if self.user:
            args += ["-o", f'User="{self.user}"']
        args += ["-o", f"ConnectTimeout={self.timeout}", *self.common_args, *self.extra_args]
        return args

    def ssh_args(self) -> list[str]:
        """Ansible's options, then what the checks add (after them, so the inventory's values win)."""
        args = self.ansible_args()
        opts = ssh_options(args)
        if "controlmaster" not in opts and "controlpersist" not in opts:
            args += ["-o", "ControlMaster=auto", "-o", f"ControlPersist={CONTROL_PERSIST}"]
        if "controlpath" not in opts and ssh_options(args).get("controlmaster", "no") != "no":
            # One master per distinct argument list: hosts that differ in policy never share a connection
            # (a multiplexed session skips the host-key check its master already made).
            digest = hashlib.sha256("\0".join([*args, self.host]).encode()).hexdigest()[:20]
            args += ["-o", f"ControlPath={control_dir()}/{digest}"]
        return [*args, "-o", "BatchMode=yes"]

    def command(self, remote: str) -> list[str]:
        """The ``ssh`` command line that runs shell command ``remote`` on this host."""
        return ["ssh", *self.ssh_args(), "--", self.host, remote]

    @functools.cached_property
    def resolved(self) -> dict[str, str]:
        """OpenSSH's own view of this connection (``ssh -G``: after ~/.ssh/config, Include and Match)."""
        out = subprocess.run(
            ["ssh", "-G", *self.ssh_args(), "--", self.host],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SSHFailed(f"host {self.name}: ssh -G rejects its SSH arguments: {out.stderr.strip()}")
        resolved: dict[str, str] = {}
        for line in out.stdout.splitlines():
            key, _, value = line.partition(" ")
            resolved.setdefault(key, value)
        return resolved

    @property
    def port(self) -> int:
        """The SSH port OpenSSH connects to."""
        return self.ansible_port if self.ansible_port is not None else int(self.resolved.get("port", 22))

    @property
    def host_key_policy(self) -> str:
        """OpenSSH's StrictHostKeyChecking for this host: ``ask`` (its default: with BatchMode an unknown key
        is refused), ``true`` (yes), ``accept-new`` or ``false`` (no)."""
        return self.resolved.get("stricthostkeychecking", "ask")

    @property
    def target(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def failure(self, stderr: str) -> SSHFailed | None:
        """The error for ssh's exit status 255 with ``stderr``; None when the remote command exited 255."""
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            return HostKeyRefused(
                f"host {self.name} ({self.target}): refused: its SSH host key differs from the one in "
                f"known_hosts ({self.resolved.get('userknownhostsfile', '~/.ssh/known_hosts')}); if the host "
                f"was rebuilt, remove the old key (ssh-keygen -R '[{self.host}]:{self.port}') and connect again"
            )
        if "Host key verification failed" in stderr:
            return HostKeyRefused(
                f"host {self.name} ({self.target}): refused: its SSH host key is not in known_hosts "
                f"({self.resolved.get('userknownhostsfile', '~/.ssh/known_hosts')}) and StrictHostKeyChecking "
                f"is {self.host_key_policy}; add the key (ssh-keyscan -p {self.port} {self.host}, after checking "
                f"its fingerprint) or let the inventory accept new keys: {ACCEPT_NEW_HINT}"
            )
        if SSH_FAILURE.search(stderr):
            last = [line for line in stderr.splitlines() if line.strip()][-1]
            return SSHFailed(f"host {self.name} ({self.target}): ssh failed: {last.strip()}")
        return None


def ssh_settings(name: str, var: Callable[[str, Any], Any]) -> SSHSettings:
    """The SSH settings of inventory host ``name``, as Ansible's ssh connection resolves them: ansible.cfg,
    ``ANSIBLE_*`` environment and the host's variables (``var(name, default)``): ``ansible_host``,
    ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file``, ``ansible_host_key_checking``,
    ``ansible_ssh_args``, ``ansible_ssh_common_args``, ``ansible_ssh_extra_args``, ``ansible_ssh_timeout``."""
    from ansible import constants
    from ansible.plugins.loader import connection_loader

    connection_loader.get("ssh", class_only=True)  # loads the plugin's option definitions
    definitions = constants.config.get_configuration_definitions("connection", "ssh")
    variables: dict[str, Any] = {"inventory_hostname": name}
    for option in ANSIBLE_OPTIONS:
        for source in definitions[option].get("vars", []):
            value = var(source["name"], None)
            if value is not None:
                variables[source["name"]] = value
    opts = constants.config.get_plugin_options("connection", "ssh", variables=variables)
    key = opts.get("private_key_file")
    return SSHSettings(
        name=name,
        host=str(opts["host"] or name),
        ansible_port=int(opts["port"]) if opts.get("port") not in (None, "") else None,
        user=str(opts["remote_user"]) if opts.get("remote_user") else None,
        key_file=os.path.expanduser(str(key)) if key else None,
        host_key_checking=bool(opts["host_key_checking"]),
        base_args=split_args(opts.get("ssh_args")),
        common_args=split_args(opts.get("ssh_common_args")),
        extra_args=split_args(opts.get("ssh_extra_args")),
        timeout=int(opts.get("timeout") or 10),
    )


_control_dir: list[str] = []
_control_dir_lock = threading.Lock()


def control_dir() -> str:
    """This process's directory for ControlMaster sockets (short: a socket path has ~100 bytes); its masters
    are closed and the directory removed when the process exits."""
    with _control_dir_lock:  # hosts connect from several threads at once
        if not _control_dir:
            tmp = "/tmp" if os.path.isdir("/tmp") else None
            _control_dir.append(tempfile.mkdtemp(prefix="gauntlet-ssh-", dir=tmp))
            atexit.register(close_control_masters, remove=True)
        return _control_dir[0]


def close_control_masters(remove: bool = False) -> None:
    """Close every SSH master connection this process opened (and with ``remove`` its socket directory)."""
    if not _control_dir:
        return
    path = _control_dir[0]
    for sock in sorted(os.listdir(path)):
        subprocess.run(
            ["ssh", "-o", f"ControlPath={path}/{sock}", "-O", "exit", "gauntlet-control-master"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    if remove:
        shutil.rmtree(path, ignore_errors=True)


class OpenSSHBackend(BaseBackend):  # type: ignore[misc]  # testinfra ships no types
    """testinfra backend that runs each command through ``ssh`` with :class:`SSHSettings` (one multiplexed
    connection per host); an ssh failure raises :class:`SSHFailed` with one line saying what to do."""

    NAME = "ssh"

    def __init__(self, settings: SSHSettings, sudo: bool = False) -> None:
        super().__init__(settings.host, sudo=sudo)
        self.settings = settings

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        remote = self.get_command(command, *args)
        out = subprocess.run(
            self.settings.command(remote), stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        if out.returncode == 255:
            error = self.settings.failure(out.stderr.decode(errors="replace"))
            if error is not None:
                raise error
        return self.result(out.returncode, self.encode(remote), out.stdout, out.stderr)


def make_testinfra_host(settings: SSHSettings, sudo: bool = False) -> testinfra.host.Host:
    """A testinfra host object that runs commands through OpenSSH with ``settings``."""
    backend = OpenSSHBackend(settings, sudo=sudo)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
