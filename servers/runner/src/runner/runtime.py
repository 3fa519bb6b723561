"""One runner: its etcd lease, the shards and the singleton it owns, entity state cached in memory, timers.

Ownership. Every runner registers ``<prefix>/runners/<id>`` on its lease. Each shard has one desired owner
among the registered runners (rendezvous hashing), which creates ``<prefix>/shards/<n>`` on its lease when
the key is free; a runner that holds a shard whose desired owner is now another live runner gives it up
(a runner joined). A dead runner's keys vanish when its lease expires (``lease_ttl``), and the desired
owners among the living take its shards. The key's create revision is the shard's fencing token: the new
owner raises the shard's fence in PostgreSQL to it before serving (store.take_over).

A runner serves a shard while it holds it and its last keepalive succeeded less than ``keepalive_timeout``
ago by its own monotonic clock (``keepalive_timeout < lease_ttl``: it stops before etcd lets another take
over). That is the documented overlap: none while the runner's clock is right. A clock that jumps back (or
a pause between the check and the write) makes a runner serve a shard another already owns; fencing closes
that: its writes carry the old token and PostgreSQL refuses them (409 fenced); its reads check the token
too. With ``fencing = false`` (a planted defect) they are not refused: a stale owner writes over the new
owner's state from its own cache, and acknowledged increments are lost.

The singleton is the same, with one key (``<prefix>/singleton``) any runner may create, and a sequence
number in PostgreSQL that only its holder advances.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.config import Config
from runner.etcd import Etcd, EtcdError, LeaseLost
from runner.store import Fenced, Store, StoreUnavailable

log = logging.getLogger(__name__)
SINGLETON = "sequencer"
NOCHANGE = object()


class NotOwner(RuntimeError):
    """This runner does not own the shard (or the singleton) and knows no owner to forward to."""


@dataclass
class Owner:
    """Where a request for a shard goes: this runner (``local``) or another one at ``address``."""

    local: bool
    runner: str | None = None
    address: str | None = None


def shard_of(entity: str, shards: int) -> int:
    """An entity's shard: stable across runners and restarts."""
    return zlib.crc32(entity.encode()) % shards


def desired_owner(shard: int, runners: list[str]) -> str | None:
    """Rendezvous hashing: the runner with the highest hash of (shard, runner)."""
    if not runners:
        return None
    return max(runners, key=lambda r: hashlib.sha1(f"{shard}/{r}".encode()).digest())


