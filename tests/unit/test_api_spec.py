"""The declared API's validation (gauntlet.api_spec): every mistake is one line naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from checklib.declarations import etcd_api, raftkv_api, runner_api
from gauntlet import api_spec
from gauntlet.api_spec import DeclarationError


def error_of(raw: Any) -> str:
    with pytest.raises(DeclarationError) as exc:
        api_spec.load(raw)
    line = str(exc.value)
    assert "\n" not in line, "one line"
    return line


def test_every_shipped_declaration_loads() -> None:
    for raw in (raftkv_api(), etcd_api(), runner_api()):
        spec = api_spec.load(raw)
        assert set(api_spec.REQUIRED) <= set(spec.operations)
        for workload in spec.workloads:
            assert set(api_spec.WORKLOAD_NEEDS[workload]) <= set(spec.operations), (spec.name, workload)


def test_the_runner_declaration_classifies_refusals_as_not_applied() -> None:
    """The entity runtime's refusals (503 not-applied, 409 fenced) certainly changed nothing; a timeout may
    have; its status names the singleton's holder as the leader."""
    spec = api_spec.load(runner_api())
    assert spec.workloads == ("register", "counter", "unique_ids")
    for name in ("write", "increment", "next_id"):
        op = spec.op(name)
        assert op.classify(503, {"outcome": "not-applied"}).outcome == "fail", name
        assert op.classify(409, {"outcome": "fenced"}).outcome == "fail", name
        assert op.classify(504, {}).outcome == "info", name
    assert spec.op("read").classify(404, {}).absent
    assert spec.op("read_counter").decode == "int"
    inc = spec.op("increment")
    assert inc.body is not None and inc.body.render({"key": "c", "delta": 2}) == {"delta": 2}
    assert spec.op("read").path.render({"key": "e/1"}) == "/kv/e%2F1/v"
    assert spec.status.is_leader is not None
    assert spec.status.is_leader.search({"runner": "runner2", "singleton": "runner2"})
    assert not spec.status.is_leader.search({"runner": "runner2", "singleton": None})


def test_a_missing_operation_names_it() -> None:
    raw = raftkv_api()
    del raw["operations"]["status"]
    assert error_of(raw).startswith("custom_server_api.operations.status: missing")


def test_an_operation_a_workload_needs_names_the_workload() -> None:
    raw = raftkv_api()
    del raw["operations"]["next_id"]
    assert error_of(raw) == (
        "custom_server_api.operations.next_id: missing (the unique_ids workload needs it: declare it or drop "
        "unique_ids from custom_server_api.workloads)"
    )


def test_a_template_naming_an_unknown_field_names_the_field_and_the_known_ones() -> None:
    raw = raftkv_api()
    raw["operations"]["write"]["path"] = "/kv/{name}"
    assert error_of(raw) == (
        "custom_server_api.operations.write.path: template names {name}, not a field of write "
        "(its fields: key, value)"
    )
    raw = raftkv_api()
    raw["operations"]["cas"]["body"] = {"expect": "{old}", "value": "{value}"}
    assert error_of(raw).startswith("custom_server_api.operations.cas.body.expect: template names {old}")


def test_an_unknown_encoding_is_named() -> None:
    raw = raftkv_api()
    raw["operations"]["read"]["path"] = "/kv/{key:hex}"
    assert "{key:hex}: unknown encoding (known: url, b64, raw, json)" in error_of(raw)


def test_an_unknown_classification_names_the_rule() -> None:
    raw = raftkv_api()
    raw["operations"]["write"]["answers"] = [{"status": 503, "as": "maybe"}]
    assert error_of(raw) == (
        "custom_server_api.operations.write.answers[0].as: 'maybe' is not one of ok, fail, info"
    )


