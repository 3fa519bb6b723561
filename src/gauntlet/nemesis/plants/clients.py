"""Defects of the application's side of a promise, planted in the check's own process (the prover sets
``GAUNTLET_PLANTED_DEFECT``; the pytest plugin calls the patch before any check runs)."""

from __future__ import annotations

from typing import Any


def writes_confirmed_without_wait() -> None:
    """The Sentinel writers that should confirm each SET with ``WAIT 1`` skip the WAIT: a write counts as
    replicated when only the primary has it."""
    from gauntlet.clients.redis.writers import SentinelWriters

    original = SentinelWriters._set

    def without_wait(self: SentinelWriters, process: str, key: str, value: str, wait: bool) -> None:
        original(self, process, key, value, False)

    SentinelWriters._set = without_wait  # type: ignore[method-assign]


def cache_aside_without_invalidation() -> None:
    """A write bumps the row and leaves the cached entry as it was (no DEL, no tombstone, no update)."""
    from gauntlet.clients.cache.client import CacheClient

    def bump_only(self: CacheClient, key: str) -> Any:
        return self._bump(key)

    CacheClient._write = bump_only  # type: ignore[method-assign]
