"""Checkers: functions that judge a :class:`~gauntlet.history.History` and return a verdict with evidence."""

from gauntlet.checkers.availability import Window, unavailability_windows
from gauntlet.checkers.leaders import single_leader
from gauntlet.checkers.linearizable import LinearizabilityResult, linearizable
from gauntlet.checkers.lost_writes import lost_acknowledged_writes
from gauntlet.checkers.staleness import max_staleness

__all__ = [
    "LinearizabilityResult",
    "Window",
    "linearizable",
    "lost_acknowledged_writes",
    "max_staleness",
    "single_leader",
    "unavailability_windows",
]
