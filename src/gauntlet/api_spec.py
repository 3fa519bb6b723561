"""The declared API of a clustered server (inventory variable ``custom_server_api``), parsed and validated.

A team tests its own server without writing Python: the description says how a client reaches a member
(scheme, port, TLS / mTLS with the cluster's PKI, headers, auth) and, per operation, the HTTP method, the
path and body templates, where the result is in the answer (a JMESPath expression) and how each answer is
classified — ``ok``, ``fail`` (certainly not applied) or ``info`` (unknown). The generic client
(:mod:`gauntlet.clients.declared`) is built from it and the workload catalogue (:mod:`gauntlet.workloads`)
runs on it. Every mistake is one line naming the field (:class:`DeclarationError`), found when the
description is loaded, before any request is sent.

Templates are Python format fields: ``/kv/{key}``; a spec after a colon encodes the value — ``{key:b64}``
(base64), ``{key:url}`` (percent-encoded: the default inside a path), ``{key:raw}``, ``{value:json}``. A
body is a string template (sent as is) or a mapping / list (sent as JSON; a string that is exactly one
field, ``"{expect}"``, takes the field's own type: null, a number).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

PREFIX = "custom_server_api"

#: The fields each operation's templates may name.
FIELDS: dict[str, tuple[str, ...]] = {
    "read": ("key",),
    "read_local": ("key",),  # this member's own copy, without consensus (may be stale)
    "write": ("key", "value"),
    "delete": ("key",),
    "cas": ("key", "expect", "value"),
    "increment": ("key", "delta"),
    "read_counter": ("key",),
    "add": ("key", "element"),
    "read_set": ("key",),
    "next_id": ("key",),
    "list": (),
    "status": (),
    "health": (),
}
#: Operations that change nothing: retried on another member after any failure, never recorded ``info``.
READ_ONLY = frozenset({"read", "read_local", "read_counter", "read_set", "list", "status", "health"})
#: Operations every description declares (the register workload and leader discovery need them).
REQUIRED = ("read", "write", "status", "health")
#: What each workload of the catalogue needs besides the required operations.
WORKLOAD_NEEDS: dict[str, tuple[str, ...]] = {
    "register": ("read", "write"),
    "counter": ("increment", "read_counter"),
    "set": ("add", "read_set"),
    "unique_ids": ("next_id",),
    "same_data": ("write", "list"),
}
ENCODINGS = ("url", "b64", "raw", "json")
DECODINGS = ("none", "base64", "int", "json")
Completion = Literal["ok", "fail", "info"]


class DeclarationError(ValueError):
    """A mistake in the description: ``field`` is its dotted path (``custom_server_api.operations.read.path``)."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path


@dataclass(frozen=True)
class Template:
    """A path or body template: ``source`` as written, ``fields`` the fields it names."""

    source: Any
    fields: frozenset[str]
    in_path: bool = False

    def render(self, values: Mapping[str, Any]) -> Any:
        """The template filled with ``values`` (a string, or a JSON-able structure for a JSON body)."""
        return _render(self.source, values, self.in_path)


@dataclass(frozen=True)
class Rule:
    """One classification rule: an answer matching ``statuses`` (and ``when``, a JMESPath expression true on
    the body) ends the operation ``outcome``; ``absent``: a read of nothing (result None); ``mismatch``: a
    compare-and-set that found another value (definitely not applied)."""

    statuses: frozenset[int]
    outcome: Completion
    when: ParsedResult | None = None
    when_source: str | None = None
    absent: bool = False
    mismatch: bool = False

    def matches(self, status: int, body: Any) -> bool:
        """Whether this rule classifies the answer ``status`` / ``body``."""
        if self.statuses and status not in self.statuses:
            return False
        return self.when is None or bool(self.when.search(body))


