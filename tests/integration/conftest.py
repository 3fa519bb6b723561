"""Fixtures shared by several check modules (the harness's own fixtures come from gauntlet.pytest_plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from checklib.redis import CacheEnv
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
