"""What PostgreSQL's pg_hba answers a host: a TLS startup sent from that host itself (python3 on it, no
PostgreSQL client needed), read up to the server's first reply — an authentication request (pg_hba let the
host in: a password is asked next) or an error (e.g. "no pg_hba.conf entry for host ..."). Used by the
checks and by the planted defect that opens pg_hba."""

from __future__ import annotations

from gauntlet.cluster import Host

# Runs on the probing host: SSLRequest, TLS, StartupMessage, then the first message back, printed as one line
# ("AUTH <code>", "ERROR <message>", "NOSSL", "CLOSED"). The certificate is not verified: the question is
# what pg_hba does with this source address, and the probing host need not hold the cluster CA.
PROBE = r"""
import socket, ssl, struct, sys
address, port, user, database = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
raw = socket.create_connection((address, port), timeout=5)
raw.sendall(struct.pack("!ii", 8, 80877103))
if raw.recv(1) != b"S":
    print("NOSSL")
    sys.exit(0)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
tls = ctx.wrap_socket(raw)
params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
tls.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
head = b""
while len(head) < 5:
    chunk = tls.recv(5 - len(head))
    if not chunk:
        print("CLOSED")
        sys.exit(0)
    head += chunk
kind, length = head[:1], struct.unpack("!i", head[1:])[0]
body = b""
while len(body) < length - 4:
    chunk = tls.recv(length - 4 - len(body))
    if not chunk:
        break
    body += chunk
if kind == b"R":
    print("AUTH", struct.unpack("!i", body[:4])[0])
elif kind == b"E":
    fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
    print("ERROR", fields.get(b"M", "?"))
else:
    print("OTHER", kind)
"""


def startup_answer(host: Host, address: str, port: int, user: str, database: str) -> str:
    """PostgreSQL's first answer at ``address:port`` to a TLS startup as ``user``/``database`` sent from
    ``host`` (one line: ``AUTH <code>``, ``ERROR <message>``, ``NOSSL``, ``CLOSED``)."""
    r = host.run(["python3", "-c", PROBE, address, str(port), user, database], check=True, timeout=30)
    return r.stdout.strip()
