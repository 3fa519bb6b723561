"""The HTTP(S) API of a node (stdlib ThreadingHTTPServer + ssl; HTTP/1.1 keep-alive).

    PUT    /kv/<key>            body = the value (UTF-8 text)           -> 200 {"key", "value", "previous"}
    GET    /kv/<key>            linearizable read (through the Raft log) -> 200 {"key", "value"} | 404
                                (this node's local copy with [raft] read_mode = "local")
    GET    /kv/<key>?stale=1    this node's local copy, may be stale     -> 200 | 404
    DELETE /kv/<key>                                                     -> 200 {"key", "deleted"}
    POST   /cas/<key>           {"expect": old | null, "value": new}     -> 200 swapped | 409 {"current"}
    GET    /kv                  every key, linearizable (like GET /kv/<key>) -> 200 {"items": {k: v}, "stale"}
    GET    /kv?stale=1          this node's local copy of every key      -> 200 {"items", "stale": true}
    POST   /incr/<key>          {"delta": int} or empty (delta 1)        -> 200 {"key", "value": new int}
                                (counters are /kv values as decimal strings; absent = 0)
                                | 409 {"current"} not an integer | 400 bad body
    POST   /set/<key>           body = the element (UTF-8, non-empty)    -> 200 {"key", "added": bool}
    GET    /set/<key>           linearizable read of the set (?stale=1)  -> 200 {"key", "elements": [sorted], "stale"}
    POST   /next-id/<name>      empty body; ids per name 1, 2, 3, ...    -> 200 {"name", "id": int}
    GET    /health              200 when this node can serve linearizable requests, else 503 {"reason"}
    GET    /cluster             this node's view: state, leader, term, commit index, members

Errors are JSON ``{"error": ..., "outcome": ...}`` where outcome tells a client what it may conclude:
``"not-applied"`` (503: the request certainly had no effect, retry anywhere) or ``"unknown"`` (504: it may
still take effect). Any member accepts every request: a follower hands writes to the leader over Raft.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from raftkv.config import Config
from raftkv.store import NotApplied, OutcomeUnknown, Store

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], store: Store, ssl_context: ssl.SSLContext | None) -> None:
        self.store = store
        self.ssl_context = ssl_context
        super().__init__(address, Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            # Handshake in the handler thread (do_handshake_on_connect=False): a slow or hostile client
            # must not block the accept loop.
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "raftkv/0.1"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.close_connection = True
                raise

    def handle(self) -> None:
        with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _route(self) -> tuple[str, str | None, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        for prefix in ("/kv/", "/cas/", "/incr/", "/set/", "/next-id/"):
            if parts.path.startswith(prefix) and len(parts.path) > len(prefix):
                return prefix.strip("/"), unquote(parts.path[len(prefix) :]), query
        return parts.path, None, query

    def _bad_request(self, exc: Exception) -> None:
        self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc), "outcome": "not-applied"})

    def _run(self, fn: Any, *args: Any) -> Any:
        """Call the store; map its outcomes to HTTP statuses. Returns None when an error was sent."""
        try:
            return fn(*args)
        except NotApplied as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc), "outcome": "not-applied"})
        except OutcomeUnknown as exc:
            self._send(HTTPStatus.GATEWAY_TIMEOUT, {"error": str(exc), "outcome": "unknown"})
        return None

    # -- methods -------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        kind, key, query = self._route()
        store = self.server.store
        stale = query.get("stale", ["0"])[0] not in ("0", "false", "")
        local = store.local(stale)
        if kind == "kv" and key is not None:
            res = self._run(lambda: {"value": store.read(key, stale=stale)})
            if res is None:
                return
            if res["value"] is None:
                self._send(HTTPStatus.NOT_FOUND, {"key": key, "value": None, "error": "not found"})
            else:
                self._send(HTTPStatus.OK, {"key": key, "value": res["value"], "stale": local})
        elif kind in ("/kv", "/kv/"):
            items = self._run(store.read_all, stale)
            if items is not None:
                self._send(HTTPStatus.OK, {"items": items, "stale": local})
        elif kind == "set" and key is not None:
            elements = self._run(store.set_read, key, stale)
            if elements is not None:
                self._send(HTTPStatus.OK, {"key": key, "elements": elements, "stale": local})
        elif kind == "/health":
            healthy, why = store.health()
            status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(
                status,
                {
                    "status": "ok" if healthy else "unavailable",
                    "reason": why,
                    "node_id": store.config.node_id,
                },
            )
        elif kind == "/cluster":
            self._send(HTTPStatus.OK, store.status())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such resource {self.path}"})

    def do_PUT(self) -> None:
        kind, key, _ = self._route()
        if kind != "kv" or key is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"PUT only on /kv/<key>, not {self.path}"})
            return
        try:
            value = self._body().decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc), "outcome": "not-applied"})
            return
        res = self._run(self.server.store.put, key, value)
        if res is not None:
            self._send(HTTPStatus.OK, {"key": key, "value": value, "previous": res["previous"]})

    def do_DELETE(self) -> None:
        kind, key, _ = self._route()
        if kind != "kv" or key is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"DELETE only on /kv/<key>, not {self.path}"})
            return
        res = self._run(self.server.store.delete, key)
        if res is not None:
            self._send(HTTPStatus.OK, {"key": key, "deleted": res["deleted"], "previous": res["previous"]})

    def do_POST(self) -> None:
        kind, key, _ = self._route()
        if key is None or kind not in ("cas", "incr", "set", "next-id"):
            self._send(
                HTTPStatus.NOT_FOUND,
                {"error": f"POST only on /cas/, /incr/, /set/ or /next-id/<key>, not {self.path}"},
            )
            return
        try:
            raw = self._body()
        except ValueError as exc:
            self._bad_request(exc)
            return
        {"cas": self._cas, "incr": self._incr, "set": self._set_add, "next-id": self._next_id}[kind](key, raw)

    def _cas(self, key: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict) or "value" not in body or not isinstance(body["value"], str):
                raise ValueError('body must be {"expect": "<old>" | null, "value": "<new>"}')
            expect = body.get("expect")
            if expect is not None and not isinstance(expect, str):
                raise ValueError("expect must be a string or null (null: the key must be absent)")
        except (ValueError, UnicodeDecodeError) as exc:
            self._bad_request(exc)
            return
        res = self._run(self.server.store.cas, key, expect, body["value"])
        if res is None:
            return
        if res["swapped"]:
            self._send(HTTPStatus.OK, {"key": key, "value": body["value"], "previous": res["previous"]})
        else:
            self._send(
                HTTPStatus.CONFLICT,
                {
                    "key": key,
                    "error": "value differs from expect",
                    "current": res["current"],
                    "outcome": "not-applied",
                },
            )

    def _incr(self, key: str, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError('body must be {"delta": <integer>} or empty (delta 1)')
            delta = body.get("delta", 1)
            if not isinstance(delta, int) or isinstance(delta, bool):
                raise ValueError(f"delta must be an integer, not {delta!r}")
        except (ValueError, UnicodeDecodeError) as exc:
            self._bad_request(exc)
            return
        res = self._run(self.server.store.incr, key, delta)
        if res is None:
            return
        if res["incremented"]:
            self._send(HTTPStatus.OK, {"key": key, "value": res["value"]})
        else:
            self._send(
                HTTPStatus.CONFLICT,
                {
                    "key": key,
                    "error": "the current value is not an integer",
                    "current": res["current"],
                    "outcome": "not-applied",
                },
            )

    def _set_add(self, key: str, raw: bytes) -> None:
        try:
            element = raw.decode("utf-8")
            if not element:
                raise ValueError("body must be the element to add (UTF-8 text, not empty)")
        except (ValueError, UnicodeDecodeError) as exc:
            self._bad_request(exc)
            return
        res = self._run(self.server.store.set_add, key, element)
        if res is not None:
            self._send(HTTPStatus.OK, {"key": key, "added": res["added"]})

    def _next_id(self, name: str, raw: bytes) -> None:
        if raw:
            self._bad_request(ValueError("POST /next-id/<name> takes an empty body"))
            return
        res = self._run(self.server.store.next_id, name)
        if res is not None:
            self._send(HTTPStatus.OK, {"name": name, "id": res["id"]})


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The server's TLS context (None: plain HTTP). TLS 1.2+, client certificates per ``client_auth``."""
    tls = config.tls
    if tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_auth != "none":
        ctx.load_verify_locations(cafile=tls.ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth == "require" else ssl.CERT_OPTIONAL
    return ctx


def make_server(config: Config, store: Store) -> _Server:
    """Bind the API server (not yet serving)."""
    host, _, port = config.listen_client.rpartition(":")
    return _Server((host.strip("[]"), int(port)), store, ssl_context(config))
