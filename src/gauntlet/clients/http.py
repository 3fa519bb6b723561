"""One HTTP(S) exchange with one member, classified the way every client of the harness needs it.

Keep-alive connections per thread and member (a client object is one process, but siblings share nothing).
What the transport can tell a client without knowing the API:

- the request never left (connection refused, connect timeout, TLS handshake refused): :class:`Fail`;
- it was sent and no answer came back (read timeout, reset): :class:`Info` — the outcome is unknown;
- else the status, headers and raw body, for the caller to classify.

An idle connection the server closed is dropped before reuse: writing into it would make a refused request
look like an unknown outcome.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from gauntlet.clients.base import Fail, Info


@dataclass(frozen=True)
class Member:
    """One server: a name (inventory host) and the ``host:port`` its API listens on."""

    name: str
    address: str


@dataclass(frozen=True)
class Answer:
    """What one member answered."""

    status: int
    headers: dict[str, str]
    body: bytes


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle keep-alive connection was closed by the server (it has nothing to say while idle, so
    readable means EOF or reset)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Connections(threading.local):
    def __init__(self) -> None:
        self.by_member: dict[str, tuple[http.client.HTTPConnection, float]] = {}


class HttpTransport:
    """Requests to the members of one cluster, over plain HTTP or (m)TLS."""

    def __init__(
        self,
        *,
        tls: bool,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        idle_reconnect: float = 30.0,
    ) -> None:
        self.tls = tls
        self.ca_file = str(ca_file) if ca_file else None
        self.client_cert = (str(client_cert[0]), str(client_cert[1])) if client_cert else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.idle_reconnect = idle_reconnect
        self._ssl = self._make_ssl() if tls else None
        self._conns = _Connections()

    def sibling(self) -> HttpTransport:
        """The same settings with connections of its own (for another process of the history)."""
        t = HttpTransport.__new__(HttpTransport)
        t.__dict__.update(self.__dict__)
        t._conns = _Connections()
        return t

    def _make_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert:
            ctx.load_cert_chain(*self.client_cert)
        return ctx

    def _connection(self, m: Member) -> http.client.HTTPConnection:
        now = time.monotonic()
        held = self._conns.by_member.get(m.name)
        if held is not None:
            old, last_used = held
            if now - last_used < self.idle_reconnect and old.sock is not None and not _dropped(old.sock):
                return old
            old.close()
        host, _, port = m.address.rpartition(":")
        host = host.strip("[]")
        if self.tls:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, int(port), timeout=self.connect_timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(host, int(port), timeout=self.connect_timeout)
        try:
            conn.connect()  # TCP + TLS handshake: a failure here means nothing was sent
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            self._conns.by_member.pop(m.name, None)
            raise Fail(f"cannot connect to {m.address}: {exc}", m.name) from exc
        assert conn.sock is not None
        conn.sock.settimeout(self.timeout)
        self._conns.by_member[m.name] = (conn, now)
        return conn

    def request(
        self,
        m: Member,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request to one member; raises :class:`Fail` (never sent) or :class:`Info` (no answer)."""
        conn = self._connection(m)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            conn.close()
            self._conns.by_member.pop(m.name, None)
            kind = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else "failed"
            raise Info(f"{method} {path} {kind} after sending: {exc!r}", m.name) from exc
        self._conns.by_member[m.name] = (conn, time.monotonic())
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)

    def close(self) -> None:
        """Close this thread's connections."""
        for conn, _ in self._conns.by_member.values():
            conn.close()
        self._conns.by_member.clear()


class MemberClient:
    """What every client of a cluster of HTTP members shares: its members, one history process per object,
    siblings for concurrent workers (same settings, connections of their own)."""

    members: list[Member]
    transport: HttpTransport
    history: Any
    process: str

    def for_process(self, process: str, history: Any = None) -> Self:
        """A sibling client with its own process id (and the same or another history)."""
        c = type(self).__new__(type(self))
        c.__dict__.update(self.__dict__)
        c.process = process
        c.history = history if history is not None else self.history
        c.transport = self.transport.sibling()
        return c

    def member(self, name: str) -> Member:
        """The member of an inventory name or an address."""
        for m in self.members:
            if name in (m.name, m.address):
                return m
        raise KeyError(f"no member {name} (members: {[m.name for m in self.members]})")
