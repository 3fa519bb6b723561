"""TLS of the Patroni topology: PostgreSQL only over TLS and only to the cluster's own hosts, certificates
verified by name (directly and through HAProxy, which passes TLS through), the REST API over TLS with
authentication on its unsafe endpoints."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import ssl

import psycopg
import pytest
from ansible.errors import AnsibleUndefinedVariable

from checklib.patroni import PatroniCluster
from gauntlet.clients.postgres.hba_probe import startup_answer
from gauntlet.cluster import Host
from gauntlet.errors import InventoryError

pytestmark = [pytest.mark.patroni, pytest.mark.tls]


def test_postgresql_refuses_plain_connections(pg: PatroniCluster) -> None:
    """Without TLS every member refuses the connection (pg_hba: hostnossl ... reject) — and serves the same
    user on the same address over verified TLS, so the refusal is PostgreSQL's, not a member that is down."""
    for name in pg.by_name:
        with pg.member_endpoint(name).connect() as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (
                True,
            )
        try:
            pg.member_endpoint(name, sslmode="disable").connect().close()
        except psycopg.OperationalError as exc:
            assert "no encryption" in str(exc), f"{name} refused plain text, but not by pg_hba: {exc}"
        else:
            raise AssertionError(f"{name} accepted a plain-text connection")


def _outside_hosts(pg: PatroniCluster) -> list[Host]:
    """Inventory hosts pg_hba must not let in: in no group of patroni_client_groups, and outside every
    network the inventory itself adds (patroni_allowed_networks_extra, or a patroni_allowed_networks it sets)."""
    client_groups = set(pg.cluster.setting("patroni_client_groups", "postgres")) | {"postgres"}
    added: list[str] = list(pg.cluster.setting("patroni_allowed_networks_extra", "postgres"))
    # Unrenderable here: the role's default, derived from the play's hosts and facts at converge (the
    # cluster's own hosts, which is what this check requires of it).
    with contextlib.suppress(AnsibleUndefinedVariable):
        added += [str(n) for n in pg.cluster.setting("patroni_allowed_networks", "postgres")]
    nets = []
    for n in added:
        try:
            nets.append(ipaddress.ip_network(n, strict=False))
        except ValueError:
            continue
    out = []
    for h in pg.cluster.hosts.values():
        if h.groups & client_groups:
            continue
        ip = ipaddress.ip_address(h.address)
        if not any(ip.version == n.version and ip in n for n in nets):
            out.append(h)
    return out


def test_hosts_outside_the_cluster_are_refused_by_pg_hba(pg: PatroniCluster) -> None:
    """A host of the inventory that has no reason to reach PostgreSQL (none of patroni_client_groups: the
    cache hosts of the default topology) is refused by every member's pg_hba over TLS, before any password is
    asked, under its own address; the controller is served by the same member first, so the refusal is
    pg_hba's and not a member that is down. (Topologies whose hosts all connect have no such host.)"""
    try:
        outside = _outside_hosts(pg)
    except InventoryError as exc:
        raise AssertionError(f"cannot tell which hosts pg_hba must refuse: {exc}") from None
    if not outside:
        pytest.skip(
            f"inventory {pg.cluster.source} has no host outside the groups and networks PostgreSQL lets in"
        )
    probe = outside[0]
    for name, member in pg.by_name.items():
        with pg.member_endpoint(name).connect() as conn:  # the controller is let in, over verified TLS
            assert conn.execute("SELECT 1").fetchone() == (1,)
        answer = startup_answer(probe, member.address, pg.pg_port, pg.app_user, pg.app_db)
        assert answer.startswith("ERROR no pg_hba.conf entry for host"), (
            f"{name} let in {probe.name} ({probe.address}), outside the cluster: it answered '{answer}'"
            " (AUTH: a password is asked next)"
        )
        assert f'"{probe.address}"' in answer, f"{name} saw {probe.name} under another address: {answer}"


