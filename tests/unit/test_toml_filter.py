"""The gauntlet.cluster.to_toml filter (plugins/filter/toml.py): what it writes parses back to the same data."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location(
    "gauntlet_toml_filter", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "toml.py"
)
toml_filter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toml_filter)
to_toml = toml_filter.to_toml


def test_a_node_config_round_trips():
    config = {
        "node_id": "node1",
        "data_dir": "/var/lib/custom-server",
        "listen": {"client": "0.0.0.0:8443", "peer": "0.0.0.0:7480"},
        "peers": [
            {"id": "node1", "client": "10.0.0.1:8443", "peer": "10.0.0.1:7480"},
            {"id": "node2", "client": "10.0.0.2:8443", "peer": "10.0.0.2:7480", "labels": {"zone": "b"}},
        ],
        "tls": {"cert_file": "/etc/x/node.crt", "client_auth": "require"},
        "raft": {"password": 'p"a\\ss\nword', "commit_timeout": 3.0, "enabled": True, "ports": [1, 2]},
        "dotted.key": "quoted",
        "unset": None,
    }
    text = to_toml(config)
    back = tomllib.loads(text)
    expected = {k: v for k, v in config.items() if v is not None}
    assert back == expected
    assert text.index("node_id") < text.index("[listen]")  # plain values before tables


def test_rejects_what_toml_cannot_hold():
    with pytest.raises(TypeError):
        to_toml(["not", "a", "dict"])
    with pytest.raises(TypeError):
        to_toml({"x": object()})


scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=("Cs",))),
)
keys = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)
values = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda inner: (
        st.dictionaries(keys, inner, max_size=3)
        | st.lists(st.dictionaries(keys, inner, min_size=1, max_size=3), min_size=1, max_size=2)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_any_document_round_trips(doc):
    assert tomllib.loads(to_toml(doc)) == doc


def test_written_by_tomli_w():
    """The document is tomli-w's (no hand-written serializer): the filter only drops the Nones first."""
    import tomli_w

    doc = {"a": 1, "b": [1, None, 2], "t": {"x": "y", "n": None}, "aot": [{"k": 1}, {"k": 2}]}
    assert to_toml(doc) == tomli_w.dumps({"a": 1, "b": [1, 2], "t": {"x": "y"}, "aot": [{"k": 1}, {"k": 2}]})


def test_refuses_a_lone_surrogate():
    with pytest.raises(TypeError, match="surrogate"):
        to_toml({"x": "a\ud800b"})
