"""TLS of the custom server's client API: server certificates from the cluster CA, client certificates
required (mTLS): no certificate, or one from a foreign CA, gets no answer; peer traffic is encrypted.
Every refusal is shown next to the correct client being served by the same endpoint: a member that is down
refuses everyone, and must fail these checks, not pass them."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest

from checklib.custom import GROUP, client
from gauntlet.cluster import Cluster, Host
from gauntlet.pki import foreign_client_cert

pytestmark = [pytest.mark.custom, pytest.mark.tls]


def _port(cluster: Cluster) -> int:
    return int(cluster.setting("custom_server_client_port", GROUP))


def _get(host: Host, port: int, ctx: ssl.SSLContext, path: str = "/health") -> tuple[int, dict]:
    conn = http.client.HTTPSConnection(host.address, port, timeout=5, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _trusted(cluster: Cluster) -> ssl.SSLContext:
    """The correct client: it trusts the cluster CA and presents the tests' client certificate."""
    crt, key = cluster.client_cert()
    ctx = ssl.create_default_context(cafile=str(cluster.ca_cert))  # verifies chain AND the IP SAN
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


def _served(host: Host, port: int, ctx: ssl.SSLContext) -> None:
    """The correct client is served on this endpoint: a refusal next to it is the server's choice, not a
    member that is down (which would refuse everyone and pass every refusal check)."""
    try:
        status, body = _get(host, port, ctx)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as exc:
        pytest.fail(f"{host.name}:{port} does not serve the correct client: {type(exc).__name__}: {exc}")
    assert status == 200, f"{host.name}:{port} answered the correct client with HTTP {status} {body}"


def _refused(host: Host, port: int, ctx: ssl.SSLContext, accepted: str) -> str:
    """The error a request got; fails the check with "<host> <accepted>: ..." if the server answered."""
    try:
        status, body = _get(host, port, ctx)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    pytest.fail(f"{host.name} {accepted}: it answered HTTP {status} {body}")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return foreign_client_cert(tmp_path_factory.mktemp("foreign-ca"))


def test_server_certificate_is_from_the_cluster_ca_and_names_the_host(cluster: Cluster) -> None:
    port = _port(cluster)
    for host in cluster.group(GROUP):
        _served(host, port, _trusted(cluster))


def test_server_is_not_trusted_by_a_client_of_another_ca(cluster: Cluster, foreign) -> None:
    foreign_ca, _, _ = foreign
    crt, key = cluster.client_cert()
    ctx = ssl.create_default_context(cafile=str(foreign_ca))
    ctx.load_cert_chain(str(crt), str(key))
    port = _port(cluster)
    for host in cluster.group(GROUP):
        _served(host, port, _trusted(cluster))
        try:
            status, _ = _get(host, port, ctx)
        except ssl.SSLCertVerificationError:
            continue
        pytest.fail(f"{host.name}'s certificate was trusted by a client of another CA (HTTP {status})")


def test_client_without_certificate_is_refused(cluster: Cluster) -> None:
    ctx = ssl.create_default_context(cafile=str(cluster.ca_cert))
    port = _port(cluster)
    for host in cluster.group(GROUP):
        _served(host, port, _trusted(cluster))
        print(host.name, _refused(host, port, ctx, "accepted a client without a certificate"))


def test_client_certificate_from_a_foreign_ca_is_refused(cluster: Cluster, foreign) -> None:
    _, crt, key = foreign  # same common name as the tests' client: only the issuer differs
    ctx = ssl.create_default_context(cafile=str(cluster.ca_cert))
    ctx.load_cert_chain(str(crt), str(key))
    port = _port(cluster)
    for host in cluster.group(GROUP):
        _served(host, port, _trusted(cluster))
        print(host.name, _refused(host, port, ctx, "accepted a client certificate from a foreign CA"))


def test_plain_http_gets_no_answer(cluster: Cluster) -> None:
    port = _port(cluster)
    for host in cluster.group(GROUP):
        _served(host, port, _trusted(cluster))
        conn = http.client.HTTPConnection(host.address, port, timeout=5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            status = resp.status
        except (ConnectionError, http.client.HTTPException, OSError):
            continue
        finally:
            conn.close()
        pytest.fail(f"{host.name} answered plain HTTP with status {status}")


@pytest.mark.usefixtures("reference_server")
def test_peer_traffic_is_encrypted_and_rejects_strangers(cluster: Cluster) -> None:
    kv = client(cluster)
    peer_port = int(cluster.setting("custom_server_peer_port", GROUP))
    for host in cluster.group(GROUP):
        assert kv.status(host.name).get("peer_encryption") is True, (
            f"{host.name} runs unencrypted peer traffic"
        )
        # A stranger without the password: its bytes do not authenticate and the member drops the connection.
        with socket.create_connection((host.address, peer_port), timeout=5) as s:
            s.sendall(b"\x10\x00\x00\x00" + b"not-a-fernet-token")
            s.settimeout(5)
            try:
                closed = s.recv(1024) == b""  # the member hung up on us
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                closed = False
            assert closed, f"{host.name} kept a peer connection open for bytes that do not authenticate"
    kv.wait_for_ready(30)  # the stranger disturbed nothing
