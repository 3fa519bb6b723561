"""Helpers of the custom server checks (tests/integration/test_custom*.py): the cluster as the checks see it,
a Jepsen-style workload of recorded clients, and the verdicts every check ends with."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gauntlet.bench import wait_for
from gauntlet.checkers import linearizable
from gauntlet.clients.base import ClientError, Result, WorkloadRunner
from gauntlet.clients.declared import CasMismatch, DeclaredClient, spec_of
from gauntlet.cluster import Cluster, Host
from gauntlet.history import History

GROUP = "custom_server"
# A workload stops by itself after this long, even when the check that started it failed.
WORKLOAD_MAX_S = 600.0


def unit(cluster: Cluster) -> str:
    """The systemd unit of the custom server (role knob custom_server_service_name)."""
    return str(cluster.setting("custom_server_service_name", GROUP))


def fresh_keys(prefix: str, n: int = 1) -> list[str]:
    """Keys no earlier check used: every register starts absent, as the linearizability check assumes."""
    run = uuid.uuid4().hex[:8]
    return [f"{prefix}-{run}-{i}" for i in range(n)]


def client(cluster: Cluster, history: History | None = None, **kw: Any) -> DeclaredClient:
    """The generic client built from the inventory's ``custom_server_api`` (molecule/custom/hosts.yml
    declares the reference server's API): every member, the cluster CA and the tests' client certificate."""
    return DeclaredClient.from_cluster(cluster, spec_of(cluster, GROUP), history=history, **kw)


def host_of(cluster: Cluster, kv: DeclaredClient, member_id: str) -> Host:
    """The inventory host of a member id as /cluster names it (node ids default to inventory names)."""
    if member_id in cluster.hosts:
        return cluster[member_id]
    for m in kv.members:
        if kv.self_id(m.name) == member_id:
            return cluster[m.name]
    raise KeyError(f"no inventory host serves member {member_id}")


def leader(cluster: Cluster, kv: DeclaredClient, timeout: float = 30.0) -> Host:
    """The host every member agrees is the leader (waits for agreement)."""
    name = kv.wait_for_ready(timeout)
    return host_of(cluster, kv, name)


def new_leader(kv: DeclaredClient, survivors: list[str], old: str, timeout: float) -> str:
    """Wait until the ``survivors`` agree on a leader other than ``old`` and serve (health); return it."""

    def elected() -> str | None:
        views = {}
        for n in survivors:
            try:
                views[n] = kv.leader_seen_by(n)
            except ClientError:
                return None
        ids = set(views.values())
        if len(ids) == 1 and None not in ids and old not in ids:
            return ids.pop()
        return None

    return wait_for(elected, timeout, interval=0.05, what=f"a new leader (not {old}) among {survivors}")


def put_until_ok(kv: DeclaredClient, key: str, value: str, timeout: float = 30.0, **kw: Any) -> None:
    """Write until one attempt is acknowledged. Under faults an attempt can end "unknown" (e.g. 504: the
    leader changed before the commit); each attempt is its own op in the history, and writing the same value
    again is harmless for a register, so the check stays sound."""
    wait_for(lambda: kv.put(key, value, **kw) or True, timeout, 0.1, f"an acknowledged write of {key}")


def assert_linearizable(history: History, **kw: Any) -> None:
    """Every key's operations form a linearizable register history; else the shrunk violation is shown."""
    result = linearizable(history, **kw)
    print(result.report().splitlines()[0])
    assert result.valid is True, result.report()


def term_leaders(samples: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Raft's election safety, from /cluster samples: term -> the members that were leader in it."""
    out: dict[int, set[str]] = {}
    for s in samples:
        if s.get("state") == "leader":
            out.setdefault(int(s["term"]), set()).add(str(s["node_id"]))
    return out


@dataclass
class _Worker:
    """One process of the workload: its client, its random choices, the value it last saw per key."""

    client: DeclaredClient
    rng: random.Random
    last: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Workload:
    """Recorded clients doing random reads, writes and compare-and-sets on a few keys until stopped.

    Each worker is one process of the history, run by a bounded :class:`WorkloadRunner` (it stops by itself
    after ``max_seconds`` if a failing check never stops it). Writes carry unique values (Jepsen's
    convention: a read identifies the write it saw). A cas expects the value the worker last saw, so some
    fail with a mismatch (a definite failure, recorded as such).
    """

    cluster: Cluster
    history: History
    keys: list[str]
    workers: int = 4
    seed: int = 0
    client_kw: dict[str, Any] = field(default_factory=dict)
    max_seconds: float = WORKLOAD_MAX_S
    counts: Counter = field(default_factory=Counter)
    _workers: dict[str, _Worker] = field(default_factory=dict)
    _runner: WorkloadRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Workload:
        base = client(self.cluster, self.history, **self.client_kw)
        for i in range(self.workers):
            p = f"w{i}"
            self._workers[p] = _Worker(base.for_process(p), random.Random(self.seed * 1000 + i))
        self._runner = WorkloadRunner(
            list(self._workers),
            self._step,
            backoff_s=0.05,  # the client already retried across members; do not spin
            max_seconds=self.max_seconds,
            finish=lambda p: self._workers[p].client.close(),
        ).start()
        return self

    def _step(self, process: str, n: int) -> Result:
        w = self._workers[process]
        c, key, roll = w.client, w.rng.choice(self.keys), w.rng.random()
        result = Result("ok")
        try:
            if roll < 0.4:
                w.last[key] = c.get(key)
                outcome = "read-ok"
            elif roll < 0.8:
                value = f"{process}-{n}"
                c.put(key, value)
                w.last[key] = value
                outcome = "write-ok"
            else:
                value = f"{process}-{n}"
                c.cas(key, w.last.get(key), value)
                w.last[key] = value
                outcome = "cas-ok"
        except CasMismatch as exc:
            w.last[key] = exc.current
            outcome = "cas-mismatch"
        except ClientError as exc:
            outcome = "definite-fail" if exc.definite else "unknown"
            result = Result("fail" if exc.definite else "info", error=str(exc))
        with self._lock:
            self.counts[outcome] += 1
        return result

    def stop(self) -> Counter:
        """Stop every worker (raises :class:`~gauntlet.clients.base.WorkloadStuck` if one does not stop)."""
        if self._runner is not None:
            self._runner.stop(timeout=40)
        return self.counts

    def ok_writes(self) -> int:
        return self.counts["write-ok"] + self.counts["cas-ok"]

    def wait_ops(self, n: int, timeout: float, what: str = "operations") -> None:
        """Wait until at least ``n`` more operations completed ok (the cluster is serving)."""
        with self._lock:
            start = self.counts["read-ok"] + self.ok_writes()

        def enough() -> bool:
            with self._lock:
                return self.counts["read-ok"] + self.ok_writes() - start >= n

        wait_for(enough, timeout, interval=0.05, what=f"{n} more successful {what}")