@dataclass(frozen=True)
class Operation:
    """One declared operation."""

    name: str
    method: str
    path: Template
    body: Template | None
    result: ParsedResult | None
    result_source: str | None
    decode: str
    rules: tuple[Rule, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    current: ParsedResult | None = None  # cas: where a mismatch answer says the current value
    if_absent: Operation | None = None  # cas with expect None (e.g. etcd's create_revision == 0)
    field_path: str = ""

    @property
    def read_only(self) -> bool:
        """An operation that changes nothing."""
        return self.name in READ_ONLY

    def classify(self, status: int, body: Any) -> Rule:
        """The first declared rule matching the answer, else the default: 2xx ok, 4xx fail, 5xx info,
        3xx fail (a redirect the client did not follow was not acted on)."""
        for rule in self.rules:
            if rule.matches(status, body):
                return rule
        if 200 <= status < 300:
            return Rule(frozenset(), "ok")
        if 500 <= status < 600:
            return Rule(frozenset(), "info")
        return Rule(frozenset(), "fail")


@dataclass(frozen=True)
class StatusFields:
    """Where ``status`` answers say who the member is, who it thinks leads, and its term."""

    self_id: ParsedResult
    leader: ParsedResult
    term: ParsedResult | None = None
    is_leader: ParsedResult | None = None


@dataclass(frozen=True)
class Endpoint:
    """How a client reaches each member."""

    group: str
    scheme: Literal["http", "https"]
    port: int | None
    port_var: str | None
    ca: str
    client_cert: str | None
    headers: Mapping[str, str]
    auth: Mapping[str, str]
    timeout: float
    connect_timeout: float
    retry_for: float
    redirects: Literal["follow", "elsewhere"]


@dataclass(frozen=True)
class ApiSpec:
    """A validated description: the endpoint, the operations by name, the workloads it wants run."""

    name: str
    endpoint: Endpoint
    operations: Mapping[str, Operation]
    status: StatusFields
    workloads: tuple[str, ...]

    def op(self, name: str) -> Operation:
        """The operation ``name``; a missing one is a :class:`DeclarationError` naming it."""
        try:
            return self.operations[name]
        except KeyError:
            raise DeclarationError(f"{PREFIX}.operations.{name}", "not declared") from None


# -- loading -------------------------------------------------------------------------------------------------
def load(raw: Any, *, where: str = PREFIX) -> ApiSpec:
    """Parse and validate a description; raise :class:`DeclarationError` on the first mistake."""
    d = _mapping(raw, where)
    _no_unknown(d, where, {"name", "endpoint", "operations", "status", "workloads"})
    ops_raw = _mapping(d.get("operations"), f"{where}.operations")
    for name in ops_raw:
        if name not in FIELDS:
            raise DeclarationError(
                f"{where}.operations.{name}", f"unknown operation (known: {', '.join(FIELDS)})"
            )
    workloads = tuple(_str_list(d.get("workloads", ["register"]), f"{where}.workloads"))
    for w in workloads:
        if w not in WORKLOAD_NEEDS:
            raise DeclarationError(
                f"{where}.workloads", f"unknown workload {w!r} (known: {', '.join(WORKLOAD_NEEDS)})"
            )
    for name in REQUIRED:
        if name not in ops_raw:
            raise DeclarationError(f"{where}.operations.{name}", "missing (every description declares it)")
    for w in workloads:
        for name in WORKLOAD_NEEDS[w]:
            if name not in ops_raw and not (name == "read_counter" and "read" in ops_raw):
                raise DeclarationError(
                    f"{where}.operations.{name}",
                    f"missing (the {w} workload needs it: declare it or drop {w} from {where}.workloads)",
                )
    ops = {name: _operation(name, ops_raw[name], f"{where}.operations.{name}") for name in ops_raw}
    if "read_counter" not in ops and "counter" in workloads:
        ops["read_counter"] = dataclasses.replace(ops["read"], name="read_counter", decode="int")
    return ApiSpec(
        name=str(d.get("name", "server")),
        endpoint=_endpoint(d.get("endpoint", {}), f"{where}.endpoint"),
        operations=ops,
        status=_status_fields(d.get("status"), f"{where}.status"),
        workloads=workloads,
    )


def _endpoint(raw: Any, where: str) -> Endpoint:
    d = _mapping(raw, where)
    _no_unknown(
        d,
        where,
        {
            "group",
            "scheme",
            "port",
            "port_var",
            "tls",
            "headers",
            "auth",
            "timeout",
            "connect_timeout",
            "retry_for",
            "redirects",
        },
    )
    scheme = _choice(d.get("scheme", "https"), ("http", "https"), f"{where}.scheme")
    if "port" in d and "port_var" in d:
        raise DeclarationError(f"{where}.port", "give port or port_var, not both")
    port: int | None = None
    if "port" in d:
        try:
            port = int(d["port"])
        except (TypeError, ValueError):
            raise DeclarationError(f"{where}.port", f"{d['port']!r} is not a port number") from None
        if not 0 < port < 65536:
            raise DeclarationError(f"{where}.port", f"{port} is not a port number (1-65535)")
    port_var = None if port is not None else str(d.get("port_var", "custom_server_client_port"))
    tls = _mapping(d.get("tls", {}), f"{where}.tls")
    _no_unknown(tls, f"{where}.tls", {"ca", "client_cert"})
    client_cert = tls.get("client_cert", "gauntlet-client" if scheme == "https" else None)
    auth = {str(k): str(v) for k, v in _mapping(d.get("auth", {}), f"{where}.auth").items()}
    if auth:
        kind = _choice(auth.get("type"), ("basic", "bearer"), f"{where}.auth.type")
        need = ("username", "password") if kind == "basic" else ("token",)
        for n in need:
            if not auth.get(n):
                raise DeclarationError(f"{where}.auth.{n}", f"missing ({kind} auth needs {', '.join(need)})")
    return Endpoint(
        group=str(d.get("group", "custom_server")),
        scheme=scheme,  # type: ignore[arg-type]
        port=port,
        port_var=port_var,
        ca=str(tls.get("ca", "cluster")),
        client_cert=None if client_cert in (None, "", False, "none") else str(client_cert),
        headers=_headers(d.get("headers", {}), f"{where}.headers"),
        auth=auth,
        timeout=_seconds(d.get("timeout", 6.0), f"{where}.timeout"),
        connect_timeout=_seconds(d.get("connect_timeout", 1.5), f"{where}.connect_timeout"),
        retry_for=_seconds(d.get("retry_for", 8.0), f"{where}.retry_for"),
        redirects=_choice(d.get("redirects", "elsewhere"), ("follow", "elsewhere"), f"{where}.redirects"),  # type: ignore[arg-type]
    )


def _operation(name: str, raw: Any, where: str, *, variant: bool = False) -> Operation:
    d = _mapping(raw, where)
    allowed = {"method", "path", "body", "result", "decode", "answers", "headers", "current"}
    if name == "cas" and not variant:
        allowed.add("if_absent")
    _no_unknown(d, where, allowed)
    method = str(d.get("method", "GET")).upper()
    if method not in ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"):
        raise DeclarationError(f"{where}.method", f"{method!r} is not an HTTP method")
    if "path" not in d:
        raise DeclarationError(f"{where}.path", "missing (the request path, e.g. /kv/{key})")
    fields = FIELDS[name]
    path = _template(d["path"], fields, f"{where}.path", in_path=True, operation=name)
    if not str(path.source).startswith("/"):
        raise DeclarationError(f"{where}.path", f"{path.source!r} must start with /")
    body = _template(d["body"], fields, f"{where}.body", operation=name) if "body" in d else None
    result, result_source = _jmespath(d.get("result"), f"{where}.result")
    if name in ("read", "read_local", "read_counter", "read_set", "next_id", "list") and result is None:
        raise DeclarationError(f"{where}.result", f"missing (where the answer of {name} holds its result)")
    if name == "status" and result is not None:
        raise DeclarationError(f"{where}.result", f"status has no result: its fields are in {PREFIX}.status")
    decode = _choice(
        d.get("decode", "int" if name in ("read_counter",) else "none"), DECODINGS, f"{where}.decode"
    )
    rules = tuple(
        _rule(r, f"{where}.answers[{i}]", name)
        for i, r in enumerate(_list(d.get("answers", []), f"{where}.answers"))
    )
    current, _ = _jmespath(d.get("current"), f"{where}.current")
    if_absent = None
    if "if_absent" in d:
        merged = {k: v for k, v in d.items() if k != "if_absent"}
        merged.update(_mapping(d["if_absent"], f"{where}.if_absent"))
        if_absent = _operation(name, merged, f"{where}.if_absent", variant=True)
    return Operation(
        name=name,
        method=method,
        path=path,
        body=body,
        result=result,
        result_source=result_source,
        decode=decode,
        rules=rules,
        headers=_headers(d.get("headers", {}), f"{where}.headers"),
        current=current,
        if_absent=if_absent,
        field_path=where,
    )


def _rule(raw: Any, where: str, operation: str) -> Rule:
    d = _mapping(raw, where)
    _no_unknown(d, where, {"status", "when", "as", "absent", "mismatch"})
    if "as" not in d:
        raise DeclarationError(f"{where}.as", "missing (ok, fail or info)")
    outcome = _choice(d["as"], ("ok", "fail", "info"), f"{where}.as")
    statuses = frozenset(_statuses(d.get("status", []), f"{where}.status"))
    when, when_source = _jmespath(d.get("when"), f"{where}.when")
    if not statuses and when is None:
        raise DeclarationError(where, "matches every answer: give a status, a when, or both")
    absent = bool(d.get("absent", False))
    mismatch = bool(d.get("mismatch", False))
    if absent and (operation not in READ_ONLY or outcome != "ok"):
        raise DeclarationError(f"{where}.absent", "only an ok answer of a read can mean absent")
    if mismatch and (operation != "cas" or outcome != "fail"):
        raise DeclarationError(f"{where}.mismatch", "only a fail answer of cas can be a mismatch")
    return Rule(statuses, outcome, when, when_source, absent, mismatch)  # type: ignore[arg-type]


def _status_fields(raw: Any, where: str) -> StatusFields:
    d = _mapping(raw, where)
    _no_unknown(d, where, {"self", "leader", "term", "is_leader"})
    out: dict[str, ParsedResult | None] = {}
    for name in ("self", "leader", "term", "is_leader"):
        parsed, _ = _jmespath(d.get(name), f"{where}.{name}")
        if parsed is None and name in ("self", "leader"):
            raise DeclarationError(
                f"{where}.{name}",
                f"missing (where a status answer names {'the member' if name == 'self' else 'its leader'})",
            )
        out[name] = parsed
    assert out["self"] is not None and out["leader"] is not None
    return StatusFields(out["self"], out["leader"], out["term"], out["is_leader"])


# -- templates -----------------------------------------------------------------------------------------------
_FORMATTER = string.Formatter()


def _template(
    raw: Any, fields: Sequence[str], where: str, *, in_path: bool = False, operation: str
) -> Template:
    if in_path and not isinstance(raw, str):
        raise DeclarationError(where, "a path is a string")
    names: set[str] = set()
    for leaf, leaf_where in _leaves(raw, where):
        try:
            parsed = list(_FORMATTER.parse(leaf))
        except ValueError as exc:
            raise DeclarationError(leaf_where, f"bad template {leaf!r}: {exc}") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name not in fields:
                known = ", ".join(fields) or "none"
                raise DeclarationError(
                    leaf_where, f"template names {{{name}}}, not a field of {operation} (its fields: {known})"
                )
            if conversion:
                raise DeclarationError(leaf_where, f"{{{name}!{conversion}}}: use {{{name}:<encoding>}}")
            if spec and spec not in ENCODINGS:
                raise DeclarationError(
                    leaf_where, f"{{{name}:{spec}}}: unknown encoding (known: {', '.join(ENCODINGS)})"
                )
            names.add(name)
    return Template(raw, frozenset(names), in_path)


def _leaves(raw: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(raw, str):
        return [(raw, where)]
    if isinstance(raw, Mapping):
        out = []
        for k, v in raw.items():
            out.extend(_leaves(v, f"{where}.{k}"))
        return out
    if isinstance(raw, list):
        out = []
        for i, v in enumerate(raw):
            out.extend(_leaves(v, f"{where}[{i}]"))
        return out
    if raw is None or isinstance(raw, bool | int | float):
        return []
    raise DeclarationError(where, f"a template is a string, a mapping or a list, not {type(raw).__name__}")


def encode(value: Any, spec: str, in_path: bool) -> str:
    """One field's value as text, by its encoding (``url`` is the default in a path, ``raw`` elsewhere)."""
    import base64
    import json
    from urllib.parse import quote

    spec = spec or ("url" if in_path else "raw")
    if spec == "json":
        return json.dumps(value)
    text = "" if value is None else str(value)
    if spec == "b64":
        return base64.b64encode(text.encode()).decode()
    if spec == "url":
        return quote(text, safe="")
    return text


def _render(source: Any, values: Mapping[str, Any], in_path: bool) -> Any:
    if isinstance(source, str):
        parsed = list(_FORMATTER.parse(source))
        if len(parsed) == 1 and parsed[0][0] == "" and parsed[0][1] and not parsed[0][2] and not in_path:
            return values.get(parsed[0][1])  # exactly one field: keeps its type in a JSON body
        out = []
        for literal, name, spec, _ in parsed:
            out.append(literal)
            if name is not None:
                out.append(encode(values.get(name), spec or "", in_path))
        return "".join(out)
    if isinstance(source, Mapping):
        return {k: _render(v, values, in_path) for k, v in source.items()}
    if isinstance(source, list):
        return [_render(v, values, in_path) for v in source]
    return source


# -- small validators ----------------------------------------------------------------------------------------
def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        raise DeclarationError(where, "missing")
    if not isinstance(raw, Mapping):
        raise DeclarationError(where, f"must be a mapping, not {type(raw).__name__}")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise DeclarationError(where, f"must be a list, not {type(raw).__name__}")
    return raw


def _str_list(raw: Any, where: str) -> list[str]:
    return [str(x) for x in _list(raw, where)]


def _no_unknown(d: Mapping[str, Any], where: str, known: set[str]) -> None:
    for k in d:
        if k not in known:
            raise DeclarationError(f"{where}.{k}", f"unknown field (known: {', '.join(sorted(known))})")


def _choice(raw: Any, choices: Sequence[str], where: str) -> str:
    if raw not in choices:
        raise DeclarationError(where, f"{raw!r} is not one of {', '.join(choices)}")
    return str(raw)


def _seconds(raw: Any, where: str) -> float:
    try:
        s = float(raw)
    except (TypeError, ValueError):
        raise DeclarationError(where, f"{raw!r} is not a number of seconds") from None
    if s <= 0:
        raise DeclarationError(where, f"{s} must be more than 0 seconds")
    return s


def _headers(raw: Any, where: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(raw, where).items()}


def _statuses(raw: Any, where: str) -> list[int]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[int] = []
    for item in items:
        text = str(item).strip().lower()
        if len(text) == 3 and text.endswith("xx") and text[0] in "12345":
            base = int(text[0]) * 100
            out.extend(range(base, base + 100))
            continue
        try:
            status = int(text)
        except ValueError:
            raise DeclarationError(where, f"{item!r} is not an HTTP status (e.g. 200, 503, 5xx)") from None
        if not 100 <= status < 600:
            raise DeclarationError(where, f"{status} is not an HTTP status (100-599)")
        out.append(status)
    return out


def _jmespath(raw: Any, where: str) -> tuple[ParsedResult | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, str) or not raw.strip():
        raise DeclarationError(
            where, "a JMESPath expression is a non-empty string (e.g. value, kvs[0].value)"
        )
    try:
        return jmespath.compile(raw), raw
    except JMESPathError as exc:
        raise DeclarationError(
            where, f"{raw!r} is not a JMESPath expression: {str(exc).splitlines()[0]}"
        ) from None
