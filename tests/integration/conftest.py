"""Fixtures shared by several check modules (the harness's own fixtures come from gauntlet.pytest_plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from checklib.custom import client
from checklib.redis import CacheEnv
from gauntlet.clients.declared import DeclaredClient
from gauntlet.cluster import Cluster


@pytest.fixture(scope="module")
def env(cluster: Cluster) -> Iterator[CacheEnv]:
    """The cache topology (Redis primary, replicas, Sentinels), healthy before a module's checks start.

    Module scope: each module gets its own CacheEnv, closed after it. Only a module that asks for ``env``
    (the redis/coherence checks) builds one, so inventories without a cache never touch it.
    """
    e = CacheEnv.load(cluster)
    e.wait_healthy()
    yield e
    e.sentinels.close()


@pytest.fixture(scope="module")
def reference_server(cluster: Cluster) -> None:
    """Skip, saying why, unless the declared server is the reference Raft KV: the test_custom* checks read
    its own status fields (terms, quorum, applied index, peer encryption) that no description carries. Any
    other declared server gets the workload catalogue (test_declared_api.py) and the TLS checks."""
    from gauntlet.clients.declared import spec_of

    name = spec_of(cluster, "custom_server").name
    if name != "raftkv":
        pytest.skip(
            f"inventory {cluster.source}: its custom server is {name}, not raftkv (these checks read the "
            "reference server's own /cluster fields)"
        )


@pytest.fixture(scope="module")
def admin(cluster: Cluster) -> DeclaredClient:
    """The custom server's unrecorded client for cluster state (/cluster, /health); waits until it serves."""
    kv = client(cluster)
    kv.wait_for_ready(90)
    return kv
