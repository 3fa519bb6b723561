"""The PostgreSQL workload on the client protocol: psycopg errors as fail/info, writers and readers recorded
through base.record by a bounded runner (a fake connection stands in for the server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors

from gauntlet.bench import wait_for
from gauntlet.clients.base import Fail, Info
from gauntlet.clients.postgres import Endpoint, PostgresWorkload, pg_error
from gauntlet.history import History


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pgerrors.ReadOnlySqlTransaction("read-only"), Fail),
        (pgerrors.UniqueViolation("dup"), Fail),
        (pgerrors.UndefinedTable("no table"), Fail),
        (psycopg.OperationalError("server closed the connection"), Info),
        (pgerrors.AdminShutdown("terminating"), Info),
        (RuntimeError("anything else"), Info),
    ],
)
def test_pg_error_definite_only_when_rejected_outright(exc: Exception, kind: type) -> None:
    err = pg_error(exc)
    assert type(err) is kind, f"{exc!r} -> {err!r}"


@dataclass
class _Conn:
    """A connection whose INSERT of an id fails as ``script`` says (by id modulo 4)."""

    script: dict[int, Exception]
    closed: bool = False
    broken: bool = False
    handlers: list[Any] = field(default_factory=list)

    def add_notice_handler(self, h: Any) -> None:
        self.handlers.append(h)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if sql.startswith("INSERT"):
            exc = self.script.get(params[0] % 4)
            if exc is not None:
                raise exc
            return self
        return self

    def fetchone(self) -> tuple[int, bool]:
        return (3, False)

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class _FakeEndpoint(Endpoint):
    def connect(self, autocommit: bool = True, **override: Any) -> Any:  # type: ignore[override]
        return _Conn(
            {1: pgerrors.ReadOnlySqlTransaction("read-only"), 2: psycopg.OperationalError("connection lost")}
        )


def test_workload_records_ok_fail_info_by_the_error_and_stops() -> None:
    ep = _FakeEndpoint("h", "127.0.0.1", 5432, "u", "p", "db", "/ca")
    h = History()
    w = PostgresWorkload(h, ep, ep, writers=2, readers=1, interval=0.001, backoff=0.001, id_base=0)
    with w:
        wait_for(lambda: sum(w.stats.counts.values()) >= 80, 10, 0.01, "80 operations")
    done = {o.value: o.type for o in h.client_ops() if o.f == "write" and o.type != "invoke"}
    assert {done[i] for i in done if i % 4 in (0, 3)} == {"ok"}
    assert {done[i] for i in done if i % 4 == 1} == {"fail"}
    assert {done[i] for i in done if i % 4 == 2} == {"info"}
    reads = [o for o in h.client_ops() if o.f == "read" and o.type == "ok"]
    assert reads and reads[0].value == {"rows": 3, "replica": False}
    assert all(not r.alive() for r in w._runners)


@dataclass(frozen=True)
class _DownEndpoint(Endpoint):
    def connect(self, autocommit: bool = True, **override: Any) -> Any:  # type: ignore[override]
        raise psycopg.OperationalError("connection refused")


def test_workload_connect_failure_is_fail_nothing_was_sent() -> None:
    ep = _DownEndpoint("h", "127.0.0.1", 5432, "u", "p", "db", "/ca")
    h = History()
    w = PostgresWorkload(h, ep, writers=1, interval=0.001, backoff=0.001, id_base=0)
    with w:
        wait_for(lambda: w.stats.counts.get("write:fail", 0) >= 3, 10, 0.01, "3 failed writes")
    assert {o.type for o in h.client_ops() if o.type != "invoke"} == {"fail"}
