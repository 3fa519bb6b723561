"""The pki role's check of a host certificate a user supplies (entry point ``check_host_cert``).

Runs the real task file with ansible-playbook on the controller (check mode, connection local), in one play
over several inventory hosts, each with a certificate made here with the cryptography library: one lacks a
SAN, one an extended key usage, the others hold every name. The hosts' host name and FQDN are the
controller's own (the facts the check gathers); their address is given (``pki_host_address``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from role_support import ROOT, ansible_playbook, needs_ansible_playbook

pytestmark = needs_ansible_playbook

ADDRESS = "198.51.100.7"
EXTRA_NAME = "DNS:db.example.com"
PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Check the certificate
      ansible.builtin.include_role:
        name: gauntlet.cluster.pki
        tasks_from: check_host_cert
      vars:
        pki_check_cert_path: "{{ cert }}"
        pki_check_cert_var: patroni_tls_cert_src
        pki_check_usages: [serverAuth, clientAuth]
        pki_check_extra_sans: ["{{ extra_name }}"]
"""
SERVER_AND_CLIENT = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def host_names() -> tuple[str, str]:
    """The controller's host name and FQDN as Ansible's facts give them (what the check compares with)."""
    r = subprocess.run(
        ["ansible", "localhost", "-c", "local", "-m", "ansible.builtin.setup", "-a", "gather_subset=min"],
        cwd=ROOT,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    facts = json.loads(r.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["ansible_facts"]
    return facts["ansible_hostname"], facts["ansible_fqdn"]


def write_cert(path: Path, sans: list[str], usages: list[x509.ObjectIdentifier] | None) -> Path:
    """A self-signed certificate with ``sans`` (openssl form) and, unless None, these extended key usages."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, path.stem)])
    now = datetime.datetime.now(datetime.UTC)
    general_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(v[3:])) if v.startswith("IP:") else x509.DNSName(v[4:])
        for v in sans
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def certificates(tmp: Path) -> dict[str, Path]:
    """One certificate per inventory host (the host's name says what its certificate is)."""
    hostname, fqdn = host_names()
    own = [f"DNS:{hostname}", f"DNS:{fqdn}"]
    return {
        # every name (the extra one through a wildcard, the inventory name in another case), both usages
        "complete": write_cert(
            tmp / "complete.crt",
            ["DNS:COMPLETE", *own, f"IP:{ADDRESS}", "DNS:*.example.com"],
            SERVER_AND_CLIENT,
        ),
        # no extended key usage extension: valid for every usage
        "no-eku": write_cert(tmp / "no-eku.crt", ["DNS:no-eku", *own, f"IP:{ADDRESS}", EXTRA_NAME], None),
        # an inventory name that is an address, present as an IP SAN
        "192.0.2.44": write_cert(
            tmp / "by-address.crt", ["IP:192.0.2.44", *own, f"IP:{ADDRESS}", EXTRA_NAME], SERVER_AND_CLIENT
        ),
        "no-ip": write_cert(tmp / "no-ip.crt", ["DNS:no-ip", *own, EXTRA_NAME], SERVER_AND_CLIENT),
        "server-only": write_cert(
            tmp / "server-only.crt",
            ["DNS:server-only", *own, f"IP:{ADDRESS}", EXTRA_NAME],
            [ExtendedKeyUsageOID.SERVER_AUTH],
        ),
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], str]:
    """The check on every host's certificate, in one ansible-playbook run: the certificates and the output
    (results as JSON, so a message keeps its line breaks visible)."""
    tmp = tmp_path_factory.mktemp("pki_check")
    certs = certificates(tmp)
    (tmp / "play.yml").write_text(PLAY)
    (tmp / "hosts.ini").write_text(
        "".join(f"{host} ansible_connection=local cert={path}\n" for host, path in certs.items())
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
        r = ansible_playbook(
            tmp / "play.yml", str(tmp / "hosts.ini"), {"pki_host_address": ADDRESS, "extra_name": EXTRA_NAME}
        )
    return certs, r.stdout + r.stderr


def failure_of(out: str, host: str) -> str | None:
    """The message of ``host``'s failed task, or None when it did not fail."""
    prefix = f"fatal: [{host}]: FAILED! => "
    lines = [line for line in out.splitlines() if line.startswith(prefix)]
    assert len(lines) <= 1, lines
    return json.loads(lines[0][len(prefix) :])["msg"] if lines else None


def recap_failed(out: str, host: str) -> int:
    """``failed=`` of ``host`` in the play recap."""
    line = next(x for x in out.splitlines() if x.startswith(host + " ") and "failed=" in x)
    return int(line.split("failed=")[1].split()[0])


@pytest.mark.parametrize("host", ["complete", "no-eku", "192.0.2.44"])
def test_a_certificate_with_every_name_and_usage_passes(run: tuple[dict[str, Path], str], host: str) -> None:
    """Every name and usage (or no EKU extension, which allows every usage): the host is not stopped."""
    _, out = run
    assert failure_of(out, host) is None, out[-3000:]
    assert recap_failed(out, host) == 0, out[-3000:]


def test_a_missing_address_is_named_in_one_line(run: tuple[dict[str, Path], str]) -> None:
    """The host's address is not in the certificate: one line naming the host, the file and the address."""
    certs, out = run
    msg = failure_of(out, "no-ip")
    assert msg is not None, out[-3000:]
    assert "\n" not in msg, msg
    assert msg.startswith(
        f"no-ip: certificate {certs['no-ip']} (patroni_tls_cert_src) lacks SAN IP:{ADDRESS}: "
    ), msg


def test_a_missing_client_usage_is_named(run: tuple[dict[str, Path], str]) -> None:
    """serverAuth only, where the certificate is also a client certificate: names EKU clientAuth."""
    certs, out = run
    msg = failure_of(out, "server-only")
    assert msg is not None, out[-3000:]
    expected = (
        f"server-only: certificate {certs['server-only']} (patroni_tls_cert_src) lacks EKU clientAuth: "
    )
    assert msg.startswith(expected), msg


SERVICE_PLAYS = {
    # the whole role: the check must come before anything is installed
    "patroni": "- hosts: member\n  gather_facts: false\n  roles:\n    - role: gauntlet.cluster.patroni\n",
    # the standalone server's TLS steps (the role's main would first install packages)
    "postgresql": (
        "- hosts: member\n  gather_facts: false\n  tasks:\n    - name: The standalone server's TLS steps\n"
        "      ansible.builtin.include_role:\n        name: gauntlet.cluster.postgresql\n"
        "        tasks_from: standalone\n"
    ),
}


@pytest.mark.parametrize("role", sorted(SERVICE_PLAYS))
def test_the_service_roles_check_the_certificate_a_user_supplies(tmp_path: Path, role: str) -> None:
    """<role>_tls_cert_src pointing at a certificate for another host: the role stops at the check (before
    installing anything), naming the host, its variable and the names; Patroni adds patroni_address."""
    cert = write_cert(tmp_path / "elsewhere.crt", ["DNS:elsewhere", "IP:203.0.113.9"], SERVER_AND_CLIENT)
    for name in ("elsewhere.key", "ca.crt"):
        (tmp_path / name).write_text("present: only its existence is checked before the certificate\n")
    (tmp_path / "play.yml").write_text(SERVICE_PLAYS[role])
    (tmp_path / "hosts.ini").write_text("member ansible_connection=local\n")
    variables = {
        "gauntlet_pki_dir": str(tmp_path / "pki"),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        "pki_host_address": ADDRESS,
        "patroni_address": "192.0.2.50",
        "patroni_etcd_hosts": ["127.0.0.1:2379"],
        f"{role}_tls_cert_src": str(cert),
        f"{role}_tls_key_src": str(tmp_path / "elsewhere.key"),
        f"{role}_tls_ca_src": str(tmp_path / "ca.crt"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
        r = ansible_playbook(tmp_path / "play.yml", str(tmp_path / "hosts.ini"), variables)
    out = r.stdout + r.stderr
    msg = failure_of(out, "member")
    assert msg is not None, out[-3000:]
    assert msg.startswith(f"member: certificate {cert} ({role}_tls_cert_src) lacks SAN DNS:member, "), msg
    if role == "patroni":
        assert f"IP:{ADDRESS}, IP:192.0.2.50: " in msg, msg  # the host's address and Patroni's
        assert "Install Patroni" not in out
    else:
        assert f"IP:{ADDRESS}: " in msg and "192.0.2.50" not in msg, msg
