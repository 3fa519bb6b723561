"""Read an Ansible inventory the way ansible-playbook does: sources, group_vars, host_vars, vault, templates.

Any source ``ansible-inventory`` accepts works: a YAML/INI file, a directory (Molecule writes one), or a
plugin config. Variables are rendered with Ansible's own templar, so a value like
``"{{ inventory_dir | dirname }}/pki"`` or a ``password`` lookup means the same to tests as to the roles.
A variable the inventory does not set is the default of the roles the host's groups run (and role vars and
play parameters win over the inventory), read from the roles themselves (:mod:`gauntlet.roles`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauntlet.errors import InventoryError
from gauntlet.roles import Collection, collection

_MISSING = object()


@dataclass(frozen=True)
class HostEntry:
    """One inventory host: its name, the groups it is in (transitively), and its raw variables."""

    name: str
    groups: frozenset[str]
    vars: dict[str, Any]


class Inventory:
    """An Ansible inventory loaded through ansible-core's own InventoryManager and VariableManager."""

    def __init__(self, source: str | Path, roles: Collection | None = None) -> None:
        self.source = str(source)
        self.roles = roles or collection()
        path = Path(source)
        if not path.exists():
            raise InventoryError(
                f"inventory {source} does not exist: pass --inventory PATH (a file or directory that "
                "ansible-inventory can read), or run the scenario first with 'molecule converge -s NAME'"
            )
        # Imported here: ansible's import is slow and unit tests of other modules need not pay for it.
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager

        _init_ansible_plugins()

        self._loader = DataLoader()
        self._load_vault_secrets()
        try:
            self._inventory = InventoryManager(loader=self._loader, sources=[str(path)])
        except Exception as exc:  # ansible raises its own error types for unparsable sources
            raise InventoryError(f"inventory {source} cannot be parsed: {exc}") from exc
        self._variables = VariableManager(loader=self._loader, inventory=self._inventory)
        hosts = self._inventory.get_hosts()
        if not hosts:
            raise InventoryError(
                f"inventory {source} has no hosts: check the path and that it parses with "
                f"'ansible-inventory -i {source} --graph'"
            )
        self.hosts: dict[str, HostEntry] = {}
        for h in hosts:
            groups = frozenset(g.name for g in h.get_groups()) - {"all", "ungrouped"}
            self.hosts[h.name] = HostEntry(name=h.name, groups=groups, vars=dict(h.get_vars()))
        self._hostvars_cache: dict[str, dict[str, Any]] = {}

    def _load_vault_secrets(self) -> None:
        """Use the vault password file Ansible would use (ANSIBLE_VAULT_PASSWORD_FILE), if any."""
        password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
        if not password_file:
            return
        from ansible.cli import CLI

        secrets = CLI.setup_vault_secrets(self._loader, vault_ids=[], vault_password_files=[password_file])
        self._loader.set_vault_secrets(secrets)

    def groups(self) -> dict[str, list[str]]:
        """Group name → host names (sorted), for every non-empty group."""
        out: dict[str, list[str]] = {}
        for entry in self.hosts.values():
            for g in entry.groups:
                out.setdefault(g, []).append(entry.name)
        return {g: sorted(hs) for g, hs in sorted(out.items())}

    def _host_vars(self, host: str) -> dict[str, Any]:
        if host not in self._hostvars_cache:
            h = self._inventory.get_host(host)
            if h is None:
                raise InventoryError(f"host {host} is not in inventory {self.source}")
            layers = self.roles.layers(self.hosts[host].groups)
            inventory_vars = self._variables.get_vars(host=h, include_hostvars=False)
            # Ansible's precedence: role defaults < inventory < role vars and role parameters.
            self._hostvars_cache[host] = {**layers.defaults, **inventory_vars, **layers.overrides}
        return self._hostvars_cache[host]

    def roles_of(self, host: str) -> list[str]:
        """The roles the collection's playbooks run on ``host`` (by its groups), in the order they run."""
        return self.roles.roles_for(self.hosts[host].groups)

    def var(self, host: str, name: str, default: Any = _MISSING) -> Any:
        """The rendered value of variable ``name`` for ``host``: the inventory's (group_vars, host_vars,
        vault), else the default of a role the host runs; templates rendered as Ansible renders them."""
        variables = self._host_vars(host)
        if name not in variables:
            if default is _MISSING:
                raise InventoryError(
                    f"variable '{name}' is not defined for host {host} in inventory {self.source} nor "
                    f"by the roles it runs ({', '.join(self.roles_of(host)) or 'none'}): define it in the "
                    "inventory's group_vars"
                )
            return default
        from ansible.template import Templar

        templar = Templar(loader=self._loader, variables=variables)
        return _plain(templar.template(variables[name]))


_plugins_ready = False


def _init_ansible_plugins() -> None:
    """Install ansible's collection loader once, as the ansible CLIs do (lookups in vars need it)."""
    global _plugins_ready
    if not _plugins_ready:
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader()
        _plugins_ready = True


def _plain(value: Any) -> Any:
    """Strip ansible's tagged/lazy container types down to plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)
