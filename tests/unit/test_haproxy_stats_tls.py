"""The haproxy role's statistics page is served over TLS with the host's certificate from the cluster PKI.

The real role (its preflight tasks, variables and roles/haproxy/templates/haproxy.cfg.j2) rendered by
ansible-playbook on the controller itself for fake hosts. Where an ``haproxy`` binary is on PATH (Debian's
2.6), the rendered configurations are also validated and run on loopback, and the integration check's own
assertions (tests/checklib/haproxy.py) judge them: green on the TLS page, red on a plain-HTTP one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_support import ansible_playbook, needs_ansible_playbook, role_tasks_play

from checklib.haproxy import StatsPage, assert_needs_authentication, assert_served_over_tls_only

pytestmark = needs_ansible_playbook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(
    tmp_path: Path, balancers: dict[str, dict[str, Any]], run_pki: bool = False
) -> subprocess.CompletedProcess[str]:
    """Render haproxy.cfg for ``balancers`` (name: variables) in front of two fake members; with ``run_pki``
    the pki role first issues the CA and the balancers' certificates (else empty placeholder files)."""
    pki = tmp_path / "pki"
    if not run_pki:
        (pki / "hosts").mkdir(parents=True)
        (pki / "ca.crt").write_text("")
        for name in balancers:
            (pki / "hosts" / f"{name}.crt").write_text("")
            (pki / "hosts" / f"{name}.key").write_text("")
    members = {"pg1": "127.0.0.1", "pg2": "127.0.0.2"}
    data = {
        "all": {
            "vars": {"ansible_connection": "local"},
            "children": {
                "postgres": {
                    "hosts": {h: {"fake_facts": {"default_ipv4": {"address": a}}} for h, a in members.items()}
                },
                "haproxy": {"hosts": balancers},
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(data))
    play = role_tasks_play(tmp_path, "gauntlet.cluster.haproxy", "preflight", "haproxy", "haproxy.cfg.j2")
    if run_pki:
        text = play.read_text()
        pki_play = (
            "- hosts: haproxy\n  gather_facts: false\n  roles:\n"
            "    - role: gauntlet.cluster.pki\n      vars:\n        pki_host_address: 127.0.0.1\n"
        )
        marker = "- hosts: haproxy\n"
        play.write_text(text.replace(marker, pki_play + marker, 1))
    variables = {"gauntlet_pki_dir": str(pki), "gauntlet_secrets_dir": str(tmp_path / "secrets")}
    return ansible_playbook(play, str(tmp_path / "hosts.yml"), variables, check=False)


def section(config: str, name: str) -> list[str]:
    """The lines of one section (``global``, ``listen stats``...) of a rendered configuration."""
    out: list[str] = []
    inside = False
    for line in config.splitlines():
        if line and not line[0].isspace():
            inside = line.strip() == name
            continue
        if inside and line.strip() and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


def test_stats_page_binds_with_tls_by_default(tmp_path: Path) -> None:
    """Default: the stats listener binds with `ssl crt` (the host certificate the role installs, key beside
    it) and TLS 1.2 at least, on every address; the global section tells HAProxy to read that key file.
    With haproxy_stats_tls: false it is plain HTTP on the address asked for."""
    r = render(
        tmp_path, {"lb1": {}, "lb2": {"haproxy_stats_tls": False, "haproxy_stats_bind_address": "127.0.0.1"}}
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    tls = (tmp_path / "rendered" / "lb1").read_text()
    binds = [line for line in section(tls, "listen stats") if line.startswith("bind ")]
    assert binds == ["bind *:7000 ssl crt /etc/haproxy/tls/server.pem ssl-min-ver TLSv1.2"], binds
    assert "ssl-load-extra-files key" in section(tls, "global")
    plain = (tmp_path / "rendered" / "lb2").read_text()
    assert [line for line in section(plain, "listen stats") if line.startswith("bind ")] == [
        "bind 127.0.0.1:7000"
    ]
    assert "ssl-load-extra-files key" not in section(plain, "global")
    for config in (tls, plain):
        assert any(line.startswith("stats auth admin:") for line in section(config, "listen stats"))


def test_missing_host_key_stops_the_role_naming_it(tmp_path: Path) -> None:
    """The statistics page's key is missing on the controller: the preflight names the file and the fix."""
    r = render(tmp_path, {"lb1": {"haproxy_tls_key_src": "/nonexistent/gauntlet/lb1.key"}})
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "/nonexistent/gauntlet/lb1.key does not exist on the controller" in out, out[-1500:]
    assert "haproxy_tls_cert_src / haproxy_tls_key_src" in out


@contextmanager
def running_haproxy(config: Path) -> Iterator[None]:
    """HAProxy in the foreground on ``config`` until the block ends (stopped by its own pid)."""
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        time.sleep(1.0)
        assert proc.poll() is None, f"haproxy exited: {proc.stdout.read().decode() if proc.stdout else ''}"
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="no haproxy binary on PATH (Debian: apt install haproxy)"
)
def test_rendered_page_is_tls_only_as_the_check_sees_it(tmp_path: Path) -> None:
    """The pki role's certificate for lb1, the rendered TLS configuration, a real HAProxy on loopback: the
    integration check's assertions pass (TLS verified by name, 401/200, plain HTTP unanswered). The same
    assertions on the plain-HTTP configuration fail: the check goes red on a page that is not TLS."""
    ports = {"lb1": free_port(), "lb2": free_port()}
    balancers = {
        name: {
            "haproxy_stats_bind_address": "127.0.0.1",
            "haproxy_stats_port": port,
            "haproxy_primary_port": free_port(),
            "haproxy_replica_port": free_port(),
            "haproxy_tls_dir": str(tmp_path / name / "tls"),
            **({"haproxy_stats_tls": False} if name == "lb2" else {}),
        }
        for name, port in ports.items()
    }
    r = render(tmp_path, balancers, run_pki=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    pki = tmp_path / "pki"
    for name in balancers:
        tls_dir = tmp_path / name / "tls"
        tls_dir.mkdir(parents=True)
        # Where the role's tasks put them (roles/haproxy/tasks/main.yml).
        shutil.copy(pki / "ca.crt", tls_dir / "ca.crt")
        shutil.copy(pki / "hosts" / f"{name}.crt", tls_dir / "server.pem")
        shutil.copy(pki / "hosts" / f"{name}.key", tls_dir / "server.pem.key")
        config = (tmp_path / "rendered" / name).read_text()
        # Not the privilege drop (user haproxy may not exist here): TLS is under test.
        config = "\n".join(
            line for line in config.splitlines() if line.strip() not in ("user haproxy", "group haproxy")
        )
        (tmp_path / f"{name}.cfg").write_text(config + "\n")
        check = subprocess.run(
            ["haproxy", "-c", "-f", str(tmp_path / f"{name}.cfg")], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    password = (tmp_path / "secrets" / "haproxy_stats").read_text().split()[0]
    page = StatsPage("lb1", "127.0.0.1", ports["lb1"], True, pki / "ca.crt", "admin", password)
    with running_haproxy(tmp_path / "lb1.cfg"):
        assert_needs_authentication(page)
        assert_served_over_tls_only(page)
    plain = StatsPage("lb2", "127.0.0.1", ports["lb2"], True, pki / "ca.crt", "admin", password)
    with running_haproxy(tmp_path / "lb2.cfg"):
        assert_needs_authentication(replace(plain, tls=False))  # up, and serving the page in plain HTTP
        with pytest.raises(AssertionError, match="does not serve TLS"):
            assert_served_over_tls_only(plain)
