"""Recorded Redis writers on the bounded workload runner: unique keys through a Sentinel-discovered primary
(optionally confirmed by ``WAIT``), or through a cluster-aware client of a Redis Cluster."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis

from gauntlet.clients.base import Fail, Info, Result, WorkloadRunner, record
from gauntlet.clients.redis.cluster import RedisClusterNodes
from gauntlet.clients.redis.connection import redis_error
from gauntlet.clients.redis.sentinel import PrimaryClient
from gauntlet.history import History

# Writers stop by themselves after this long, even when the check that started them failed.
WRITERS_MAX_S = 600.0
WAIT_TIMEOUT_MS = 500
# Error replies that say a demoted primary refused the write: nothing was written.
_PRIMARY_REFUSED = (redis.ReadOnlyError, redis.exceptions.NoPermissionError)
# Error replies of a cluster that cannot serve the slot: nothing was written.
_CLUSTER_REFUSED = (redis.exceptions.ClusterDownError, redis.exceptions.ResponseError)


class SentinelWriters:
    """Threads writing unique keys through Sentinel-discovered primaries: ``plain`` ones (f ``write``) and
    ones that wait for a replica (f ``write_wait``: ok only when ``WAIT 1`` confirmed it).

    ``make_client()`` gives each thread its own :class:`PrimaryClient` (kept in :attr:`clients`, closed
    when the thread ends). Use as a context manager."""

    def __init__(
        self,
        make_client: Callable[[], PrimaryClient],
        history: History,
        plain: int = 3,
        waiting: int = 3,
        max_seconds: float = WRITERS_MAX_S,
    ) -> None:
        self.make_client = make_client
        self.history = history
        self.prefix = f"gauntlet:fo:{uuid.uuid4().hex[:8]}:"
        self.clients: list[PrimaryClient] = []
        self._by_process: dict[str, PrimaryClient] = {}
        self._lock = threading.Lock()
        processes = [f"p{i}" for i in range(plain)] + [f"w{i}" for i in range(waiting)]
        self.runner = WorkloadRunner(
            processes, self._step, pause_s=0.01, backoff_s=0.05, max_seconds=max_seconds, finish=self._finish
        )

    def _client(self, process: str) -> PrimaryClient:
        if process not in self._by_process:
            c = self.make_client()
            with self._lock:
                self._by_process[process] = c
                self.clients.append(c)
        return self._by_process[process]

    def _set(self, process: str, key: str, value: str, wait: bool) -> None:
        primary = self._client(process)
        try:
            primary.client()
        except redis.ConnectionError as exc:  # no master known: nothing was sent
            raise Fail(f"no primary: {exc}") from exc
        except Exception as exc:  # discovery itself broke: nothing was sent to a primary either
            raise Fail(f"no primary: {type(exc).__name__}: {exc}") from exc

        def write(c: redis.Redis) -> list[Any]:
            pipe = c.pipeline(transaction=False)
            pipe.set(key, value)
            if wait:
                pipe.execute_command("WAIT", 1, WAIT_TIMEOUT_MS)  # type: ignore[no-untyped-call]
            return pipe.execute()

        try:
            replies = primary.call(write)
        except Exception as exc:  # anything but a refusal after sending: unknown, and the writer goes on
            raise redis_error(exc, _PRIMARY_REFUSED) from exc
        if wait and int(replies[1]) < 1:
            raise Info("WAIT: no replica confirmed the write")

    def _step(self, process: str, n: int) -> Result:
        wait = process.startswith("w")
        value = f"{process}-{n}"
        key = self.prefix + value
        f = "write_wait" if wait else "write"
        return record(
            self.history, process, f, lambda: self._set(process, key, value, wait), value=value, key=key
        )

    def _finish(self, process: str) -> None:
        c = self._by_process.get(process)
        if c is not None:
            c.close()

    def __enter__(self) -> SentinelWriters:
        self.runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop(timeout=30)


class ClusterWriters:
    """Threads writing unique keys through the cluster client, recorded in a history. Use as a context
    manager."""

    def __init__(
        self,
        rc: RedisClusterNodes,
        history: History,
        n: int = 3,
        prefix: str = "w",
        max_seconds: float = WRITERS_MAX_S,
    ) -> None:
        self.rc = rc
        self.history = history
        self.n = n
        self.prefix = f"{prefix}:{uuid.uuid4().hex[:8]}"
        self._clients: dict[str, Any] = {}
        self.runner = WorkloadRunner(
            [f"c{i}" for i in range(n)],
            self._step,
            pause_s=0.005,
            backoff_s=0.05,
            max_seconds=max_seconds,
            finish=self._drop,
        )

    def _new_client(self) -> Any:
        return self.rc.client(socket_timeout=1.0, socket_connect_timeout=1.0)

    def _drop(self, process: str) -> None:
        c = self._clients.pop(process, None)
        if c is not None:
            with contextlib.suppress(Exception):
                c.close()

    def _set(self, process: str, key: str) -> None:
        try:
            if process not in self._clients:
                self._clients[process] = self._new_client()
            self._clients[process].set(key, key)
        except Exception as exc:
            err = redis_error(exc, _CLUSTER_REFUSED)
            if not err.definite:  # unknown outcome: start over with a fresh client (and slot map)
                self._drop(process)
            raise err from exc

    def _step(self, process: str, n: int) -> Result | None:
        key = f"{self.prefix}:{process[1:]}:{n}"
        out = record(self.history, process, "write", lambda: self._set(process, key), value=key, key=key)
        return None if out.type == "fail" else out  # a refused write is retried at once, as before

    def __enter__(self) -> ClusterWriters:
        self.runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop(timeout=30)

    def acked(self) -> list[str]:
        """Values of the writes the cluster acknowledged."""
        return [o.value for o in self.history.client_ops() if o.type == "ok" and o.f == "write"]