def test_verify_full_by_hostname_succeeds(pg: PatroniCluster) -> None:
    """sslmode=verify-full with the cluster CA succeeds by each member's name, over TLS 1.2+."""
    for name in pg.by_name:
        with pg.member_endpoint(name).connect() as conn:
            ssl_on, version = conn.execute(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert ssl_on is True and version in ("TLSv1.2", "TLSv1.3")


def test_verify_full_rejects_a_wrong_name(pg: PatroniCluster) -> None:
    """The same connection under a name the certificate does not carry fails: the name is really checked."""
    name = next(iter(pg.by_name))
    pg.member_endpoint(name).connect().close()  # the right name on the same address is served
    with pytest.raises(psycopg.OperationalError, match=r"does not match|certificate"):
        pg.member_endpoint(name, host="not-this-host.invalid").connect().close()


def test_verify_full_rejects_a_foreign_ca(pg: PatroniCluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Trusting another CA fails verification: the server's certificate chain is checked."""
    from gauntlet.pki import foreign_client_cert

    ca, _, _ = foreign_client_cert(tmp_path)
    name = next(iter(pg.by_name))
    pg.member_endpoint(name).connect().close()  # the cluster CA on the same address is served
    with pytest.raises(psycopg.OperationalError, match=r"certificate verify failed"):
        pg.member_endpoint(name, sslrootcert=str(ca)).connect().close()


@pytest.mark.haproxy
def test_verify_full_through_haproxy(pg: PatroniCluster) -> None:
    """Through HAProxy (TCP passthrough) the client verifies PostgreSQL's own certificate by the load
    balancer's name, and lands on the leader."""
    leader = pg.wait_healthy()
    with pg.lb_endpoint("rw").connect() as conn:
        ssl_on, addr = conn.execute(
            "SELECT ssl, inet_server_addr()::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert ssl_on is True
    assert addr.split("/")[0] == pg.by_name[leader].address
    with pytest.raises(psycopg.OperationalError):
        pg.lb_endpoint("rw", sslmode="disable").connect().close()


def test_rest_api_tls_and_authentication(pg: PatroniCluster) -> None:
    """The REST API speaks TLS only, with a certificate from the cluster CA; unsafe endpoints need the
    a client certificate from the cluster CA and the credentials (without them a restart is refused)."""
    name = next(iter(pg.by_name))
    api = pg.apis[name]
    code, body = api.get("/patroni")
    assert code in (200, 503) and isinstance(body, dict) and body.get("state")
    plain = http.client.HTTPConnection(api.address, api.port, timeout=3)
    try:
        plain.request("GET", "/patroni")
        status: int | None = plain.getresponse().status
    except (http.client.HTTPException, OSError):
        status = None
    finally:
        plain.close()
    assert status is None, f"the REST API answered plain HTTP with {status}"
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusted = ssl.create_default_context()  # system CAs only: the cluster CA is not among them
        conn = http.client.HTTPSConnection(api.address, api.port, context=untrusted, timeout=3)
        conn.request("GET", "/patroni")
    # Neither a client certificate nor credentials: refused (403 asks for the certificate).
    code, _ = api.request("POST", "/restart", {}, auth=False, cert=False)
    assert code in (401, 403), f"POST /restart without certificate or credentials answered {code}"
    # A client certificate from the cluster CA but no credentials: refused with 401.
    code, _ = api.request("POST", "/restart", {}, auth=False)
    assert code == 401, f"POST /restart without credentials answered {code}"
    code, _ = api.request("PATCH", "/config", {}, auth=False)
    assert code == 401, f"PATCH /config without credentials answered {code}"
    # Both: a harmless authenticated request succeeds (setting ttl to its current value changes nothing).
    code, _ = api.request("PATCH", "/config", {"ttl": pg.ttl}, auth=True)
    assert code == 200, f"PATCH /config with credentials answered {code}"
