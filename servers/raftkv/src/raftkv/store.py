"""The replicated state machine, replicated by pysyncobj's Raft: a dict of string keys to string values
(``/kv``, ``/cas``, and ``/incr`` counters stored there as decimal strings), a dict of named sets of
strings (``/set``) and a dict of named id sequences (``/next-id``).

Every change *and every linearizable read* is a Raft log entry: the caller gets its result only when the
entry is committed by a majority and applied on the node that serves the request. A follower hands the
command to the leader over the Raft connection (pysyncobj's ``apply_command``) and answers once it has
applied the entry itself, so a client sees its own write on the member it asked (read-your-writes on any
member) and a read through the log can never return a value older than a write that completed before it
began (linearizable). A stale read (``stale=True``) reads the local copy without the log.

Outcomes map onto what a client can conclude (pysyncobj's FAIL_REASON):

- applied: the result.
- definitely not applied (no leader, not leader, denied, queue full, entry discarded by a new leader):
  :class:`NotApplied` -> HTTP 503: safe to retry.
- unknown (leader changed while waiting, timeout): :class:`OutcomeUnknown` -> HTTP 504: the command may
  still be applied later; a client must not assume either way.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated

from raftkv.config import Config

log = logging.getLogger(__name__)

STATE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}
INTEGER = re.compile(r"-?[0-9]+")  # what /incr accepts as a counter's stored value (decimal, no spaces)

DEFINITE_FAILURES = {
    FAIL_REASON.QUEUE_FULL: "the command queue is full",
    FAIL_REASON.MISSING_LEADER: "there is no leader (election in progress or no majority reachable)",
    FAIL_REASON.NOT_LEADER: "the node it was sent to is no longer the leader",
    FAIL_REASON.REQUEST_DENIED: "the leader denied the command",
    FAIL_REASON.DISCARDED: "a new leader replaced the uncommitted entry",
}
UNKNOWN_FAILURES = {
    FAIL_REASON.LEADER_CHANGED: "the leader changed before the command was acknowledged",
    FAIL_REASON.UNKNOWN_OUTCOME: "the command's log position was overtaken (snapshot or leader restart)",
}


class NotApplied(Exception):
    """The command certainly did not and will not take effect."""


class OutcomeUnknown(Exception):
    """The command may or may not take effect."""


class KeyValue(SyncObjConsumer):
    """The replicated dict. Methods marked ``@replicated`` run on every node when their entry commits."""

    def __init__(self) -> None:
        super().__init__()
        # After super().__init__: pysyncobj serializes only attributes set from here on. A snapshot written
        # before an attribute existed simply lacks it, and the empty default below stays.
        self.data: dict[str, str] = {}
        self.sets: dict[str, set[str]] = {}
        self.ids: dict[str, int] = {}

    @replicated
    def put(self, key: str, value: str) -> dict[str, Any]:
        previous = self.data.get(key)
        self.data[key] = value
        return {"previous": previous}

    @replicated
    def delete(self, key: str) -> dict[str, Any]:
        previous = self.data.pop(key, None)
        return {"deleted": previous is not None, "previous": previous}

    @replicated
    def cas(self, key: str, expect: str | None, value: str) -> dict[str, Any]:
        """Set ``key`` to ``value`` if it holds ``expect`` (``None``: if it is absent)."""
        current = self.data.get(key)
        if current != expect:
            return {"swapped": False, "current": current}
        self.data[key] = value
        return {"swapped": True, "previous": current}

    @replicated
    def read(self, key: str) -> dict[str, Any]:
        """A read ordered in the log with every write: the value as of the entry's position."""
        return {"value": self.data.get(key)}

    @replicated
    def incr(self, key: str, delta: int) -> dict[str, Any]:
        """Add ``delta`` to the counter ``key`` (absent: 0), stored as a decimal string in ``data``."""
        current = self.data.get(key)
        if current is not None and not INTEGER.fullmatch(current):
            return {"incremented": False, "current": current}
        value = (int(current) if current is not None else 0) + delta
        self.data[key] = str(value)
        return {"incremented": True, "value": value}

    @replicated
    def read_all(self) -> dict[str, Any]:
        """Every key and value as of the entry's position."""
        return {"items": dict(self.data)}

    @replicated
    def set_add(self, key: str, element: str) -> dict[str, Any]:
        members = self.sets.setdefault(key, set())
        added = element not in members
        members.add(element)
        return {"added": added}

    @replicated
    def set_read(self, key: str) -> dict[str, Any]:
        return {"elements": sorted(self.sets.get(key, ()))}

    @replicated
    def next_id(self, name: str) -> dict[str, Any]:
        """The next id of sequence ``name``: 1, 2, 3, ... one per committed entry, never reused."""
        self.ids[name] = self.ids.get(name, 0) + 1
        return {"id": self.ids[name]}

    def local_read(self, key: str) -> str | None:
        """This node's applied copy, without Raft (may be stale)."""
        return self.data.get(key)

    def local_read_all(self) -> dict[str, str]:
        return dict(self.data)

    def local_set_read(self, key: str) -> list[str]:
        return sorted(self.sets.get(key, ()))


