"""The split-brain sampler of a Patroni cluster: every member's leader claim (Patroni's ``/primary``) and
PostgreSQL's own role, sampled in rounds, for :func:`gauntlet.checkers.single_leader`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gauntlet.checkers.leaders import LeaderSample
from gauntlet.clients.base import WorkloadRunner
from gauntlet.clients.postgres.connection import Endpoint, Watchdog
from gauntlet.clients.postgres.patroni_api import PatroniAPI

# A sampler stops by itself after this long, even when the check that started it failed.
SAMPLER_MAX_S = 1800.0


@dataclass(frozen=True)
class MemberSample:
    """What one member said at ``time`` (monotonic ns): Patroni's leader claim and PostgreSQL's role."""

    time: int
    host: str
    patroni_primary: bool | None  # /primary answered 200 (None: no answer in time)
    pg_primary: bool | None  # pg_is_in_recovery() was false (None: no answer in time)


class LeaderSampler:
    """Samples every member every ``interval`` s in a background thread (a bounded
    :class:`~gauntlet.clients.base.WorkloadRunner` of one process, stopping by itself after ``max_seconds``), concurrently and with timeouts, and
    keeps what each said. A member whose previous probe is still hanging (a paused process) is left out of
    that round rather than blocking the others.

    ``leader_samples()`` gives, per round, the members whose Patroni claimed the leader lock (/primary = 200:
    the claim HAProxy routes writes by) for :func:`gauntlet.checkers.single_leader`;
    ``pg_primary_overlaps()`` the rounds where more than one PostgreSQL was out of recovery.
    """

    def __init__(
        self,
        apis: Iterable[PatroniAPI],
        endpoints: dict[str, Endpoint],
        interval: float = 0.25,
        timeout: float = 1.5,
        max_seconds: float = SAMPLER_MAX_S,
    ) -> None:
        self.apis = list(apis)
        self.endpoints = endpoints
        self.interval = interval
        self.timeout = timeout
        self.samples: list[MemberSample] = []
        self.rounds: list[list[MemberSample]] = []
        self._busy: dict[str, threading.Lock] = {a.name: threading.Lock() for a in self.apis}
        self._runner = WorkloadRunner(["sampler"], self._round, every_s=interval, max_seconds=max_seconds)
        self._lock = threading.Lock()

    def _probe(self, api: PatroniAPI, slot: list[MemberSample]) -> None:
        lock = self._busy[api.name]
        if not lock.acquire(blocking=False):
            return  # still hanging on this member from an earlier round
        try:
            t = time.monotonic_ns()
            patroni: bool | None
            pg: bool | None
            try:
                patroni = api.is_primary(timeout=self.timeout)
            except Exception:
                patroni = None
            try:
                ep = self.endpoints[api.name]
                with ep.connect(connect_timeout=2) as conn, Watchdog(conn, self.timeout + 1):
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                pg = (not row[0]) if row else None
            except Exception:
                pg = None
            slot.append(MemberSample(t, api.name, patroni, pg))
        finally:
            lock.release()

    def _round(self, process: str, n: int) -> None:
        """Probe every member at once; a round waits for its probes at most ``2 * timeout + 1`` s."""
        slot: list[MemberSample] = []
        threads = [threading.Thread(target=self._probe, args=(a, slot), daemon=True) for a in self.apis]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.timeout * 2 + 1)
        with self._lock:
            self.rounds.append(list(slot))
            self.samples.extend(slot)

    def start(self) -> LeaderSampler:
        """Start sampling."""
        self._runner.start()
        return self

    def stop(self) -> None:
        """Stop sampling, waiting for the round under way (its probes of hanging members end by their
        timeouts, one after another at worst)."""
        self._runner.stop(len(self.apis) * (self.timeout * 2 + 1) + 5)

    def __enter__(self) -> LeaderSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def leader_samples(self) -> list[LeaderSample]:
        """One :class:`LeaderSample` per round: the members whose Patroni claimed leadership."""
        with self._lock:
            rounds = list(self.rounds)
        return [
            LeaderSample(min(s.time for s in r), frozenset(s.host for s in r if s.patroni_primary))
            for r in rounds
            if r
        ]

    def pg_leader_samples(self) -> list[LeaderSample]:
        """One :class:`LeaderSample` per round: the members whose PostgreSQL accepts writes (out of
        recovery), whatever Patroni claims: a primary promoted behind Patroni's back shows here only."""
        with self._lock:
            rounds = list(self.rounds)
        return [
            LeaderSample(min(s.time for s in r), frozenset(s.host for s in r if s.pg_primary))
            for r in rounds
            if r
        ]

    def pg_primary_overlaps(self) -> list[LeaderSample]:
        """Rounds in which more than one PostgreSQL answered that it is not in recovery."""
        with self._lock:
            rounds = list(self.rounds)
        out = []
        for r in rounds:
            prim = frozenset(s.host for s in r if s.pg_primary)
            if len(prim) > 1:
                out.append(LeaderSample(min(s.time for s in r), prim))
        return out

    def answered(self) -> int:
        """How many member probes got an answer from Patroni (a sampler that never answers proves nothing)."""
        with self._lock:
            return sum(1 for s in self.samples if s.patroni_primary is not None)


@contextmanager
def sampling(sampler: LeaderSampler) -> Iterator[LeaderSampler]:
    """Run a sampler around a block."""
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
