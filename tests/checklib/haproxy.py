"""HAProxy's statistics page as the checks read it: over TLS, the certificate verified against the cluster CA
by the load balancer's inventory name (or plain HTTP where the inventory turns ``haproxy_stats_tls`` off),
with the basic-auth credentials the role configured."""

from __future__ import annotations

import http.client
import socket
import ssl
from base64 import b64encode
from dataclasses import dataclass, replace
from pathlib import Path

from gauntlet.cluster import Cluster, Host


@dataclass(frozen=True)
class StatsPage:
    """One load balancer's statistics page: where it listens, the name its certificate must carry, how to log in."""

    name: str
    address: str
    port: int
    tls: bool
    ca: Path  # the CA a TLS client trusts: the cluster's
    user: str
    password: str
    timeout: float = 5.0

    @classmethod
    def of(cls, cluster: Cluster, lb: Host) -> StatsPage:
        """The page of ``lb`` as the haproxy role set it up (port, TLS, user; the password it generated)."""
        return cls(
            name=lb.name,
            address=lb.address,
            port=int(lb.setting("haproxy_stats_port")),
            tls=bool(lb.setting("haproxy_stats_tls")),
            ca=cluster.ca_cert,
            user=str(lb.setting("haproxy_stats_user")),
            password=cluster.secret("haproxy_stats_password", "haproxy"),
        )

    def context(self) -> ssl.SSLContext:
        """A TLS client context that trusts the cluster CA only and checks the server's name."""
        return ssl.create_default_context(cafile=str(self.ca))

    def _connection(self, server_name: str, context: ssl.SSLContext | None) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        ctx = context or self.context()
        # Connect to the address, verify the certificate by the name (SNI and hostname check): the name is
        # what clients are told to trust, the address is only where it runs.
        raw = socket.create_connection((self.address, self.port), timeout=self.timeout)
        try:
            sock = ctx.wrap_socket(raw, server_hostname=server_name)
        except BaseException:
            raw.close()
            raise
        conn = http.client.HTTPSConnection(server_name, self.port, timeout=self.timeout, context=ctx)
        conn.sock = sock
        return conn

    def get(
        self,
        path: str = "/;csv",
        credentials: tuple[str, str] | None = None,
        server_name: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, str]:
        """GET ``path`` (status, body) with ``credentials`` (user, password) or none; over TLS verified by
        ``server_name`` (default: the inventory name) with ``context`` (default: the cluster CA's).
        Certificate and connection errors propagate."""
        conn = self._connection(server_name or self.name, context)
        try:
            headers = {}
            if credentials:
                token = b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
                headers["Authorization"] = "Basic " + token
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def login(self) -> tuple[str, str]:
        """The role's credentials."""
        return self.user, self.password

    def plain_http_status(self, path: str = "/;csv") -> int | None:
        """The status a plain-HTTP request (no TLS) to the page's port gets, or None when no HTTP answer
        comes back (the TLS listener drops what is not a TLS handshake)."""
        conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except (http.client.HTTPException, OSError):
            return None
        finally:
            conn.close()


def assert_needs_authentication(stats: StatsPage) -> None:
    """401 without credentials and with a wrong password; 200 showing both listeners with the role's."""
    status, _ = stats.get()
    assert status == 401, f"the statistics page answered {status} without credentials"
    status, body = stats.get(credentials=stats.login())
    assert status == 200, f"the statistics page answered {status} with the role's credentials"
    assert "primary," in body and "replicas," in body, (
        f"the statistics page lacks the listeners: {body[:300]}"
    )
    status, _ = stats.get(credentials=(stats.user, "wrong-password"))
    assert status == 401, f"the statistics page answered {status} with a wrong password"


def assert_served_over_tls_only(stats: StatsPage) -> None:
    """The page's port speaks TLS with a certificate the cluster CA signed for the load balancer's name
    (another name, or a client trusting only the system CAs, fails verification), and a plain-HTTP request
    to it gets no HTTP answer. The refusal is judged only after TLS was served on that same port, so a
    HAProxy that is down cannot pass."""
    where = f"{stats.name} ({stats.address}:{stats.port})"
    tls = replace(stats, tls=True)  # TLS is what is checked, whatever the page was set up as
    try:
        status, _ = tls.get()
    except (ssl.SSLError, OSError) as exc:
        raise AssertionError(
            f"the statistics page on {where} does not serve TLS for {stats.name}: {exc}"
        ) from None
    assert status == 401, f"the statistics page on {where} answered {status} over TLS without credentials"
    for name, context, why in [
        ("not-this-host.invalid", None, "a name its certificate does not carry"),
        (None, ssl.create_default_context(), "a client that trusts only the system CAs"),
    ]:
        try:
            tls.get(server_name=name, context=context)
        except ssl.SSLCertVerificationError:
            continue
        raise AssertionError(f"the statistics page on {where} passed verification by {why}")
    plain = stats.plain_http_status()
    assert plain is None, f"the statistics page on {where} answered plain HTTP with {plain}"
