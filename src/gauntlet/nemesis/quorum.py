"""Which members can form a quorum while faults are in force: pure, for checks that require availability on a
majority side and refusal everywhere else.

A member is on a majority side when the connected component it is in -- live members, linked by every pair
the grudge does not cut -- holds a strict majority of *all* members (the dead count towards the whole, never
towards a side). Reachability is the graph's, not direct: with a bridge, the two halves reach each other
through the bridge node, as a leader there reaches both.

:class:`Schedule` holds faults that overlap (kill two of five, then partition the rest...) and answers, step by
step, who is on a majority side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gauntlet.nemesis.grudge import Grudge, majority_size, pair


def components(live: Iterable[str], grudge: Grudge) -> list[frozenset[str]]:
    """The connected components of the live members under ``grudge`` (largest first, then by name)."""
    members = sorted(set(live))
    seen: set[str] = set()
    out: list[frozenset[str]] = []
    for start in members:
        if start in seen:
            continue
        part, todo = {start}, [start]
        while todo:
            n = todo.pop()
            for m in members:
                if m not in part and pair(n, m) not in grudge:
                    part.add(m)
                    todo.append(m)
        seen |= part
        out.append(frozenset(part))
    return sorted(out, key=lambda c: (-len(c), sorted(c)))


def majority_side(members: Iterable[str], dead: Iterable[str], grudge: Grudge) -> dict[str, bool]:
    """For each live member, whether its connected component holds a strict majority of all ``members``."""
    everyone = sorted(set(members))
    gone = set(dead)
    unknown = sorted(gone - set(everyone))
    if unknown:
        raise ValueError(f"dead members {', '.join(unknown)} are not members")
    need = majority_size(len(everyone))
    side: dict[str, bool] = {}
    for part in components([m for m in everyone if m not in gone], grudge):
        for m in part:
            side[m] = len(part) >= need
    return dict(sorted(side.items()))


@dataclass(frozen=True)
class Held:
    """One fault as the quorum sees it: the members it takes down (kill, crash, pause) and the pairs it cuts."""

    name: str
    dead: frozenset[str] = frozenset()
    grudge: Grudge = frozenset()


@dataclass(frozen=True)
class Step:
    """The faults in force after one start or stop of a schedule, and what the quorum makes of them."""

    event: str  # "start <id>" / "stop <id>"
    held: tuple[str, ...]  # ids of the faults in force, in the order they started
    dead: frozenset[str]
    grudge: Grudge
    majority: Mapping[str, bool]  # live member -> on a majority side

    @property
    def available(self) -> list[str]:
        """Live members on a majority side: they must serve."""
        return [m for m, ok in self.majority.items() if ok]

    @property
    def refusing(self) -> list[str]:
        """Live members on no majority side: they must refuse (a write acknowledged there is a split brain)."""
        return [m for m, ok in self.majority.items() if not ok]


class Schedule:
    """Faults that may overlap, started and stopped in order; each start or stop is a :class:`Step`.

    s = Schedule(["n1", "n2", "n3", "n4", "n5"])
    s.start("kill", Held("kill", dead=frozenset({"n1", "n2"})))
    s.start("split", Held("split", grudge=grudge.split(nodes, minority=["n3"])[0]))
    s.steps[-1].available   # [] : n4 n5 hold 2 of 5
    s.stop("kill")          # n1 n2 back: n1 n2 n4 n5 are a majority, n3 refuses
    """

    def __init__(self, members: Iterable[str]) -> None:
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self.steps: list[Step] = []
        self._held: dict[str, Held] = {}

    def start(self, fault_id: str, fault: Held) -> Step:
        """A fault starts (while those already started are still in force)."""
        if fault_id in self._held:
            raise ValueError(f"fault {fault_id} is already in force")
        for a, b in fault.grudge:
            if a not in self.members or b not in self.members:
                raise ValueError(f"fault {fault_id} cuts {a} from {b}, and not both are members")
        outside = sorted(fault.dead - set(self.members))
        if outside:
            raise ValueError(f"fault {fault_id} takes down {', '.join(outside)}: not members")
        self._held[fault_id] = fault
        return self._step(f"start {fault_id}")

    def stop(self, fault_id: str) -> Step:
        """A fault in force ends."""
        if fault_id not in self._held:
            raise ValueError(
                f"fault {fault_id} is not in force (in force: {', '.join(self._held) or 'none'})"
            )
        del self._held[fault_id]
        return self._step(f"stop {fault_id}")

    @property
    def now(self) -> Step:
        """The state in force now (no fault before the first start)."""
        return self.steps[-1] if self.steps else self._step("begin", record=False)

    def _step(self, event: str, record: bool = True) -> Step:
        dead = frozenset(m for f in self._held.values() for m in f.dead)
        cut: Grudge = frozenset(p for f in self._held.values() for p in f.grudge)
        step = Step(event, tuple(self._held), dead, cut, majority_side(self.members, dead, cut))
        if record:
            self.steps.append(step)
        return step
