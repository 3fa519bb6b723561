"""The per-node TOML configuration (what the gauntlet.cluster ``custom_server`` role renders).

The role fills ``node_id``, ``data_dir``, ``listen``, ``advertise``, ``peers`` and ``tls`` from the
inventory; ``runner``, ``etcd`` and ``postgres`` come from ``custom_server_config``::

    node_id = "runner1"
    [listen]
    client = "0.0.0.0:8443"        # HTTP(S) API (listen.peer is ignored: runners talk over the API)
    [advertise]
    client = "10.89.0.5:8443"      # how the other runners reach this one (requests are forwarded there)
    [[peers]]                      # every runner, this one included
    id = "runner1"
    client = "10.89.0.5:8443"
    [tls]                          # the API's certificate; also the client certificate towards etcd and peers
    ca_file = "/etc/custom-server/tls/ca.crt"
    cert_file = "/etc/custom-server/tls/node.crt"
    key_file = "/etc/custom-server/tls/node.key"
    client_auth = "require"

    [runner]
    shards = 32                    # fixed number of shards; an entity's shard is crc32(id) % shards
    lease_ttl = 3                  # s: the etcd lease every ownership key of this runner is attached to
    keepalive_interval = 1.0       # s between keepalives of that lease
    keepalive_timeout = 2.0        # s without a successful keepalive before the runner gives up its shards
    rebalance_interval = 0.5       # s between looks at the runners and the shard map
    timer_interval = 0.2           # s between scans for due timers
    fencing = true                 # false: writes skip the fencing-token check (a planted defect)
    inherit_timers = true          # false: a new owner fires only timers scheduled after it took their shard (a planted defect)
    durable_state = true           # false: entity state is never read back from PostgreSQL, only kept in memory (a planted defect)

    [etcd]
    endpoints = ["https://10.89.0.5:2379"]
    prefix = "/gauntlet-runner"

    [postgres]
    host = "10.89.0.9"
    port = 5432
    dbname = "gauntlet"
    user = "gauntlet"
    password = "..."               # or password_file
    sslmode = "verify-full"        # against [tls] ca_file
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration is missing something or holds a wrong value; the message says which."""


@dataclass(frozen=True)
class Peer:
    """One runner: its id and API address (``host:port``)."""

    id: str
    client: str


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    ca_file: str = ""
    client_auth: str = "none"


@dataclass(frozen=True)
class RunnerConfig:
    shards: int = 32
    lease_ttl: int = 3
    keepalive_interval: float = 1.0
    keepalive_timeout: float = 2.0
    rebalance_interval: float = 0.5
    timer_interval: float = 0.2
    fencing: bool = True
    inherit_timers: bool = True
    durable_state: bool = True


@dataclass(frozen=True)
class EtcdConfig:
    endpoints: tuple[str, ...]
    prefix: str = "/gauntlet-runner"
    timeout: float = 2.0


@dataclass(frozen=True)
class PostgresConfig:
    host: str
    port: int = 5432
    dbname: str = "gauntlet"
    user: str = "gauntlet"
    password: str = ""
    sslmode: str = "verify-full"
    connect_timeout: int = 3
    statement_timeout_ms: int = 5000
    pool_size: int = 8


@dataclass(frozen=True)
class Config:
    node_id: str
    data_dir: Path
    listen_client: str
    advertise_client: str
    peers: tuple[Peer, ...]
    tls: TLSConfig | None
    etcd: EtcdConfig
    postgres: PostgresConfig
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    log_level: str = "info"


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: the [{name}] table is required")
    return dict(value)


def _known(cls: type, raw: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    return raw


def _hostport(value: Any, where: str) -> str:
    text = str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{where}: '{text}' is not host:port")
    return text


def parse(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document into a :class:`Config`; one :class:`ConfigError` per mistake."""
    if "node_id" not in data:
        raise ConfigError(f"{source}: node_id is required")
    node_id = str(data["node_id"])
    listen = data.get("listen") or {}
    if "client" not in listen:
        raise ConfigError(f"{source} [listen]: client is required")
    listen_client = _hostport(listen["client"], f"{source} [listen] client")
    peers = tuple(
        Peer(id=str(p["id"]), client=_hostport(p["client"], f"{source} [[peers]] {p.get('id')}"))
        for p in data.get("peers") or []
    )
    me = next((p for p in peers if p.id == node_id), None)
    if me is None:
        raise ConfigError(f"{source}: node_id '{node_id}' is not among the [[peers]] {[p.id for p in peers]}")
    advertise = _hostport((data.get("advertise") or {}).get("client", me.client), f"{source} [advertise]")
    tls_raw = data.get("tls") or {}
    tls = None
    if tls_raw.get("cert_file"):
        tls = TLSConfig(
            cert_file=str(tls_raw["cert_file"]),
            key_file=str(tls_raw.get("key_file", "")),
            ca_file=str(tls_raw.get("ca_file", "")),
            client_auth=str(tls_raw.get("client_auth", "none")),
        )
        if tls.client_auth not in ("require", "optional", "none"):
            raise ConfigError(f"{source} [tls] client_auth must be require, optional or none")
    runner = RunnerConfig(**_known(RunnerConfig, dict(data.get("runner") or {}), f"{source} [runner]"))
    if runner.shards < 1:
        raise ConfigError(f"{source} [runner] shards must be at least 1")
    if not runner.keepalive_interval < runner.keepalive_timeout < runner.lease_ttl:
        raise ConfigError(
            f"{source} [runner]: keepalive_interval < keepalive_timeout < lease_ttl must hold (a runner gives "
            "up its shards before etcd lets another take them)"
        )
    etcd_raw = _known(EtcdConfig, _table(data, "etcd", source), f"{source} [etcd]")
    endpoints = etcd_raw.pop("endpoints", None)
    if not endpoints or not isinstance(endpoints, list):
        raise ConfigError(f"{source} [etcd] endpoints: a list of https://host:port URLs is required")
    etcd = EtcdConfig(endpoints=tuple(str(e).rstrip("/") for e in endpoints), **etcd_raw)
    pg_raw = _table(data, "postgres", source)
    password_file = pg_raw.pop("password_file", None)
    _known(PostgresConfig, pg_raw, f"{source} [postgres]")
    if password_file:
        pg_raw["password"] = Path(str(password_file)).read_text(encoding="utf-8").strip()
    if "host" not in pg_raw:
        raise ConfigError(f"{source} [postgres] host is required")
    postgres = PostgresConfig(**pg_raw)
    return Config(
        node_id=node_id,
        data_dir=Path(str(data.get("data_dir", "/var/lib/custom-server"))),
        listen_client=listen_client,
        advertise_client=advertise,
        peers=peers,
        tls=tls,
        etcd=etcd,
        postgres=postgres,
        runner=runner,
        log_level=str(data.get("log_level", "info")),
    )


def load(path: str | Path) -> Config:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return parse(data, str(p))
