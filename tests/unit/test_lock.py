"""requirements.lock (`make lock`) is what setup installs: every dependency of pyproject.toml pinned there at
its own version, and every line checked against a hash."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REGENERATE = "pyproject.toml and requirements.lock diverge: run `make lock`"


def lock_entries(text):
    """The lock's requirement entries, each one logical line (backslash continuations joined)."""
    logical = re.sub(r"\\\n", " ", text)
    lines = (" ".join(line.split()) for line in logical.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pins(entries):
    """{canonical name: version} of ``name==version --hash=...`` entries."""
    out = {}
    for entry in entries:
        if entry.startswith("-"):  # an option, not a pin (test_every_line_is_a_pin_with_hashes names it)
            continue
        req = Requirement(entry.split(" --hash", 1)[0])
        (spec,) = req.specifier
        out[canonicalize_name(req.name)] = spec.version
    return out


LOCK = lock_entries((ROOT / "requirements.lock").read_text())


def declared():
    """The project's and the dev extra's requirements, as pyproject.toml pins them."""
    return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]] + [
        Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    ]


def extra_requirements(distribution, extra):
    """What ``distribution[extra]`` adds, from the installed distribution's metadata."""
    out = []
    for r in importlib.metadata.requires(distribution) or []:
        req = Requirement(r)
        if (
            req.marker is not None
            and req.marker.evaluate({"extra": extra})
            and not req.marker.evaluate({"extra": ""})
        ):
            out.append(req)
    return out


def test_every_line_is_a_pin_with_hashes():
    assert LOCK, "requirements.lock holds no requirement"
    for entry in LOCK:
        # Options (an index, a find-links path, -e) would tie the lock to one machine; a range is no pin.
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+( --hash=sha256:[0-9a-f]{64})+", entry), entry


def test_the_lock_pins_every_declared_dependency_at_its_version():
    locked = pins(LOCK)
    for req in declared():
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req}: pyproject.toml pins every dependency"
        name = canonicalize_name(req.name)
        assert locked.get(name) == spec.version, (
            f"{req.name}: {locked.get(name)} locked, {spec.version} declared. {REGENERATE}"
        )
        for (
            extra
        ) in req.extras:  # psycopg[binary], molecule-plugins[podman]: what the extra adds is locked too
            for dep in extra_requirements(req.name, extra):
                assert canonicalize_name(dep.name) in locked, f"{dep.name} ({req}): {REGENERATE}"


def test_the_lock_holds_the_build_backend():
    """The editable install builds without isolation (scripts/install-venv.sh): from the locked backend."""
    locked = pins(LOCK)
    for r in PYPROJECT["build-system"]["requires"]:
        req = Requirement(r)
        version = locked.get(canonicalize_name(req.name))
        assert version is not None and req.specifier.contains(version), f"{r}: {version} locked. {REGENERATE}"
