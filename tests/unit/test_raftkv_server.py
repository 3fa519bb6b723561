"""The reference Raft KV server (servers/raftkv) as three local processes, through the harness client:
configuration checks, CRUD, compare-and-set, fail/info classification, durability across a restart, and the
counter, set, id and listing endpoints a declared client's workloads use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checklib.raftkv_local import SRC, Local, local_cluster
from checklib.raftkv_local import config_text as _config
from gauntlet.bench import wait_for
from gauntlet.checkers import linearizable
from gauntlet.clients.base import Fail
from gauntlet.clients.raftkv import CasMismatch, RaftKVClient
from gauntlet.history import History

pytest.importorskip("pysyncobj")


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    yield from local_cluster(tmp_path)


@pytest.fixture
def local_reads(tmp_path: Path) -> Iterator[Local]:
    """A local cluster whose members answer ordinary GETs from their own copy (read_mode = "local")."""
    yield from local_cluster(tmp_path, "local")


def test_config_errors_say_what_to_fix(tmp_path: Path) -> None:
    ports = {"n0": (1, 2)}
    bad = tmp_path / "bad.toml"
    bad.write_text(_config("n0", tmp_path, ports).replace('node_id = "n0"', 'node_id = "other"'))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run(
        [sys.executable, "-m", "raftkv", "-c", str(bad), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "node_id 'other' is not among the peers" in r.stderr
    nopass = tmp_path / "nopass.toml"
    nopass.write_text(_config("n0", tmp_path, ports, password=None))
    r = subprocess.run(
        [sys.executable, "-m", "raftkv", "-c", str(nopass), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "password" in r.stderr


def test_read_mode_is_linearizable_or_local_and_anything_else_is_one_clear_error(tmp_path: Path) -> None:
    ports = {"n0": (1, 2)}
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    def check(read_mode: str | None) -> subprocess.CompletedProcess[str]:
        path = tmp_path / f"{read_mode}.toml"
        path.write_text(_config("n0", tmp_path, ports, read_mode=read_mode))
        return subprocess.run(
            [sys.executable, "-m", "raftkv", "-c", str(path), "--check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    for ok in (None, "linearizable", "local"):
        r = check(ok)
        assert r.returncode == 0, r.stderr
    r = check("eventual")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"raftkv: {tmp_path / 'eventual.toml'} [raft] read_mode must be linearizable or local, not 'eventual'"
    ]


def test_local_cluster_crud_classification_and_durability(local: Local) -> None:
    history = History()
    kv = RaftKVClient(local.members(), tls=False, timeout=5, retry_for=5, history=history)
    kv.wait_for_ready(30)
    assert {kv.status(n)["read_mode"] for n in ("n0", "n1", "n2")} == {"linearizable"}
    kv.put("a", "1", member="n1")
    assert [kv.get("a", member=n) for n in ("n0", "n1", "n2")] == ["1", "1", "1"]
    kv.cas("a", "1", "2", member="n2")
    with pytest.raises(CasMismatch):
        kv.cas("a", "1", "3", member="n0")
    assert kv.delete("a") is True and kv.get("a") is None
    kv.put("b", "kept")
    # a member alone refuses writes with a definite 503, recorded as fail
    lone = "n0"
    for n in ("n0", "n1", "n2"):
        if n != lone:
            local.stop(n)
    # a stopped member behind a pooled keep-alive connection: reconnecting is refused, so nothing was sent
    with pytest.raises(Fail):
        kv.put("b", "never-sent", member="n1", retry_for=0)
    assert [o.type for o in history.ops if o.value == "never-sent"] == ["invoke", "fail"]
    wait_for(lambda: not kv.health(lone)[0], 15, 0.1, "the lone member noticing it lost the majority")
    with pytest.raises(Fail):
        kv.put("b", "lost", member=lone, retry_for=0)
    assert [o.type for o in history.ops if o.value == "lost"] == ["invoke", "fail"]
    # and a linearizable read there is refused too: it needs the majority to order it
    with pytest.raises(Fail):
        kv.get("b", member=lone, retry_for=0)
    # everyone back: the data survived on disk, the refused write is nowhere
    for n in ("n0", "n1", "n2"):
        if n != lone:
            local.start(n)
    kv.wait_for_ready(30)
    assert [kv.get("b", member=n) for n in ("n0", "n1", "n2")] == ["kept"] * 3
    result = linearizable(history)
    assert result.valid is True, result.report()


def test_local_read_mode_serves_a_members_own_copy_without_the_majority(local_reads: Local) -> None:
    """read_mode = "local": an ordinary GET on a member alone answers from its copy (not linearizable: the
    defect raftkv_local_reads plants), where the default read mode refuses it."""
    kv = RaftKVClient(local_reads.members(), tls=False, timeout=5, retry_for=5)
    kv.wait_for_ready(30)
    assert {kv.status(n)["read_mode"] for n in ("n0", "n1", "n2")} == {"local"}
    kv.put("a", "1", member="n1")
    wait_for(lambda: kv.get("a", member="n0") == "1", 10, 0.05, "n0 applying the write")
    local_reads.stop("n1")
    local_reads.stop("n2")
    wait_for(lambda: not kv.health("n0")[0], 15, 0.1, "the lone member noticing it lost the majority")
    assert kv.get("a", member="n0", retry_for=0) == "1"
    with pytest.raises(Fail):
        kv.put("a", "2", member="n0", retry_for=0)  # writes still need the majority


def _call(
    kv: RaftKVClient, member: str, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One HTTP exchange with one member; a dict body is sent as JSON, a str as UTF-8 text."""
    if isinstance(body, dict):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    return kv.request(kv.member(member), method, path, raw)


