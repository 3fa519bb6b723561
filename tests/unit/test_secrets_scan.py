"""The secrets-in-log scanner: a planted password or key line is reported (by file, never by value), a clean
log passes, and a scan with nothing to check fails. The last tests run it as scripts/scenario.sh does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from role_support import ROOT

from gauntlet.pki import foreign_client_cert
from gauntlet.secrets_scan import key_secrets, main, scan

PASSWORD = "Zq8mW2xKp4LrT7vB9nC3dF6h"


def generated(tmp_path: Path) -> tuple[Path, Path]:
    """A run's controller dirs as the roles leave them: one password file, one ``salt=`` file, two keys."""
    secrets, pki = tmp_path / "secrets", tmp_path / "pki"
    secrets.mkdir()
    (secrets / "patroni_app").write_text(PASSWORD + "\n")
    (secrets / "redis_admin").write_text("Hs7Yy2Qq9Pp4Ww1Ee6Rr3Tt salt=abcdefgh\n")
    foreign_client_cert(pki / "hosts")
    (pki / "hosts" / "client.key").rename(pki / "hosts" / "pg1.key")
    foreign_client_cert(pki)
    (pki / "client.key").rename(pki / "ca.key")
    return secrets, pki


def log_with(tmp_path: Path, *extra: str) -> Path:
    log = tmp_path / "converge.log"
    lines = [
        "TASK [gauntlet.cluster.patroni : Write the Patroni configuration] ****",
        "changed: [pg1]",
        *extra,
    ]
    log.write_text("\n".join(lines) + "\n")
    return log


def test_a_clean_log_passes_and_says_how_many_secrets_it_checked(tmp_path: Path) -> None:
    secrets, pki = generated(tmp_path)
    rc, verdict = scan(log_with(tmp_path), secrets, pki)
    assert (rc, verdict) == (0, f"secrets-in-log: checked 4 secrets, 0 found in {tmp_path / 'converge.log'}")


def test_a_password_in_the_log_fails_naming_its_file_not_its_value(tmp_path: Path) -> None:
    secrets, pki = generated(tmp_path)
    rc, verdict = scan(log_with(tmp_path, f"+  password: {PASSWORD}"), secrets, pki)
    assert rc == 1 and "1 found" in verdict and "secrets/patroni_app (line 3)" in verdict
    assert PASSWORD not in verdict and "\n" not in verdict


def test_a_password_file_with_a_salt_is_searched_for_its_password(tmp_path: Path) -> None:
    secrets, pki = generated(tmp_path)
    rc, verdict = scan(log_with(tmp_path, "masterauth Hs7Yy2Qq9Pp4Ww1Ee6Rr3Tt"), secrets, pki)
    assert rc == 1 and "secrets/redis_admin (line 3)" in verdict


def test_one_line_of_a_private_key_in_a_diff_fails_naming_the_key(tmp_path: Path) -> None:
    secrets, pki = generated(tmp_path)
    [host_key] = [k for k in key_secrets(pki) if k.name == "pki/hosts/pg1.key"]
    rc, verdict = scan(log_with(tmp_path, "+" + host_key.needles[1]), secrets, pki)
    assert rc == 1 and "pki/hosts/pg1.key (line 3)" in verdict and host_key.needles[1] not in verdict


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_nothing_to_check_fails(tmp_path: Path, state: str) -> None:
    if state == "empty":
        (tmp_path / "secrets").mkdir()
        (tmp_path / "pki").mkdir()
    rc, verdict = scan(log_with(tmp_path), tmp_path / "secrets", tmp_path / "pki")
    assert rc == 2 and verdict.startswith("secrets-in-log: checked 0 secrets: ")


def test_a_missing_log_fails(tmp_path: Path) -> None:
    secrets, pki = generated(tmp_path)
    assert scan(tmp_path / "none.log", secrets, pki) == (2, f"secrets-in-log: no log {tmp_path / 'none.log'}")


def test_the_command_line_prints_one_line_and_returns_the_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, pki = generated(tmp_path)
    log = log_with(tmp_path, PASSWORD)
    assert main([str(log), "--secrets-dir", str(secrets), "--pki-dir", str(pki)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and PASSWORD not in err


@pytest.mark.parametrize(("leaked", "rc"), [(False, 0), (True, 1)])
def test_scenario_sh_s_call_finds_the_scenario_s_dirs(tmp_path: Path, leaked: bool, rc: int) -> None:
    """As scripts/scenario.sh runs it: ``python -m gauntlet.secrets_scan LOG --scenario NAME`` in the checkout,
    the secrets and pki dirs being those of the scenario's ephemeral directory (MOLECULE_EPHEMERAL_DIRECTORY
    here; Molecule's own path otherwise)."""
    generated(tmp_path)
    log = log_with(tmp_path, PASSWORD if leaked else "ok: [pg1]")
    env = {**os.environ, "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [sys.executable, "-m", "gauntlet.secrets_scan", str(log), "--scenario", "default"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == rc, r.stderr
    assert ("checked 4 secrets, 1 found" if leaked else "checked 4 secrets, 0 found") in r.stdout + r.stderr


def test_the_public_key_of_a_private_key_in_the_log_is_no_leak(tmp_path: Path) -> None:
    """community.crypto's openssl_privatekey diff prints the public key; the tail of an EC private PEM is the
    public point, so its last line is inside that public key and must not count (it did on a real converge)."""
    secrets, pki = generated(tmp_path)
    # As community.crypto's openssl_privatekey writes it: P-256, the traditional (SEC1) format.
    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (pki / "hosts" / "pg1.key").write_bytes(private)
    public = (
        serialization.load_pem_private_key(private, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    private_tail = [ln for ln in private.decode().splitlines() if not ln.startswith("-----")][-1]
    assert private_tail in public.replace("\n", ""), (
        "the planted overlap exists (else this test shows nothing)"
    )
    rc, verdict = scan(log_with(tmp_path, *("+" + ln for ln in public.splitlines())), secrets, pki)
    assert rc == 0, verdict
    [host_key] = [k for k in key_secrets(pki) if k.name == "pki/hosts/pg1.key"]
    assert host_key.needles, "the private lines are still searched for"
