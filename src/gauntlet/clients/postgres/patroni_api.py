"""Patroni's REST API of one member, over TLS verified against the cluster CA."""

from __future__ import annotations

import http.client
import json
import ssl
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PatroniAPI:
    """One member's Patroni REST API over TLS (verified against the cluster CA), with basic auth for the
    endpoints that change things."""

    name: str
    address: str
    port: int
    ca: str | Path
    username: str | None = None
    password: str | None = None
    timeout: float = 3.0
    # Client certificate and key presented to the API (Patroni asks for one on its unsafe endpoints when
    # restapi.verify_client is optional or required).
    client_cert: tuple[str | Path, str | Path] | None = None

    def _context(self, with_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if with_cert and self.client_cert:
            ctx.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return ctx

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: bool = False,
        timeout: float | None = None,
        cert: bool = True,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request (``auth``: send basic auth; ``cert``: present the
        client certificate, if any)."""
        conn = http.client.HTTPSConnection(
            self.address, self.port, context=self._context(cert), timeout=timeout or self.timeout
        )
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.username:
            token = b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw

    def get(self, path: str, timeout: float | None = None) -> tuple[int, Any]:
        """(status, body) of ``GET path``."""
        return self.request("GET", path, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """GET /patroni (role, state, timeline, xlog positions)."""
        code, body = self.get("/patroni")
        if not isinstance(body, dict):
            raise RuntimeError(f"{self.name}: /patroni answered {code}: {body!r}")
        return body

    def is_primary(self, timeout: float | None = None) -> bool:
        """True when the member holds the leader lock and runs as primary (what HAProxy routes writes by)."""
        return self.get("/primary", timeout=timeout)[0] == 200

    def cluster(self) -> dict[str, Any]:
        """GET /cluster: every member with role, state, lag, timeline."""
        code, body = self.get("/cluster")
        if not isinstance(body, dict):
            raise RuntimeError(f"{self.name}: /cluster answered {code}: {body!r}")
        return body
