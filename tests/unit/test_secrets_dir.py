"""A relative ``gauntlet_secrets_dir`` is refused, in one line naming the fix, before any secret is written.

Ansible resolves a relative password-lookup path against the playbook's directory and the harness against its
own working directory: the roles and the checks would generate different passwords, scattered wherever a
playbook lives. The service roles refuse it where a password default is first rendered (the argument-spec
validation that opens every role), the pki role refuses it first thing in every playbook, and the harness
refuses it before it runs a lookup. Each test also looks for the secret file the mistake would have written.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from role_support import ROOT, ansible_playbook, needs_ansible_playbook, play_for

from gauntlet.cluster import Cluster
from gauntlet.errors import InventoryError

RELATIVE = "relative-secrets"
REFUSAL = (
    f"gauntlet_secrets_dir must be an absolute controller path (got '{RELATIVE}'): set it in group_vars/all"
)
#: Roles whose defaults generate passwords under gauntlet_secrets_dir.
SECRET_ROLES = ["citus", "haproxy", "patroni", "postgresql", "redis", "redis_sentinel"]
#: Variables a role's argument spec needs to render its other defaults (redis_sentinel's primary address).
ROLE_NEEDS: dict[str, dict[str, object]] = {
    "redis_sentinel": {"redis_sentinel_primary": "localhost", "gauntlet_address": "127.0.0.1"}
}


def stray_secret_dirs(*roots: Path) -> list[Path]:
    """Directories named like the relative setting anywhere under ``roots``: what the mistake would leave."""
    return [p for root in roots for p in root.rglob(RELATIVE)]


def run_role(tmp_path: Path, role: str, secrets_dir: str, tags: str = "") -> tuple[int, str]:
    """Run ``role`` in check mode on localhost; return its exit code and its output as one line."""
    (tmp_path / "play.yml").write_text(play_for(f"gauntlet.cluster.{role}"))
    (tmp_path / "hosts.ini").write_text("localhost ansible_connection=local\n")
    variables = {
        "gauntlet_pki_dir": str(tmp_path / "pki"),
        "gauntlet_secrets_dir": secrets_dir,
        **ROLE_NEEDS.get(role, {}),
    }
    r = ansible_playbook(tmp_path / "play.yml", str(tmp_path / "hosts.ini"), variables, tags=tags)
    return r.returncode, " ".join((r.stdout + r.stderr).split())


@needs_ansible_playbook
@pytest.mark.parametrize("role", SECRET_ROLES)
def test_a_service_role_refuses_a_relative_secrets_dir_before_writing_a_secret(
    tmp_path: Path, role: str
) -> None:
    # --tags none-such: every real task is skipped, the role's argument-spec validation (tag always) still runs.
    rc, out = run_role(tmp_path, role, RELATIVE, tags="none-such")
    assert rc != 0 and REFUSAL in out, out[-1500:]
    assert stray_secret_dirs(tmp_path, ROOT / "playbooks", ROOT / "roles") == []


@needs_ansible_playbook
def test_an_absolute_secrets_dir_passes_the_same_validation(tmp_path: Path) -> None:
    """The control: the same run with an absolute directory validates and generates the stats password there."""
    rc, out = run_role(tmp_path, "haproxy", str(tmp_path / "secrets"), tags="none-such")
    assert rc == 0 and "must be an absolute" not in out, out[-1500:]
    assert (tmp_path / "secrets" / "haproxy_stats").is_file()


@needs_ansible_playbook
def test_the_pki_role_refuses_a_relative_secrets_dir_first(tmp_path: Path) -> None:
    """pki opens every playbook: its check stops the run before any host is configured."""
    rc, out = run_role(tmp_path, "pki", RELATIVE)
    assert rc != 0 and REFUSAL in out, out[-1500:]
    assert "Gather the network facts the host certificate needs" not in out


def test_the_harness_refuses_a_relative_secrets_dir_before_a_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    etcd:\n      hosts:\n        etcd1: {}\n")
    (inv / "group_vars" / "all.yml").write_text(
        textwrap.dedent(
            f"""
            gauntlet_secrets_dir: {RELATIVE}
            app_password: "{{{{ lookup('ansible.builtin.password', gauntlet_secrets_dir + '/app', length=16) }}}}"
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    cluster = Cluster.from_inventory(inv)
    with pytest.raises(
        InventoryError, match=r"must be an absolute controller path \(got 'relative-secrets'\)"
    ):
        cluster.secret("app_password", "etcd")
    assert stray_secret_dirs(tmp_path) == []
