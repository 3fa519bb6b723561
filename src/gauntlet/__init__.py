"""gauntlet: the test harness of the gauntlet.cluster collection.

One :class:`~gauntlet.cluster.Cluster`, built from an Ansible inventory, tells tests which hosts exist, what
they run and how to reach them; the :mod:`~gauntlet.nemesis` injects faults over the hosts' own connection;
the :class:`~gauntlet.history.History` records what every client saw; :mod:`~gauntlet.checkers` judge it.
"""

from gauntlet.cluster import Cluster, Host
from gauntlet.errors import GauntletError, InventoryError
from gauntlet.history import History, Op

__all__ = ["Cluster", "GauntletError", "History", "Host", "InventoryError", "Op"]
