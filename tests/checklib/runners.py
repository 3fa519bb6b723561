"""Helpers of the entity-runtime checks (tests/integration/test_runners.py): the runners' client, waiting
for every shard to have an owner, keys on a chosen runner's shards, and recorded load beside the faults."""

from __future__ import annotations

import random
import threading
import time
import uuid
import zlib
from collections.abc import Iterable

from gauntlet.bench import wait_for
from gauntlet.clients.runner import GROUP, RunnerClient
from gauntlet.cluster import Cluster
from gauntlet.history import History

READY_S = 90.0
# A new owner must serve a dead runner's shards within this long (lease_ttl 8 s + rebalance; measured ~8-9 s).
HANDOVER_BOUND_S = 30.0
# Load threads stop by themselves after this long, or this many operations each, even if the check failed.
LOAD_MAX_S = 180.0
LOAD_MAX_OPS = 20000


def unit(cluster: Cluster, host: str) -> str:
    """The runner's systemd unit (the custom_server role's custom_server_service_name)."""
    return str(cluster[host].setting("custom_server_service_name"))


def runners(cluster: Cluster) -> list[str]:
    return [h.name for h in cluster.group(GROUP)]


def shard_map(rc: RunnerClient, via: str) -> dict[int, str]:
    """shard -> owner, as runner ``via`` sees it."""
    return {int(s): str(r) for s, r in rc.shards(via)["map"].items()}


def wait_for_owners(rc: RunnerClient, members: list[str], timeout: float = READY_S) -> dict[int, str]:
    """Wait until every shard is owned by one of ``members``, each of them owns some (a runner that just
    came back takes its shards from the others), they agree on the shard map and on the singleton's holder;
    the map."""
    n = rc.shard_count

    def agreed() -> dict[int, str] | None:
        views = [rc.shards(m) for m in members]
        maps = [{int(s): r for s, r in v["map"].items()} for v in views]
        owned = {int(s): v["runner"] for v in views for s in v["owned"]}
        holders = {v["singleton"] for v in views}
        settled = len(owned) == n and all(m == owned for m in maps) and set(owned.values()) == set(members)
        if settled and len(holders) == 1 and None not in holders:
            return owned
        return None

    result: dict[int, str] = wait_for(agreed, timeout, 0.5, f"every shard owned by one of {members}")
    return result


def shard_of(entity: str, shards: int) -> int:
    """An entity's shard by the runtime's documented rule (crc32(id) % shards; servers/runner)."""
    return zlib.crc32(entity.encode()) % shards


def wait_for_handover(
    rc: RunnerClient, shards: Iterable[int], to: list[str], via: str, interval: float, what: str
) -> float:
    """Wait until runner ``via`` sees every one of ``shards`` owned by one of ``to``; the seconds it took."""
    wanted = list(shards)
    t0 = time.monotonic()
    wait_for(lambda: all(shard_map(rc, via).get(s) in to for s in wanted), HANDOVER_BOUND_S, interval, what)
    return time.monotonic() - t0


def keys_on(owner: str, shards: dict[int, str], count: int, prefix: str) -> list[str]:
    """``count`` entity ids whose shard (crc32(id) % shards, the runtime's rule) ``owner`` holds."""
    n = len(shards)
    out: list[str] = []
    tag = uuid.uuid4().hex[:6]
    if owner not in shards.values():
        raise ValueError(f"{owner} owns no shard: {shards}")
    i = 0
    while len(out) < count:
        name = f"{prefix}-{tag}-{i}"
        if shards.get(shard_of(name, n)) == owner:
            out.append(name)
        i += 1
    return out


def spread_keys(count: int, prefix: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}-{tag}-{i}" for i in range(count)]


class Load:
    """Workers incrementing and reading ``keys`` (and asking the singleton for numbers) through randomly
    chosen runners, each a process of the history, until stopped."""

    def __init__(
        self,
        rc: RunnerClient,
        history: History,
        members: list[str],
        keys: list[str],
        *,
        workers: int = 6,
        sequence: bool = False,
        seed: int = 7,
    ) -> None:
        self.rc, self.history, self.members, self.keys = rc, history, members, keys
        self.sequence = sequence
        self.ok = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(rc.for_process(f"w{i}", history), random.Random(seed + i)),
                daemon=True,
                name=f"load-w{i}",
            )
            for i in range(workers)
        ]
        self.started = 0.0

    def _loop(self, c: RunnerClient, rng: random.Random) -> None:
        deadline = time.monotonic() + LOAD_MAX_S
        for _ in range(LOAD_MAX_OPS):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            member = rng.choice(self.members)
            key = rng.choice(self.keys)
            roll = rng.random()
            if self.sequence and roll < 0.2:
                r = c.next_seq(member)
            elif roll < 0.7:
                r = c.increment(member, key)
            else:
                r = c.read_counter(member, key)
            if r is not None:
                with self._lock:
                    self.ok += 1
            else:
                time.sleep(0.05)  # a refused call: do not spin on a runner that is down
        c.transport.close()

    def start(self) -> Load:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def wait_ok(self, n: int, timeout: float, what: str) -> float:
        """Wait for ``n`` more ok operations; the seconds it took."""
        with self._lock:
            start = self.ok
        t0 = time.monotonic()
        wait_for(lambda: self.ok - start >= n, timeout, 0.05, f"{n} more ok operations {what}")
        return time.monotonic() - t0

    def stop(self) -> float:
        """Stop the workers; the ok operations per second over the run."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return self.ok / max(0.001, time.monotonic() - self.started)


def final_counter_reads(rc: RunnerClient, history: History, members: list[str], keys: list[str]) -> None:
    """Each counter read once more through a live runner, into ``history`` (the counter checker's final
    read)."""
    c = rc.for_process("final", history)
    for key in keys:
        wait_for(
            lambda key=key: c.read_counter(random.choice(members), key) is not None, 60, 0.2, f"read {key}"
        )


def final_holders_read(rc: RunnerClient, history: History, via: str) -> None:
    """The singleton's leader history (``GET /singleton/history``: holder, token, acquired_at, first_seq),
    read once through runner ``via`` into ``history`` (the singleton_holders checker's final read)."""
    inv = history.invoke("final", "read_holders", None, "sequencer")
    record = wait_for(lambda: rc.call(via, "GET", "/singleton/history").get("history"), 30, 0.5, "holders")
    history.complete(inv, "ok", value=record)