def test_bad_statuses_results_and_rules_are_named() -> None:
    raw = raftkv_api()
    raw["operations"]["read"]["answers"] = [{"status": "6xx", "as": "ok"}]
    assert "operations.read.answers[0].status: '6xx' is not an HTTP status" in error_of(raw)
    raw = raftkv_api()
    raw["operations"]["read"]["result"] = "value[?"
    assert error_of(raw).startswith("custom_server_api.operations.read.result: 'value[?' is not a JMESPath")
    raw = raftkv_api()
    del raw["operations"]["read"]["result"]
    assert error_of(raw).startswith("custom_server_api.operations.read.result: missing")
    raw = raftkv_api()
    raw["operations"]["write"]["answers"] = [{"status": 200, "as": "ok", "absent": True}]
    assert "operations.write.answers[0].absent: only an ok answer of a read" in error_of(raw)
    raw = raftkv_api()
    raw["operations"]["read"]["answers"] = [{"as": "ok"}]
    assert "answers[0]: matches every answer" in error_of(raw)


def test_unknown_fields_operations_and_workloads_are_named() -> None:
    raw = raftkv_api()
    raw["operations"]["read"]["mehtod"] = "GET"
    assert error_of(raw).startswith("custom_server_api.operations.read.mehtod: unknown field")
    raw = raftkv_api()
    raw["operations"]["scan"] = {"path": "/scan"}
    assert error_of(raw).startswith("custom_server_api.operations.scan: unknown operation")
    raw = raftkv_api()
    raw["workloads"] = ["register", "bank"]
    assert error_of(raw).startswith("custom_server_api.workloads: unknown workload 'bank'")
    raw = raftkv_api()
    raw["endpoint"]["port"] = 99999
    del raw["endpoint"]["port_var"]
    assert error_of(raw) == "custom_server_api.endpoint.port: 99999 is not a port number (1-65535)"
    raw = raftkv_api()
    raw["endpoint"]["auth"] = {"type": "basic", "username": "u"}
    assert error_of(raw).startswith("custom_server_api.endpoint.auth.password: missing")
    raw = raftkv_api()
    del raw["status"]["leader"]
    assert error_of(raw).startswith("custom_server_api.status.leader: missing")


def test_templates_render_encodings_and_typed_json_fields() -> None:
    spec = api_spec.load(etcd_api())
    put = spec.op("write")
    assert put.body is not None
    assert put.body.render({"key": "k/1", "value": "v"}) == {"key": "ay8x", "value": "dg=="}
    raft = api_spec.load(raftkv_api())
    assert raft.op("read").path.render({"key": "a b/c"}) == "/kv/a%20b%2Fc"
    cas = raft.op("cas")
    assert cas.body is not None
    assert cas.body.render({"key": "k", "expect": None, "value": "x"}) == {"expect": None, "value": "x"}
    inc = raft.op("increment")
    assert inc.body is not None and inc.body.render({"key": "k", "delta": 3}) == {"delta": 3}


def test_classification_first_rule_then_defaults() -> None:
    raft = api_spec.load(raftkv_api())
    read = raft.op("read")
    assert read.classify(404, {}).absent
    assert read.classify(503, {"outcome": "not-applied"}).outcome == "fail"
    assert read.classify(503, {"outcome": "unknown"}).outcome == "info"
    assert read.classify(504, {}).outcome == "info"
    assert read.classify(400, {}).outcome == "fail"
    assert read.classify(200, {"value": "x"}).outcome == "ok"
    assert raft.op("cas").classify(409, {}).mismatch


def test_the_harness_finds_the_declaration_in_the_inventory(tmp_path) -> None:
    """spec_of reads custom_server_api from the hosts of the group it names; none is one line."""
    import yaml

    from gauntlet.clients.declared import spec_of
    from gauntlet.cluster import Cluster

    api = raftkv_api()
    api["endpoint"]["group"] = "kv"
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "kv": {
                            "hosts": {"h1": {"ansible_connection": "local"}},
                            "vars": {"custom_server_api": api},
                        }
                    }
                }
            }
        )
    )
    cluster = Cluster.from_inventory(inv)
    assert spec_of(cluster).name == "raftkv"
    assert spec_of(cluster, "kv").endpoint.group == "kv"
    bare = tmp_path / "bare.yml"
    bare.write_text("all:\n  children:\n    kv:\n      hosts:\n        h1: {ansible_connection: local}\n")
    with pytest.raises(DeclarationError) as exc:
        spec_of(Cluster.from_inventory(bare))
    assert str(exc.value) == "custom_server_api: not set on the hosts of any group of the inventory"
