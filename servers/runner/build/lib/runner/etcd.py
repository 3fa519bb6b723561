"""What a runner needs of etcd, through its v3 JSON gateway (stdlib only): a lease and its keepalive, keys
created only if absent and attached to the lease, deleted only if still ours, and a prefix listing.

The gateway speaks base64 keys and values and 64-bit numbers as strings. A key's ``create_revision`` is
the fencing token of whoever created it: revisions only grow, so a later owner always holds a larger one.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class EtcdError(RuntimeError):
    """No member answered, or one answered with an error."""


class LeaseLost(EtcdError):
    """The lease expired or was revoked: every key attached to it is gone."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    lease: int


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(item["key"]),
        value=_unb64(item.get("value", "")),
        create_revision=int(item.get("create_revision", 0)),
        lease=int(item.get("lease", 0)),
    )


class Etcd:
    """A client of every member: a request goes to the member that answered last, then to the others."""

    def __init__(self, endpoints: tuple[str, ...], context: ssl.SSLContext | None, timeout: float) -> None:
        self.endpoints = list(endpoints)
        self.context = context
        self.timeout = timeout
        self._lock = threading.Lock()

    def _post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        errors = []
        with self._lock:
            order = list(self.endpoints)
        for endpoint in order:
            req = urllib.request.Request(
                f"{endpoint}{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(
                    req, timeout=timeout or self.timeout, context=self.context
                ) as resp:
                    text = resp.read().decode()
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:200]
                errors.append(f"{endpoint}: {exc.code} {detail}")
                if "lease not found" in detail:
                    raise LeaseLost(detail) from exc
                continue
            except (OSError, TimeoutError) as exc:
                errors.append(f"{endpoint}: {exc}")
                continue
            # keepalive is a stream: one JSON document per line, {"result": ...} or {"error": ...}
            doc = json.loads(text.splitlines()[0]) if text.strip() else {}
            if "error" in doc:
                message = str(doc["error"].get("message", doc["error"]))
                if "lease not found" in message:
                    raise LeaseLost(message)
                errors.append(f"{endpoint}: {message}")
                continue
            with self._lock:
                if self.endpoints[0] != endpoint:
                    self.endpoints.remove(endpoint)
                    self.endpoints.insert(0, endpoint)
            return dict(doc.get("result", doc))
        raise EtcdError("; ".join(errors) or "no etcd endpoint")

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        return int(self._post("/v3/lease/grant", {"TTL": ttl})["ID"])

    def keepalive(self, lease: int, timeout: float) -> int:
        """Renew ``lease``; the TTL granted. :class:`LeaseLost` when it is gone."""
        doc = self._post("/v3/lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        ttl = int(doc.get("TTL", 0))
        if ttl <= 0:
            raise LeaseLost(f"lease {lease:x} expired")
        return ttl

    def revoke(self, lease: int) -> None:
        """Give ``lease`` up (every key attached to it is deleted)."""
        self._post("/v3/lease/revoke", {"ID": str(lease)})

    def create(self, key: str, value: str, lease: int) -> tuple[bool, KeyValue | None]:
        """Put ``key`` attached to ``lease`` only if it does not exist. ``(True, ours)`` with our create
        revision, or ``(False, whoever holds it)``."""
        k = _b64(key)
        doc = self._post(
            "/v3/kv/txn",
            {
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [{"request_put": {"key": k, "value": _b64(value), "lease": str(lease)}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        if doc.get("succeeded"):
            revision = int(doc["header"]["revision"])
            return True, KeyValue(key, value, revision, lease)
        kvs = ((doc.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or []
        return False, _kv(kvs[0]) if kvs else None

    def put(self, key: str, value: str, lease: int) -> None:
        self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": str(lease)})

    def delete_if_ours(self, key: str, create_revision: int) -> bool:
        """Delete ``key`` if it is still the one created at ``create_revision``."""
        k = _b64(key)
        doc = self._post(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": str(create_revision)}
                ],
                "success": [{"request_delete_range": {"key": k}}],
            },
        )
        return bool(doc.get("succeeded"))

    def list_prefix(self, prefix: str) -> list[KeyValue]:
        """Every key under ``prefix`` (a linearizable range)."""
        doc = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return [_kv(item) for item in doc.get("kvs") or []]