@dataclass
class _Waiter:
    event: threading.Event
    result: Any = None
    error: int | None = None

    def __call__(self, result: Any, error: int) -> None:
        self.result, self.error = result, error
        self.event.set()


class Store:
    """One node: the Raft member (pysyncobj) and its key-value state machine."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # [raft] id_mode / write_mode = "local" only: ids and writes this node handed out without the log
        # (planted defects)
        self._local_ids: dict[str, int] = {}
        self._local_ids_lock = threading.Lock()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        r = config.raft
        conf = SyncObjConf(
            password=r.password,
            bindAddress=config.listen_peer,
            journalFile=str(config.data_dir / "raft.journal"),
            fullDumpFile=str(config.data_dir / "raft.dump"),
            useFork=False,  # serialize in-process: forking a threaded HTTP server is asking for trouble
            # Fail fast when there is no leader instead of queueing: a queued command could still be applied
            # long after its client gave up, which clients could only report as "unknown".
            commandsWaitLeader=False,
            raftMinTimeout=r.election_timeout_min,
            raftMaxTimeout=r.election_timeout_max,
            appendEntriesPeriod=r.heartbeat_interval,
            connectionTimeout=r.connection_timeout,
            connectionRetryTime=min(1.0, r.connection_timeout),
            leaderFallbackTimeout=r.leader_fallback_timeout,
            logCompactionMinEntries=r.log_compaction_min_entries,
            logCompactionMinTime=r.log_compaction_min_time,
            dynamicMembershipChange=False,
            # Send each entry at once instead of on the next heartbeat: single-request latency of a few ms
            # instead of two heartbeat periods (the leader appends, then tells followers the commit index).
            appendEntriesUseBatch=False,
        )
        self.kv = KeyValue()
        self.sync = SyncObj(
            config.advertise_peer, [p.peer for p in config.others], conf=conf, consumers=[self.kv]
        )

    # -- commands through the log --------------------------------------------------------------------------
    def _apply(self, method: Any, *args: Any) -> dict[str, Any]:
        if self.sync._getLeader() is None:
            raise NotApplied(DEFINITE_FAILURES[FAIL_REASON.MISSING_LEADER])
        if not self.sync.hasQuorum:
            raise NotApplied("this node cannot reach a majority of the cluster")
        waiter = _Waiter(threading.Event())
        method(*args, callback=waiter)
        if not waiter.event.wait(self.config.raft.commit_timeout):
            raise OutcomeUnknown(
                f"not committed within {self.config.raft.commit_timeout}s (it may still be applied later)"
            )
        if waiter.error == FAIL_REASON.SUCCESS:
            return waiter.result
        if waiter.error in DEFINITE_FAILURES:
            raise NotApplied(DEFINITE_FAILURES[waiter.error])
        raise OutcomeUnknown(UNKNOWN_FAILURES.get(waiter.error, f"pysyncobj failure reason {waiter.error}"))

    def put(self, key: str, value: str) -> dict[str, Any]:
        """Write ``key`` through the log; with ``write_mode`` local, a write that cannot commit is applied to
        this node's copy and acknowledged anyway (the planted defect: a minority acknowledges writes)."""
        try:
            return self._apply(self.kv.put, key, value)
        except (NotApplied, OutcomeUnknown):
            if self.config.raft.write_mode != "local":
                raise
            with self._local_ids_lock:
                previous = self.kv.data.get(key)
                self.kv.data[key] = value
            return {"previous": previous, "local": True}

    def delete(self, key: str) -> dict[str, Any]:
        return self._apply(self.kv.delete, key)

    def cas(self, key: str, expect: str | None, value: str) -> dict[str, Any]:
        return self._apply(self.kv.cas, key, expect, value)

    def read(self, key: str, stale: bool = False) -> str | None:
        """The value of ``key``: through the log, or this node's copy when ``stale`` or ``read_mode`` is
        ``local`` (then a member cut off from the majority still answers, with what it last applied)."""
        if self.local(stale):
            return self.kv.local_read(key)
        return self._apply(self.kv.read, key)["value"]

    def local(self, stale: bool) -> bool:
        """Whether a read is answered from this node's copy: ``stale`` asked for, or ``read_mode`` local."""
        return stale or self.config.raft.read_mode == "local"

    def incr(self, key: str, delta: int) -> dict[str, Any]:
        return self._apply(self.kv.incr, key, delta)

    def read_all(self, stale: bool = False) -> dict[str, str]:
        """Every key and value (like :meth:`read`: through the log unless ``stale`` or ``read_mode`` local)."""
        if self.local(stale):
            return self.kv.local_read_all()
        return self._apply(self.kv.read_all)["items"]

    def set_add(self, key: str, element: str) -> dict[str, Any]:
        return self._apply(self.kv.set_add, key, element)

    def set_read(self, key: str, stale: bool = False) -> list[str]:
        """The sorted elements of set ``key`` (absent: empty), read like :meth:`read`."""
        if self.local(stale):
            return self.kv.local_set_read(key)
        return self._apply(self.kv.set_read, key)["elements"]

    def next_id(self, name: str) -> dict[str, Any]:
        """The next id of ``name`` through the log; with ``id_mode`` local, from this node's own counter
        (fast, and two members hand out the same id: what the unique-ids check must catch)."""
        if self.config.raft.id_mode == "local":
            with self._local_ids_lock:
                n = max(self._local_ids.get(name, 0), self.kv.ids.get(name, 0)) + 1
                self._local_ids[name] = n
            return {"id": n}
        return self._apply(self.kv.next_id, name)

    # -- status --------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``/cluster`` shows: this node's view of the cluster."""
        s = self.sync.getStatus()
        leader_node = s.get("leader")
        leader_addr = getattr(leader_node, "address", None) or (str(leader_node) if leader_node else None)
        leader = self.config.peer_by_raft_address(leader_addr) if leader_addr else None
        members = []
        for p in self.config.peers:
            me = p.id == self.config.node_id
            connected = True if me else s.get(f"partner_node_status_server_{p.peer}", 0) == 2
            entry: dict[str, Any] = {
                "id": p.id,
                "client": p.client,
                "peer": p.peer,
                "self": me,
                "connected": connected,
            }
            if s.get("state") == 2 and not me:
                entry["match_index"] = s.get(f"match_idx_server_{p.peer}")
            members.append(entry)
        return {
            "node_id": self.config.node_id,
            "state": STATE_NAMES.get(s.get("state"), str(s.get("state"))),
            "leader": {"id": leader.id, "client": leader.client, "peer": leader.peer} if leader else None,
            "term": s.get("raft_term"),
            "commit_index": s.get("commit_idx"),
            "last_applied": s.get("last_applied"),
            "log_length": s.get("log_len"),
            "has_quorum": bool(s.get("has_quorum")),
            "ready": self.sync.isReady(),
            "members": members,
            "keys": len(self.kv.data),
            "sets": len(self.kv.sets),
            "peer_encryption": self.config.raft.password is not None,
            "read_mode": self.config.raft.read_mode,
            "id_mode": self.config.raft.id_mode,
            "write_mode": self.config.raft.write_mode,
        }

    def health(self) -> tuple[bool, str]:
        """(healthy, why): ready to serve linearizable requests, as far as this node can tell."""
        if not self.sync.isReady():
            return False, "not yet caught up with the leader's log"
        if self.sync._getLeader() is None:
            return False, "no leader known"
        if not self.sync.hasQuorum:
            return False, "cannot reach a majority of the cluster"
        return True, "ok"

    def close(self) -> None:
        self.sync.destroy()
