"""Client of an etcd 3.4+ cluster over its JSON gateway (``/v3/...``) with mutual TLS, stdlib only.

Each call opens its own HTTPS connection to one member, so the client is safe to share between threads and
a call says exactly which member answered. Keys and values are text (base64 on the wire, as the gateway
wants). Operations can be recorded into a :class:`~gauntlet.history.History`, classified as Jepsen does:

- ``ok``: the member answered 200.
- ``fail`` (certainly did not take effect): the request never left (connection refused, connect timeout,
  TLS handshake refused), or etcd answered with an error raised before the request was proposed to raft
  (``no leader``, ``not capable``, ``too many requests``, ...) or a client error (4xx).
- ``info`` (unknown): the request was sent and no definite answer came back: a read timeout, a reset
  connection, ``request timed out``, ``leader changed``, other 5xx. The write may still be applied.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gauntlet.clients.base import ClientError, Fail, Info, record
from gauntlet.history import History

# etcd errors returned before a request reaches raft: the operation certainly did not happen.
DEFINITE_ERRORS = (
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: too many requests",
    "etcdserver: server stopped",
    "etcdserver: unhealthy cluster",
    "etcdserver: request is too large",
    "etcdserver: permission denied",
    "etcdserver: user name is empty",
    "etcdserver: invalid auth token",
)


class TLSRefused(Fail):
    """The TLS handshake (or the first record after it) was refused: a certificate problem on either side."""


@dataclass(frozen=True)
class Member:
    """One etcd member: its name (inventory host) and the address:port its client URL listens on."""

    name: str
    host: str
    port: int  # etcd_client_port of the inventory or the etcd role (Cluster.setting)


@dataclass(frozen=True)
class Status:
    """What ``/v3/maintenance/status`` of one member says."""

    member: str
    member_id: int
    leader_id: int
    raft_term: int
    raft_index: int
    version: str

    @property
    def is_leader(self) -> bool:
        return self.leader_id != 0 and self.leader_id == self.member_id


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with ``prefix`` (etcd's ``--prefix``)."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return base64.b64encode(bytes(raw[: i + 1])).decode()
    return base64.b64encode(b"\0").decode()


class EtcdClient:
    """Talks to the members of one etcd cluster over HTTPS with a client certificate.

    ``cert``/``key`` may be ``None`` (no client certificate: the server must refuse). ``ca`` is the CA the
    client trusts for the servers' certificates.
    """

    def __init__(
        self,
        members: list[Member],
        ca: str | Path,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        timeout: float = 3.0,
    ) -> None:
        if not members:
            raise ValueError("an etcd client needs at least one member")
        self.members = {m.name: m for m in members}
        self.timeout = timeout
        self._ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        if cert:
            self._ctx.load_cert_chain(str(cert), str(key) if key else None)

    # -- transport -------------------------------------------------------------------------------------------
    def call(
        self, member: str, path: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` on one member; the decoded JSON answer, or a :class:`Fail` / :class:`Info`."""
        m = self.members[member]
        conn = http.client.HTTPSConnection(m.host, m.port, context=self._ctx, timeout=timeout or self.timeout)
        try:
            try:
                conn.connect()
            except ssl.SSLError as exc:
                raise TLSRefused(f"TLS handshake failed: {exc}", member) from exc
            except (TimeoutError, OSError) as exc:
                raise Fail(f"cannot connect to {m.host}:{m.port}: {exc}", member) from exc
            payload = json.dumps(body).encode()
            try:
                conn.request(
                    "POST", f"/v3/{path}", body=payload, headers={"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                data = resp.read()
            except ssl.SSLError as exc:
                # TLS 1.3: a refused client certificate shows up as an alert on the first read/write.
                if "CERTIFICATE" in str(exc).upper() or "ALERT" in str(exc).upper():
                    raise TLSRefused(f"TLS refused: {exc}", member) from exc
                raise Info(f"TLS error after sending: {exc}", member) from exc
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise Info(f"connection lost: {exc!r}", member) from exc
            except TimeoutError as exc:
                raise Info(f"no answer within {timeout or self.timeout}s", member) from exc
            except (http.client.HTTPException, OSError) as exc:
                raise Info(f"{type(exc).__name__}: {exc}", member) from exc
        finally:
            conn.close()
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"error": data.decode(errors="replace")}
        if resp.status == 200 and "error" not in doc:
            return doc
        message = str(doc.get("error") or doc.get("message") or f"HTTP {resp.status}")
        if any(message.startswith(d) for d in DEFINITE_ERRORS) or 400 <= resp.status < 500:
            raise Fail(message, member, resp.status)
        raise Info(message, member, resp.status)

    # -- key-value -------------------------------------------------------------------------------------------
    def put(self, member: str, key: str, value: str) -> int:
        """Write ``key=value`` through ``member``; the revision of the write."""
        doc = self.call(member, "kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(doc["header"]["revision"])

    def get(
        self, member: str, key: str, serializable: bool = False, timeout: float | None = None
    ) -> str | None:
        """Read ``key`` through ``member``: linearizable (via the leader, needs a quorum) by default, or
        serializable (the member's local copy, possibly stale, works without a quorum). ``None``: absent."""
        doc = self.call(member, "kv/range", {"key": _b64(key), "serializable": serializable}, timeout=timeout)
        kvs = doc.get("kvs") or []
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, member: str, prefix: str, serializable: bool = False) -> dict[str, str]:
        """Every key starting with ``prefix`` and its value."""
        doc = self.call(
            member,
            "kv/range",
            {"key": _b64(prefix), "range_end": _prefix_end(prefix), "serializable": serializable},
        )
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in doc.get("kvs") or []}

    def revision(self, member: str) -> int:
        """The store's current revision as ``member`` answers it (a linearizable read through the leader)."""
        doc = self.call(member, "kv/range", {"key": _b64("\0"), "limit": 1, "count_only": True})
        return int(doc.get("header", {}).get("revision", 0))

    def listing_at(self, member: str, revision: int) -> dict[str, str]:
        """Every key and value ``member`` holds in its own copy (serializable) at ``revision``: compared across
        members, equal listings at one revision mean the same data. Fails while ``member`` has not applied
        ``revision`` yet (etcd: "required revision is a future revision")."""
        doc = self.call(
            member,
            "kv/range",
            {"key": _b64("\0"), "range_end": _b64("\0"), "revision": revision, "serializable": True},
        )
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in doc.get("kvs") or []}

    # -- cluster ---------------------------------------------------------------------------------------------
    def status(self, member: str, timeout: float | None = None) -> Status:
        """The member's own view: its id, the leader it follows, raft term and index."""
        doc = self.call(member, "maintenance/status", {}, timeout=timeout)
        return Status(
            member=member,
            member_id=int(doc["header"]["member_id"]),
            leader_id=int(doc.get("leader", 0)),
            raft_term=int(doc.get("raftTerm", doc["header"].get("raft_term", 0))),
            raft_index=int(doc.get("raftIndex", 0)),
            version=str(doc.get("version", "")),
        )

    def member_list(self, member: str) -> dict[int, str]:
        """Member id -> name, as ``member`` knows the cluster (an unstarted member has an empty name)."""
        doc = self.call(member, "cluster/member/list", {})
        return {int(m["ID"]): str(m.get("name", "")) for m in doc.get("members", [])}

    def statuses(
        self, members: list[str] | None = None, timeout: float | None = None
    ) -> dict[str, Status | None]:
        """Status of each member (``None`` for a member that did not answer)."""
        out: dict[str, Status | None] = {}
        for name in members or list(self.members):
            try:
                out[name] = self.status(name, timeout=timeout)
            except ClientError:
                out[name] = None
        return out

    def agreed_leader(self, members: list[str] | None = None, timeout: float | None = None) -> str | None:
        """The name of the leader every given member answers with, or ``None`` if one did not answer, one
        has no leader, or they disagree."""
        st = self.statuses(members, timeout=timeout)
        if any(s is None for s in st.values()):
            return None
        leaders = {s.leader_id for s in st.values() if s is not None}
        if len(leaders) != 1 or 0 in leaders:
            return None
        (leader_id,) = leaders
        by_id = {s.member_id: s.member for s in st.values() if s is not None}
        if leader_id in by_id:
            return by_id[leader_id]
        names = self.member_list(next(iter(st)))
        return names.get(leader_id) or None

    # -- recorded operations ---------------------------------------------------------------------------------
    def recorded_put(self, history: History, process: str, member: str, key: str, value: str) -> bool:
        """:meth:`put`, recorded as a ``write`` op; True when acknowledged."""
        return record(
            history, process, "write", lambda: self.put(member, key, value), value=value, key=key
        ).ok

    def recorded_get(
        self, history: History, process: str, member: str, key: str, serializable: bool = False
    ) -> tuple[bool, str | None]:
        """:meth:`get`, recorded as a ``read`` op; (answered, value). A read changes nothing, so every
        error is a definite ``fail``."""
        out = record(
            history,
            process,
            "read",
            lambda: self.get(member, key, serializable=serializable),
            key=key,
            returns_value=True,
            read_only=True,
        )
        return out.ok, out.value
