"""Helpers of the NATS JetStream checks (tests/integration/test_nats.py): a stream of the test's own, recorded
producers and a durable consumer running beside the faults, and the final reads the queue checker judges."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from gauntlet.bench import wait_for
from gauntlet.checkers import queue
from gauntlet.checkers.verdict import Verdict
from gauntlet.clients.base import Result, WorkloadRunner
from gauntlet.clients.nats import NatsClient
from gauntlet.cluster import Cluster
from gauntlet.history import History

GROUP = "nats"
# Producer and consumer threads stop by themselves after this long, even when the check that started them
# failed.
TRAFFIC_MAX_S = 300.0
# After an operation through a member fails or times out, the producers and the consumer go through the other
# members for this long (as a client with a server list fails over), so one dead member does not make every
# third call wait for its timeout.
AVOID_S = 2.0
# How long the replicas may take to hold the whole stream once the faults healed.
CATCH_UP_S = 60.0


def unit(cluster: Cluster) -> str:
    """The nats-server unit (the role's nats_units)."""
    return str(cluster.setting("nats_units", GROUP)[0])


@dataclass
class Stream:
    """A file-backed stream of ``replicas`` with one durable pull consumer, made for one check."""

    nc: NatsClient
    members: list[str]
    replicas: int = 3
    name: str = field(default_factory=lambda: f"GT{uuid.uuid4().hex[:8].upper()}")
    durable: str = "checker"

    @property
    def subject(self) -> str:
        return f"gauntlet.{self.name.lower()}"

    def create(self, timeout: float = 60.0) -> Stream:
        """Create the stream and its durable once JetStream answers (after a fault of an earlier check its
        meta group may still be electing: "JetStream system temporarily unavailable")."""
        wait_for(
            lambda: self.nc.add_stream(self.members[0], self.name, [self.subject], replicas=self.replicas),
            timeout,
            0.5,
            f"stream {self.name} created",
        )
        wait_for(
            lambda: self.nc.add_durable(self.members[0], self.name, self.durable) or True,
            timeout,
            0.5,
            f"durable {self.durable} created",
        )
        self.leader(timeout)
        return self

    def leader(self, timeout: float = 30.0) -> str:
        """The stream's leader as every live member's stream info says (waits for one)."""
        return str(
            wait_for(
                lambda: self.nc.stream_leader(self.members[0], self.name), timeout, 0.2, "a stream leader"
            )
        )

    def leader_via(self, members: list[str], timeout: float) -> str:
        """A stream leader among ``members``, asked through them (the others may be down or cut off)."""

        def found() -> str | None:
            for m in members:
                try:
                    lead = self.nc.stream_leader(m, self.name)
                except Exception:
                    continue
                if lead in members:
                    return lead
            return None

        return str(wait_for(found, timeout, 0.1, f"a stream leader among {members}"))


@dataclass
class Traffic:
    """Two producers publishing unique messages with acknowledgement through every member in turn, and one
    consumer fetching from the durable, all recorded; each a bounded :class:`WorkloadRunner` process."""

    stream: Stream
    history: History
    acked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _avoid: dict[str, float] = field(default_factory=dict)
    _producers: WorkloadRunner | None = None
    _consumer: WorkloadRunner | None = None

    def start(self) -> Traffic:
        self._producers = WorkloadRunner(
            ["p0", "p1"], self._publish, backoff_s=0.2, max_seconds=TRAFFIC_MAX_S
        ).start()
        self._consumer = WorkloadRunner(["c0"], self._fetch, backoff_s=0.2, max_seconds=TRAFFIC_MAX_S).start()
        return self

    def _member(self, n: int) -> str:
        """The n-th member in turn, skipping those that failed in the last AVOID_S (all of them: in turn)."""
        members = self.stream.members
        now = time.monotonic()
        with self._lock:
            live = [m for m in members if self._avoid.get(m, 0.0) <= now] or members
        return live[n % len(live)]

    def _outcome(self, member: str, r: Result) -> Result:
        with self._lock:
            if r.type == "ok":
                self._avoid.pop(member, None)
            else:
                self._avoid[member] = time.monotonic() + AVOID_S
        return r

    def _publish(self, process: str, n: int) -> Result:
        s = self.stream
        member = self._member(n + int(process[1:]))
        r = s.nc.recorded_publish(self.history, process, member, s.subject, f"{process}-{n}".encode())
        if r.type == "ok":
            with self._lock:
                self.acked += 1
        return self._outcome(member, r)

    def _fetch(self, process: str, n: int) -> Result:
        s = self.stream
        member = self._member(n)
        r = s.nc.recorded_fetch(self.history, process, member, s.name, s.durable, batch=50, wait=0.5)
        return self._outcome(member, r)

    def wait_acks(self, n: int, timeout: float, what: str = "acknowledged publishes") -> float:
        """Wait until ``n`` more publishes were acknowledged; the seconds it took."""
        with self._lock:
            start = self.acked
        t0 = time.monotonic()
        wait_for(lambda: self.acked - start >= n, timeout, 0.05, f"{n} more {what}")
        return time.monotonic() - t0

    def stop(self) -> None:
        for runner in (self._producers, self._consumer):
            if runner is not None:
                runner.stop(timeout=40)


def final_reads(stream: Stream, history: History) -> dict[str, int]:
    """Drain the durable (fetch until one comes back empty), wait until every replica holds the stream up to
    its last sequence, then read each replica's whole log into the history (the queue checker's final read).

    A minority of replicas may stay behind (seen over SSH after a bit flip in a follower's block: the damaged
    replica never caught up within ``CATCH_UP_S``): their logs are read as they are, a prefix the checker
    accepts, and returned as ``{member: last sequence held}`` for the check to report. A majority behind
    fails here: the stream would not hold its acknowledged messages."""
    nc = stream.nc

    def drained() -> bool:
        r = nc.recorded_fetch(
            history, "drain", stream.members[0], stream.name, stream.durable, batch=200, wait=1
        )
        return r.type == "ok" and not r.value

    def held(member: str) -> int:
        log = nc.read_log(member, stream.name)
        return log[-1][0] if log else 0

    wait_for(drained, CATCH_UP_S, 0.2, f"the durable {stream.durable} drained")
    last = int((nc.stream_info(stream.members[0], stream.name).get("state") or {}).get("last_seq") or 0)
    deadline = time.monotonic() + CATCH_UP_S
    behind: dict[str, int] = {}
    for m in stream.members:
        try:
            wait_for(
                lambda m=m: held(m) >= last,
                max(1.0, deadline - time.monotonic()),
                0.5,
                f"{m} holding the stream up to seq {last}",
            )
        except TimeoutError:
            behind[m] = held(m)
        nc.recorded_read_log(history, m, stream.name)
    if len(behind) * 2 >= len(stream.members):
        raise AssertionError(
            f"a majority of the replicas did not hold the stream up to seq {last} within {CATCH_UP_S:.0f}s "
            f"of heal (last sequence each held: {behind})"
        )
    return behind


def verdict_of(history: History) -> Verdict:
    """The queue checker's verdict on the whole history (printed: the check's output names it)."""
    v = queue(history)
    print(v)
    return v
