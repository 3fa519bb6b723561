"""Every role has a README.md that names it and the inputs a user must give it.

A README points to defaults/main.yml for the values rather than restating them, so naming every option
would only copy the spec (patroni has 50). What it must name: the role's FQCN in its title, every option of
the main entry point without a default (required, or meaningful when unset) and every other entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_role_argument_specs import OPTIONAL_WITHOUT_DEFAULT, role_names

ROLES = Path(__file__).resolve().parents[2] / "roles"


def unnamed_inputs(readme: str, specs: dict[str, Any]) -> list[str]:
    """What a README fails to name: options of ``main`` without a default, entry points other than main."""
    options = specs["main"].get("options") or {}
    must = [n for n, o in options.items() if o.get("required") or n in OPTIONAL_WITHOUT_DEFAULT]
    must += [f"entry point {e}" for e in specs if e != "main"]
    return [n for n in must if n.removeprefix("entry point ") not in readme]


@pytest.mark.parametrize("role", role_names())
def test_the_role_has_a_readme(role: str) -> None:
    """roles/<role>/README.md exists, is titled with the FQCN and names the role's required inputs."""
    path = ROLES / role / "README.md"
    assert path.is_file(), f"roles/{role} has no README.md"
    readme = path.read_text()
    assert readme.startswith(f"# gauntlet.cluster.{role}\n"), f"roles/{role}/README.md: title is not the FQCN"
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    missing = unnamed_inputs(readme, specs)
    assert not missing, f"roles/{role}/README.md does not name: {', '.join(missing)}"


def test_an_unnamed_input_is_reported() -> None:
    """The comparison itself: a required option and a second entry point the text does not mention."""
    specs = {
        "main": {"options": {"a_dir": {"required": True}, "a_port": {"default": 1}, "custom_server_api": {}}},
        "check": {"options": {}},
    }
    assert unnamed_inputs("set a_dir", specs) == ["custom_server_api", "entry point check"]
    assert unnamed_inputs("a_dir custom_server_api check", specs) == []
