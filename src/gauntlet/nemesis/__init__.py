"""Faults on cluster hosts (see :class:`~gauntlet.nemesis.core.Nemesis`), by name in
:mod:`~gauntlet.nemesis.catalogue`; per connection kind in :mod:`~gauntlet.nemesis.backends`."""

from gauntlet.nemesis import catalogue
from gauntlet.nemesis.core import Nemesis

__all__ = ["Nemesis", "catalogue"]
