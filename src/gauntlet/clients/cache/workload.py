"""Application threads of :class:`~gauntlet.clients.cache.client.CacheClient` reading and writing a shared key
set, on bounded :class:`~gauntlet.clients.base.WorkloadRunner` threads."""

from __future__ import annotations

import time
from collections.abc import Callable

from gauntlet.clients.base import Result, WorkloadRunner
from gauntlet.clients.cache.client import CacheClient, CacheStats

# A workload stops by itself after this long, even when the check that started it failed.
WORKLOAD_MAX_S = 600.0
# Pause after an operation that raised (recorded ``info``): do not spin against a failing server.
ERROR_PAUSE_S = 0.05


class Workload:
    """Readers (``r0``…, the first ``slow_readers`` of them filling the cache ``slow_delay_s`` late) and
    writers (``w0``…, one write every ``write_interval_s``) over ``keys``, each its own :class:`CacheClient`
    from ``make_client(process, fill_delay_s)``. An operation that raises is recorded ``info`` and noted in
    :attr:`errors`; the thread goes on."""

    def __init__(
        self,
        make_client: Callable[[str, float], CacheClient],
        keys: list[str],
        readers: int = 4,
        writers: int = 2,
        slow_readers: int = 0,
        slow_delay_s: float = 0.3,
        write_interval_s: float = 0.05,
        max_seconds: float = WORKLOAD_MAX_S,
    ) -> None:
        self.keys = keys
        self.clients: list[CacheClient] = []
        self.errors: list[str] = []
        self._by_process: dict[str, CacheClient] = {}
        self._next: dict[str, int] = {}  # per process: where in the key set it is (spread start, stride 7)
        for i in range(readers):
            self._add(make_client(f"r{i}", slow_delay_s if i < slow_readers else 0.0), i)
        for i in range(writers):
            self._add(make_client(f"w{i}", 0.0), i + 1000)
        self._runners = [
            WorkloadRunner(
                [f"r{i}" for i in range(readers)],
                self._read,
                backoff_s=ERROR_PAUSE_S,
                max_seconds=max_seconds,
                finish=self._finish,
            ),
            WorkloadRunner(
                [f"w{i}" for i in range(writers)],
                self._write,
                pause_s=write_interval_s,
                backoff_s=ERROR_PAUSE_S + write_interval_s,
                max_seconds=max_seconds,
                finish=self._finish,
            ),
        ]

    def _add(self, client: CacheClient, seed: int) -> None:
        self.clients.append(client)
        self._by_process[client.process] = client
        self._next[client.process] = seed

    def _key(self, process: str) -> str:
        self._next[process] += 7
        return self.keys[self._next[process] % len(self.keys)]

    def _op(self, process: str, op: Callable[[CacheClient, str], int]) -> Result:
        client = self._by_process[process]
        try:
            op(client, self._key(process))
        except Exception as exc:  # recorded as info by the client; keep going
            self.errors.append(f"{process}: {type(exc).__name__}: {exc}")
            return Result("info", error=str(exc))
        return Result("ok")

    def _read(self, process: str, n: int) -> Result:
        return self._op(process, CacheClient.read)

    def _write(self, process: str, n: int) -> Result:
        return self._op(process, CacheClient.write)

    def _finish(self, process: str) -> None:
        self._by_process[process].close()

    def start(self) -> Workload:
        """Start every thread."""
        for r in self._runners:
            r.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every thread; :class:`~gauntlet.clients.base.WorkloadStuck` if one is still running after
        ``timeout`` seconds."""
        for r in self._runners:
            r.request_stop()
        for r in self._runners:
            r.stop(timeout)

    def run(self, seconds: float) -> None:
        """Run every thread for ``seconds`` and wait for them to stop."""
        self.start()
        try:
            time.sleep(seconds)
        finally:
            self.stop()

    def stats(self) -> CacheStats:
        """What all clients saw, summed."""
        total = CacheStats()
        for c in self.clients:
            for f in ("hits", "misses", "tombstones", "fills", "fills_refused"):
                setattr(total, f, getattr(total, f) + getattr(c.stats, f))
            total.corrupt += c.stats.corrupt
        return total
