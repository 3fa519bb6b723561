"""The generic client of a declared server, on the reference Raft KV server run locally (three real
processes on loopback): the scenario's own declaration drives every operation and every workload of the
catalogue, and a description that does not fit the answers says which field is wrong."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checklib.declarations import raftkv_api
from checklib.raftkv_local import Local, local_cluster
from gauntlet import api_spec, workloads
from gauntlet.api_spec import ApiSpec, DeclarationError
from gauntlet.bench import wait_for
from gauntlet.clients.declared import CasMismatch, DeclaredClient
from gauntlet.clients.http import HttpTransport
from gauntlet.clients.raftkv import RaftKVClient
from gauntlet.history import History

pytest.importorskip("pysyncobj")


def plain(raw: dict) -> ApiSpec:
    """The scenario's declaration over plain HTTP (the local servers have no TLS)."""
    raw["endpoint"]["scheme"] = "http"
    raw["endpoint"]["tls"] = {"client_cert": "none"}
    return api_spec.load(raw)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    yield from local_cluster(tmp_path)


def declared(local: Local, history: History | None = None, raw: dict | None = None) -> DeclaredClient:
    spec = plain(raw or raftkv_api())
    return DeclaredClient(spec, local.members(), HttpTransport(tls=False, timeout=5), history=history)


def test_every_declared_operation_against_the_real_server(local: Local) -> None:
    history = History()
    c = declared(local, history)
    leader = c.wait_for_ready(60)
    assert leader in {m.name for m in c.members}
    assert c.self_declared_leaders() == [leader]
    assert c.get("absent") is None
    c.put("k", "one")
    assert c.get("k") == "one"
    c.cas("k", "one", "two")
    with pytest.raises(CasMismatch) as mismatch:
        c.cas("k", "one", "three")
    assert mismatch.value.current == "two"
    c.cas("fresh", None, "first")
    assert c.get("fresh") == "first"
    c.delete("fresh")
    assert c.get("fresh") is None
    for _ in range(3):
        c.increment("n", 2)
    assert c.read_counter("n") == 6
    c.add("s", "b")
    c.add("s", "a")
    assert c.read_set("s") == ["a", "b"]
    assert [c.next_id("seq") for _ in range(3)] == ["1", "2", "3"]
    follower = next(m.name for m in c.members if m.name != leader)
    assert c.next_id("seq", member=follower) == "4"
    # every member's own copy converges on the same listing
    wait_for(
        lambda: len({tuple(sorted(c.listing(m.name).items())) for m in c.members}) == 1, 20, 0.1, "listings"
    )
    assert c.listing(follower)["k"] == "two"
    fs = [op.f for op in history.ops if op.type == "invoke"]
    assert {"read", "write", "cas", "delete", "increment", "add", "next-id", "list"} <= set(fs)
    mismatch_op = next(op for op in history.ops if op.f == "cas" and op.type == "fail")
    assert "mismatch" in (mismatch_op.error or "")


def test_an_answer_the_result_path_finds_nothing_in_names_the_field(local: Local) -> None:
    raw = raftkv_api()
    raw["operations"]["read"]["result"] = "val"
    c = declared(local, raw=raw)
    c.wait_for_ready(60)
    c.put("k", "v")
    with pytest.raises(DeclarationError) as exc:
        c.get("k")
    assert str(exc.value).startswith(
        "custom_server_api.operations.read.result: 'val' finds nothing in the answer of n"
    )


@pytest.mark.parametrize("name", list(workloads.CATALOGUE))
def test_every_workload_of_the_catalogue_holds_on_the_real_server(local: Local, name: str) -> None:
    history = History()
    c = declared(local, history)
    c.wait_for_ready(60)
    work = workloads.get(name)(c, history, workers=3, max_ops=300, max_seconds=30)
    with work.running():
        work.wait_ops(60, 30)
    verdict = work.check()
    print(verdict)
    assert verdict.valid is True, str(verdict)


def test_a_lossy_server_is_caught_by_the_set_workload(local: Local) -> None:
    """Negative control: a description that classifies a refused add as ok (the server said 503, the
    client says acknowledged) makes acknowledged adds vanish -- the set verdict must say so."""
    history = History()
    raw = raftkv_api()
    raw["operations"]["add"]["path"] = "/set-typo/{key}"  # 404: nothing added
    raw["operations"]["add"]["answers"] = [{"status": 404, "as": "ok"}]
    c = declared(local, history, raw)
    c.wait_for_ready(60)
    work = workloads.get("set")(c, history, workers=2, max_ops=40, max_seconds=20)
    with work.running():
        work.wait_ops(20, 20)
    verdict = work.check()
    assert verdict.valid is False and "lost" in verdict.explanation, str(verdict)


def test_generic_client_throughput_against_the_hand_written_one(local: Local, bench) -> None:
    """BENCH: operations/s of the declared client against the hand-written raftkv client, same cluster."""
    c = declared(local)
    c.wait_for_ready(60)
    hand = RaftKVClient(local.members(), tls=False, timeout=5)
    n = 150

    def rate(put, get) -> float:  # type: ignore[no-untyped-def]
        began = time.monotonic()
        for i in range(n):
            put(f"bench-{i}", str(i))
            get(f"bench-{i}")
        return 2 * n / (time.monotonic() - began)

    rate(hand.put, hand.get)  # warm both paths once (connections, elections settled)
    hand_rate = rate(hand.put, hand.get)
    generic_rate = rate(c.put, c.get)
    ratio = generic_rate / hand_rate
    print(f"generic {generic_rate:.0f} ops/s, hand-written {hand_rate:.0f} ops/s, ratio {ratio:.2f}")
    bench.record("declared_client_ops_per_second", generic_rate, "ops/s", server="raftkv-local")
    bench.record("raftkv_client_ops_per_second", hand_rate, "ops/s", server="raftkv-local")
    bench.record("declared_vs_hand_written_ops_ratio", ratio, "ratio", server="raftkv-local")
