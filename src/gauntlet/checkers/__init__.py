"""Checkers: functions that judge a :class:`~gauntlet.history.History` and return a verdict with evidence."""

from gauntlet.checkers.availability import Window, unavailability_windows
from gauntlet.checkers.counter import counter
from gauntlet.checkers.leaders import single_leader
from gauntlet.checkers.linearizable import LinearizabilityResult, linearizable
from gauntlet.checkers.lost_writes import lost_acknowledged_writes
from gauntlet.checkers.owners import increasing, one_owner_at_a_time, singleton_holders
from gauntlet.checkers.queue import acknowledged_delivered, duplicates, no_phantoms, one_total_order, queue
from gauntlet.checkers.same_data import same_data
from gauntlet.checkers.sets import set_full
from gauntlet.checkers.staleness import max_staleness
from gauntlet.checkers.timers import timers
from gauntlet.checkers.unique_ids import unique_ids

__all__ = [
    "LinearizabilityResult",
    "Window",
    "acknowledged_delivered",
    "counter",
    "duplicates",
    "increasing",
    "linearizable",
    "lost_acknowledged_writes",
    "max_staleness",
    "no_phantoms",
    "one_owner_at_a_time",
    "one_total_order",
    "queue",
    "same_data",
    "set_full",
    "single_leader",
    "singleton_holders",
    "timers",
    "unavailability_windows",
    "unique_ids",
]
