"""The cache client's value format (gauntlet.clients.cache) and the Sentinel view it follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gauntlet.clients.cache import CorruptValue, Database, decode, encode, payload
from gauntlet.clients.redis import MasterView, freshest
from gauntlet.cluster import Cluster
from gauntlet.errors import InventoryError

keys = st.text(alphabet=st.characters(codec="ascii", exclude_characters="|"), min_size=1, max_size=30)


@given(key=keys, version=st.integers(1, 10**9), size=st.integers(1, 3000))
def test_values_round_trip(key: str, version: int, size: int) -> None:
    assert decode(key, encode(key, version, "v", size)) == (version, "v")
    assert decode(key, encode(key, version, "t", size)) == (version, "t")
    assert len(payload(key, version, size)) == size


def test_wrong_data_is_detected() -> None:
    good = encode("a", 3, "v", 64)
    with pytest.raises(CorruptValue, match="value of 'b'"):
        decode("a", encode("b", 3, "v", 64))
    with pytest.raises(CorruptValue, match="payload"):
        decode("a", good.replace("|3|", "|3|").rsplit("|", 1)[0] + "|" + payload("a", 4, 64))
    with pytest.raises(CorruptValue, match="payload"):
        decode("a", "4" + good[1:])  # version changed, payload of version 3
    with pytest.raises(CorruptValue, match="unparsable"):
        decode("a", "garbage")


def _view(sentinel: str, addr: str, epoch: int, flags: str = "master") -> MasterView:
    return MasterView(sentinel, addr, 6379, epoch, frozenset(flags.split(",")), 2, 2)


def test_master_view_usable_flags() -> None:
    assert _view("s1", "10.0.0.1", 1).usable
    assert not _view("s1", "10.0.0.1", 1, "master,s_down").usable
    assert not _view("s1", "10.0.0.1", 1, "master,s_down,o_down").usable
    # The freshest view wins: a Sentinel cut off from the others still names the old master, older epoch.
    views = [_view("s1", "10.0.0.1", 1), _view("s2", "10.0.0.2", 2), _view("s3", "10.0.0.2", 2)]
    assert freshest(views).address == "10.0.0.2"
    assert freshest([*views, _view("s4", "10.0.0.3", 3, "master,s_down")]).address == "10.0.0.2"
    assert freshest([_view("s1", "10.0.0.1", 1, "master,o_down")]) is None


# -- the database endpoint comes from the inventory ---------------------------------------------------------
def _inventory(tmp_path: Path, groups: dict) -> Cluster:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_text("-")
    (tmp_path / "secrets").mkdir()
    for name in ("postgresql_app", "patroni_app"):
        (tmp_path / "secrets" / name).write_text(f"pw-{name}\n")
    inv = tmp_path / "inventory"
    inv.mkdir()
    top = {
        "vars": {"gauntlet_pki_dir": str(tmp_path / "pki"), "gauntlet_secrets_dir": str(tmp_path / "secrets")}
    }
    (inv / "hosts.yml").write_text(json.dumps({"all": {**top, "children": groups}}))  # JSON is YAML
    return Cluster.from_inventory(inv)


STANDALONE = {
    "postgresql_standalone": {
        "hosts": {"db1": {"ansible_connection": "podman", "gauntlet_address": "10.0.0.5"}}
    }
}
PATRONI = {
    "postgres": {
        "hosts": {"pg1": {"ansible_connection": "podman", "gauntlet_address": "10.0.0.11"}},
        "vars": {"patroni_app_database": "appdb"},
    },
    "haproxy": {
        "hosts": {
            "lb1": {
                "ansible_connection": "podman",
                "gauntlet_address": "10.0.0.20",
                "haproxy_primary_port": 5100,
            }
        }
    },
}


def test_database_is_the_standalone_postgresql_without_haproxy(tmp_path: Path) -> None:
    db = Database.for_cluster(_inventory(tmp_path, STANDALONE))
    assert (db.host, db.address, db.port, db.dbname) == ("db1", "10.0.0.5", 5432, "gauntlet")
    assert db.password == "pw-postgresql_app"


def test_database_is_haproxy_read_write_port_when_present(tmp_path: Path) -> None:
    """The `default` topology: HAProxy in front of Patroni wins, even next to a standalone server."""
    db = Database.for_cluster(_inventory(tmp_path, {**PATRONI, **STANDALONE}))
    assert (db.host, db.address, db.port, db.dbname) == ("lb1", "10.0.0.20", 5100, "appdb")
    assert db.password == "pw-patroni_app"


def test_no_database_names_both_choices(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"group haproxy .* or group postgresql_standalone"):
        Database.for_cluster(
            _inventory(tmp_path, {"redis": {"hosts": {"cache1": {"ansible_connection": "podman"}}}})
        )
