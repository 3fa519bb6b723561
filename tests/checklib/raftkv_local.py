"""The reference Raft KV server (servers/raftkv) as three local processes on loopback, for unit tests of the
server and of the clients that talk to it (no containers: a real server, started and killed here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from gauntlet.clients.http import Member

SRC = Path(__file__).resolve().parents[2] / "servers" / "raftkv" / "src"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def config_text(
    node: str,
    data: Path,
    ports: dict[str, tuple[int, int]],
    password: str | None = "s3cret",
    read_mode: str | None = None,
) -> str:
    lines = [
        f'node_id = "{node}"',
        f'data_dir = "{data}"',
        "[listen]",
        f'client = "127.0.0.1:{ports[node][0]}"',
        f'peer = "127.0.0.1:{ports[node][1]}"',
    ]
    for name, (c, p) in ports.items():
        lines += ["[[peers]]", f'id = "{name}"', f'client = "127.0.0.1:{c}"', f'peer = "127.0.0.1:{p}"']
    lines += ["[raft]", "commit_timeout = 2.0"]
    if password:
        lines.append(f'password = "{password}"')
    if read_mode is not None:
        lines.append(f'read_mode = "{read_mode}"')
    return "\n".join(lines) + "\n"


def run_server(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "raftkv", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class Local:
    def __init__(self, tmp: Path, read_mode: str | None = None) -> None:
        ports = free_ports(6)
        self.ports = {f"n{i}": (ports[2 * i], ports[2 * i + 1]) for i in range(3)}
        self.configs = {}
        for n in self.ports:
            path = tmp / f"{n}.toml"
            path.write_text(config_text(n, tmp / f"data-{n}", self.ports, read_mode=read_mode))
            self.configs[n] = path
        self.procs = {n: run_server(c) for n, c in self.configs.items()}

    def members(self) -> list[Member]:
        return [Member(n, f"127.0.0.1:{c}") for n, (c, _) in self.ports.items()]

    def stop(self, n: str) -> None:
        p = self.procs[n]
        p.kill()
        p.wait(10)

    def start(self, n: str) -> None:
        self.procs[n] = run_server(self.configs[n])


def local_cluster(tmp: Path, read_mode: str | None = None) -> Iterator[Local]:
    lc = Local(tmp, read_mode)
    yield lc
    for p in lc.procs.values():
        p.kill()
        p.wait(10)
