"""SSH hosts for testinfra with the inventory's own SSH settings, so the checks reach a staging host the way
Ansible did: the same user, port, key, known_hosts files and host-key policy, and the same proxy.

testinfra's paramiko backend keeps one SSH connection per host (fast: faults and probes run many small
commands), but it reads none of Ansible's variables and accepts any host key. :func:`ssh_settings` reads
them from a host's variables (``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` ``-o`` options
included) and :class:`InventorySSHBackend` connects with them.
"""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paramiko
import testinfra.host
from testinfra.backend.paramiko import IgnorePolicy, ParamikoBackend

DEFAULT_CONNECT_TIMEOUT = 10


def ssh_options(args: str) -> dict[str, str]:
    """The ``-o Key=Value`` options of an OpenSSH argument string, keys lower-cased; the first value of an
    option wins, as in ssh itself. Other arguments are ignored."""
    opts: dict[str, str] = {}
    tokens = shlex.split(args or "")
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-o" and i + 1 < len(tokens):
            opt, i = tokens[i + 1], i + 2
        elif tok.startswith("-o") and len(tok) > 2:
            opt, i = tok[2:], i + 1
        else:
            i += 1
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, _, value = opt.strip().partition(" ")
        opts.setdefault(key.strip().lower(), value.strip())
    return opts


@dataclass
class SSHSettings:
    """Where and how to reach one host over SSH."""

    host: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    # "strict": unknown and changed keys refused; "accept-new": unknown keys accepted (changed ones refused);
    # "off": no checking; "warn": unknown keys accepted with a warning (paramiko's WarningPolicy).
    host_key_policy: str = "warn"
    known_hosts: list[str] = field(default_factory=list)
    proxy_command: str | None = None
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def ssh_settings(name: str, var: Callable[[str, Any], Any]) -> SSHSettings:
    """SSH settings of inventory host ``name`` from its variables (``var(name, default)``), as Ansible's ssh
    connection reads them: ``ansible_host``/``ansible_ssh_host``, ``ansible_port``, ``ansible_user``,
    ``ansible_ssh_private_key_file``, ``ansible_ssh_common_args`` + ``ansible_ssh_extra_args`` (their
    ``UserKnownHostsFile``, ``StrictHostKeyChecking``, ``ConnectTimeout``, ``ProxyCommand``, ``ProxyJump``,
    ``Port``, ``User``, ``IdentityFile`` options) and ``ansible_(ssh_)host_key_checking``."""

    def first(*names: str, default: Any = None) -> Any:
        for n in names:
            value = var(n, None)
            if value not in (None, ""):
                return value
        return default

    args = " ".join(
        str(first(n, default=""))
        for n in ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
    )
    opts = ssh_options(args)
    host = str(first("ansible_host", "ansible_ssh_host", default=name))
    port = int(first("ansible_port", "ansible_ssh_port", default=opts.get("port") or 22))
    user = first("ansible_user", "ansible_ssh_user", "ansible_remote_user", default=opts.get("user"))
    key = first("ansible_ssh_private_key_file", "ansible_private_key_file", default=opts.get("identityfile"))

    strict = opts.get("stricthostkeychecking", "").lower()
    checking = first("ansible_ssh_host_key_checking", "ansible_host_key_checking")
    if strict in {"no", "off", "false"}:
        policy = "off"
    elif strict == "accept-new":
        policy = "accept-new"
    elif strict in {"yes", "ask", "true"}:
        policy = "strict"
    elif checking is not None:
        policy = "warn" if _truthy(checking) else "off"
    else:
        policy = "warn"
    if "userknownhostsfile" in opts:
        known = [os.path.expanduser(p) for p in shlex.split(opts["userknownhostsfile"])]
    else:
        known = [os.path.expanduser("~/.ssh/known_hosts")]

    proxy = opts.get("proxycommand")
    if not proxy and opts.get("proxyjump") and opts["proxyjump"].lower() != "none":
        # What ProxyJump does, spelled as a command, with the same host-key options for the jump host.
        passthrough = " ".join(
            f"-o {shlex.quote(k + '=' + v)}"
            for k, v in opts.items()
            if k in {"userknownhostsfile", "stricthostkeychecking", "identitiesonly", "connecttimeout"}
        )
        proxy = f"ssh {passthrough} -W %h:%p {shlex.quote(opts['proxyjump'])}".replace("  ", " ")
    if proxy:
        proxy = proxy.replace("%h", host).replace("%p", str(port)).replace("%r", str(user or ""))
    return SSHSettings(
        host=host,
        port=port,
        user=str(user) if user else None,
        key_file=os.path.expanduser(str(key)) if key else None,
        host_key_policy=policy,
        known_hosts=known,
        proxy_command=proxy,
        connect_timeout=int(opts.get("connecttimeout") or DEFAULT_CONNECT_TIMEOUT),
    )


def make_testinfra_host(settings: SSHSettings, sudo: bool = False) -> testinfra.host.Host:
    """A testinfra host object that runs commands over one paramiko connection made with ``settings``."""
    backend = InventorySSHBackend(settings, sudo=sudo)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """``StrictHostKeyChecking=accept-new``: an unknown host's key is accepted for this connection (not
    written back: Ansible's own ssh run records it); a known host with another key is still refused."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)


class InventorySSHBackend(ParamikoBackend):  # type: ignore[misc]  # testinfra ships no types
    """testinfra's paramiko backend, connecting with :class:`SSHSettings` (not only ~/.ssh/config)."""

    def __init__(self, settings: SSHSettings, sudo: bool = False) -> None:
        target = f"{settings.user}@" if settings.user else ""
        target += f"{settings.host}:{settings.port}"
        super().__init__(
            target, ssh_identity_file=settings.key_file, timeout=settings.connect_timeout, sudo=sudo
        )
        self.settings = settings

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        s = self.settings
        client = paramiko.SSHClient()
        if s.host_key_policy != "off":
            keys = client.get_host_keys()
            for path in s.known_hosts:
                if os.path.exists(path):
                    keys.load(path)  # read only: never rewritten by this client
        policy: paramiko.MissingHostKeyPolicy = {
            "off": IgnorePolicy(),
            "accept-new": _AcceptNew(),
            "strict": paramiko.RejectPolicy(),
        }.get(s.host_key_policy, paramiko.WarningPolicy())
        client.set_missing_host_key_policy(policy)
        client.connect(
            hostname=s.host,
            port=s.port,
            username=s.user,
            key_filename=s.key_file,
            timeout=s.connect_timeout,
            sock=paramiko.ProxyCommand(s.proxy_command) if s.proxy_command else None,
        )
        return client
