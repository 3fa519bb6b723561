"""Redis over TLS as the checks reach it, one job a module: :mod:`.settings` (role settings and secrets),
:mod:`.connection` (one connection, errors as ``fail``/``info``), :mod:`.sentinel` (Sentinel discovery and a
primary-following client), :mod:`.cluster` (Redis Cluster slots and nodes) and :mod:`.writers` (recorded
writers on the bounded workload runner)."""

from gauntlet.clients.redis.cluster import (
    SLOTS,
    ClusterNode,
    RedisClusterNodes,
    key_slot,
    parse_cluster_nodes,
    slot_owners,
)
from gauntlet.clients.redis.connection import TLS, UNKNOWN_OUTCOME, connect, info, redis_error, role
from gauntlet.clients.redis.sentinel import MasterView, PrimaryClient, RedisNodes, Sentinels, freshest
from gauntlet.clients.redis.settings import secret, setting, user_password

__all__ = [
    "SLOTS",
    "TLS",
    "UNKNOWN_OUTCOME",
    "ClusterNode",
    "MasterView",
    "PrimaryClient",
    "RedisClusterNodes",
    "RedisNodes",
    "Sentinels",
    "connect",
    "freshest",
    "info",
    "key_slot",
    "parse_cluster_nodes",
    "redis_error",
    "role",
    "secret",
    "setting",
    "slot_owners",
    "user_password",
]
