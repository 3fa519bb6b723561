"""The generic client of a declared server (:mod:`gauntlet.api_spec`): every operation the description names,
recorded through the one client protocol (:func:`gauntlet.clients.base.record`).

Retries are the hand-written clients' rules: a definite failure (the request never left, or an answer the
description classifies ``fail``) is retried on the next member until ``retry_for`` runs out — nothing
happened, so retrying cannot apply a write twice. An unknown outcome of a write is never retried. A
read-only operation is retried on another member after any failure and recorded as one operation.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from gauntlet import api_spec
from gauntlet.api_spec import ApiSpec, DeclarationError, Operation
from gauntlet.bench import wait_for
from gauntlet.clients.base import ClientError, Fail, Info, record
from gauntlet.clients.http import Answer, HttpTransport, Member, MemberClient
from gauntlet.history import History

if TYPE_CHECKING:
    from gauntlet.cluster import Cluster

T = TypeVar("T")
MAX_REDIRECTS = 3

#: History names of the operations (the checkers read these).
HISTORY_F = {
    "read": "read",
    "read_local": "stale-read",
    "write": "write",
    "delete": "delete",
    "cas": "cas",
    "increment": "increment",
    "read_counter": "read",
    "add": "add",
    "read_set": "read",
    "next_id": "next-id",
    "list": "list",
}


class CasMismatch(Fail):
    """Compare-and-set found another value (``current``, when the answer says it): nothing was written."""

    def __init__(
        self, message: str, current: Any, member: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, member, status)
        self.current = current


def spec_of(cluster: Cluster, group: str | None = None) -> ApiSpec:
    """The validated ``custom_server_api`` of the hosts of ``group`` (default: the first group whose hosts
    declare one)."""
    groups = [group] if group else [g for g in cluster.groups() if g not in ("all", "ungrouped")]
    for g in groups:
        for h in cluster.group(g):
            raw = h.var(api_spec.PREFIX)
            if raw is not None:
                spec = api_spec.load(raw, where=f"{api_spec.PREFIX} (host {h.name})")
                if group is None and spec.endpoint.group != g:
                    continue
                return spec
    where = f"group {group}" if group else "any group"
    raise DeclarationError(api_spec.PREFIX, f"not set on the hosts of {where} of the inventory")


class DeclaredClient(MemberClient):
    """Talks to every member of one cluster as the description says; optionally records into ``history``.

    One client object is one *process* of the history; :meth:`for_process` gives siblings for concurrent
    workers (same settings, own connections).
    """

    def __init__(
        self,
        spec: ApiSpec,
        members: Iterable[Member],
        transport: HttpTransport,
        *,
        history: History | None = None,
        process: str = "c0",
        retry_for: float | None = None,
        auth_header: str | None = None,
    ) -> None:
        self.spec = spec
        self.members = list(members)
        if not self.members:
            raise DeclarationError(
                f"{api_spec.PREFIX}.endpoint.group", f"group {spec.endpoint.group} has no hosts"
            )
        self.transport = transport
        self.history = history
        self.process = process
        self.retry_for = spec.endpoint.retry_for if retry_for is None else retry_for
        self._auth_header = auth_header
        self._preferred = 0
        self._ids: dict[str, str] = {}  # member name -> the id its status answer gives itself

    @classmethod
    def from_cluster(
        cls,
        cluster: Cluster,
        spec: ApiSpec | None = None,
        *,
        history: History | None = None,
        process: str = "c0",
        timeout: float | None = None,
        connect_timeout: float | None = None,
        retry_for: float | None = None,
    ) -> DeclaredClient:
        """A client of the declared group of a :class:`~gauntlet.cluster.Cluster`: ports from the inventory
        or the role's defaults, the cluster's CA and client certificate for (m)TLS."""
        spec = spec or spec_of(cluster)
        ep = spec.endpoint
        members = []
        for h in cluster.group(ep.group):
            port = ep.port if ep.port is not None else int(h.setting(str(ep.port_var)))
            members.append(Member(h.name, f"{h.address}:{port}"))
        ca: str | Path | None = None
        if ep.scheme == "https":
            ca = cluster.ca_cert if ep.ca == "cluster" else (None if ep.ca == "system" else ep.ca)
        cert = cluster.client_cert(ep.client_cert) if ep.scheme == "https" and ep.client_cert else None
        transport = HttpTransport(
            tls=ep.scheme == "https",
            ca_file=ca,
            client_cert=cert,
            timeout=ep.timeout if timeout is None else timeout,
            connect_timeout=ep.connect_timeout if connect_timeout is None else connect_timeout,
        )
        return cls(spec, members, transport, history=history, process=process, retry_for=retry_for)

    # -- one exchange --------------------------------------------------------------------------------------
    def _headers(self, op: Operation, has_body: bool, json_body: bool) -> dict[str, str]:
        headers = dict(self.spec.endpoint.headers)
        headers.update(op.headers)
        auth = self.spec.endpoint.auth
        if auth.get("type") == "basic":
            token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif auth.get("type") == "bearer":
            headers["Authorization"] = f"Bearer {auth['token']}"
        if has_body:
            headers.setdefault(
                "Content-Type", "application/json" if json_body else "application/octet-stream"
            )
        return headers

    def _exchange(self, m: Member, op: Operation, values: Mapping[str, Any]) -> tuple[Answer, Any, Member]:
        """One request (following redirects when the description says so): the answer and its parsed body."""
        path = str(op.path.render(values))
        body: bytes | None = None
        json_body = False
        if op.body is not None:
            rendered = op.body.render(values)
            json_body = not isinstance(rendered, str)
            body = (json.dumps(rendered) if json_body else str(rendered)).encode()
        headers = self._headers(op, body is not None, json_body)
        target = m
        for _ in range(MAX_REDIRECTS + 1):
            answer = self.transport.request(target, op.method, path, body, headers)
            if not (300 <= answer.status < 400 and self.spec.endpoint.redirects == "follow"):
                return answer, _parse(answer.body), target
            location = answer.headers.get("location")
            if not location:
                break
            parts = urlsplit(location)
            if parts.netloc:
                try:
                    target = self.member(parts.netloc)
                except KeyError:
                    target = Member(parts.netloc, parts.netloc)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        return answer, _parse(answer.body), target

    def _attempt(self, m: Member, op: Operation, values: Mapping[str, Any]) -> Any:
        """One attempt on one member: the decoded result, or Fail / Info / CasMismatch by the rules."""
        answer, data, target = self._exchange(m, op, values)
        rule = op.classify(answer.status, data)
        said = _short(data)
        if rule.outcome == "info":
            raise Info(f"{op.name}: HTTP {answer.status} {said}", target.name, answer.status)
        if rule.outcome == "fail":
            if rule.mismatch:
                current = op.current.search(data) if op.current is not None else None
                if current is not None:
                    current = _decode(current, op.decode, f"{op.field_path}.current")
                raise CasMismatch(
                    f"cas: mismatch (holds {current!r}): {said}", current, target.name, answer.status
                )
            raise Fail(f"{op.name}: HTTP {answer.status} {said}", target.name, answer.status)
        self._preferred = self.members.index(m) if m in self.members else self._preferred
        if rule.absent:
            return None
        if op.result is None:
            return data
        found = op.result.search(data)
        if found is None:
            raise DeclarationError(
                f"{op.field_path}.result",
                f"{op.result_source!r} finds nothing in the answer of {target.name} (HTTP {answer.status}: {said})",
            )
        return _decode(found, op.decode, f"{op.field_path}.decode")

    def _call(
        self, op: Operation, values: Mapping[str, Any], member: str | None, retry_for: float | None
    ) -> Any:
        """Attempts until a definite answer, failing over to the next member on definite failures."""
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        if member is not None:
            order = [self.member(member)]
        else:
            i = self._preferred % len(self.members)
            order = self.members[i:] + self.members[:i]
        attempt = 0
        while True:
            m = order[attempt % len(order)]
            attempt += 1
            try:
                return self._attempt(m, op, values)
            except ClientError as exc:
                if (not exc.definite and not op.read_only) or isinstance(exc, CasMismatch):
                    raise
                if time.monotonic() >= deadline:
                    raise
                if attempt % len(order) == 0:  # every member tried: a short pause (elections take ~1 s)
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _op(
        self,
        name: str,
        values: Mapping[str, Any],
        *,
        member: str | None = None,
        retry_for: float | None = None,
        value: Any = None,
        returns_value: bool = True,
        on_result: Callable[[Any], Any] | None = None,
    ) -> Any:
        op = self.spec.op(name)
        if name == "cas" and values.get("expect") is None and op.if_absent is not None:
            op = op.if_absent
        results: list[Any] = []

        def call() -> Any:
            out = self._call(op, values, member, retry_for)
            out = on_result(out) if on_result else out
            results.append(out)
            return out

        if name in ("status", "health"):
            return call()
        record(
            self.history,
            self.process,
            HISTORY_F[name],
            call,
            value=value,
            key=values.get("key"),
            returns_value=returns_value,
            read_only=op.read_only,
            reraise=True,
        )
        return results[0]

    # -- the operations --------------------------------------------------------------------------------------
    def get(
        self, key: str, *, member: str | None = None, stale: bool = False, retry_for: float | None = None
    ) -> str | None:
        """The value of ``key`` (None: absent); ``stale``: the member's own copy (operation read_local)."""
        out: str | None = self._op(
            "read_local" if stale else "read",
            {"key": key},
            member=member,
            retry_for=retry_for,
            on_result=_text,
        )
        return out

    def put(self, key: str, value: str, *, member: str | None = None, retry_for: float | None = None) -> None:
        """Write ``value`` to ``key``."""
        self._op(
            "write",
            {"key": key, "value": value},
            member=member,
            retry_for=retry_for,
            value=value,
            returns_value=False,
        )

    def delete(self, key: str, *, member: str | None = None, retry_for: float | None = None) -> None:
        """Delete ``key``."""
        self._op("delete", {"key": key}, member=member, retry_for=retry_for, returns_value=False)

    def cas(
        self,
        key: str,
        expect: str | None,
        value: str,
        *,
        member: str | None = None,
        retry_for: float | None = None,
    ) -> None:
        """Set ``key`` to ``value`` if it holds ``expect`` (None: if absent); raises :class:`CasMismatch`."""
        self._op(
            "cas",
            {"key": key, "expect": expect, "value": value},
            member=member,
            retry_for=retry_for,
            value=[expect, value],
            returns_value=False,
        )

    def increment(self, key: str, delta: int = 1, *, member: str | None = None) -> None:
        """Add ``delta`` to the counter ``key``."""
        self._op("increment", {"key": key, "delta": delta}, member=member, value=delta, returns_value=False)

    def read_counter(self, key: str, *, member: str | None = None) -> int:
        """The counter ``key`` (absent: 0)."""
        out = self._op(
            "read_counter", {"key": key}, member=member, on_result=lambda v: 0 if v is None else int(v)
        )
        return int(out)

    def add(self, key: str, element: str, *, member: str | None = None) -> None:
        """Add ``element`` to the set ``key``."""
        self._op("add", {"key": key, "element": element}, member=member, value=element, returns_value=False)

    def read_set(self, key: str, *, member: str | None = None) -> list[str]:
        """The elements of the set ``key`` (absent: empty), sorted."""
        return list(
            self._op(
                "read_set", {"key": key}, member=member, on_result=lambda v: sorted(str(x) for x in (v or []))
            )
        )

    def next_id(self, key: str, *, member: str | None = None, retry_for: float | None = None) -> str:
        """A new id from the sequence ``key``."""
        return str(self._op("next_id", {"key": key}, member=member, retry_for=retry_for, on_result=str))

    def listing(self, member: str, *, retry_for: float | None = None) -> dict[str, str]:
        """Everything ``member`` holds, key -> value (the description's list: normally its own copy)."""
        return dict(self._op("list", {}, member=member, retry_for=retry_for, on_result=_listing))

    # -- cluster state ---------------------------------------------------------------------------------------
    def status(self, member: str) -> dict[str, Any]:
        """The raw status answer of one member (its own view)."""
        out = self._op("status", {}, member=member, retry_for=0)
        return out if isinstance(out, dict) else {"answer": out}

    def health(self, member: str) -> tuple[bool, Any]:
        """Whether ``member`` says it is healthy (its health answer classified ok), and the answer."""
        op = self.spec.op("health")
        m = self.member(member)
        answer, data, _ = self._exchange(m, op, {})
        return op.classify(answer.status, data).outcome == "ok", data

    def self_id(self, member: str) -> str:
        """The id ``member`` gives itself in its status answer."""
        if member not in self._ids:
            self._ids[member] = str(self.spec.status.self_id.search(self.status(member)))
        return self._ids[member]

    def _name_of(self, member_id: Any) -> str | None:
        if member_id in (None, "", 0, "0"):
            return None
        for m in self.members:
            try:
                if self.self_id(m.name) == str(member_id):
                    return m.name
            except ClientError:
                continue
        return str(member_id)

    def leader_seen_by(self, member: str) -> str | None:
        """The member ``member`` names as its leader (an inventory name when it is one of ours)."""
        return self._name_of(self.spec.status.leader.search(self.status(member)))

    def term(self, member: str) -> int | None:
        """``member``'s term, when the description says where it is."""
        path = self.spec.status.term
        found = path.search(self.status(member)) if path is not None else None
        return None if found is None else int(found)

    def leaders(self) -> dict[str, str | None]:
        """Each reachable member's idea of the leader (member name -> leader name or None)."""
        out: dict[str, str | None] = {}
        for m in self.members:
            try:
                out[m.name] = self.leader_seen_by(m.name)
            except ClientError:
                continue
        return out

    def self_declared_leaders(self) -> list[str]:
        """Members that say they are the leader right now (more than one: split brain, or a stale one)."""
        out = []
        for m in self.members:
            try:
                status = self.status(m.name)
            except ClientError:
                continue
            is_leader = self.spec.status.is_leader
            if is_leader is not None:
                if is_leader.search(status):
                    out.append(m.name)
            elif self._name_of(self.spec.status.leader.search(status)) == m.name:
                out.append(m.name)
        return out

    def agreed_leader(self, members: Iterable[str] | None = None) -> str | None:
        """The leader every given member (default: all) names, if they all name the same one."""
        names = list(members) if members is not None else [m.name for m in self.members]
        views = self.leaders()
        seen = {views.get(n) for n in names}
        return seen.pop() if len(seen) == 1 and None not in seen else None

    def wait_for_ready(self, timeout: float = 60.0, members: Iterable[str] | None = None) -> str:
        """Wait until the given members (default: all) are healthy and agree on one leader; return it."""
        names = list(members) if members is not None else [m.name for m in self.members]
        last: dict[str, Any] = {}

        def ready() -> str | None:
            for n in names:
                try:
                    ok, body = self.health(n)
                except ClientError as exc:
                    last[n] = str(exc)
                    return None
                last[n] = _short(body)
                if not ok:
                    return None
            views = self.leaders()
            last["leaders"] = views
            seen = {views.get(n) for n in names}
            return seen.pop() if len(seen) == 1 and None not in seen else None

        what = f"{self.spec.name} members {names} healthy with one leader"
        try:
            return str(wait_for(ready, timeout, interval=0.2, what=what))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last seen: {last}") from exc

    def close(self) -> None:
        """Close this thread's connections."""
        self.transport.close()


