"""Faults on cluster hosts (see :class:`~gauntlet.nemesis.core.Nemesis`)."""

from gauntlet.nemesis.core import Nemesis

__all__ = ["Nemesis"]
