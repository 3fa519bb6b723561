"""Every plugin of the collection has ansible-doc documentation: ``ansible-doc -t <type> --json <fqcn>``.

The filters are collected from each ``plugins/filter/*.py`` file's ``FilterModule().filters()``, so a new
filter without its sidecar (``plugins/filter/<filter name>.yml``, DOCUMENTATION + EXAMPLES + RETURN) fails
here; connection plugins are ``plugins/connection/<name>.py`` with a DOCUMENTATION string. The collection is
reached through a link made in a temporary directory, not the checkout's ``.cache``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
FQCN_PREFIX = "gauntlet.cluster."

pytestmark = pytest.mark.skipif(shutil.which("ansible-doc") is None, reason="ansible-doc not installed")


def filter_names() -> list[str]:
    """The names every filter plugin file registers (its ``FilterModule().filters()``)."""
    names: list[str] = []
    for path in sorted((PLUGINS / "filter").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"gauntlet_filter_{path.stem}", path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names += sorted(module.FilterModule().filters())
    return names


def connection_names() -> list[str]:
    """The connection plugins (one per file)."""
    return sorted(p.stem for p in (PLUGINS / "connection").glob("*.py") if p.stem != "__init__")


PLUGIN_CASES = [("filter", n) for n in filter_names()] + [("connection", n) for n in connection_names()]


@pytest.fixture(scope="module")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections root whose gauntlet/cluster is this checkout."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections" / "gauntlet").mkdir(parents=True)
    (root / "ansible_collections" / "gauntlet" / "cluster").symlink_to(ROOT)
    return root


def test_the_plugins_are_found() -> None:
    """The collection step itself: both filter files and the connection plugin are seen."""
    assert {"to_toml", "redis_cluster_layout"} <= set(filter_names())
    assert "podman" in connection_names()


@pytest.mark.parametrize(("plugin_type", "name"), PLUGIN_CASES, ids=[f"{t}:{n}" for t, n in PLUGIN_CASES])
def test_ansible_doc_describes_the_plugin(collections_path: Path, plugin_type: str, name: str) -> None:
    """``ansible-doc --json`` answers with a description (and, for a filter, examples and a return value)."""
    fqcn = FQCN_PREFIX + name
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
        "ANSIBLE_NOCOLOR": "1",
    }
    r = subprocess.run(
        ["ansible-doc", "-t", plugin_type, "--json", fqcn],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    hint = f"a sidecar plugins/filter/{name}.yml" if plugin_type == "filter" else "a DOCUMENTATION string"
    assert r.returncode == 0, f"ansible-doc -t {plugin_type} {fqcn} failed (needs {hint}): {r.stderr.strip()}"
    answer = json.loads(r.stdout or "{}")
    assert fqcn in answer, f"ansible-doc -t {plugin_type} {fqcn}: not found ({r.stderr.strip()})"
    doc = answer[fqcn]["doc"]
    assert doc.get("description"), f"{fqcn}: documentation without a description"
    assert doc.get("short_description"), f"{fqcn}: documentation without a short_description"
    if plugin_type == "filter":
        assert answer[fqcn].get("examples"), f"{fqcn}: no EXAMPLES in plugins/filter/{name}.yml"
        assert answer[fqcn].get("return"), f"{fqcn}: no RETURN in plugins/filter/{name}.yml"
