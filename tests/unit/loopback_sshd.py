"""An OpenSSH server of a test's own on 127.0.0.1, with its own config, host key and authorized key in a
temporary directory, started in the foreground and stopped by the test (never the machine's sshd)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


@dataclass
class LoopbackSSHD:
    """A running loopback sshd: where it listens and the files a client needs."""

    port: int
    user: str
    client_key: Path
    host_key: Path
    workdir: Path

    def known_hosts_line(self, key: Path | None = None) -> str:
        """A known_hosts line for this server (``[127.0.0.1]:port``) with ``key``'s public half (default: the
        server's own host key)."""
        pub = Path(f"{key or self.host_key}.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n"


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair at ``path`` (private key 0600, as ssh-keygen creates it) and ``path``.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback_sshd(workdir: Path, port: int | None = None) -> Iterator[LoopbackSSHD]:
    """Run sshd on 127.0.0.1 (``port``, default a free one) for the current user until the block ends."""
    if SSHD is None:
        raise RuntimeError("sshd is not installed (Debian: openssh-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    host_key, client_key = keygen(workdir / "host_ed25519"), keygen(workdir / "client_ed25519")
    (workdir / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    (workdir / "authorized_keys").chmod(0o600)
    port = port or free_port()
    user = getpass.getuser()
    config = workdir / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {host_key}\nAuthorizedKeysFile {workdir}/authorized_keys\n"
        f"PidFile {workdir}/sshd.pid\nAllowUsers {user}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "MaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
        # bash sources ~/.bashrc for every command sshd runs (Debian's SSH_SOURCE_BASHRC) unless SHLVL says
        # it is nested: a slow ~/.bashrc (pyenv init: ~280 ms here) would be timed instead of SSH.
        "SetEnv SHLVL=1\n"
    )
    if os.geteuid() == 0:
        # sshd as root insists on its privilege-separation directory (the Debian service makes it at start).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    with open(workdir / "sshd.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited {proc.returncode}: {(workdir / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within 10 s") from None
                time.sleep(0.05)
        yield LoopbackSSHD(port, user, client_key, host_key, workdir)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
