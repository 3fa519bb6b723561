"""The workload catalogue of a declared server: register, counter, set, unique ids, same data everywhere.

Each workload is recorded client threads on a :class:`~gauntlet.clients.declared.DeclaredClient`, bounded in
count and time by a :class:`~gauntlet.clients.base.WorkloadRunner`, then a final step after the faults heal
(the set's final read, the same-data listings) and the checker's verdict::

    work = workloads.get("counter")(client, history)
    with work.running():            # client threads start
        with fault: ...             # anything from the fault catalogue or a randomized schedule
    verdict = work.check()          # after heal: final reads, then the verdict

Which workloads a server gets is its description's ``workloads`` list (:data:`gauntlet.api_spec.WORKLOAD_NEEDS`
says what each needs).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from gauntlet.bench import wait_for
from gauntlet.checkers import counter, linearizable, same_data, set_full, unique_ids
from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid
from gauntlet.clients.base import ClientError, Result, WorkloadRunner
from gauntlet.clients.declared import CasMismatch, DeclaredClient
from gauntlet.history import History

#: A workload stops by itself after this long even when the check that started it failed.
MAX_SECONDS = 300.0
#: How long after heal the members may take to hold the same data before the verdict is drawn.
CONVERGE_S = 30.0


def fresh(prefix: str) -> str:
    """A key no earlier run used (registers start absent, as the checkers assume)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Workload:
    """Recorded client threads doing one kind of operation mix; subclasses say which and how it is judged."""

    name: ClassVar[str]

    def __init__(
        self,
        client: DeclaredClient,
        history: History,
        *,
        workers: int = 4,
        max_ops: int = 4000,
        max_seconds: float = MAX_SECONDS,
        seed: int = 0,
    ) -> None:
        self.client = client
        self.history = history
        self.counts: Counter[str] = Counter()
        self._clients = {
            f"{self.name}-w{i}": client.for_process(f"{self.name}-w{i}", history) for i in range(workers)
        }
        self._rng = {p: random.Random(seed * 1000 + i) for i, p in enumerate(self._clients)}
        self._runner = WorkloadRunner(
            list(self._clients),
            self._step,
            max_ops=max_ops,
            max_seconds=max_seconds,
            backoff_s=0.05,  # the client already retried across members: do not spin
            finish=lambda p: self._clients[p].close(),
        )

    def _step(self, process: str, n: int) -> Result:
        try:
            self.operation(self._clients[process], self._rng[process], process, n)
        except CasMismatch:
            self.counts["cas-mismatch"] += 1
            return Result("fail")
        except ClientError as exc:
            self.counts["fail" if exc.definite else "info"] += 1
            return Result("fail" if exc.definite else "info")
        self.counts["ok"] += 1
        return Result("ok")

    def operation(self, c: DeclaredClient, rng: random.Random, process: str, n: int) -> None:
        """One recorded operation of ``process`` (its ``n``-th of the run)."""
        raise NotImplementedError

    @property
    def operations(self) -> int:
        """Operations started so far."""
        return self._runner.operations

    @contextmanager
    def running(self, timeout: float = 30.0) -> Iterator[Workload]:
        """The client threads run while the block runs; stopped when it ends, pass or fail."""
        with self._runner.running(timeout):
            yield self

    def wait_ops(self, n: int, timeout: float) -> None:
        """Wait until ``n`` more operations completed ok (the workload is really running)."""
        target = self.counts["ok"] + n
        wait_for(lambda: self.counts["ok"] >= target, timeout, 0.05, f"{n} ok operations of {self.name}")

    def check(self) -> Verdict:
        """After heal: the final step and the verdict over the whole history."""
        raise NotImplementedError


class Register(Workload):
    """Random reads, writes (unique values) and compare-and-sets on a few keys: linearizable per key."""

    name = "register"

    def __init__(self, client: DeclaredClient, history: History, *, keys: int = 3, **kw: Any) -> None:
        self.keys = [fresh(f"register{i}") for i in range(keys)]
        self.last: dict[str, str | None] = {}
        self.has_cas = "cas" in client.spec.operations
        super().__init__(client, history, **kw)

    def operation(self, c: DeclaredClient, rng: random.Random, process: str, n: int) -> None:
        key, roll = rng.choice(self.keys), rng.random()
        if roll < 0.45:
            self.last[key] = c.get(key)
        elif roll < 0.8 or not self.has_cas:
            c.put(key, f"{process}-{n}")
        else:
            try:
                c.cas(key, self.last.get(key), f"{process}-{n}")
            except CasMismatch as exc:
                self.last[key] = exc.current
                raise

    def check(self) -> Verdict:
        result = linearizable(self.history)
        line = result.report().splitlines()[0]
        evidence = {"report": result.report()[:4000], "keys": len(result.keys)}
        if result.valid is True:
            return valid("linearizable", line, evidence, operations=float(self.operations))
        if result.valid is False:
            return invalid("linearizable", line, evidence)
        return unknown("linearizable", line, evidence)