class Runtime:
    """The runner's state and its background threads (keepalive, rebalance, timers)."""

    def __init__(self, config: Config, etcd: Etcd, store: Store) -> None:
        self.config = config
        self.me = config.node_id
        self.etcd = etcd
        self.store = store
        rc = config.runner
        self.shards = rc.shards
        self.prefix = config.etcd.prefix.rstrip("/")
        self._locks = [threading.Lock() for _ in range(rc.shards)]
        self._state = threading.RLock()
        self.owned: dict[int, int] = {}
        self._cache: dict[int, dict[tuple[str, str], Any]] = {}
        self._taken_at: dict[int, float] = {}  # shard -> when this runner took it (PostgreSQL's clock)
        self.lease: int | None = None
        self._lease_ok_at = 0.0
        self.shard_map: dict[int, str] = {}
        self.addresses: dict[str, str] = {}
        self.singleton_holder: str | None = None
        self._singleton_lock = threading.Lock()
        self._singleton: tuple[int, int] | None = None  # (token, last sequence number handed out)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the schema (waiting for PostgreSQL), then start the background threads."""
        while not self._stop.is_set():
            try:
                self.store.create_schema()
                break
            except StoreUnavailable as exc:
                log.warning("PostgreSQL not reachable yet: %s", exc)
                self._sleep(1.0)
        for name, target in (
            ("keepalive", self._keepalive_loop),
            ("rebalance", self._rebalance_loop),
            ("timers", self._timer_loop),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` (in steps, so a stop is seen within 0.1 s); False once stopping. time.sleep, not
        Event.wait: under libfaketime (the harness's clock faults) a timed wait on a threading primitive
        never returns (measured on Debian 12's python3), while sleeps keep real durations."""
        steps = max(1, round(seconds / 0.1))
        for _ in range(steps):
            if self._stop.is_set():
                return False
            time.sleep(seconds / steps)
        return not self._stop.is_set()

    def stop(self) -> None:
        """Stop the threads and give the lease up (the others take the shards at once)."""
        self._stop.set()
        lease = self.lease
        self._drop_all("shutting down")
        if lease is not None:
            try:
                self.etcd.revoke(lease)
            except EtcdError as exc:
                log.info("revoking lease on shutdown: %s", exc)

    @property
    def live(self) -> bool:
        """Whether this runner may serve: it holds a lease whose last keepalive succeeded less than
        ``keepalive_timeout`` ago (by its own monotonic clock, so it stops serving before etcd, counting
        ``lease_ttl``, lets another take its shards -- while that clock is right)."""
        return (
            self.lease is not None
            and time.monotonic() - self._lease_ok_at <= self.config.runner.keepalive_timeout
        )

    # -- the lease -----------------------------------------------------------------------------------------
    def _keepalive_loop(self) -> None:
        rc = self.config.runner
        while not self._stop.is_set():
            if self.lease is None:
                try:
                    lease = self.etcd.grant(rc.lease_ttl)
                    self.etcd.put(f"{self.prefix}/runners/{self.me}", self.config.advertise_client, lease)
                except EtcdError as exc:
                    log.warning("no lease: %s", exc)
                    self._sleep(0.5)
                    continue
                with self._state:
                    self.lease, self._lease_ok_at = lease, time.monotonic()
                log.info("lease %x granted (ttl %ss)", lease, rc.lease_ttl)
            if not self._sleep(rc.keepalive_interval):
                break
            lease = self.lease
            if lease is None:
                continue
            try:
                self.etcd.keepalive(lease, timeout=min(rc.keepalive_interval, 1.0))
                self._lease_ok_at = time.monotonic()
            except LeaseLost as exc:
                self._lose_lease(f"lease lost: {exc}")
            except EtcdError as exc:
                # Not given up here: while the last keepalive is older than keepalive_timeout the runner
                # serves nothing (``live``), and a keepalive that gets through in time keeps the lease and
                # its shards; one that comes too late hears LeaseLost.
                log.info(
                    "keepalive failed (last success %.1fs ago): %s", time.monotonic() - self._lease_ok_at, exc
                )

    def _lose_lease(self, why: str) -> None:
        self._drop_all(why)
        with self._state:
            self.lease = None

    def _drop_all(self, why: str) -> None:
        with self._state:
            if self.owned or self._singleton:
                log.warning("giving up shards %s and the singleton: %s", sorted(self.owned), why)
            self.owned.clear()
            self._cache.clear()
        with self._singleton_lock:
            self._singleton = None

    def _drop(self, shard: int, why: str) -> None:
        with self._state:
            if self.owned.pop(shard, None) is not None:
                log.warning("giving up shard %d: %s", shard, why)
            self._cache.pop(shard, None)

    # -- the shard map -------------------------------------------------------------------------------------
    def _rebalance_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.rebalance()
            except (EtcdError, StoreUnavailable) as exc:
                log.info("rebalance: %s", exc)
            self._sleep(self.config.runner.rebalance_interval)

    def rebalance(self) -> None:
        """Look at the runners and the shard keys once: take the free shards this runner should own, give up
        those another live runner should own, forget those that are no longer ours; the same for the
        singleton."""
        kvs = self.etcd.list_prefix(f"{self.prefix}/")
        runners = {
            kv.key.rsplit("/", 1)[1]: kv.value for kv in kvs if kv.key.startswith(f"{self.prefix}/runners/")
        }
        keys = {
            int(kv.key.rsplit("/", 1)[1]): kv for kv in kvs if kv.key.startswith(f"{self.prefix}/shards/")
        }
        singleton = next((kv for kv in kvs if kv.key == f"{self.prefix}/singleton"), None)
        with self._state:
            self.addresses = runners
            self.shard_map = {s: kv.value for s, kv in keys.items()}
            self.singleton_holder = singleton.value if singleton else None
        lease = self.lease
        alive = sorted(runners)
        for shard in range(self.shards):
            kv = keys.get(shard)
            desired = desired_owner(shard, alive)
            ours = kv is not None and lease is not None and kv.lease == lease and kv.value == self.me
            if shard in self.owned and not ours:
                self._drop(shard, "its key is gone or another's")
            if kv is None and desired == self.me and lease is not None:
                self._acquire(shard, lease)
            elif ours and kv is not None:
                if shard not in self.owned:
                    self._take_over(shard, kv.create_revision)
                elif desired not in (None, self.me):
                    self._release(shard, kv.create_revision, str(desired))
        self._singleton_round(singleton, lease)

    def _acquire(self, shard: int, lease: int) -> None:
        ok, kv = self.etcd.create(f"{self.prefix}/shards/{shard}", self.me, lease)
        if ok and kv is not None:
            self._take_over(shard, kv.create_revision)

    def _take_over(self, shard: int, token: int) -> None:
        with self._locks[shard]:
            taken_at = self.store.take_over(shard, token)
            if taken_at is None:
                log.warning("shard %d: fence already past token %d", shard, token)
                return
            with self._state:
                if self.lease is None:
                    return
                self.owned[shard] = token
                self._taken_at[shard] = taken_at
                self._cache[shard] = {}
                self.shard_map[shard] = self.me
        log.info("took shard %d (token %d)", shard, token)

    def _release(self, shard: int, token: int, to: str) -> None:
        with self._locks[shard]:
            self._drop(shard, f"{to} should own it")
        self.etcd.delete_if_ours(f"{self.prefix}/shards/{shard}", token)

    def _singleton_round(self, kv: Any, lease: int | None) -> None:
        if lease is None:
            return
        key = f"{self.prefix}/singleton"
        if kv is None:
            ok, kv = self.etcd.create(key, self.me, lease)
            if not ok:
                return
        if kv is None or kv.lease != lease or kv.value != self.me:
            with self._singleton_lock:
                if self._singleton is not None:
                    log.warning("singleton: held by %s now", kv.value if kv else None)
                self._singleton = None
            return
        with self._singleton_lock:
            if self._singleton is None:
                seq = self.store.singleton_take_over(SINGLETON, kv.create_revision, self.me)
                if seq is not None:
                    self._singleton = (kv.create_revision, seq)
                    log.info(
                        "holding the singleton (token %d, from sequence %d)", kv.create_revision, seq + 1
                    )
        with self._state:
            self.singleton_holder = self.me

    # -- routing -------------------------------------------------------------------------------------------
    def owner_of(self, shard: int) -> Owner:
        """Who serves ``shard`` now: this runner, or the owner the shard map names."""
        if shard in self.owned:
            return Owner(True, self.me)
        runner = self.shard_map.get(shard)
        if runner is None or runner == self.me or runner not in self.addresses:
            raise NotOwner(f"shard {shard} has no owner now (hand-over)")
        return Owner(False, runner, self.addresses[runner])

    def singleton_owner(self) -> Owner:
        if self._singleton is not None:
            return Owner(True, self.me)
        holder = self.singleton_holder
        if holder is None or holder == self.me or holder not in self.addresses:
            raise NotOwner("the singleton has no holder now (hand-over)")
        return Owner(False, holder, self.addresses[holder])

    # -- entities (on their shard's owner) -----------------------------------------------------------------
    def entity(self, kind: str, entity: str, change: Callable[[Any], tuple[Any, Any]]) -> dict[str, Any]:
        """Apply ``change(state) -> (new state or NOCHANGE, result)`` to an entity this runner owns; the
        result with the shard and token that served it."""
        shard = shard_of(entity, self.shards)
        if not self.live:
            raise NotOwner("this runner's lease is not fresh: it serves nothing until it is")
        with self._locks[shard]:
            token = self.owned.get(shard)
            cache = self._cache.get(shard)
            if token is None or cache is None:
                raise NotOwner(f"shard {shard} is not this runner's")
            key = (kind, entity)
            if key not in cache:
                # durable_state = false (a planted defect): the state is only what this runner kept in memory
                cache[key] = self.store.load(kind, entity) if self.config.runner.durable_state else None
            new, result = change(cache[key])
            try:
                if new is NOCHANGE:
                    if self.store.fencing and not self.store.holds(shard, token):
                        raise Fenced(f"shard {shard}: token {token} was fenced off")
                else:
                    self.store.save(kind, entity, shard, token, new)
                    cache[key] = new
            except Fenced:
                self._drop(shard, "fenced off by a newer owner")
                raise
            except StoreUnavailable:
                cache.pop(key, None)  # reload: the write may or may not have happened
                raise
        return {"runner": self.me, "shard": shard, "token": token, **result}

    def timer_call(self, timer: str, call: Callable[[int, int], dict[str, Any]]) -> dict[str, Any]:
        """``call(shard, token)`` for a timer whose shard this runner owns."""
        shard = shard_of(timer, self.shards)
        if not self.live:
            raise NotOwner("this runner's lease is not fresh: it serves nothing until it is")
        token = self.owned.get(shard)
        if token is None:
            raise NotOwner(f"shard {shard} is not this runner's")
        try:
            result = call(shard, token)
        except Fenced:
            self._drop(shard, "fenced off by a newer owner")
            raise
        return {"runner": self.me, "shard": shard, "token": token, **result}

    def next_sequence(self) -> dict[str, Any]:
        """The singleton's next sequence number (on its holder)."""
        if not self.live:
            raise NotOwner("this runner's lease is not fresh: it serves nothing until it is")
        with self._singleton_lock:
            if self._singleton is None:
                raise NotOwner("this runner does not hold the singleton")
            token, seq = self._singleton
            try:
                self.store.singleton_advance(SINGLETON, token, seq + 1)
            except Fenced:
                self._singleton = None
                raise
            self._singleton = (token, seq + 1)
        return {"runner": self.me, "token": token, "seq": seq + 1}

    # -- timers --------------------------------------------------------------------------------------------
    def _timer_loop(self) -> None:
        while self._sleep(self.config.runner.timer_interval):
            try:
                self.fire_due()
            except StoreUnavailable as exc:
                log.info("timers: %s", exc)

    def fire_due(self) -> int:
        """Fire every due timer of this runner's shards once; how many fired."""
        fired = 0
        # inherit_timers = false (a planted defect): a new owner skips the timers scheduled before it took
        # their shard -- a dead runner's timers never fire
        since = None if self.config.runner.inherit_timers else dict(self._taken_at)
        for timer, shard in self.store.due_timers(sorted(self.owned), since):
            token = self.owned.get(shard)
            if token is None:
                continue
            if self.store.fire(timer, shard, token, self.me):
                fired += 1
        return fired

    # -- views ---------------------------------------------------------------------------------------------
    def debug(self) -> dict[str, Any]:
        with self._state:
            return {
                "runner": self.me,
                "lease": f"{self.lease:x}" if self.lease else None,
                # seconds since the last successful keepalive, by this runner's own clock (what `live` trusts)
                "lease_age_s": round(time.monotonic() - self._lease_ok_at, 3) if self.lease else None,
                "owned": {str(s): t for s, t in sorted(self.owned.items())},
                "map": {str(s): r for s, r in sorted(self.shard_map.items())},
                "runners": dict(self.addresses),
                "singleton": self.singleton_holder,
            }
