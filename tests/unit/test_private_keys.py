"""Private keys are created 0600, never chmod-ed after: written first under the usual umask (022), a key is
readable by everyone until the chmod runs, and a failed chmod leaves it so.

The harness's own keys (the foreign CA's client key, the loopback sshd's keys) are made with chmod forbidden;
the scripts, harness and tests are searched for a chmod on a key or a vault secret after it was written. The
roles create theirs with the modules' ``mode`` (community.crypto.openssl_privatekey, copy) in 0700/0750
directories.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_sshd import keygen
from role_support import ROOT

from gauntlet.pki import foreign_client_cert

#: A chmod (shell or Python) whose target names a private key or a vault secret (authorized_keys is public).
CHMOD_ON_A_SECRET = re.compile(
    r"chmod\s+[0-7]+\s+.*((?<!authorized_)key|id_ed25519|id_rsa|vault)|key\w*\)?\.chmod\(|os\.chmod\(\s*\w*key",
    re.IGNORECASE,
)
SEARCHED = ["scripts/*.sh", "src/**/*.py", "tests/**/*.py", "molecule/**/*.yml", "Makefile"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def chmod_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The usual umask, and any chmod fails the test: a key must come out 0600 from its creation."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"chmod after the write: {args}")

    monkeypatch.setattr(Path, "chmod", refuse)
    monkeypatch.setattr(os, "chmod", refuse)
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_foreign_client_key_is_created_0600(tmp_path: Path, chmod_forbidden: None) -> None:
    _, _, key = foreign_client_cert(tmp_path)
    assert mode(key) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()


def test_a_second_foreign_cert_in_the_same_directory_replaces_the_key(
    tmp_path: Path, chmod_forbidden: None
) -> None:
    first = foreign_client_cert(tmp_path)[2].read_bytes()
    _, _, key = foreign_client_cert(tmp_path)
    assert key.read_bytes() != first and mode(key) == 0o600


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_the_loopback_sshd_keys_are_created_0600(tmp_path: Path, chmod_forbidden: None) -> None:
    assert mode(keygen(tmp_path / "k")) == 0o600


def test_nothing_chmods_a_key_or_a_vault_secret_after_writing_it() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for pattern in SEARCHED
        for path in sorted(ROOT.glob(pattern))
        if ".cache" not in path.parts and path != Path(__file__)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if CHMOD_ON_A_SECRET.search(line)
    ]
    assert found == [], (
        "create it 0600 instead (os.open(..., 0o600), umask 077, a module's mode):\n" + "\n".join(found)
    )
