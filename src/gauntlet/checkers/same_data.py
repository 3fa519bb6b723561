"""Every member holds the same data: the full listings read back from each member after healing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gauntlet.checkers.linearizable import freeze
from gauntlet.checkers.verdict import Verdict, invalid, unknown, valid

#: How many differing keys evidence lists.
SHOWN = 20


def _typed(value: Any) -> tuple[str, Any]:
    """A comparable form that tells ``1``, ``1.0`` and ``True`` apart."""
    return type(value).__name__, freeze(value)


def same_data(
    listings: Mapping[str, Mapping[str, Any] | None], *, check: str = "same_data_everywhere"
) -> Verdict:
    """Valid when every member answered and all their listings are equal.

    ``listings``: member name → that member's full listing (key → value), ``None`` when the member did not
    answer. Values compare by type as well as value. Invalid when a member did not answer (evidence
    ``missing_members``) or the listings differ (evidence ``differing``: per key, each member's value — a
    member without the key is left out and named in ``absent`` — first 20 keys, and ``differing_count``).
    Unknown when there is no member. Figures: ``members``, ``keys`` (distinct keys over all listings).
    """
    if not listings:
        return unknown(check, "no member was listed")
    answered = {m: listing for m, listing in listings.items() if listing is not None}
    missing = sorted(m for m in listings if m not in answered)
    keys: list[Any] = []
    seen: set[Any] = set()
    for listing in answered.values():
        for k in listing:
            if freeze(k) not in seen:
                seen.add(freeze(k))
                keys.append(k)
    differing: dict[str, dict[str, Any]] = {}
    absent: dict[str, list[str]] = {}
    count = 0
    for k in keys:
        values = {_typed(listing[k]) if k in listing else None for listing in answered.values()}
        if len(values) > 1:
            count += 1
            if len(differing) < SHOWN:
                differing[str(k)] = {m: listing[k] for m, listing in answered.items() if k in listing}
                lacking = [m for m, listing in answered.items() if k not in listing]
                if lacking:
                    absent[str(k)] = lacking
    figures = {"members": float(len(listings)), "keys": float(len(keys))}
    evidence: dict[str, Any] = {"missing_members": missing, "differing": differing, "differing_count": count}
    if absent:
        evidence["absent"] = absent
    if missing or count:
        what = []
        if missing:
            what.append(f"{len(missing)} of {len(listings)} members did not answer: {missing!r}")
        if count:
            what.append(f"{count} of {len(keys)} keys differ between members: {list(differing)[:10]!r}")
        return invalid(check, "; ".join(what), evidence, **figures)
    return valid(check, f"all {len(listings)} members hold the same {len(keys)} keys", evidence, **figures)
