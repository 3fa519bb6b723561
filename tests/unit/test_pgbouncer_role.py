"""The pgbouncer role as written: its templates rendered by ansible-playbook with the role's own defaults over
the patroni role's (as the play that runs both sees them), for three members whose facts are given, not
gathered; its user-list task; its argument spec; and that the patroni role's pg_hba lets in the address
PgBouncer connects from.

The rendered pgbouncer.ini demands TLS from clients and verifies PostgreSQL's certificate, bounds the pool
with the role's limits, and points at the member's own PostgreSQL; userlist.txt holds the application
user's password the patroni role generated; the task that writes it makes it 0600 for the service user and
never shows it in a diff or the log; a bad pool_mode stops the role in one line.
"""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path
from typing import Any

import yaml
from role_support import FAKE_FACTS_MODULE, ROOT, ansible_playbook, needs_ansible_playbook, play_for
from test_patroni_pg_hba import MEMBERS, hostssl_networks, run_networks
from test_patroni_pg_hba import inventory as patroni_inventory

pytestmark = needs_ansible_playbook

ROLE = ROOT / "roles" / "pgbouncer"
TEMPLATES = ["pgbouncer.ini", "listen.ini", "userlist.txt"]


def defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()))


def render(tmp_path: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    """The role's preflight, then its three templates rendered for every member into
    ``tmp_path/rendered/<host>/<file>``, with the patroni role's defaults and vars loaded first (as in
    playbooks/patroni.yml, where patroni runs before it in the same play)."""
    pki = tmp_path / "pki"
    (pki / "hosts").mkdir(parents=True)
    (pki / "ca.crt").write_text("")
    for host in MEMBERS:
        (pki / "hosts" / f"{host}.crt").write_text("")
        (pki / "hosts" / f"{host}.key").write_text("")
        (tmp_path / "rendered" / host).mkdir(parents=True)
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "gauntlet_fake_facts.py").write_text(FAKE_FACTS_MODULE)
    data = {
        "all": {
            "vars": {"ansible_connection": "local"},
            "children": {
                "postgres": {
                    "hosts": {h: {"fake_facts": {"default_ipv4": {"address": a}}} for h, a in MEMBERS.items()}
                }
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(data))
    patroni = ROOT / "roles" / "patroni"
    play = [
        {
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"name": "Facts", "gauntlet_fake_facts": {"facts": "{{ fake_facts }}"}}],
        },
        {
            "hosts": "postgres",
            "gather_facts": False,
            "vars_files": [str(patroni / "defaults" / "main.yml"), str(patroni / "vars" / "main.yml")],
            "tasks": [
                {
                    "name": "The role's preflight",
                    "ansible.builtin.include_role": {
                        "name": "gauntlet.cluster.pgbouncer",
                        "tasks_from": "preflight",
                        "public": True,
                    },
                },
                {
                    "name": "Render the role's templates",
                    "ansible.builtin.template": {
                        "src": f"{ROLE}/templates/{{{{ item }}}}.j2",
                        "dest": f"{tmp_path}/rendered/{{{{ inventory_hostname }}}}/{{{{ item }}}}",
                        "mode": "0600",
                    },
                    "loop": TEMPLATES,
                },
            ],
        },
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    variables = {
        "gauntlet_pki_dir": str(pki),
        "gauntlet_secrets_dir": str(tmp_path / "secrets"),
        **extra,
    }
    return ansible_playbook(tmp_path / "play.yml", str(tmp_path / "hosts.yml"), variables, check=False)


def ini(text: str) -> configparser.ConfigParser:
    """A rendered PgBouncer file as sections of settings (comments ``;`` and the %include line dropped)."""
    parser = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
    parser.read_string("\n".join(line for line in text.splitlines() if not line.startswith("%include")))
    return parser


def rendered(tmp_path: Path, host: str, name: str) -> str:
    return (tmp_path / "rendered" / host / name).read_text()


def test_the_configuration_demands_tls_both_ways_and_bounds_the_pool(tmp_path: Path) -> None:
    """Each member's pgbouncer.ini: clients must use TLS with the host's certificate, PostgreSQL's
    certificate is verified (verify-full) against the CA, SCRAM against the user list, transaction pooling
    with the role's default_pool_size / max_db_connections / max_client_conn / query_wait_timeout, and the
    application database served by the member's own PostgreSQL at its address; the listen file has the
    member's address and loopback on the role's port, and is included."""
    r = render(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    d = defaults()
    for host, address in MEMBERS.items():
        text = rendered(tmp_path, host, "pgbouncer.ini")
        cfg = ini(text)
        bouncer = cfg["pgbouncer"]
        assert bouncer["client_tls_sslmode"] == "require", host
        assert bouncer["client_tls_cert_file"] == "/etc/pgbouncer/tls/server.crt"
        assert bouncer["client_tls_key_file"] == "/etc/pgbouncer/tls/server.key"
        assert bouncer["server_tls_sslmode"] == "verify-full", host
        assert bouncer["server_tls_ca_file"] == "/etc/pgbouncer/tls/ca.crt"
        assert bouncer["auth_type"] == "scram-sha-256"
        assert bouncer["auth_file"] == "/etc/pgbouncer/userlist.txt"
        assert bouncer["pool_mode"] == "transaction"
        for knob in ("default_pool_size", "max_db_connections", "max_client_conn", "query_wait_timeout"):
            assert int(bouncer[knob]) == int(d[f"pgbouncer_{knob}"]), (host, knob, bouncer[knob])
        assert (int(bouncer["default_pool_size"]), int(bouncer["max_db_connections"])) == (20, 40)
        assert dict(cfg["databases"]) == {"gauntlet": f"host={address} port=5432 dbname=gauntlet"}, host
        assert text.rstrip().endswith("%include /etc/pgbouncer/listen.ini"), host
        listen = ini("[pgbouncer]\n" + rendered(tmp_path, host, "listen.ini"))["pgbouncer"]
        assert listen["listen_addr"] == f"{address},127.0.0.1", host
        assert listen["listen_port"] == "6432"


def test_the_user_list_holds_the_password_the_patroni_role_generated(tmp_path: Path) -> None:
    """userlist.txt: one line, the application user and the password the patroni role's lookup generated
    under gauntlet_secrets_dir (the file the harness reads too), the same on every member."""
    r = render(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    password = (tmp_path / "secrets" / "patroni_app").read_text().split()[0]
    assert len(password) >= 8
    for host in MEMBERS:
        assert rendered(tmp_path, host, "userlist.txt") == f'"gauntlet" "{password}"\n', host
    assert password not in r.stdout + r.stderr


def test_a_quote_in_the_password_is_doubled(tmp_path: Path) -> None:
    """PgBouncer's auth_file quotes each field; a double quote inside is written twice."""
    r = render(tmp_path, patroni_app_password='pa"ss-word-1')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert rendered(tmp_path, "pg1", "userlist.txt") == '"gauntlet" "pa""ss-word-1"\n'


def tasks() -> list[dict[str, Any]]:
    return list(yaml.safe_load((ROLE / "tasks" / "main.yml").read_text()))


def test_the_user_list_is_written_0600_for_the_service_user_without_diff_or_log() -> None:
    """The task that writes userlist.txt: mode 0600, owned by PgBouncer's service user (Debian: postgres),
    diff: false and no_log, and it reloads PgBouncer."""
    (task,) = [
        t for t in tasks() if (t.get("ansible.builtin.template") or {}).get("src") == "userlist.txt.j2"
    ]
    args = task["ansible.builtin.template"]
    assert args["mode"] == "0600"
    assert args["owner"] == "{{ pgbouncer_user }}"
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert role_vars["pgbouncer_user"] == "postgres"
    assert task.get("diff") is False and task.get("no_log") is True, task
    assert task.get("notify") == "Reload pgbouncer"


def test_the_key_is_copied_0600_without_diff() -> None:
    (task,) = [
        t
        for t in tasks()
        if (t.get("ansible.builtin.copy") or {}).get("src") == "{{ pgbouncer_tls_key_src }}"
    ]
    assert task["ansible.builtin.copy"]["mode"] == "0600"
    assert task.get("diff") is False


def test_a_bad_pool_mode_is_refused_in_one_line(tmp_path: Path) -> None:
    """The argument spec refuses pgbouncer_pool_mode: sessions, naming the choices; the same run with
    transaction validates (only the validation runs: --tags none-such)."""
    (tmp_path / "play.yml").write_text(play_for("gauntlet.cluster.pgbouncer"))
    (tmp_path / "hosts.ini").write_text("localhost ansible_connection=local\n")
    patroni_values = {
        "patroni_address": "127.0.0.1",
        "patroni_postgresql_port": 5432,
        "patroni_app_user": "gauntlet",
        "patroni_app_password": "a-password-1",
        "patroni_app_database": "gauntlet",
        "gauntlet_pki_dir": str(tmp_path / "pki"),
    }

    def run(mode: str) -> tuple[int, str]:
        r = ansible_playbook(
            tmp_path / "play.yml",
            str(tmp_path / "hosts.ini"),
            {**patroni_values, "pgbouncer_pool_mode": mode},
            tags="none-such",
        )
        return r.returncode, " ".join((r.stdout + r.stderr).split())

    rc, out = run("sessions")
    assert rc != 0
    assert (
        "value of pgbouncer_pool_mode must be one of: transaction, session, statement, got: sessions" in out
    ), out[-1500:]
    rc, out = run("transaction")
    assert rc == 0, out[-1500:]


def test_pool_limits_over_what_postgresql_allows_stop_the_role(tmp_path: Path) -> None:
    """max_db_connections above PostgreSQL's max_connections less its reserved superuser slots (patroni's
    200 - 3) stops the preflight with the fix named."""
    r = render(tmp_path, pgbouncer_max_db_connections=198)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "at most what PostgreSQL lets non-superusers open (197" in out, out[-1500:]
    assert "raise max_connections in patroni_postgresql_parameters" in out


def test_haproxy_pooled_backend_port_is_pgbouncers_port() -> None:
    """HAProxy's pooled listeners reach the members at the port PgBouncer listens on."""
    haproxy = yaml.safe_load((ROOT / "roles" / "haproxy" / "defaults" / "main.yml").read_text())
    assert haproxy["haproxy_pooled_backend_port"] == defaults()["pgbouncer_port"]


def test_pg_hba_lets_in_the_address_pgbouncer_connects_from(tmp_path: Path) -> None:
    """PgBouncer connects to its member's PostgreSQL at the member's address (from that address): the patroni
    role's default pg_hba on each member has a hostssl scram line for all users from it (and loopback)."""
    pgb = tmp_path / "pgbouncer"
    pgb.mkdir()
    r = render(pgb)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    hba = tmp_path / "patroni"
    hba.mkdir()
    r = run_networks(hba, patroni_inventory(hba), template=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    for host, address in MEMBERS.items():
        server = ini(rendered(pgb, host, "pgbouncer.ini"))["databases"]["gauntlet"]
        assert f"host={address} " in server, server
        nets = hostssl_networks(hba, host)
        assert f"{address}/32" in nets and "127.0.0.1/32" in nets, (host, nets)
        lines = yaml.safe_load((hba / "rendered" / host).read_text())["postgresql"]["pg_hba"]
        assert f"hostssl all all {address}/32 scram-sha-256" in lines, host
