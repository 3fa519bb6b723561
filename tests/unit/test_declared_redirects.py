"""Redirects of a declared server, on two tiny HTTP servers on loopback (a follower that sends clients to
its leader, the leader that answers): ``redirects: follow`` follows the Location within the operation,
``redirects: elsewhere`` takes the redirect as "not done here" and tries the next member."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gauntlet import api_spec
from gauntlet.clients.declared import DeclaredClient
from gauntlet.clients.http import HttpTransport, Member
from gauntlet.history import History


class _Node(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, leader: bool) -> None:
        self.leader = leader
        self.leader_address = ""
        self.data: dict[str, str] = {}
        self.served: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Node

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any], location: str | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        node = self.server
        if self.path == "/status":
            self._send(200, {"me": node.address, "leader": node.leader_address})
            return
        if not node.leader:
            self._send(301, {"error": "not the leader"}, f"http://{node.leader_address}{self.path}")
            return
        node.served.append(f"{self.command} {self.path}")
        key = self.path.rsplit("/", 1)[-1]
        if self.command == "PUT":
            node.data[key] = self.rfile.read(int(self.headers["Content-Length"])).decode()
            self._send(200, {})
        elif key in node.data:
            self._send(200, {"value": node.data[key]})
        else:
            self._send(404, {})

    do_GET = do_PUT = _handle


def _api(redirects: str) -> api_spec.ApiSpec:
    return api_spec.load(
        {
            "name": "toy",
            "endpoint": {"group": "toy", "scheme": "http", "port": 1, "redirects": redirects},
            "operations": {
                "read": {
                    "path": "/kv/{key}",
                    "result": "value",
                    "answers": [{"status": 404, "as": "ok", "absent": True}],
                },
                "write": {"method": "PUT", "path": "/kv/{key}", "body": "{value}"},
                "status": {"path": "/status"},
                "health": {"path": "/status"},
            },
            "status": {"self": "me", "leader": "leader"},
        }
    )


@pytest.fixture
def nodes() -> Iterator[tuple[_Node, _Node]]:
    follower, leader = _Node(False), _Node(True)
    for n in (follower, leader):
        n.leader_address = leader.address
        threading.Thread(target=n.serve_forever, daemon=True).start()
    yield follower, leader
    for n in (follower, leader):
        n.shutdown()
        n.server_close()


def _client(redirects: str, members: list[Member], history: History) -> DeclaredClient:
    return DeclaredClient(_api(redirects), members, HttpTransport(tls=False, timeout=5), history=history)


def test_follow_takes_the_redirect_to_the_leader_within_one_operation(nodes: tuple[_Node, _Node]) -> None:
    follower, leader = nodes
    history = History()
    c = _client("follow", [Member("f", follower.address)], history)  # the client knows only the follower
    c.put("k", "v")
    assert c.get("k") == "v"
    assert leader.served == ["PUT /kv/k", "GET /kv/k"]
    assert [op.type for op in history.ops] == ["invoke", "ok", "invoke", "ok"]


def test_elsewhere_takes_a_redirect_as_not_done_and_tries_the_next_member(nodes: tuple[_Node, _Node]) -> None:
    follower, leader = nodes
    history = History()
    c = _client("elsewhere", [Member("f", follower.address), Member("l", leader.address)], history)
    c.put("k", "v")
    assert leader.served == ["PUT /kv/k"]
    assert history.ops[-1].type == "ok" and history.ops[-1].extra.get("member") in (None, "l")
    alone = _client("elsewhere", [Member("f", follower.address)], History())
    alone.retry_for = 0.3
    with pytest.raises(Exception) as exc:
        alone.put("k2", "v")
    assert "HTTP 301" in str(exc.value)
    assert leader.served == ["PUT /kv/k"], "a redirect not followed must not reach the leader"
