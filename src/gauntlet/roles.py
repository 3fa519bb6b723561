"""What the collection's own roles and playbooks say about a host, read from them instead of restated here.

The playbooks name which roles run on which inventory groups (``hosts: etcd:postgres`` with ``roles:``);
each role has its defaults (``defaults/main.yml``, below the inventory in Ansible's precedence), its
internal values (``vars/main.yml``, above it) and the parameters a play gives it (``vars:`` of a role entry,
above both). :class:`gauntlet.inventory.Inventory` layers these around the inventory's own variables, so a
check asks for ``patroni_ttl`` and gets the inventory's value, else the role default, rendered by Ansible's
templar as the role would render it. A role's systemd units are its ``<role>_units`` variable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from gauntlet.errors import InventoryError

# The checkout the harness runs from: roles/ and playbooks/ next to src/.
COLLECTION_ROOT = Path(__file__).resolve().parents[2]
COLLECTION_PREFIX = "gauntlet.cluster."


@dataclass(frozen=True)
class Layers:
    """Variables of the roles a host runs: ``defaults`` go below the inventory, ``overrides`` above it."""

    roles: tuple[str, ...]
    defaults: dict[str, Any]
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Play:
    """One play's target groups and one role entry of it (its name and the parameters the play passes)."""

    groups: frozenset[str]
    role: str
    params: dict[str, Any]


class Collection:
    """The roles and playbooks of a gauntlet.cluster checkout."""

    def __init__(self, root: Path = COLLECTION_ROOT) -> None:
        self.root = root
        if not (root / "roles").is_dir() or not (root / "playbooks").is_dir():
            raise InventoryError(
                f"{root} has no roles/ and playbooks/: the harness reads the role defaults from the "
                "collection checkout it runs from"
            )

    def _yaml(self, path: Path) -> Any:
        if not path.exists():
            return None
        return yaml.safe_load(path.read_text())

    def _trusted(self, value: Any) -> Any:
        """Mark the strings of a role file as templates: ansible-core renders only trusted strings, and the
        collection's own files are as trusted as ansible-playbook takes them to be."""
        from ansible.template import trust_as_template

        if isinstance(value, dict):
            return {k: self._trusted(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._trusted(v) for v in value]
        return trust_as_template(value) if isinstance(value, str) else value

    def role_names(self) -> list[str]:
        """Every role of the collection."""
        return sorted(p.name for p in (self.root / "roles").iterdir() if (p / "tasks").is_dir())

    def defaults(self, role: str) -> dict[str, Any]:
        """``roles/<role>/defaults/main.yml`` as written (unrendered)."""
        return dict(self._yaml(self.root / "roles" / role / "defaults" / "main.yml") or {})

    def role_vars(self, role: str) -> dict[str, Any]:
        """``roles/<role>/vars/main.yml`` as written (unrendered)."""
        return dict(self._yaml(self.root / "roles" / role / "vars" / "main.yml") or {})

    @cached_property
    def plays(self) -> list[Play]:
        """Every (groups, role) pair of every play in playbooks/*.yml, in file and play order."""
        out: list[Play] = []
        for path in sorted((self.root / "playbooks").glob("*.yml")):
            for play in self._yaml(path) or []:
                if not isinstance(play, dict) or "roles" not in play:
                    continue
                groups = frozenset(g.strip() for g in str(play.get("hosts", "")).split(":") if g.strip())
                for entry in play["roles"]:
                    spec = entry if isinstance(entry, dict) else {"role": entry}
                    name = str(spec.get("role") or spec.get("name")).removeprefix(COLLECTION_PREFIX)
                    out.append(Play(groups, name, dict(spec.get("vars") or {})))
        return out

    def roles_for(self, groups: Iterable[str]) -> list[str]:
        """The roles the playbooks run on a host of these groups, in the order they first run."""
        mine = set(groups) | {"all"}
        out: list[str] = []
        for p in self.plays:
            if p.groups & mine and p.role not in out:
                out.append(p.role)
        return out

    def layers(self, groups: Iterable[str]) -> Layers:
        """The role defaults, role vars and role parameters of a host of these groups."""
        mine = set(groups) | {"all"}
        roles = self.roles_for(mine)
        defaults: dict[str, Any] = {}
        overrides: dict[str, Any] = {}
        for role in roles:
            defaults.update(self.defaults(role))
            overrides.update(self.role_vars(role))
        for p in self.plays:
            if p.groups & mine:
                overrides.update(p.params)
        return Layers(tuple(roles), self._trusted(defaults), self._trusted(overrides))


_collection: Collection | None = None


def collection() -> Collection:
    """The collection of this checkout (read once)."""
    global _collection
    if _collection is None:
        _collection = Collection()
    return _collection
