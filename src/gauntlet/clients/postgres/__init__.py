"""PostgreSQL and Patroni as the checks reach them, one job a module: :mod:`.connection` (endpoints, the
watchdog, psycopg errors as ``fail``/``info``), :mod:`.workload` (recorded writers and readers),
:mod:`.patroni_api` (Patroni's REST API), :mod:`.sampler` (the split-brain sampler) and :mod:`.hba_probe` (what
pg_hba answers a given host)."""

from gauntlet.clients.postgres.connection import Endpoint, Watchdog, pg_error
from gauntlet.clients.postgres.patroni_api import PatroniAPI
from gauntlet.clients.postgres.sampler import LeaderSampler, MemberSample, sampling
from gauntlet.clients.postgres.workload import (
    TABLE,
    PostgresWorkload,
    WorkloadStats,
    ensure_table,
    read_ids,
)

__all__ = [
    "TABLE",
    "Endpoint",
    "LeaderSampler",
    "MemberSample",
    "PatroniAPI",
    "PostgresWorkload",
    "Watchdog",
    "WorkloadStats",
    "ensure_table",
    "pg_error",
    "read_ids",
    "sampling",
]
