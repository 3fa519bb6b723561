"""The HTTP(S) API of a runner (stdlib ThreadingHTTPServer + ssl; HTTP/1.1 keep-alive).

    POST   /counter/<id>/increment  {"delta": n} (default 1)  -> 200 {"value", "runner", "shard", "token"}
    POST   /counter/<id>/decrement  {"delta": n} (default 1)  -> 200 {"value", ...}
    POST   /counter/<id>/reset                                -> 200 {"value": 0, ...}
    GET    /counter/<id>                                      -> 200 {"value", ...} (never written: 0)
    PUT    /kv/<entity>/<key>       body = the value (text)    -> 200 {"key", "value", ...}
    GET    /kv/<entity>/<key>                                 -> 200 {"key", "value", ...} | 404
    DELETE /kv/<entity>/<key>                                 -> 200 {"key", "deleted", ...}
    GET    /kv/<entity>                                       -> 200 {"keys": [...], ...}
    DELETE /kv/<entity>                                       -> 200 {"cleared": n, ...}
    POST   /timer/<id>              {"delay_ms": n}           -> 200 {"id", "scheduled_at", "due_at", ...} | 409 taken
    POST   /timer/<id>/cancel                                 -> 200 {"cancelled": true} | 409 {"outcome": "already-fired"}
    GET    /timer/<id>                                        -> 200 {"id", "due_at", "cancelled", "fires": [...]} | 404
    GET    /timers                                            -> 200 {"timers": [...]} (every timer, for checks)
    POST   /singleton/next                                    -> 200 {"seq", "runner", "token"}
    GET    /singleton                                         -> 200 {"runner": holder | null}
    GET    /singleton/history                                 -> 200 {"history": [{"runner", "token", "acquired_at", "first_seq"}]}
    GET    /health                                            -> 200 while the runner holds a lease, else 503
    GET    /cluster                                           -> 200 {"runner", "singleton", "runners", "shards"}
    GET    /debug/shards                                      -> 200 the shards owned, the shard map, the runners

Entity requests go to the entity's shard owner: a runner that does not own it forwards the request there
(once: a forwarded request is never forwarded again). Errors are JSON ``{"error", "outcome"}``:
``not-applied`` (503: certainly no effect -- no owner during a hand-over, the owner unreachable before
sending), ``fenced`` (409: this runner lost the shard; nothing written) or ``unknown`` (504: it may have
taken effect).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from runner.config import Config
from runner.runtime import NOCHANGE, NotOwner, Owner, Runtime, shard_of
from runner.store import Fenced, StoreUnavailable

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
FORWARDED = "X-Runner-Forwarded-By"
FORWARD_TIMEOUT_S = 5.0


class HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        runtime: Runtime,
        server_context: ssl.SSLContext | None,
        client_context: ssl.SSLContext | None,
    ) -> None:
        self.runtime = runtime
        self.ssl_context = server_context
        self.client_context = client_context
        super().__init__(address, Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def _counter(state: Any) -> int:
    return int((state or {}).get("value", 0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gauntlet-runner/0.1"
    timeout = 120
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

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise HTTPError(413, {"error": "body too large", "outcome": "not-applied"})
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise HTTPError(400, {"error": f"body is not JSON: {exc}", "outcome": "not-applied"}) from exc
        if not isinstance(value, dict):
            raise HTTPError(400, {"error": "body must be a JSON object", "outcome": "not-applied"})
        return value

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            raw = self._body()
            parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/") if p]
            status, body = self._route(method, parts, raw)
        except HTTPError as exc:
            status, body = exc.status, exc.body
        except NotOwner as exc:
            status, body = 503, {"error": str(exc), "outcome": "not-applied"}
        except Fenced as exc:
            status, body = 409, {"error": str(exc), "outcome": "fenced"}
        except StoreUnavailable as exc:
            outcome = "unknown" if exc.maybe_applied else "not-applied"
            status, body = (
                (504 if exc.maybe_applied else 503),
                {"error": f"PostgreSQL: {exc}", "outcome": outcome},
            )
        except Exception as exc:  # a bug: say so, and keep serving
            log.exception("%s %s", method, self.path)
            status, body = 500, {"error": f"{type(exc).__name__}: {exc}", "outcome": "unknown"}
        body.setdefault("runner", self.server.runtime.me)
        self._send(status, body)

    # -- routes --------------------------------------------------------------------------------------------
    def _route(self, method: str, parts: list[str], raw: bytes) -> tuple[int, dict[str, Any]]:
        rt = self.server.runtime
        match method, parts:
            case "GET", ["health"]:
                if rt.live:
                    return 200, {"status": "ok", "shards": len(rt.owned)}
                return 503, {"status": "no lease", "reason": "this runner holds no etcd lease"}
            case "GET", ["cluster"]:
                return 200, {
                    "singleton": rt.singleton_holder,
                    "runners": sorted(rt.addresses),
                    "shards": len(rt.owned),
                    "live": rt.live,
                }
            case "GET", ["debug", "shards"]:
                return 200, rt.debug()
            case _, ["counter", entity, *rest]:
                return self._routed(
                    rt.owner_of(shard_of(entity, rt.shards)),
                    lambda: self._counter(method, entity, rest, raw),
                    raw,
                )
            case _, ["kv", entity, *rest]:
                return self._routed(
                    rt.owner_of(shard_of(entity, rt.shards)), lambda: self._kv(method, entity, rest, raw), raw
                )
            case "GET", ["timers"]:
                return 200, {"timers": rt.store.timers()}
            case "GET", ["timer", timer]:
                found = rt.store.timers(timer)
                if not found:
                    return 404, {"error": f"no timer {timer}"}
                return 200, found[0]
            case "POST", ["timer", timer, *rest]:
                return self._routed(
                    rt.owner_of(shard_of(timer, rt.shards)), lambda: self._timer(timer, rest, raw), raw
                )
            case "POST", ["singleton", "next"]:
                return self._routed(rt.singleton_owner(), lambda: (200, rt.next_sequence()), raw)
            case "GET", ["singleton"]:
                return 200, {"holder": rt.singleton_holder}
            case "GET", ["singleton", "history"]:
                return 200, {"history": rt.store.singleton_history("sequencer")}
        raise HTTPError(404, {"error": f"no route {method} /{'/'.join(parts)}", "outcome": "not-applied"})

    def _routed(self, owner: Owner, local: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
        if owner.local:
            result: tuple[int, dict[str, Any]] = local()
            return result
        if self.headers.get(FORWARDED):
            raise NotOwner(f"forwarded by {self.headers[FORWARDED]}, but {owner.runner} owns it")
        return self._forward(owner, raw)

    def _forward(self, owner: Owner, raw: bytes) -> tuple[int, dict[str, Any]]:
        """The same request to the owner; its answer as it is."""
        assert owner.address is not None
        host, _, port = owner.address.rpartition(":")
        ctx = self.server.client_context
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, int(port), timeout=FORWARD_TIMEOUT_S, context=ctx)
            if ctx is not None
            else http.client.HTTPConnection(host, int(port), timeout=FORWARD_TIMEOUT_S)
        )
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise NotOwner(f"owner {owner.runner} unreachable: {exc}") from exc
            headers = {
                FORWARDED: self.server.runtime.me,
                "Content-Type": self.headers.get("Content-Type", ""),
            }
            try:
                conn.request(self.command, self.path, body=raw, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                raise HTTPError(
                    504, {"error": f"forwarded to {owner.runner}: {exc}", "outcome": "unknown"}
                ) from exc
        finally:
            conn.close()
        try:
            body = json.loads(data)
        except ValueError:
            body = {"error": data.decode(errors="replace")[:200], "outcome": "unknown"}
        body.setdefault("forwarded_by", self.server.runtime.me)
        return resp.status, body

    def _counter(self, method: str, entity: str, rest: list[str], raw: bytes) -> tuple[int, dict[str, Any]]:
        rt = self.server.runtime
        if method == "GET" and not rest:
            return 200, rt.entity("counter", entity, lambda s: (NOCHANGE, {"value": _counter(s)}))
        if method == "POST" and rest in (["increment"], ["decrement"]):
            delta = self._json_body(raw).get("delta", 1)
            if not isinstance(delta, int) or isinstance(delta, bool):
                try:
                    delta = int(str(delta))
                except ValueError as exc:
                    raise HTTPError(
                        400, {"error": "delta must be an integer", "outcome": "not-applied"}
                    ) from exc
            sign = 1 if rest == ["increment"] else -1

            def change(s: Any) -> tuple[Any, Any]:
                value = _counter(s) + sign * delta
                return {"value": value}, {"value": value}

            return 200, rt.entity("counter", entity, change)
        if method == "POST" and rest == ["reset"]:
            return 200, rt.entity("counter", entity, lambda s: ({"value": 0}, {"value": 0}))
        raise HTTPError(
            404, {"error": "counter: increment, decrement, reset or GET", "outcome": "not-applied"}
        )

    def _kv(self, method: str, entity: str, rest: list[str], raw: bytes) -> tuple[int, dict[str, Any]]:
        rt = self.server.runtime
        if len(rest) == 1:
            key = rest[0]
            if method == "GET":
                r = rt.entity("kv", entity, lambda s: (NOCHANGE, {"key": key, "value": (s or {}).get(key)}))
                return (200 if r["value"] is not None else 404), r
            if method == "PUT":
                value = raw.decode()
                return 200, rt.entity(
                    "kv", entity, lambda s: ({**(s or {}), key: value}, {"key": key, "value": value})
                )
            if method == "DELETE":

                def delete(s: Any) -> tuple[Any, Any]:
                    d = dict(s or {})
                    found = d.pop(key, None) is not None
                    return (d if found else NOCHANGE), {"key": key, "deleted": found}

                return 200, rt.entity("kv", entity, delete)
        if not rest:
            if method == "GET":
                return 200, rt.entity("kv", entity, lambda s: (NOCHANGE, {"keys": sorted(s or {})}))
            if method == "DELETE":
                return 200, rt.entity("kv", entity, lambda s: ({}, {"cleared": len(s or {})}))
        raise HTTPError(
            404,
            {
                "error": "kv: GET/PUT/DELETE /kv/<entity>/<key>, GET/DELETE /kv/<entity>",
                "outcome": "not-applied",
            },
        )

    def _timer(self, timer: str, rest: list[str], raw: bytes) -> tuple[int, dict[str, Any]]:
        rt = self.server.runtime
        if not rest:
            delay = self._json_body(raw).get("delay_ms")
            if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
                raise HTTPError(
                    400, {"error": "delay_ms must be a non-negative integer", "outcome": "not-applied"}
                )
            r = rt.timer_call(
                timer, lambda shard, token: rt.store.schedule(timer, shard, token, delay) or {"taken": True}
            )
            if r.get("taken"):
                return 409, {"error": f"timer {timer} exists", "outcome": "not-applied", **r}
            return 200, r
        if rest == ["cancel"]:
            r = rt.timer_call(timer, lambda shard, token: {"result": rt.store.cancel(timer, shard, token)})
            if r["result"] == "cancelled":
                return 200, {**r, "cancelled": True}
            if r["result"] == "unknown":
                return 404, {**r, "error": f"no timer {timer}", "outcome": "not-applied"}
            return 409, {**r, "error": f"timer {timer}: {r['result']}", "outcome": r["result"]}
        raise HTTPError(
            404, {"error": "timer: POST /timer/<id>, POST /timer/<id>/cancel", "outcome": "not-applied"}
        )


def contexts(config: Config) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The API's server context, and the client context this runner uses towards etcd and its peers (its
    own certificate, the cluster's CA)."""
    tls = config.tls
    if tls is None:
        return None, None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_auth != "none":
        server.load_verify_locations(tls.ca_file)
        server.verify_mode = ssl.CERT_REQUIRED if tls.client_auth == "require" else ssl.CERT_OPTIONAL
    client = ssl.create_default_context(cafile=tls.ca_file or None)
    client.load_cert_chain(tls.cert_file, tls.key_file)
    return server, client


def make_server(
    config: Config, runtime: Runtime, server_ctx: ssl.SSLContext | None, client_ctx: ssl.SSLContext | None
) -> _Server:
    host, _, port = config.listen_client.rpartition(":")
    return _Server((host, int(port)), runtime, server_ctx, client_ctx)
