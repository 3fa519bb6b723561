"""TLS and ACL of Redis and Sentinel (markers ``redis`` and ``tls``): every refusal is checked next to the
same request made correctly, so a check cannot pass because the service is simply down."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from checklib.redis import CacheEnv
from gauntlet.clients.redis import TLS, connect, user_password
from gauntlet.cluster import Host
from gauntlet.pki import foreign_client_cert

pytestmark = [pytest.mark.redis, pytest.mark.tls]

REFUSED = (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError, OSError)


def endpoints(env: CacheEnv) -> list[tuple[str, Host, int, str, str]]:
    """(service, host, port, user, password) of every Redis and Sentinel."""
    out = [("redis", h, env.nodes.port, env.app_user, env.app_password) for h in env.nodes.hosts]
    out += [
        ("sentinel", h, env.sentinels.port, env.sentinels.user, env.sentinels.password)
        for h in env.sentinels.hosts
    ]
    return out


def ping(address: str, port: int, tls: TLS | None, user: str | None, password: str | None) -> bool:
    c = connect(address, port, tls, user, password, timeout=3.0)
    try:
        return bool(c.ping())
    finally:
        c.close()


def refused_where_served(
    env: CacheEnv, h: Host, port: int, bad: TLS | None, user: str | None, password: str | None
) -> None:
    """The right client is served on ``h:port``, and one with ``bad`` TLS (None: plain text) is refused
    there: a service that is down fails this, it cannot pass for a refusal."""
    assert ping(h.address, port, TLS.for_cluster(env.cluster), user, password), (
        f"{h.name}:{port} serves nobody"
    )
    with pytest.raises(REFUSED):
        ping(h.address, port, bad, user, password)


def test_tls_client_with_cluster_certificate_is_accepted(env: CacheEnv) -> None:
    tls = TLS.for_cluster(env.cluster)
    for service, h, port, user, password in endpoints(env):
        assert ping(h.address, port, tls, user, password), f"{service} on {h.name}"


def test_plain_text_client_is_refused(env: CacheEnv) -> None:
    """The client port speaks TLS only: a plain-text client gets no answer (the plain port is off)."""
    for service, h, port, user, password in endpoints(env):
        refused_where_served(env, h, port, None, user, password)
        # ...and nothing listens in plain text on the Redis default port either (port 0).
        if service == "redis" and port != 6379:
            with pytest.raises(REFUSED):
                ping(h.address, 6379, None, user, password)


def test_client_without_certificate_is_refused(env: CacheEnv) -> None:
    tls = TLS.for_cluster(env.cluster, client=None)
    for _service, h, port, user, password in endpoints(env):
        refused_where_served(env, h, port, tls, user, password)


def test_client_certificate_from_another_ca_is_refused(env: CacheEnv, tmp_path: Path) -> None:
    """A client certificate with the right name but signed by a CA the cluster does not trust."""
    _, cert, key = foreign_client_cert(tmp_path)
    tls = TLS(env.cluster.ca_cert, cert, key)
    for _service, h, port, user, password in endpoints(env):
        refused_where_served(env, h, port, tls, user, password)


def test_server_is_verified_against_the_cluster_ca(env: CacheEnv, tmp_path: Path) -> None:
    """A client that trusts only another CA refuses the servers (their certificates come from the cluster CA)."""
    foreign_ca, _, _ = foreign_client_cert(tmp_path)
    cert, key = env.cluster.client_cert()
    tls = TLS(foreign_ca, cert, key)
    h = env.nodes.hosts[0]
    refused_where_served(env, h, env.nodes.port, tls, env.app_user, env.app_password)


def test_acl_refuses_wrong_password_default_user_and_commands_without_rights(env: CacheEnv) -> None:
    tls = TLS.for_cluster(env.cluster)
    master = env.master_host()
    port = env.nodes.port
    assert ping(master.address, port, tls, env.app_user, env.app_password), "the primary serves nobody"
    # wrong password / the default user (switched off)
    with pytest.raises(redis.AuthenticationError):
        ping(master.address, port, tls, env.app_user, env.app_password + "x")
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        ping(master.address, port, tls, None, None)
    c = connect(master.address, port, tls, None, None)
    try:
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            c.get("gauntlet:acl")
    finally:
        c.close()
    # the read-only user reads but cannot write
    reader = connect(master.address, port, tls, "reader", user_password(env.cluster, "reader"))
    app = connect(master.address, port, tls, env.app_user, env.app_password)
    try:
        app.set("gauntlet:acl", "1")
        assert reader.get("gauntlet:acl") == "1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("gauntlet:acl", "2")
        # the application user has no administrative commands
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.config_get("maxmemory")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command("FLUSHALL")
        assert app.get("gauntlet:acl") == "1"
        app.delete("gauntlet:acl")
    finally:
        reader.close()
        app.close()
    # Sentinel: the default user is off there too.
    s = env.sentinels.hosts[0]
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        c = connect(s.address, env.sentinels.port, tls, None, None)
        try:
            c.execute_command("SENTINEL", "MASTERS")
        finally:
            c.close()
