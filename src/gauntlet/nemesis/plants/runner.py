"""Defects planted in a running runners topology (the reference entity-runtime server, servers/runner,
deployed by the custom_server role): a knob of the server's own configuration ([runner] fencing,
inherit_timers, durable_state) turned off on every member, over
each host's own connection. The file and the unit are the role's (its defaults, or the inventory's values),
never restated here. The plant waits until every member answers its health URL again after the restart, and
so does the undo: a check that then fails, or passes, judged the defect, not a restart in progress."""

from __future__ import annotations

import shlex

from gauntlet.bench import wait_for
from gauntlet.clients.declared import DeclaredClient, spec_of
from gauntlet.cluster import Cluster, Host
from gauntlet.nemesis.plants.files import restore, save_and_edit

GROUP = "custom_server"
READY_S = 90.0
#: The table of the runner's own settings in its config file (custom_server_config.runner).
TABLE = "runner"


def _config_file(host: Host) -> str:
    """The server's config file, where the role renders it (custom_server_config_file)."""
    return str(host.setting("custom_server_config_file"))


def _unit(host: Host) -> str:
    """The server's systemd unit (custom_server_service_name)."""
    return str(host.setting("custom_server_service_name"))


def set_in_table_command(path: str, table: str, key: str, value: str) -> str:
    """A shell command that sets ``key = value`` (``value`` a TOML literal) in the ``[table]`` of the TOML
    file ``path`` -- replaced where the table has the key, else added under the table's header -- and then
    fails unless the file parses (python3's tomllib) with that value there."""
    q = shlex.quote
    header = f"^\\[{table}\\]"
    line = f"{key} = {value}"
    in_table = f"/{header}/,/^\\[/"  # from the table's header to the next header
    has_key = f"{in_table} p"
    replace = f"{in_table} s/^{key} *=.*/{line}/"
    add = f"/{header}/a {line}"
    verify = (
        "import sys, tomllib\n"
        "path, table, key, want = sys.argv[1:]\n"
        "got = tomllib.load(open(path, 'rb')).get(table, {}).get(key)\n"
        "want = tomllib.loads('v = ' + want)['v']\n"
        "if got != want or type(got) is not type(want):\n"
        "    sys.exit(f'{path}: [{table}] {key} is {got!r}, not {want!r}')\n"
    )
    return (
        f"grep -q {q(header)} {q(path)} && "
        f"if sed -n {q(has_key)} {q(path)} | grep -q {q(f'^{key} *=')}; "
        f"then sed -i {q(replace)} {q(path)}; else sed -i {q(add)} {q(path)}; fi && "
        f"python3 -c {q(verify)} {q(path)} {q(table)} {q(key)} {q(value)}"
    )


def _client(cluster: Cluster) -> DeclaredClient:
    """A client of every member, as the inventory declares the runner's API, one attempt per request."""
    return DeclaredClient.from_cluster(
        cluster, spec_of(cluster, GROUP), timeout=5.0, connect_timeout=2.0, retry_for=0
    )


def _healthy(client: DeclaredClient) -> dict[str, str]:
    """Each member whose health answer is not ok yet, with what it answered."""
    out: dict[str, str] = {}
    for m in client.members:
        try:
            ok, body = client.health(m.name)
        except Exception as exc:  # a member still starting refuses connections: not ready yet
            out[m.name] = str(exc)
            continue
        if not ok:
            out[m.name] = str(body)[:200]
    return out


def wait_until_healthy(cluster: Cluster, timeout: float = READY_S) -> None:
    """Wait until every member answers its health URL (GET /health) ok; the error names who did not."""
    client = _client(cluster)
    last: dict[str, str] = {}

    def ready() -> bool:
        last.clear()
        last.update(_healthy(client))
        return not last

    try:
        wait_for(ready, timeout, 0.5, f"every {GROUP} member healthy")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; not healthy: {last}") from exc
    finally:
        client.close()


def _restart(host: Host) -> None:
    host.run(f"systemctl restart {shlex.quote(_unit(host))}", check=True, timeout=60)


def _set_knob(cluster: Cluster, key: str, value: str) -> None:
    """``[runner] key = value`` on every member (the role's file kept beside it), each restarted; wait until
    every member is healthy again."""
    for h in cluster.group(GROUP):
        path = _config_file(h)
        save_and_edit(h, path, set_in_table_command(path, TABLE, key, value))
    for h in cluster.group(GROUP):
        _restart(h)
    wait_until_healthy(cluster)


def no_fencing(cluster: Cluster) -> None:
    """``[runner] fencing = false``: writes skip the fencing-token check, so a stale owner's write lands."""
    _set_knob(cluster, "fencing", "false")


def timers_not_inherited(cluster: Cluster) -> None:
    """``[runner] inherit_timers = false``: a runner that takes a shard fires only the timers scheduled after
    it took it, so a dead runner's pending timers never fire."""
    _set_knob(cluster, "inherit_timers", "false")


def state_in_memory(cluster: Cluster) -> None:
    """``[runner] durable_state = false``: entity state is written to PostgreSQL but never read back, so a
    runner that restarts (or takes a shard) starts every counter from nothing."""
    _set_knob(cluster, "durable_state", "false")


def config_restored(cluster: Cluster) -> None:
    """Every member's config file back as the role wrote it (where the plant kept it), restarted; wait until
    every member is healthy again (the undo of every runner defect)."""
    for h in cluster.group(GROUP):
        if restore(h, _config_file(h)):
            _restart(h)
    wait_until_healthy(cluster)
