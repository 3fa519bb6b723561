"""Cache coherence across a database failover: did the cache ever serve a write the database lost?

The cache client's rows carry a version that every committed write bumps by one (``version + 1``), so per key
the database's final state ``f`` names a timeline of versions ``1..f``, each committed by exactly one write.
A database that loses a write (a leader's local commit that never reached the new leader) hands the same
version number out again; a cache that saw the lost write can then serve a value the database never kept.

Given the history and the database's final versions, this checker finds:

* acknowledged writes lost: an ``ok`` write whose version is above the final one, or a version acknowledged
  twice for one key (the first was lost, and the number was issued again);
* reads of lost writes: an ``ok`` read that returned a version above the final one, or a version whose
  only possible committer in the final timeline (an acknowledged write of that version) was invoked only
  after the read had completed — so the read saw another, lost, write of that number.

Writes with an unknown outcome (``info``) carry no version and may or may not be in the final timeline, so
a read is judged only against what is certain.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from gauntlet.checkers.verdict import Verdict, invalid, valid
from gauntlet.history import History

NS = 1_000_000_000


@dataclass(frozen=True)
class LostRead:
    """A read of ``key`` that returned ``value``, a version the database lost (``why`` says how we know)."""

    key: Any
    value: int
    final: int
    at_seconds: float
    why: str


@dataclass
class CacheLossVerdict:
    """What :func:`cache_loss` found; ``ok`` when the cache never served a lost write and none was lost."""

    lost_writes: list[tuple[Any, int]] = field(default_factory=list)
    lost_reads: list[LostRead] = field(default_factory=list)
    reads: int = 0
    acked_writes: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost_writes and not self.lost_reads

    def verdict(self) -> Verdict:
        """This finding as the one verdict type (evidence: lost writes, lost reads and the counts)."""
        evidence = {
            "lost_writes": self.lost_writes,
            "lost_reads": self.lost_reads,
            "reads": self.reads,
            "acknowledged_writes": self.acked_writes,
        }
        if self.ok:
            return valid(
                "cache_coherence",
                f"no lost write, and none of {self.reads} cached reads served one",
                evidence,
            )
        return invalid(
            "cache_coherence",
            f"{len(self.lost_writes)} acknowledged writes lost, {len(self.lost_reads)} reads served a lost write",
            evidence,
        )


def cache_loss(
    history: History, final: dict[Any, int], read_f: str = "read", write_f: str = "write"
) -> CacheLossVerdict:
    """Judge ``history`` (integer versions per key) against the database's ``final`` version of each key."""
    ops = history.client_ops()
    t0 = min((o.time for o in ops), default=0)
    verdict = CacheLossVerdict()
    # key -> version -> invoke times of the acknowledged writes that produced it
    acked: dict[Any, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for inv, done in history.pairs():
        if done is None or done.type != "ok" or inv.f != write_f or not isinstance(done.value, int):
            continue
        verdict.acked_writes += 1
        acked[inv.key][done.value].append(inv.time)
    for key, versions in acked.items():
        top = final.get(key, 0)
        for v, invokes in sorted(versions.items()):
            if v > top:
                verdict.lost_writes.append((key, v))
            elif len(invokes) > 1:
                verdict.lost_writes.extend((key, v) for _ in invokes[1:])
    for o in ops:
        if o.type != "ok" or o.f != read_f or not isinstance(o.value, int):
            continue
        verdict.reads += 1
        top = final.get(o.key, 0)
        at = (o.time - t0) / NS
        if o.value > top:
            verdict.lost_reads.append(LostRead(o.key, o.value, top, at, "above the database's final version"))
            continue
        committers = acked.get(o.key, {}).get(o.value, [])
        if len(committers) == 1 and committers[0] > o.time:
            verdict.lost_reads.append(
                LostRead(
                    o.key, o.value, top, at, "read before the acknowledged write of that version was invoked"
                )
            )
    return verdict
