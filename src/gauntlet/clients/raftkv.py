"""The hand-written client of the reference Raft key-value server (servers/raftkv).

The checks drive the server through its declaration (molecule/custom/hosts.yml, :mod:`gauntlet.clients.declared`);
this client stays for what a description does not say — a connection that deliberately presents no client
certificate (the planted defects' probes), the server's own unit tests — and as the yardstick the generic
client's throughput is measured against (tests/unit/test_declared_client.py).

Every operation can be recorded into a :class:`~gauntlet.history.History` (Jepsen's model), and the
classification of failures is what makes a linearizability verdict sound:

- ``ok``: the server answered 200 (or 404 for a read of an absent key).
- ``fail`` (certainly did not happen): the request never left (connection refused or timed out while
  connecting, TLS handshake failed), or the server said so: 409 compare-and-set mismatch, 503
  ``not-applied`` (no leader, no quorum, entry discarded), 4xx.
- ``info`` (unknown): anything after the request was sent without a definite answer: a read timeout, a
  reset connection, 504 (not committed in time), other 5xx.

Definite failures are retried on the next member until ``retry_for`` runs out (nothing happened, so
retrying cannot apply a write twice). An unknown outcome of a write is never retried: the write may
still be applied, and a second attempt could apply it twice. Reads have no effect, so a read is retried
on another member after any failure, and recorded as one operation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from gauntlet.bench import wait_for
from gauntlet.clients.base import ClientError, Fail, Info, record
from gauntlet.clients.http import HttpTransport, Member, MemberClient
from gauntlet.history import History

T = TypeVar("T")


class CasMismatch(Fail):
    """Compare-and-set found another value (``current``) than expected: nothing was written."""

    def __init__(self, message: str, current: str | None, member: str | None = None) -> None:
        super().__init__(message, member, 409)
        self.current = current


class RaftKVClient(MemberClient):
    """Talks to every member of one cluster; optionally records each operation into ``history``.

    One client object is one *process* of the history (it must run one operation at a time); use
    :meth:`for_process` to get siblings for concurrent workers (they share the settings, not the state).
    """

    def __init__(
        self,
        members: Iterable[Member | str],
        *,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        tls: bool = True,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        retry_for: float = 10.0,
        history: History | None = None,
        process: str = "c0",
        idle_reconnect: float = 30.0,
    ) -> None:
        self.members = [m if isinstance(m, Member) else Member(m, m) for m in members]
        if not self.members:
            raise ValueError("a RaftKVClient needs at least one member")
        self.tls = tls
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for
        self.history = history
        self.process = process
        self.idle_reconnect = idle_reconnect
        self.transport = HttpTransport(
            tls=tls,
            ca_file=ca_file,
            client_cert=client_cert,
            timeout=timeout,
            connect_timeout=connect_timeout,
            idle_reconnect=idle_reconnect,
        )
        self._preferred = 0

    @classmethod
    def from_cluster(
        cls,
        cluster: Any,
        group: str = "custom_server",
        port_var: str = "custom_server_client_port",
        client_name: str = "gauntlet-client",
        **kwargs: Any,
    ) -> RaftKVClient:
        """A client for the hosts of ``group`` of a :class:`~gauntlet.cluster.Cluster`, with the cluster's
        CA and the tests' client certificate (mTLS)."""
        hosts = cluster.group(group)
        members = [Member(h.name, f"{h.address}:{int(h.setting(port_var))}") for h in hosts]
        kwargs.setdefault("ca_file", cluster.ca_cert)
        kwargs.setdefault("client_cert", cluster.client_cert(client_name))
        return cls(members, **kwargs)

    # -- one HTTP exchange ---------------------------------------------------------------------------------
    def request(
        self, m: Member, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One request to one member: (status, JSON body). Raises :class:`Fail` / :class:`Info` on errors."""
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        answer = self.transport.request(m, method, path, body, headers)
        try:
            data = json.loads(answer.body) if answer.body else {}
        except ValueError:
            data = {"error": answer.body[:200].decode("utf-8", "replace")}
        return answer.status, data

    # -- operations with retry and recording ---------------------------------------------------------------
    def _order(self, member: str | None) -> list[Member]:
        if member is not None:
            return [self.member(member)]
        i = self._preferred % len(self.members)
        return self.members[i:] + self.members[:i]

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None,
        member: str | None,
        retry_for: float | None,
        retry_unknown: bool,
    ) -> tuple[int, dict[str, Any], Member]:
        """Send until a definite answer; fail over to the next member on definite failures."""
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        order = self._order(member)
        attempt = 0
        while True:
            m = order[attempt % len(order)]
            attempt += 1
            try:
                status, data = self.request(m, method, path, body)
                if status == 503 and data.get("outcome") == "not-applied":
                    raise Fail(str(data.get("error")), m.name, status)
                if status >= 500 and status != 503:
                    raise Info(f"HTTP {status} {data.get('error')}", m.name, status)
                if status == 503:
                    raise Fail(f"HTTP 503 {data.get('error')}", m.name, status)
                self._preferred = self.members.index(m)
                return status, data, m
            except ClientError as exc:
                if not exc.definite and not retry_unknown:
                    raise
                if time.monotonic() >= deadline:
                    raise
                # next member; a short pause once every member was tried (elections take ~1 s)
                if attempt % len(order) == 0:
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _record(self, f: str, key: str, value: Any, run: Callable[[], tuple[T, Any]]) -> T:
        """Run ``run()`` (returns (result, recorded value)) as one operation of the history (base's
        :func:`~gauntlet.clients.base.record`); a client error is re-raised after it was recorded."""
        results: list[T] = []

        def call() -> Any:
            result, recorded = run()
            results.append(result)
            return recorded

        record(self.history, self.process, f, call, value=value, key=key, returns_value=True, reraise=True)
        return results[0]

    @staticmethod
    def _path(prefix: str, key: str) -> str:
        return f"/{prefix}/{quote(key, safe='')}"

    def get(
        self, key: str, *, member: str | None = None, stale: bool = False, retry_for: float | None = None
    ) -> str | None:
        """The value of ``key`` (None: absent). Linearizable unless ``stale``."""

        def run() -> tuple[str | None, Any]:
            path = self._path("kv", key) + ("?stale=1" if stale else "")
            status, data, m = self._call("GET", path, None, member, retry_for, retry_unknown=True)
            if status == 404:
                return None, None
            if status != 200:
                raise Fail(f"GET {key}: HTTP {status} {data.get('error')}", m.name, status)
            return data["value"], data["value"]

        return self._record("stale-read" if stale else "read", key, None, run)

    def put(self, key: str, value: str, *, member: str | None = None, retry_for: float | None = None) -> None:
        """Write ``value`` to ``key`` (acknowledged once committed by a majority)."""

        def run() -> tuple[None, Any]:
            status, data, m = self._call(
                "PUT", self._path("kv", key), value.encode(), member, retry_for, False
            )
            if status != 200:
                raise Fail(f"PUT {key}: HTTP {status} {data.get('error')}", m.name, status)
            return None, value

        self._record("write", key, value, run)

    def delete(self, key: str, *, member: str | None = None, retry_for: float | None = None) -> bool:
        """Delete ``key``; True if it existed."""

        def run() -> tuple[bool, Any]:
            status, data, m = self._call("DELETE", self._path("kv", key), None, member, retry_for, False)
            if status != 200:
                raise Fail(f"DELETE {key}: HTTP {status} {data.get('error')}", m.name, status)
            return bool(data.get("deleted")), None

        return self._record("delete", key, None, run)

    def cas(
        self,
        key: str,
        expect: str | None,
        value: str,
        *,
        member: str | None = None,
        retry_for: float | None = None,
    ) -> None:
        """Set ``key`` to ``value`` if it holds ``expect`` (None: if absent); raises CasMismatch otherwise."""

        def run() -> tuple[None, Any]:
            body = json.dumps({"expect": expect, "value": value}).encode()
            status, data, m = self._call("POST", self._path("cas", key), body, member, retry_for, False)
            if status == 409:
                raise CasMismatch(
                    f"cas {key}: holds {data.get('current')!r}, not {expect!r}",
                    data.get("current"),
                    m.name,
                )
            if status != 200:
                raise Fail(f"cas {key}: HTTP {status} {data.get('error')}", m.name, status)
            return None, [expect, value]

        self._record("cas", key, [expect, value], run)

    # -- cluster state -------------------------------------------------------------------------------------
    def status(self, member: str) -> dict[str, Any]:
        """``/cluster`` of one member (its own view)."""
        status, data = self.request(self.member(member), "GET", "/cluster")
        if status != 200:
            raise Fail(f"/cluster: HTTP {status}", member, status)
        return data

    def health(self, member: str) -> tuple[bool, dict[str, Any]]:
        """``/health`` of one member: (healthy, body)."""
        status, data = self.request(self.member(member), "GET", "/health")
        return status == 200, data

    def leaders(self) -> dict[str, str | None]:
        """Each reachable member's idea of the leader (member name -> leader id or None)."""
        out: dict[str, str | None] = {}
        for m in self.members:
            try:
                s = self.status(m.name)
            except ClientError:
                continue
            out[m.name] = (s.get("leader") or {}).get("id")
        return out

    def self_declared_leaders(self) -> list[str]:
        """Members that say they are the leader right now (more than one = split brain, or a stale one)."""
        out = []
        for m in self.members:
            try:
                if self.status(m.name).get("state") == "leader":
                    out.append(m.name)
            except ClientError:
                continue
        return out

    def agreed_leader(self, members: Iterable[str] | None = None) -> str | None:
        """The leader every given member (default: all) names, if they all name the same one."""
        names = list(members) if members is not None else [m.name for m in self.members]
        views = self.leaders()
        seen = {views.get(n) for n in names}
        if len(seen) == 1 and None not in seen:
            return seen.pop()
        return None

    def wait_for_ready(self, timeout: float = 60.0, members: Iterable[str] | None = None) -> str:
        """Wait until the given members (default: all) are healthy and agree on one leader; return it."""
        names = list(members) if members is not None else [m.name for m in self.members]
        last: dict[str, Any] = {}  # what each member said last: named in the error when the wait times out

        def ready() -> str | None:
            for n in names:
                try:
                    ok, body = self.health(n)
                except ClientError as exc:
                    last[n] = str(exc)
                    return None
                last[n] = body.get("reason", body)
                if not ok:
                    return None
            views = self.leaders()
            last["leaders"] = views
            seen = {views.get(n) for n in names}
            return seen.pop() if len(seen) == 1 and None not in seen else None

        try:
            return str(
                wait_for(ready, timeout, interval=0.2, what=f"raftkv members {names} healthy with one leader")
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last seen: {last}") from exc

    def close(self) -> None:
        """Close this thread's connections."""
        self.transport.close()


__all__ = ["CasMismatch", "Member", "RaftKVClient"]
