"""The reference entity runtime's pure parts (servers/runner): its configuration checks name the fix, and
shard placement is stable (the checks compute an entity's shard the way the runtime does)."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "servers" / "runner" / "src"))

from runner.config import ConfigError, parse
from runner.runtime import desired_owner, shard_of


def _config(**runner: Any) -> dict[str, Any]:
    return {
        "node_id": "r1",
        "listen": {"client": "0.0.0.0:8443"},
        "peers": [{"id": "r1", "client": "10.0.0.1:8443"}],
        "runner": runner,
        "etcd": {"endpoints": ["https://10.0.0.1:2379"]},
        "postgres": {"host": "10.0.0.9", "password": "x"},
    }


def test_a_valid_config_keeps_fencing_on_by_default() -> None:
    c = parse(_config())
    assert c.runner.fencing is True and c.runner.shards == 32
    # the other planted defects' knobs are off unless set
    assert c.runner.inherit_timers is True and c.runner.durable_state is True
    assert c.advertise_client == "10.0.0.1:8443"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keepalive_timeout": 5.0}, "keepalive_interval < keepalive_timeout < lease_ttl"),
        ({"shards": 0}, "shards must be at least 1"),
        ({"fence": False}, "unknown keys ['fence']"),
    ],
)
def test_a_wrong_runner_table_names_the_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r".*") as exc:
        parse(_config(**change))
    assert message in str(exc.value)


def test_missing_tables_name_what_is_missing() -> None:
    data = _config()
    del data["postgres"]
    with pytest.raises(ConfigError, match=r"\[postgres\] table is required"):
        parse(data)
    data = _config()
    data["node_id"] = "r9"
    with pytest.raises(ConfigError, match="not among the"):
        parse(data)


def test_shard_placement_is_the_documented_rule_and_stable() -> None:
    assert shard_of("counter-7", 32) == zlib.crc32(b"counter-7") % 32
    owners = {s: desired_owner(s, ["r1", "r2", "r3"]) for s in range(32)}
    assert set(owners.values()) == {"r1", "r2", "r3"}
    # a runner leaving moves only its own shards
    without = {s: desired_owner(s, ["r1", "r3"]) for s in range(32)}
    assert all(without[s] == o for s, o in owners.items() if o != "r2")
    assert desired_owner(0, []) is None
