"""Partition shapes as Jepsen names them, as pure functions: for N named nodes, the grudge -- the set of node
pairs that must not reach each other. :meth:`gauntlet.nemesis.core.Nemesis.partition_grudge` applies one (each
host drops traffic to and from the peers it must not reach, in our iptables chain).

Our cuts are symmetric (both directions dropped), so a grudge is a set of unordered pairs, each a sorted
``(a, b)`` tuple with ``a < b``. Jepsen's grudge maps each node to the nodes it drops packets from; ours is
that map made symmetric (:func:`drops` gives it back per node).

    grudge.split(["n1", "n2", "n3", "n4", "n5"], seed=7)      # majority/minority: 3 | 2
    grudge.ring(["n1", "n2", "n3", "n4", "n5"])               # each reaches its two neighbours only
    grudge.bridge(["n1", "n2", "n3", "n4", "n5"])             # n1 n2 | n3 (reaches all) | n4 n5
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence

Pair = tuple[str, str]
Grudge = frozenset[Pair]


def pair(a: str, b: str) -> Pair:
    """The unordered pair of two distinct nodes, as a grudge holds it."""
    if a == b:
        raise ValueError(f"a node cannot be cut from itself ({a})")
    return (a, b) if a < b else (b, a)


def _distinct(nodes: Iterable[str]) -> list[str]:
    out = list(nodes)
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise ValueError(f"nodes named twice: {', '.join(dupes)}")
    return out


def complete(components: Iterable[Iterable[str]]) -> Grudge:
    """Jepsen's ``complete-grudge``: every node is cut from every node of every other component (nodes
    within one component still reach each other)."""
    parts = [_distinct(c) for c in components]
    _distinct(n for c in parts for n in c)
    return frozenset(pair(a, b) for x, y in itertools.combinations(parts, 2) for a in x for b in y)


def isolate_one(nodes: Sequence[str], node: str) -> Grudge:
    """Jepsen's ``:one`` (``split-one``): ``node`` alone on one side, every other node on the other."""
    members = _distinct(nodes)
    if node not in members:
        raise ValueError(f"{node} is not one of the nodes {', '.join(members)}")
    return complete([[node], [n for n in members if n != node]])


def majority_size(n: int) -> int:
    """The smallest strict majority of ``n`` members."""
    return n // 2 + 1


def split(
    nodes: Sequence[str], seed: int | None = None, minority: Iterable[str] | None = None
) -> tuple[Grudge, list[str], list[str]]:
    """Jepsen's ``:majority`` (``partition-random-halves``): the nodes split in two sides, one holding a strict
    majority, the other the rest: (grudge, majority side, minority side). Sides are drawn with ``seed``
    (shuffled by ``random.Random(seed)``: one seed, one split), or ``minority`` names the minority side.

    The minority holds ``(n - 1) // 2`` nodes (3 nodes: 2 | 1, 4: 3 | 1, 5: 3 | 2), so one side is always a
    majority -- unlike bisecting an even count, which leaves no side with a quorum."""
    members = _distinct(nodes)
    if len(members) < 3:
        raise ValueError(f"a split of {len(members)} nodes leaves no side a majority: it needs at least 3")
    if minority is None:
        order = sorted(members)
        random.Random(seed).shuffle(order)
        small = order[: (len(members) - 1) // 2]
    else:
        small = _distinct(minority)
        unknown = [n for n in small if n not in members]
        if unknown:
            raise ValueError(f"minority names {', '.join(unknown)}, not among {', '.join(members)}")
        if not small or len(small) > len(members) - majority_size(len(members)):
            raise ValueError(
                f"a minority of {len(members)} nodes holds 1 to {len(members) - majority_size(len(members))} "
                f"of them, not {len(small)}"
            )
    big = [n for n in members if n not in small]
    return complete([big, small]), big, [n for n in members if n in small]


def ring(nodes: Sequence[str]) -> Grudge:
    """Each node reaches only its two neighbours in the given order (the last one's neighbour is the first):
    every other pair is cut. On 5 nodes each node then sees itself and two others, a majority that no two
    nodes share: Jepsen's ``:majorities-ring``. A ring of 3 cuts nothing (two neighbours are everyone), so at
    least 4 nodes are needed."""
    members = _distinct(nodes)
    if len(members) < 4:
        raise ValueError(f"a ring of {len(members)} nodes cuts nothing: it needs at least 4")
    neighbours = {pair(members[i], members[(i + 1) % len(members)]) for i in range(len(members))}
    return frozenset(pair(a, b) for a, b in itertools.combinations(members, 2)) - neighbours


def bridge(nodes: Sequence[str], via: str | None = None) -> tuple[Grudge, str]:
    """Jepsen's ``bridge``: the nodes cut in two halves, joined by one node that reaches both; (grudge, the
    bridge). The bridge is ``via``, else the middle node of the given order (Jepsen's: the first of the second
    half of ``bisect``); the halves are the nodes before and after it (5 nodes: 2 | bridge | 2; 3: 1 | 1 | 1)."""
    members = _distinct(nodes)
    if len(members) < 3:
        raise ValueError(f"a bridge needs at least 3 nodes, not {len(members)}")
    middle = via if via is not None else members[len(members) // 2]
    if middle not in members:
        raise ValueError(f"the bridge {middle} is not one of the nodes {', '.join(members)}")
    rest = [n for n in members if n != middle]
    cut = len(rest) // 2 if via is not None else len(members) // 2
    return complete([rest[:cut], rest[cut:]]), middle


def drops(nodes: Iterable[str], grudge: Grudge) -> dict[str, list[str]]:
    """Per node, the nodes it must not reach (sorted): what each host's rules drop, Jepsen's grudge map."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in sorted(grudge):
        if a not in out or b not in out:
            raise ValueError(f"the grudge cuts {a} from {b}, and not both are among the nodes")
        out[a].append(b)
        out[b].append(a)
    return {n: sorted(peers) for n, peers in out.items()}


def reaches(nodes: Iterable[str], grudge: Grudge) -> dict[str, set[str]]:
    """Per node, the other nodes it reaches directly (every node not cut from it)."""
    members = list(nodes)
    return {n: {m for m in members if m != n and pair(n, m) not in grudge} for n in members}
