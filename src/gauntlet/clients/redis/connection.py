"""Redis over TLS: one connection without retries, and Redis errors as the client protocol's ``fail``/``info``.

Every connection verifies the server certificate against the cluster CA (hosts are reached by address; their
certificates carry the address as an IP SAN) and presents the tests' client certificate, because the role
requires client certificates by default. redis-py's own retries are switched off: one call is one attempt,
so that a history records what the server did, not what a retry loop hid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gauntlet.clients.base import ClientError, Fail, Info
from gauntlet.cluster import Cluster

# Errors after which the outcome of a command is unknown (it may have been applied).
UNKNOWN_OUTCOME = (redis.ConnectionError, redis.TimeoutError)


def redis_error(exc: BaseException, refused: tuple[type[BaseException], ...]) -> ClientError:
    """The protocol's error for a Redis error: :class:`Fail` for the error replies in ``refused`` (the server
    answered that it did not execute the command: READONLY, NOPERM, CLUSTERDOWN…), :class:`Info` for
    anything else (a lost connection or a timeout after sending: the command may have been applied)."""
    text = f"{type(exc).__name__}: {exc}"
    return Fail(text) if isinstance(exc, refused) and not isinstance(exc, UNKNOWN_OUTCOME) else Info(text)


@dataclass(frozen=True)
class TLS:
    """Files for a TLS connection: the CA to verify servers with, and the client certificate (or none)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    check_hostname: bool = True

    @classmethod
    def for_cluster(cls, cluster: Cluster, client: str | None = "gauntlet-client") -> TLS:
        """The cluster CA and the tests' client certificate (``client=None``: no client certificate)."""
        if client is None:
            return cls(cluster.ca_cert)
        cert, key = cluster.client_cert(client)
        return cls(cluster.ca_cert, cert, key)

    def kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.cert) if self.cert else None,
            "ssl_keyfile": str(self.key) if self.key else None,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": self.check_hostname,
        }


def connect(
    address: str,
    port: int,
    tls: TLS | None,
    user: str | None,
    password: str | None,
    timeout: float = 2.0,
    **kwargs: Any,
) -> redis.Redis:
    """A redis-py client for one server, without retries (``tls=None``: plain text)."""
    return redis.Redis(
        host=address,
        port=port,
        username=user,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **(tls.kwargs() if tls else {}),
        **kwargs,
    )


def info(conn: redis.Redis, section: str) -> dict[str, Any]:
    """``INFO <section>`` as a dict."""
    return conn.info(section)


def role(conn: redis.Redis) -> list[Any]:
    """``ROLE``: ``["master", offset, replicas]`` or ``["slave", host, port, state, offset]``."""
    return list(conn.execute_command("ROLE"))  # type: ignore[no-untyped-call]
