"""A cache in front of PostgreSQL, one job a module: :mod:`.values` (the value format and set-if-newer),
:mod:`.database` (the database it fronts), :mod:`.client` (one application thread's recorded reads and
writes, per pattern) and :mod:`.workload` (readers and writers on the bounded runner)."""

from gauntlet.clients.cache.client import CacheClient, CacheStats
from gauntlet.clients.cache.database import Database
from gauntlet.clients.cache.values import (
    PATTERNS,
    PREFIX,
    SET_IF_NEWER,
    TABLE,
    CorruptValue,
    Pattern,
    decode,
    encode,
    payload,
)
from gauntlet.clients.cache.workload import Workload

__all__ = [
    "PATTERNS",
    "PREFIX",
    "SET_IF_NEWER",
    "TABLE",
    "CacheClient",
    "CacheStats",
    "CorruptValue",
    "Database",
    "Pattern",
    "Workload",
    "decode",
    "encode",
    "payload",
]
