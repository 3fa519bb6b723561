"""Client of the reference entity runtime (servers/runner): counters, the singleton's sequence, timers,
each call to one named runner and recorded in the history with who served it.

Every ``ok`` completion keeps the runner, shard and fencing token the answer names in its ``extra``
(``served_by``, ``shard``, ``token``): the one-owner-at-a-time checker (gauntlet.checkers.owners) judges them.
Answers are classified by the runtime's own ``outcome``: ``not-applied`` and ``fenced`` are ``fail``
(certainly not applied), ``unknown`` (and any other 5xx, or no answer) ``info``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gauntlet.clients.base import ClientError, Fail, Info
from gauntlet.clients.http import HttpTransport, Member, MemberClient
from gauntlet.history import History

GROUP = "custom_server"


class RunnerClient(MemberClient):
    """One process of the history talking to the runners (one member per call: the check picks it)."""

    def __init__(
        self,
        members: list[Member],
        *,
        ca_file: str | Path | None,
        client_cert: tuple[str | Path, str | Path] | None,
        timeout: float = 8.0,
        connect_timeout: float = 2.0,
        history: History | None = None,
        process: str = "c0",
        shard_count: int = 32,
    ) -> None:
        self.members = members
        self.shard_count = shard_count
        self.transport = HttpTransport(
            tls=True,
            ca_file=ca_file,
            client_cert=client_cert,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
        self.history = history
        self.process = process

    @classmethod
    def from_cluster(cls, cluster: Any, **kwargs: Any) -> RunnerClient:
        """Every runner of the cluster (group custom_server, the role's client port), with the cluster's CA
        and the tests' client certificate; the shard count from the inventory's ``runner_config`` (the
        [runner] table the scenario renders)."""
        members = [
            Member(h.name, f"{h.address}:{int(h.setting('custom_server_client_port'))}")
            for h in cluster.group(GROUP)
        ]
        kwargs.setdefault("ca_file", cluster.ca_cert)
        kwargs.setdefault("client_cert", cluster.client_cert("gauntlet-client"))
        kwargs.setdefault("shard_count", int(cluster.setting("runner_config", GROUP)["shards"]))
        return cls(members, **kwargs)

    # -- one exchange --------------------------------------------------------------------------------------
    def call(self, member: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One request; the JSON answer of a 2xx, else :class:`Fail` / :class:`Info` by its outcome."""
        m = self.member(member)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        answer = self.transport.request(m, method, path, data, headers)
        try:
            doc = json.loads(answer.body) if answer.body else {}
        except ValueError:
            doc = {"error": answer.body[:200].decode("utf-8", "replace")}
        if 200 <= answer.status < 300:
            return dict(doc)
        outcome = doc.get("outcome") if isinstance(doc, dict) else None
        message = f"{answer.status} {doc.get('error', '') if isinstance(doc, dict) else doc}"
        if outcome in ("not-applied", "fenced", "already-fired", "already-cancelled") or answer.status == 404:
            raise Fail(f"{message} ({outcome})", m.name, answer.status)
        raise Info(f"{message} ({outcome})", m.name, answer.status)

    def recorded(
        self,
        member: str,
        f: str,
        key: Any,
        value: Any,
        method: str,
        path: str,
        body: Any = None,
        *,
        result: str | None = None,
        read_only: bool = False,
    ) -> dict[str, Any] | None:
        """:meth:`call` recorded as one operation: ``value`` on the invoke; the ``ok`` completion's value is
        the answer's ``result`` field when given. Returns the answer, or None when it did not succeed."""
        h = self.history
        invoked = h.invoke(self.process, f, value, key, member=member) if h else None
        try:
            doc = self.call(member, method, path, body)
        except ClientError as exc:
            if h and invoked:
                kind = "fail" if read_only or exc.definite else "info"
                h.complete(invoked, kind, error=str(exc), member=member)
            return None
        except Exception as exc:
            if h and invoked:
                h.complete(invoked, "info", error=f"{type(exc).__name__}: {exc}", member=member)
            raise
        if h and invoked:
            h.complete(
                invoked,
                "ok",
                value=doc.get(result) if result else None,
                served_by=doc.get("runner"),
                shard=doc.get("shard"),
                token=doc.get("token"),
                member=member,
            )
        return doc

    # -- operations ----------------------------------------------------------------------------------------
    def increment(self, member: str, counter: str, delta: int = 1) -> dict[str, Any] | None:
        return self.recorded(
            member, "increment", counter, delta, "POST", f"/counter/{counter}/increment", {"delta": delta}
        )

    def read_counter(self, member: str, counter: str) -> dict[str, Any] | None:
        return self.recorded(
            member, "read", counter, None, "GET", f"/counter/{counter}", result="value", read_only=True
        )

    def next_seq(self, member: str) -> dict[str, Any] | None:
        return self.recorded(member, "next-id", "sequencer", None, "POST", "/singleton/next", result="seq")

    def schedule(self, member: str, timer: str, delay_ms: int) -> dict[str, Any] | None:
        return self.recorded(
            member,
            "schedule",
            timer,
            delay_ms,
            "POST",
            f"/timer/{timer}",
            {"delay_ms": delay_ms},
            result="due_at",
        )

    def cancel(self, member: str, timer: str) -> dict[str, Any] | None:
        return self.recorded(member, "cancel", timer, None, "POST", f"/timer/{timer}/cancel")

    def shards(self, member: str) -> dict[str, Any]:
        """A runner's ``/debug/shards`` (not recorded)."""
        return self.call(member, "GET", "/debug/shards")
