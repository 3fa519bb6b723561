"""Look for the generated secrets in a log: a converge run with ``--diff`` must show none of them.

The secrets are what a run generated on the controller: every file under ``gauntlet_secrets_dir`` (one
password per file, as ansible's password lookup writes it) and every private key (``*.key``) under
``gauntlet_pki_dir``, searched for by each base64 line of its PEM body (a diff shows a key line by line).
A key line that is also part of the key's own public key is not searched for: the tail of an EC private
PEM is the public point, which community.crypto's diff prints as the public key, and is no secret.
A finding names the secret's file and the log line, never the secret. Checking no secret at all fails too:
a scan that cannot find anything must not pass.

    python -m gauntlet.secrets_scan LOG --secrets-dir DIR --pki-dir DIR
    python -m gauntlet.secrets_scan LOG --scenario NAME   # the Molecule scenario's dirs (its ephemeral directory)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from gauntlet.cleanup import molecule_state_dir

PROG = "secrets-in-log"
#: A key's PEM body lines shorter than this (the last one can be a few characters) are not searched for:
#: they could match by chance; the full lines of the same key are.
MIN_KEY_LINE = 16
#: What ansible's password lookup may append to the password in its file.
LOOKUP_PARAMS = re.compile(r"\s+(salt|ident)=\S*")


@dataclass(frozen=True)
class Secret:
    """One generated secret: where it is kept (its name in reports) and the strings that give it away."""

    name: str
    needles: tuple[str, ...]


@dataclass(frozen=True)
class Leak:
    """A secret found in the log: its name and the first log line (1-based) that holds it."""

    name: str
    line: int


def password_secrets(secrets_dir: Path) -> list[Secret]:
    """Every non-empty file under ``secrets_dir``: its content (without the lookup's salt=/ident=)."""
    found = []
    for path in sorted(p for p in secrets_dir.rglob("*") if p.is_file()) if secrets_dir.is_dir() else []:
        value = LOOKUP_PARAMS.sub("", path.read_text(errors="replace").strip())
        if value:
            found.append(Secret(f"{secrets_dir.name}/{path.relative_to(secrets_dir)}", (value,)))
    return found


def public_body(pem: bytes) -> str:
    """The base64 body of the public key of the private key ``pem``, in one line ("" if it cannot be read:
    then every line of the key is searched for)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return ""
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "".join(line for line in public.decode().splitlines() if not line.startswith("-----"))


def key_secrets(pki_dir: Path) -> list[Secret]:
    """Every private key (``*.key``) under ``pki_dir``: the base64 lines of its PEM body that are not part of
    its public key."""
    found = []
    for path in sorted(pki_dir.rglob("*.key")) if pki_dir.is_dir() else []:
        pem = path.read_bytes()
        public = public_body(pem)
        body = [
            line.strip()
            for line in pem.decode(errors="replace").splitlines()
            if line.strip()
            and not line.startswith("-----")
            and len(line.strip()) >= MIN_KEY_LINE
            and not (public and line.strip() in public)
        ]
        if body:
            found.append(Secret(f"{pki_dir.name}/{path.relative_to(pki_dir)}", tuple(body)))
    return found


def find_leaks(log: str, secrets: Sequence[Secret]) -> list[Leak]:
    """The secrets that occur in ``log``, each with the first line it occurs on."""
    lines = log.splitlines()
    leaks = []
    for secret in secrets:
        hit = next((n for n, line in enumerate(lines, 1) if any(s in line for s in secret.needles)), None)
        if hit is not None:
            leaks.append(Leak(secret.name, hit))
    return leaks


def scan(log_path: Path, secrets_dir: Path, pki_dir: Path) -> tuple[int, str]:
    """Scan ``log_path`` for the secrets under ``secrets_dir`` and ``pki_dir``: (exit code, one-line verdict).

    0: at least one secret checked and none found; 1: some found; 2: nothing to check, or no log."""
    if not log_path.is_file():
        return 2, f"{PROG}: no log {log_path}"
    secrets = password_secrets(secrets_dir) + key_secrets(pki_dir)
    if not secrets:
        return 2, (
            f"{PROG}: checked 0 secrets: no file under {secrets_dir} and no *.key under {pki_dir} "
            "(scan after the run that generates them, with the inventory's gauntlet_secrets_dir/gauntlet_pki_dir)"
        )
    leaks = find_leaks(log_path.read_text(errors="replace"), secrets)
    if leaks:
        where = ", ".join(f"{leak.name} (line {leak.line})" for leak in leaks)
        return 1, (
            f"{PROG}: checked {len(secrets)} secrets, {len(leaks)} found in {log_path}: {where}; "
            "give the task that printed it diff: false / no_log: true"
        )
    return 0, f"{PROG}: checked {len(secrets)} secrets, 0 found in {log_path}"


def scenario_dirs(root: Path, scenario: str) -> tuple[Path, Path]:
    """The secrets and pki dirs of a Molecule scenario of the checkout ``root``: its ephemeral directory's
    ``secrets`` and ``pki`` (molecule/_shared/group_vars/all sets them so)."""
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    base = Path(ephemeral) if ephemeral else molecule_state_dir(root, scenario)
    assert base is not None  # molecule_state_dir is None only when MOLECULE_EPHEMERAL_DIRECTORY is set
    return base / "secrets", base / "pki"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the verdict (one line) and return the exit code."""
    parser = argparse.ArgumentParser(prog=PROG, description="Report the generated secrets found in a log.")
    parser.add_argument("log", type=Path)
    parser.add_argument("--secrets-dir", type=Path, help="gauntlet_secrets_dir of the run")
    parser.add_argument("--pki-dir", type=Path, help="gauntlet_pki_dir of the run")
    parser.add_argument("--scenario", help="a Molecule scenario of this checkout: its secrets and pki dirs")
    args = parser.parse_args(argv)
    if args.scenario:
        secrets_dir, pki_dir = scenario_dirs(Path.cwd(), args.scenario)
    elif args.secrets_dir and args.pki_dir:
        secrets_dir, pki_dir = args.secrets_dir, args.pki_dir
    else:
        parser.error("give --secrets-dir and --pki-dir, or --scenario")
    rc, verdict = scan(args.log, secrets_dir, pki_dir)
    print(verdict, file=sys.stdout if rc == 0 else sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
