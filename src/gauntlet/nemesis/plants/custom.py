"""Defects planted in a running custom topology (the reference Raft KV server, servers/raftkv, deployed by
the custom_server role): a knob of the server's own configuration turned on every member, over each host's
own connection. The file and the unit are the role's (its defaults, or the inventory's values), never
restated here. Each plant waits until every member runs with the defect, and each undo until every member
runs as before: a check that then fails, or passes, judged the defect, not a restart in progress."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from gauntlet.bench import wait_for
from gauntlet.clients.base import ClientError
from gauntlet.clients.raftkv import RaftKVClient
from gauntlet.cluster import Cluster, Host
from gauntlet.nemesis.plants.files import restore, save_and_edit

GROUP = "custom_server"
READY_S = 90.0


def _config_file(host: Host) -> str:
    """The server's config file, where the role renders it (custom_server_config_file)."""
    return str(host.setting("custom_server_config_file"))


def _unit(host: Host) -> str:
    """The server's systemd unit (custom_server_service_name)."""
    return str(host.setting("custom_server_service_name"))


def _client(cluster: Cluster, anonymous: bool = False) -> RaftKVClient:
    """A client of every member, one attempt per request; ``anonymous``: presenting no certificate."""
    kw: dict[str, Any] = {"client_cert": None} if anonymous else {}
    return RaftKVClient.from_cluster(cluster, GROUP, timeout=5.0, connect_timeout=2.0, retry_for=0, **kw)


def _edit_and_restart(cluster: Cluster, edit: Callable[[str], str]) -> None:
    """On every member: keep the config file's original beside it (once: a second plant keeps the first
    original), apply ``edit(path)`` (a shell command), restart the unit; then wait until all are ready."""
    for h in cluster.group(GROUP):
        path = _config_file(h)
        save_and_edit(h, path, edit(path))
    for h in cluster.group(GROUP):
        h.run(f"systemctl restart {shlex.quote(_unit(h))}", check=True, timeout=60)
    _client(cluster).wait_for_ready(READY_S)


def _restore_and_restart(cluster: Cluster) -> None:
    """Every member's config file back as the role wrote it (where a plant kept it), the unit restarted;
    wait until all are ready."""
    for h in cluster.group(GROUP):
        if restore(h, _config_file(h)):
            h.run(f"systemctl restart {shlex.quote(_unit(h))}", check=True, timeout=60)
    _client(cluster).wait_for_ready(READY_S)


# -- [raft] knobs: local reads, local ids ------------------------------------------------------------------
def _raft_values(cluster: Cluster, knob: str, default: str) -> set[str | None]:
    """What every member's /cluster says of the ``[raft]`` knob ``knob`` (None: a member did not answer)."""
    kv = _client(cluster)
    values: set[str | None] = set()
    for m in kv.members:
        try:
            values.add(kv.status(m.name).get(knob, default))
        except ClientError:
            values.add(None)
    return values


def _set_raft_knob(cluster: Cluster, knob: str, value: str) -> None:
    """``[raft] knob = "value"`` in every member's config file (kept original beside it), restarted."""
    q = shlex.quote

    def edit(path: str) -> str:
        line = f'{knob} = "{value}"'
        append = "/^\\[raft\\]/a " + line
        return (
            f"sed -i '/^{knob} *=/d' {q(path)} && "
            f"if grep -q '^\\[raft\\]' {q(path)}; then sed -i {q(append)} {q(path)}; "
            f"else printf '\\n[raft]\\n%s\\n' {q(line)} >> {q(path)}; fi"
        )

    _edit_and_restart(cluster, edit)
    wait_for(lambda: _raft_values(cluster, knob, "") == {value}, 30, 0.5, f"every member with {knob} {value}")


def _restore_raft_knob(cluster: Cluster, knob: str, default: str) -> None:
    """The role's config back on every member; wait until all report the knob's default again."""
    _restore_and_restart(cluster)
    wait_for(
        lambda: _raft_values(cluster, knob, default) == {default},
        30,
        0.5,
        f"every member with {knob} {default}",
    )


def local_reads(cluster: Cluster) -> None:
    """``[raft] read_mode = "local"`` on every member: ordinary GETs answer from the member's own copy."""
    _set_raft_knob(cluster, "read_mode", "local")


def linearizable_reads(cluster: Cluster) -> None:
    """The role's config back on every member; wait until all read through the log again."""
    _restore_raft_knob(cluster, "read_mode", "linearizable")


def local_ids(cluster: Cluster) -> None:
    """``[raft] id_mode = "local"`` on every member: ``/next-id`` from each member's own counter."""
    _set_raft_knob(cluster, "id_mode", "local")


def replicated_ids(cluster: Cluster) -> None:
    """The role's config back on every member; wait until ids go through the log again."""
    _restore_raft_knob(cluster, "id_mode", "replicated")


def local_writes(cluster: Cluster) -> None:
    """``[raft] write_mode = "local"`` on every member: a PUT that cannot commit is acknowledged anyway."""
    _set_raft_knob(cluster, "write_mode", "local")


def replicated_writes(cluster: Cluster) -> None:
    """The role's config back on every member; wait until every PUT waits for its commit again."""
    _restore_raft_knob(cluster, "write_mode", "replicated")


# -- clients without a certificate -----------------------------------------------------------------------
def _anonymous_served(cluster: Cluster) -> list[bool]:
    """For each member: whether a client presenting no certificate gets an answer."""
    kv = _client(cluster, anonymous=True)
    out = []
    for m in kv.members:
        try:
            kv.health(m.name)
            out.append(True)
        except ClientError:
            out.append(False)
    return out


def optional_client_certs(cluster: Cluster) -> None:
    """``[tls] client_auth = "optional"`` on every member: a client without a certificate is served (one
    that presents a certificate must still present a valid one)."""
    q = shlex.quote

    def edit(path: str) -> str:
        return (
            f"grep -q '^client_auth *=' {q(path)} && "
            f"sed -i 's/^client_auth *=.*/client_auth = \"optional\"/' {q(path)}"
        )

    _edit_and_restart(cluster, edit)
    wait_for(lambda: all(_anonymous_served(cluster)), 30, 0.5, "every member serving anonymous clients")


def required_client_certs(cluster: Cluster) -> None:
    """The role's TLS config back on every member; wait until each refuses a client without a certificate."""
    _restore_and_restart(cluster)
    wait_for(
        lambda: not any(_anonymous_served(cluster)), 30, 0.5, "every member refusing anonymous clients again"
    )