class OneKey(Workload):
    """A workload on one object (a counter, a set, a sequence): ``key`` is fresh for every run."""

    key_prefix: ClassVar[str]

    def __init__(self, client: DeclaredClient, history: History, **kw: Any) -> None:
        self.key = fresh(self.key_prefix)
        super().__init__(client, history, **kw)


class CounterWorkload(OneKey):
    """Increments of one counter and reads of it: every read between acknowledged and possible increments,
    and (increments only) never below an earlier read."""

    name = "counter"

    key_prefix = "counter"

    def operation(self, c: DeclaredClient, rng: random.Random, process: str, n: int) -> None:
        if rng.random() < 0.6:
            c.increment(self.key, 1)
        else:
            c.read_counter(self.key)

    def check(self) -> Verdict:
        _until_ok(lambda: self.client.for_process("counter-final").read_counter(self.key))
        return counter(self.history, key=self.key)


class SetWorkload(OneKey):
    """Adds of unique elements to one set, some reads; after heal a final read holds every acknowledged add
    and nothing never added."""

    name = "set"

    key_prefix = "set"

    def operation(self, c: DeclaredClient, rng: random.Random, process: str, n: int) -> None:
        if rng.random() < 0.8:
            c.add(self.key, f"{process}-{n}")
        else:
            c.read_set(self.key)

    def check(self) -> Verdict:
        _until_ok(lambda: self.client.for_process("set-final").read_set(self.key))
        return set_full(self.history, key=self.key)


class UniqueIds(OneKey):
    """Every client asks one sequence for ids, across members and faults: none handed out twice."""

    name = "unique_ids"

    key_prefix = "ids"

    def operation(self, c: DeclaredClient, rng: random.Random, process: str, n: int) -> None:
        # spread over the members (one attempt each): a duplicate comes from two members disagreeing
        c.next_id(self.key, member=c.members[n % len(c.members)].name, retry_for=0)

    def check(self) -> Verdict:
        return unique_ids(self.history, key=self.key)


class SameData(Workload):
    """Writes spread over the members; after heal every member's own listing is the same."""

    name = "same_data"

    def __init__(self, client: DeclaredClient, history: History, *, keys: int = 20, **kw: Any) -> None:
        self.keys = [fresh(f"same{i}") for i in range(keys)]
        self.listings: dict[str, dict[str, str] | None] = {}
        super().__init__(client, history, **kw)

    def operation(self, c: DeclaredClient, rng: random.Random, process: str, n: int) -> None:
        member = c.members[n % len(c.members)].name
        c.put(rng.choice(self.keys), f"{process}-{n}", member=member, retry_for=0)

    def _listings(self) -> dict[str, dict[str, str] | None]:
        lister = self.client.for_process("same-data-list")
        out: dict[str, dict[str, str] | None] = {}
        for m in lister.members:
            try:
                out[m.name] = lister.listing(m.name, retry_for=2.0)
            except ClientError:
                out[m.name] = None
        return out

    def check(self) -> Verdict:
        def converged() -> bool:
            self.listings = self._listings()
            views = list(self.listings.values())
            return None not in views and all(v == views[0] for v in views)

        # on a timeout, the verdict shows how they differ
        with contextlib.suppress(TimeoutError):
            wait_for(converged, CONVERGE_S, 0.5, "every member holding the same data")
        return same_data(self.listings)


CATALOGUE: dict[str, type[Workload]] = {
    w.name: w for w in (Register, CounterWorkload, SetWorkload, UniqueIds, SameData)
}


def get(name: str) -> type[Workload]:
    """The workload ``name``; an unknown one names the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"no workload {name!r} (known: {', '.join(CATALOGUE)})") from None


def _until_ok(read: Callable[[], Any], timeout: float = 30.0) -> None:
    """A final read after heal, retried (each attempt is its own recorded op) until one is ok."""

    def once() -> bool:
        try:
            read()
        except ClientError:
            return False
        return True

    wait_for(once, timeout, 0.2, "a final read after heal")
