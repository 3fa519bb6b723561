"""The history recorder: Jepsen's invoke/ok/fail/info model, monotonic times, JSONL round trip."""

import json
import threading

import pytest

from gauntlet.history import History, pair_ops


def test_op_block_records_invoke_then_ok(tmp_path):
    h = History(tmp_path / "h.jsonl")
    with h.op("c1", "write", 7, key="k") as out:
        out.ok()
    inv, ok = h.ops
    assert (inv.type, ok.type) == ("invoke", "ok")
    assert (ok.process, ok.f, ok.key, ok.value) == ("c1", "write", "k", 7)
    assert ok.time >= inv.time


def test_exception_in_block_is_recorded_as_unknown_and_propagates():
    h = History()
    with pytest.raises(TimeoutError), h.op("c1", "write", 1):
        raise TimeoutError("no answer")
    assert h.ops[-1].type == "info"
    assert "TimeoutError" in h.ops[-1].error


def test_fail_and_read_values():
    h = History()
    with h.op("c1", "write", 1) as out:
        out.fail("connection refused")
    with h.op("c2", "read", None) as out:
        out.ok(41)
    assert [o.type for o in h.ops] == ["invoke", "fail", "invoke", "ok"]
    assert h.ops[-1].value == 41


def test_jsonl_is_written_as_it_goes_and_loads_back(tmp_path):
    path = tmp_path / "h.jsonl"
    h = History(path)
    with h.op("c1", "cas", [1, 2], key="x") as out:
        out.ok()
    h.fault("partition", "start", side_a=["n1"], side_b=["n2", "n3"])
    lines = path.read_text().splitlines()  # flushed before close
    assert len(lines) == 3
    assert json.loads(lines[2])["f"] == "partition:start"
    h.close()
    loaded = History.load(path)
    assert [o.to_json() for o in loaded.ops] == [o.to_json() for o in h.ops]
    assert len(loaded.faults()) == 1 and len(loaded.client_ops()) == 2


def test_concurrent_clients_get_unique_indexes():
    h = History()

    def client(i: int) -> None:
        for n in range(100):
            with h.op(f"c{i}", "write", n) as out:
                out.ok()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [o.index for o in h.ops] == list(range(1600))
    assert all(c is not None and c.type == "ok" for _, c in h.pairs())


def test_pairing_rejects_a_process_with_two_open_ops():
    h = History()
    h.invoke("c1", "write", 1)
    h.invoke("c1", "write", 2)
    with pytest.raises(ValueError, match="before completing"):
        pair_ops(h.ops)


def test_completion_type_is_validated():
    h = History()
    inv = h.invoke("c1", "read")
    with pytest.raises(ValueError):
        h.complete(inv, "maybe")  # type: ignore[arg-type]
