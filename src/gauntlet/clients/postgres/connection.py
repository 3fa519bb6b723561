"""Reaching PostgreSQL (psycopg 3): an endpoint with full certificate verification, a watchdog that breaks a
connection whose operation hangs, and how a psycopg error maps onto the client protocol (``fail``/``info``)."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gauntlet.clients.base import ClientError, Fail, Info

# SQLSTATE classes that mean "the statement was rejected, nothing was applied".
_DEFINITE_SQLSTATE_CLASSES = ("22", "23", "25", "28", "3D", "42")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, with full certificate verification.

    ``host`` is the name the server certificate must carry (libpq ``host``, used for ``verify-full``);
    ``address`` is where to connect (libpq ``hostaddr``): the controller cannot resolve container names.
    """

    host: str
    address: str
    port: int
    user: str
    password: str
    dbname: str
    sslrootcert: str | Path
    sslmode: str = "verify-full"
    connect_timeout: int = 3
    application_name: str = "gauntlet"
    # psycopg prepares a statement on the server after this many executions (its default, 5); None never.
    # Through PgBouncer's transaction pooling it must be None: a client's next transaction may run on another
    # server connection, which lacks (or already has) the prepared statement.
    prepare_threshold: int | None = 5

    def conninfo(self, **override: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg.connect`."""
        kw: dict[str, Any] = {
            "host": self.host,
            "hostaddr": self.address,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "sslrootcert": str(self.sslrootcert),
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
            # Notice a dead peer within seconds rather than the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 2,
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": 5000,
        }
        kw.update(override)
        return kw

    def with_(self, **changes: Any) -> Endpoint:
        """A copy with some fields changed (another port, user or database)."""
        return replace(self, **changes)

    def connect(self, autocommit: bool = True, **override: Any) -> psycopg.Connection[Any]:
        """Open a connection (TLS verified as configured)."""
        return psycopg.connect(
            autocommit=autocommit, prepare_threshold=self.prepare_threshold, **self.conninfo(**override)
        )


def short(exc: BaseException) -> str:
    """One line naming an error: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def pg_error(exc: BaseException) -> ClientError:
    """The protocol's error for a psycopg error raised *after* a statement was sent: :class:`Fail` when the
    server rejected it outright (read-only transaction, constraint, syntax, auth: nothing was applied),
    :class:`Info` otherwise (lost connection, shutdown, cancel: the statement may have been applied)."""
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction | pgerrors.UniqueViolation):
        return Fail(short(exc))
    if isinstance(exc, psycopg.OperationalError):
        return Info(short(exc))
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg.DatabaseError) and state[:2] in _DEFINITE_SQLSTATE_CLASSES:
        return Fail(short(exc))
    return Info(short(exc))


class Watchdog:
    """Breaks a connection whose operation outlives ``timeout`` (shuts its socket down from outside), so a
    client never hangs on a paused or unreachable server; the blocked call then raises (``info``)."""

    def __init__(self, conn: psycopg.Connection[Any], timeout: float) -> None:
        self._timer = threading.Timer(timeout, self._fire, args=(conn,))
        self._timer.daemon = True
        self.fired = False

    def _fire(self, conn: psycopg.Connection[Any]) -> None:
        self.fired = True
        with suppress(Exception):
            fd = conn.pgconn.socket
            s = socket.socket(fileno=socket.dup(fd))
            try:
                s.shutdown(socket.SHUT_RDWR)
            finally:
                s.close()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
