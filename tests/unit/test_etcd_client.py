"""Unit tests of the etcd client's pure parts (no hosts): key ranges, error classification, status."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gauntlet.clients.base import Fail, Info
from gauntlet.clients.etcd import EtcdClient, Member, Status, _prefix_end
from gauntlet.history import History


def _dec(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_prefix_end_increments_last_byte() -> None:
    assert _dec(_prefix_end("/a/")) == b"/a0"
    assert _dec(_prefix_end("ab")) == b"ac"


def test_prefix_end_of_multibyte_text() -> None:
    # UTF-8 never contains 0xff, so incrementing the last byte always ends the range right after the prefix
    assert _dec(_prefix_end("é")) == "é".encode()[:-1] + bytes(["é".encode()[-1] + 1])


def test_status_is_leader() -> None:
    assert Status("a", 1, 1, 2, 3, "3.4").is_leader
    assert not Status("a", 1, 2, 2, 3, "3.4").is_leader
    assert not Status("a", 1, 0, 2, 3, "3.4").is_leader


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, dict]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, doc = self.answers[self.path]
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_etcd(tmp_path: Path) -> Iterator[EtcdClient]:
    """A local HTTPS server answering canned gateway replies, with a throw-away CA (gauntlet.pki)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    crt_path, key_path = tmp_path / "srv.crt", tmp_path / "srv.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt_path, key_path)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = EtcdClient([Member("m1", "127.0.0.1", server.server_address[1])], crt_path, timeout=5)
    yield client
    server.shutdown()


def test_no_leader_is_a_definite_failure(fake_etcd: EtcdClient) -> None:
    _Handler.answers = {"/v3/kv/put": (503, {"error": "etcdserver: no leader", "code": 14})}
    with pytest.raises(Fail):
        fake_etcd.put("m1", "k", "v")
    h = History()
    assert not fake_etcd.recorded_put(h, "p", "m1", "k", "v")
    assert [o.type for o in h.ops] == ["invoke", "fail"]


def test_request_timed_out_is_unknown(fake_etcd: EtcdClient) -> None:
    _Handler.answers = {"/v3/kv/put": (503, {"error": "etcdserver: request timed out", "code": 14})}
    with pytest.raises(Info):
        fake_etcd.put("m1", "k", "v")
    h = History()
    fake_etcd.recorded_put(h, "p", "m1", "k", "v")
    assert [o.type for o in h.ops] == ["invoke", "info"]


def test_range_and_status_decode(fake_etcd: EtcdClient) -> None:
    _Handler.answers = {
        "/v3/kv/range": (200, {"header": {}, "kvs": [{"key": "aw==", "value": "dg=="}], "count": "1"}),
        "/v3/maintenance/status": (
            200,
            {
                "header": {"member_id": "7", "raft_term": "3"},
                "leader": "7",
                "raftTerm": "3",
                "raftIndex": "9",
                "version": "3.4.23",
            },
        ),
    }
    assert fake_etcd.get("m1", "k") == "v"
    assert fake_etcd.get_prefix("m1", "k") == {"k": "v"}
    st = fake_etcd.status("m1")
    assert st.is_leader and st.raft_term == 3 and st.raft_index == 9