def test_incr_set_and_next_id_go_through_the_log_on_any_member(local: Local) -> None:
    kv = RaftKVClient(local.members(), tls=False, timeout=5, retry_for=5)
    leader = kv.wait_for_ready(30)
    follower = next(n for n in ("n0", "n1", "n2") if n != leader)
    # counters: an absent key counts as 0, the body may be empty (delta 1), the value is a /kv decimal string
    assert _call(kv, follower, "POST", "/incr/c") == (200, {"key": "c", "value": 1})
    assert _call(kv, leader, "POST", "/incr/c", {"delta": 11}) == (200, {"key": "c", "value": 12})
    assert _call(kv, follower, "POST", "/incr/c", {"delta": -2}) == (200, {"key": "c", "value": 10})
    assert [kv.get("c", member=n) for n in ("n0", "n1", "n2")] == ["10"] * 3
    kv.put("word", "twelve")
    status, body = _call(kv, follower, "POST", "/incr/word", {"delta": 1})
    assert (status, body["current"], body["outcome"]) == (409, "twelve", "not-applied")
    assert kv.get("word") == "twelve"
    for bad in ({"delta": "1"}, {"delta": 1.5}, {"delta": True}, "not json", "[1]"):
        status, body = _call(kv, leader, "POST", "/incr/c", bad)
        assert (status, body["outcome"]) == (400, "not-applied"), bad
    assert kv.get("c") == "10"
    # sets: their own keyspace; adding an element twice answers added false the second time
    assert _call(kv, leader, "GET", "/set/s") == (200, {"key": "s", "elements": [], "stale": False})
    assert _call(kv, follower, "POST", "/set/s", "b") == (200, {"key": "s", "added": True})
    assert _call(kv, leader, "POST", "/set/s", "a") == (200, {"key": "s", "added": True})
    assert _call(kv, leader, "POST", "/set/s", "b") == (200, {"key": "s", "added": False})
    assert _call(kv, follower, "POST", "/set/s", "")[0] == 400
    for n in ("n0", "n1", "n2"):
        assert _call(kv, n, "GET", "/set/s") == (200, {"key": "s", "elements": ["a", "b"], "stale": False})
    assert kv.get("s") is None  # not in the /kv keyspace
    # ids: 1, 2, 3 per name whichever member is asked (a follower hands the command to the leader)
    ids = [_call(kv, n, "POST", "/next-id/order")[1] for n in (follower, leader, follower)]
    assert ids == [{"name": "order", "id": i} for i in (1, 2, 3)]
    assert _call(kv, leader, "POST", "/next-id/other") == (200, {"name": "other", "id": 1})
    assert _call(kv, leader, "POST", "/next-id/order", "x")[0] == 400
    assert _call(kv, follower, "POST", "/next-id/order") == (200, {"name": "order", "id": 4})


def test_kv_listing_is_linearizable_and_every_members_stale_copy_converges(local: Local) -> None:
    kv = RaftKVClient(local.members(), tls=False, timeout=5, retry_for=5)
    leader = kv.wait_for_ready(30)
    follower = next(n for n in ("n0", "n1", "n2") if n != leader)
    assert _call(kv, leader, "GET", "/kv") == (200, {"items": {}, "stale": False})
    kv.put("a", "1", member=follower)
    kv.put("b", "2", member=leader)
    _call(kv, follower, "POST", "/incr/n", {"delta": 5})
    _call(kv, leader, "POST", "/set/s", "in a set, not in /kv")
    want = {"a": "1", "b": "2", "n": "5"}
    # through the log: every member answers with every write that completed before the read began
    for n in ("n0", "n1", "n2"):
        assert _call(kv, n, "GET", "/kv") == (200, {"items": want, "stale": False})
    kv.delete("a", member=follower)
    del want["a"]

    def copies() -> list[dict[str, Any]]:
        return [_call(kv, n, "GET", "/kv?stale=1")[1] for n in ("n0", "n1", "n2")]

    wait_for(lambda: copies() == [{"items": want, "stale": True}] * 3, 10, 0.05, "every member's copy")


def test_write_mode_is_replicated_or_local_and_anything_else_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "n0.toml"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    base = _config("n0", tmp_path, {"n0": (1, 2)})

    def check(write_mode: str) -> subprocess.CompletedProcess[str]:
        path.write_text(base.replace("[raft]\n", f'[raft]\nwrite_mode = "{write_mode}"\n', 1))
        return subprocess.run(
            [sys.executable, "-m", "raftkv", "-c", str(path), "--check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert "[raft]\n" in base
    for ok in ("replicated", "local"):
        r = check(ok)
        assert r.returncode == 0, r.stderr
    r = check("eventual")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"raftkv: {path} [raft] write_mode must be replicated or local, not 'eventual'"
    ]