# -- answers -------------------------------------------------------------------------------------------------
def _parse(raw: bytes) -> Any:
    """A JSON answer as data; any other answer as its text (JMESPath ``@`` is then the whole text)."""
    if not raw:
        return {}
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _short(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


def _decode(value: Any, how: str, where: str) -> Any:
    """Apply the description's ``decode`` to a result (to every string of a list or mapping)."""
    if how == "none":
        return value
    if isinstance(value, list):
        return [_decode(v, how, where) for v in value]
    if isinstance(value, dict):
        return {_decode(k, how, where): _decode(v, how, where) for k, v in value.items()}
    try:
        if how == "base64":
            return base64.b64decode(str(value), validate=True).decode("utf-8")
        if how == "int":
            return int(value)
        return json.loads(value) if isinstance(value, str) else value
    except (ValueError, TypeError) as exc:
        raise DeclarationError(where, f"cannot decode {value!r} as {how}: {exc}") from None


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value)


def _listing(value: Any) -> dict[str, str]:
    """A list result as key -> value: a mapping, or a list of [key, value] pairs (absent: empty)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): _text(v) or "" for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise DeclarationError(
                f"{api_spec.PREFIX}.operations.list.result",
                f"must give a mapping or [key, value] pairs, not {_short(value)}",
            )
        out[str(item[0])] = _text(item[1]) or ""
    return out


__all__ = ["CasMismatch", "DeclaredClient", "Member", "spec_of"]
