"""Every role's defaults/main.yml and meta/argument_specs.yml say the same thing.

A default is written twice in a role (the value Ansible uses, the value the spec documents and
ansible-doc shows): this test holds them equal, so neither can drift. Every documented option is either
required or has a default, and every default is documented. The exception: an input the collection shares
between roles (``gauntlet_pki_dir``: not in the role's ``<role>_`` namespace) may be optional without a
default, because no role may default a variable it does not own. And the few options listed in
``OPTIONAL_WITHOUT_DEFAULT``, whose absence is itself the meaning: there, any default would change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
#: Options of a role's namespace that are optional and have no default, each with its reason.
OPTIONAL_WITHOUT_DEFAULT = {
    # Unset: the host declares no API and the declared-API checks skip it. A default (even {}) would make
    # every host of the group declare one, and an empty declaration is an error (operations: missing).
    "custom_server_api",
}


def role_names() -> list[str]:
    return sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def mismatches(defaults: dict[str, Any], options: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between a role's defaults and its spec's options, one line each (empty: they agree)."""
    out: list[str] = []
    for name, value in defaults.items():
        if name not in options:
            out.append(f"{name}: in defaults/main.yml, not documented in meta/argument_specs.yml")
        elif "default" not in options[name]:
            out.append(f"{name}: the spec documents no default (defaults/main.yml: {value!r})")
        elif options[name]["default"] != value:
            out.append(
                f"{name}: defaults/main.yml says {value!r}, the spec says {options[name]['default']!r}"
            )
    for name, spec in options.items():
        if name in defaults:
            continue
        if "default" in spec:
            out.append(f"{name}: the spec documents default {spec['default']!r}, defaults/main.yml has none")
        elif not spec.get("required") and name.startswith(prefix) and name not in OPTIONAL_WITHOUT_DEFAULT:
            out.append(f"{name}: neither required nor given a default")
    return out


def test_every_role_has_both_files() -> None:
    names = role_names()
    assert len(names) >= 10, names
    for role in names:
        assert (ROLES / role / "defaults" / "main.yml").exists(), role
        assert (ROLES / role / "meta" / "argument_specs.yml").exists(), role


@pytest.mark.parametrize("role", role_names())
def test_defaults_and_argument_spec_agree(role: str) -> None:
    defaults = load(ROLES / role / "defaults" / "main.yml") or {}
    spec = load(ROLES / role / "meta" / "argument_specs.yml")
    options = spec["argument_specs"]["main"].get("options") or {}
    problems = mismatches(defaults, options, prefix=f"{role}_")
    assert not problems, f"roles/{role}:\n" + "\n".join(problems)


def test_a_drifted_default_is_reported() -> None:
    """The comparison itself: a changed value, an undocumented default, an option with neither (a shared
    input outside the role's namespace may have neither)."""
    options = {
        "a_port": {"type": "int", "default": 1},
        "a_dir": {"type": "path"},
        "a_req": {"required": True},
        "gauntlet_x": {"type": "path"},
    }
    assert mismatches({"a_port": 2, "a_new": 0}, options, prefix="a_") == [
        "a_port: defaults/main.yml says 2, the spec says 1",
        "a_new: in defaults/main.yml, not documented in meta/argument_specs.yml",
        "a_dir: neither required nor given a default",
    ]
