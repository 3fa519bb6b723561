"""One verdict type for every checker, as Jepsen's: valid true / false / unknown, evidence, one line.

A checker judges a history (or what was read back from the stores) and returns a :class:`Verdict`.
``valid`` is ``True`` (the promise held), ``False`` (it was broken: ``evidence`` shows how) or ``None``
(unknown: the checker could not decide, e.g. its search budget ran out — never a pass). Figures a checker
measures on the way (an RTO, a staleness in seconds) go to ``figures`` so the report shows them once,
labelled with the check and its fault. Verdicts compose with :func:`compose`: false wins over unknown,
unknown over true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Ordering used by :func:`compose`: the worst verdict wins.
_RANK = {True: 0, None: 1, False: 2}


@dataclass(frozen=True)
class Verdict:
    """What a checker concluded.

    ``check`` names the promise (``lost_acknowledged_writes``, ``linearizable``…), ``explanation`` is one
    line a person reads first, ``evidence`` the smallest data that shows it (lost values, the offending
    sub-history…), ``figures`` the numbers measured on the way (name → float), ``parts`` the verdicts it was
    composed from.
    """

    check: str
    valid: bool | None
    explanation: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    figures: Mapping[str, float] = field(default_factory=dict)
    parts: tuple[Verdict, ...] = ()

    @property
    def status(self) -> str:
        """``valid`` / ``invalid`` / ``unknown``: the word the report and the test output use."""
        return {True: "valid", False: "invalid", None: "unknown"}[self.valid]

    def __bool__(self) -> bool:
        """Only a proven promise is truthy: ``assert verdict`` fails on invalid *and* unknown."""
        return self.valid is True

    def __str__(self) -> str:
        return f"{self.check}: {self.status}: {self.explanation}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the report reads verdicts back from ``verdicts.jsonl``)."""
        return {
            "check": self.check,
            "valid": self.valid,
            "status": self.status,
            "explanation": self.explanation,
            "evidence": dict(self.evidence),
            "figures": dict(self.figures),
            "parts": [p.to_dict() for p in self.parts],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Inverse of :meth:`to_dict`."""
        return cls(
            check=str(d["check"]),
            valid=d.get("valid"),
            explanation=str(d.get("explanation", "")),
            evidence=dict(d.get("evidence") or {}),
            figures={k: float(v) for k, v in (d.get("figures") or {}).items()},
            parts=tuple(cls.from_dict(p) for p in d.get("parts") or ()),
        )


def valid(
    check: str, explanation: str, evidence: Mapping[str, Any] | None = None, **figures: float
) -> Verdict:
    """A promise that held (``evidence``: what was judged, e.g. how many writes)."""
    return Verdict(check, True, explanation, evidence=dict(evidence or {}), figures=figures)


def invalid(
    check: str, explanation: str, evidence: Mapping[str, Any] | None = None, **figures: float
) -> Verdict:
    """A promise that was broken, with what shows it."""
    return Verdict(check, False, explanation, evidence=dict(evidence or {}), figures=figures)


def unknown(
    check: str, explanation: str, evidence: Mapping[str, Any] | None = None, **figures: float
) -> Verdict:
    """The checker could not decide (never a pass)."""
    return Verdict(check, None, explanation, evidence=dict(evidence or {}), figures=figures)


def compose(check: str, verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict over several: invalid if any is invalid, else unknown if any is unknown, else valid.

    An empty composition is *unknown*: nothing was checked, which is never a pass.
    """
    parts = tuple(verdicts)
    if not parts:
        return unknown(check, "nothing was checked")
    worst = max(parts, key=lambda v: _RANK[v.valid])
    figures: dict[str, float] = {}
    for p in parts:
        figures.update(p.figures)
    bad = [p for p in parts if p.valid is worst.valid]
    explanation = "; ".join(str(p) for p in bad) if worst.valid is not True else f"all {len(parts)} held"
    return Verdict(check, worst.valid, explanation, figures=figures, parts=parts)
