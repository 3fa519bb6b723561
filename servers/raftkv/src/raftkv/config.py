"""The per-node TOML configuration (what the gauntlet.cluster ``custom_server`` role renders).

Example (every key the server reads; the role fills ``node_id``, ``data_dir``, ``listen``, ``advertise``,
``peers`` and ``tls`` from the inventory and adds ``raft`` from ``custom_server_config``)::

    node_id = "node1"
    data_dir = "/var/lib/custom-server"
    log_level = "info"

    [listen]                      # where this node binds
    client = "0.0.0.0:8443"       # HTTP(S) API
    peer = "0.0.0.0:7480"         # Raft traffic

    [advertise]                   # how the other nodes reach this one (must match its entry in peers)
    client = "10.89.0.5:8443"
    peer = "10.89.0.5:7480"

    [[peers]]                     # every member, this node included
    id = "node1"
    client = "10.89.0.5:8443"
    peer = "10.89.0.5:7480"

    [tls]                         # omit (or leave cert_file empty) for plain HTTP
    ca_file = "/etc/custom-server/tls/ca.crt"
    cert_file = "/etc/custom-server/tls/node.crt"
    key_file = "/etc/custom-server/tls/node.key"
    client_auth = "require"       # require | optional | none  (mTLS for API clients)

    [raft]
    password = "..."              # or password_file: encrypts + authenticates peer traffic (see README)
    commit_timeout = 5.0          # seconds a request waits for its log entry; then 504 (outcome unknown)
    election_timeout_min = 0.4
    election_timeout_max = 1.4
    heartbeat_interval = 0.1
    connection_timeout = 2.0      # no data from a peer for this long: the connection is dead
    leader_fallback_timeout = 2.0 # a leader without a majority for this long steps down
    read_mode = "linearizable"    # linearizable | local: "local" answers every GET from this node's copy
    id_mode = "replicated"        # replicated | local: "local" hands out /next-id from this node's counter
    write_mode = "replicated"     # replicated | local: "local" acknowledges a PUT it cannot commit, alone
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ``[raft] read_mode``: what an ordinary (non-stale) GET does.
READ_MODES = ("linearizable", "local")
#: ``[raft] id_mode``: where ``/next-id`` comes from.
ID_MODES = ("replicated", "local")
#: ``[raft] write_mode``: what a PUT does when its log entry cannot commit.
WRITE_MODES = ("replicated", "local")


class ConfigError(ValueError):
    """The configuration file is missing something or holds a wrong value; the message says which."""


@dataclass(frozen=True)
class Peer:
    """One cluster member: its id, its API address and its Raft address (``host:port``)."""

    id: str
    client: str
    peer: str


@dataclass(frozen=True)
class TLSConfig:
    """Server certificate for the API, and whether clients must present one signed by ``ca_file``."""

    cert_file: str
    key_file: str
    ca_file: str = ""
    client_auth: str = "none"


@dataclass(frozen=True)
class RaftConfig:
    """Raft tunables (pysyncobj's SyncObjConf) and the peer-traffic password."""

    password: str | None = None
    commit_timeout: float = 5.0
    election_timeout_min: float = 0.4
    election_timeout_max: float = 1.4
    heartbeat_interval: float = 0.1
    connection_timeout: float = 2.0
    leader_fallback_timeout: float = 2.0
    log_compaction_min_entries: int = 5000
    log_compaction_min_time: float = 300.0
    allow_unencrypted_peers: bool = False
    # "linearizable": a GET is a Raft log entry (the default). "local": every GET answers from this node's
    # applied copy as ?stale=1 does -- faster, but a member cut off from the majority serves old values.
    read_mode: str = "linearizable"
    # "replicated": /next-id is a Raft log entry (the default). "local": this node's own counter -- two
    # members hand out the same id (a defect the unique-ids workload is proven to catch).
    id_mode: str = "replicated"
    # "replicated": a PUT is acknowledged only once its log entry committed (the default). "local": a PUT
    # this node cannot commit (no leader, no majority, or not in time) is applied to its own copy and
    # acknowledged anyway -- availability over consistency: a member without a majority acknowledges writes
    # the majority never sees (a defect the quorum checks are proven to catch).
    write_mode: str = "replicated"


@dataclass(frozen=True)
class Config:
    """A node's whole configuration."""

    node_id: str
    data_dir: Path
    listen_client: str
    listen_peer: str
    advertise_client: str
    advertise_peer: str
    peers: tuple[Peer, ...]
    tls: TLSConfig | None
    raft: RaftConfig = field(default_factory=RaftConfig)
    log_level: str = "info"

    @property
    def others(self) -> list[Peer]:
        """Every member but this node."""
        return [p for p in self.peers if p.id != self.node_id]

    def peer_by_raft_address(self, address: str) -> Peer | None:
        return next((p for p in self.peers if p.peer == address), None)


def _require(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table or table[key] in ("", None):
        raise ConfigError(f"{where}: '{key}' is required")
    return table[key]


def _hostport(value: str, where: str) -> str:
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: '{value}' is not host:port")
    return str(value)


def parse(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML document into a :class:`Config`."""
    node_id = str(_require(data, "node_id", source))
    listen = data.get("listen", {})
    advertise = data.get("advertise", {})
    listen_client = _hostport(_require(listen, "client", f"{source} [listen]"), f"{source} [listen] client")
    listen_peer = _hostport(_require(listen, "peer", f"{source} [listen]"), f"{source} [listen] peer")
    peers_raw = data.get("peers") or []
    if not isinstance(peers_raw, list) or not peers_raw:
        raise ConfigError(f"{source}: at least one [[peers]] entry is required (this node included)")
    peers = []
    for i, p in enumerate(peers_raw):
        where = f"{source} [[peers]] #{i + 1}"
        peers.append(
            Peer(
                id=str(_require(p, "id", where)),
                client=_hostport(_require(p, "client", where), where),
                peer=_hostport(_require(p, "peer", where), where),
            )
        )
    ids = [p.id for p in peers]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: peer ids must be unique, got {ids}")
    me = next((p for p in peers if p.id == node_id), None)
    if me is None:
        raise ConfigError(f"{source}: node_id '{node_id}' is not among the peers {ids}")
    advertise_client = _hostport(advertise.get("client", me.client), f"{source} [advertise] client")
    advertise_peer = _hostport(advertise.get("peer", me.peer), f"{source} [advertise] peer")
    if advertise_peer != me.peer:
        raise ConfigError(
            f"{source}: [advertise] peer '{advertise_peer}' differs from this node's [[peers]] entry "
            f"'{me.peer}': the other members would not recognise it"
        )
    tls_raw = data.get("tls") or {}
    tls = None
    if tls_raw.get("cert_file"):
        client_auth = str(tls_raw.get("client_auth", "none"))
        if client_auth not in ("require", "optional", "none"):
            raise ConfigError(
                f"{source} [tls] client_auth must be require, optional or none, not {client_auth}"
            )
        if client_auth != "none" and not tls_raw.get("ca_file"):
            raise ConfigError(
                f"{source} [tls] client_auth = {client_auth} needs ca_file (the CA of client certs)"
            )
        tls = TLSConfig(
            cert_file=str(tls_raw["cert_file"]),
            key_file=str(_require(tls_raw, "key_file", f"{source} [tls]")),
            ca_file=str(tls_raw.get("ca_file", "")),
            client_auth=client_auth,
        )
    raft_raw = dict(data.get("raft") or {})
    password = raft_raw.pop("password", None)
    password_file = raft_raw.pop("password_file", None)
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{source} [raft] password_file: {exc}") from exc
    known = set(RaftConfig.__dataclass_fields__) - {"password"}
    unknown = set(raft_raw) - known
    if unknown:
        raise ConfigError(f"{source} [raft]: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    raft = RaftConfig(password=password or None, **raft_raw)
    if raft.read_mode not in READ_MODES:
        raise ConfigError(
            f"{source} [raft] read_mode must be {' or '.join(READ_MODES)}, not {raft.read_mode!r}"
        )
    if raft.id_mode not in ID_MODES:
        raise ConfigError(f"{source} [raft] id_mode must be {' or '.join(ID_MODES)}, not {raft.id_mode!r}")
    if raft.write_mode not in WRITE_MODES:
        raise ConfigError(
            f"{source} [raft] write_mode must be {' or '.join(WRITE_MODES)}, not {raft.write_mode!r}"
        )
    if not raft.election_timeout_min > 3 * raft.heartbeat_interval:
        raise ConfigError(f"{source} [raft]: election_timeout_min must exceed 3 x heartbeat_interval")
    if not raft.election_timeout_max > raft.election_timeout_min:
        raise ConfigError(f"{source} [raft]: election_timeout_max must exceed election_timeout_min")
    if raft.connection_timeout < raft.election_timeout_max:
        raise ConfigError(f"{source} [raft]: connection_timeout must be >= election_timeout_max")
    return Config(
        node_id=node_id,
        data_dir=Path(str(_require(data, "data_dir", source))),
        listen_client=listen_client,
        listen_peer=listen_peer,
        advertise_client=advertise_client,
        advertise_peer=advertise_peer,
        peers=tuple(peers),
        tls=tls,
        raft=raft,
        log_level=str(data.get("log_level", "info")),
    )


def load(path: str | Path) -> Config:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    return parse(data, str(p))
