"""The cache's value format: ``<version>|<kind>|<key>|<payload>`` (kind ``v`` value, ``t`` tombstone), payloads
derived from key and version (so a read can check that what the cache returned is exactly the row it names),
and the set-if-newer script every guarded fill and write-through update runs."""

from __future__ import annotations

import hashlib
from typing import Literal

TABLE = "gauntlet_cache_kv"
PREFIX = "gauntlet:kv:"
Pattern = Literal["cache-aside", "guarded", "write-through"]
PATTERNS: tuple[Pattern, ...] = ("cache-aside", "guarded", "write-through")

# Set KEYS[1] to ARGV[2] with a TTL of ARGV[3] ms unless the cached entry ranks ARGV[1] or higher.
SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local v, k = string.match(cur, '^(%d+)|(%a)|')
  if v then
    local rank = tonumber(v) * 2 + ((k == 'v') and 1 or 0)
    if rank >= tonumber(ARGV[1]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class CorruptValue(Exception):
    """The cache returned a value that is not the row it names (wrong key, payload or format)."""


def payload(key: str, version: int, size: int = 32) -> str:
    """The payload of a row version: derived from key and version, ``size`` characters."""
    seed = hashlib.sha256(f"{key}:{version}".encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


def encode(key: str, version: int, kind: str = "v", size: int = 32) -> str:
    return f"{version}|{kind}|{key}|{payload(key, version, size) if kind == 'v' else ''}"


def decode(key: str, raw: str) -> tuple[int, str]:
    """(version, kind) of a cached value; raises :class:`CorruptValue` if it is not a value of ``key``."""
    parts = raw.split("|", 3)
    if len(parts) != 4 or not parts[0].isdigit() or parts[1] not in ("v", "t"):
        raise CorruptValue(f"{key}: unparsable cache value {raw[:80]!r}")
    version, kind, k, body = int(parts[0]), parts[1], parts[2], parts[3]
    if k != key:
        raise CorruptValue(f"{key}: the cache returned the value of {k!r}")
    if kind == "v" and body != payload(key, version, len(body)):
        raise CorruptValue(f"{key}: payload does not match version {version}")
    return version, kind
