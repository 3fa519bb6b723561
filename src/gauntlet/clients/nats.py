"""Client of a NATS JetStream cluster (role gauntlet.cluster.nats) over TLS with a client certificate, on nats-py.

nats-py is asyncio-only; this client runs one event loop in a daemon thread of its own and offers a
synchronous facade (every call submits a coroutine to that loop and waits, bounded), like the other clients.
It keeps one connection per member, opened on first use, without nats-py's reconnects (a call says which
member answered, and a lost connection is reopened on the next call). Operations can be recorded into a
:class:`~gauntlet.history.History`, classified as Jepsen does:

- publish with acknowledgement (f ``publish``): ``ok`` with the stream sequence of the PubAck; ``fail`` when
  the server certainly did not store the message: the connection could not be opened (nothing was sent),
  no responders (no stream leader was subscribed to the subject: nobody received it), or the stream leader
  answered with a JetStream API error (it refused the message); ``info`` on a timeout or a connection lost
  after sending (the message may be stored and replicated without its ack reaching us).
- fetch from a durable pull consumer (f ``fetch``): ``ok`` with ``[(stream_seq, data), ...]`` (empty when no
  message came within the wait), every message acked; any error is ``fail`` (nothing is published by a
  fetch; a message fetched and not acked is delivered again, which the queue checker counts as a duplicate).

``read_log(member)``: the whole stream as one replica holds it. nats-server 2.9 has direct gets
(``allow_direct``, ``$JS.API.DIRECT.GET.<stream>``), but every current replica answers them in one queue group
and a request from a client goes to a random member of it (local subscribers are preferred only for messages
arriving over a route), and the reply does not say which replica answered: no way to read one replica. So
the replica's own message blocks are read on the host (``<store_dir>/jetstream/<account>/streams/<stream>/
msgs/*.blk``, over the host's connection) and parsed here (:func:`parse_block`): what that member stored and
wrote to its files, erased records left out. nats-server writes each stored message to its block file at once
(no fsync: that is the sync interval), so a running member's files hold what it has applied.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from gauntlet.clients.base import ClientError, Fail, Info, Result, record
from gauntlet.history import History

T = TypeVar("T")

#: Slack on top of an operation's own timeout before the facade gives up waiting for the loop.
FACADE_SLACK_S = 5.0


@dataclass(frozen=True)
class Member:
    """One NATS server: its name (inventory host, = server_name) and the address:port of its client port."""

    name: str
    host: str
    port: int = 4222


@dataclass(frozen=True)
class StoredMsg:
    """One message record of a JetStream message block."""

    seq: int
    subject: str
    data: bytes
    headers: bytes = b""
    timestamp_ns: int = 0


class BlockFormatError(ValueError):
    """A message block that does not parse (truncated or corrupted record)."""


# Block record (nats-server 2.9 filestore.go, writeMsgRecord), little-endian:
#   total_len u32 (high bit: has headers) | seq u64 (high bit: erased) | ts i64 | subj_len u16 | subj
#   | [hdr_len u32 | hdr] | msg | hash 8 bytes          total_len counts every byte of the record.
_RECORD_HEADER = struct.Struct("<IQqH")
_HAS_HEADERS = 1 << 31
_ERASED = 1 << 63
_HASH_LEN = 8


def parse_block(buf: bytes) -> list[StoredMsg]:
    """The messages of one message block, in file order; erased records (and seq 0) are skipped. The
    records' checksums (a keyed highwayhash) are not verified. Raises :class:`BlockFormatError` on a record
    that runs past the end of the buffer or whose lengths do not add up (a truncated or corrupted file)."""
    out: list[StoredMsg] = []
    i = 0
    while i < len(buf):
        if i + _RECORD_HEADER.size > len(buf):
            raise BlockFormatError(f"truncated record header at byte {i} of {len(buf)}")
        raw_len, raw_seq, ts, slen = _RECORD_HEADER.unpack_from(buf, i)
        has_headers = bool(raw_len & _HAS_HEADERS)
        rl = raw_len & ~_HAS_HEADERS
        body = rl - _RECORD_HEADER.size - _HASH_LEN
        if body < slen or i + rl > len(buf):
            raise BlockFormatError(
                f"bad record at byte {i}: length {rl}, subject length {slen}, {len(buf)} bytes"
            )
        seq = raw_seq & ~_ERASED
        if raw_seq & _ERASED or seq == 0:
            i += rl
            continue
        p = i + _RECORD_HEADER.size
        subject = buf[p : p + slen].decode(errors="replace")
        p += slen
        end = i + rl - _HASH_LEN
        headers = b""
        if has_headers:
            if p + 4 > end:
                raise BlockFormatError(f"bad header length at byte {p}")
            (hlen,) = struct.unpack_from("<I", buf, p)
            p += 4
            if p + hlen > end:
                raise BlockFormatError(f"header of {hlen} bytes runs past record end at byte {p}")
            headers = buf[p : p + hlen]
            p += hlen
        out.append(StoredMsg(seq, subject, buf[p:end], headers, ts))
        i += rl
    return out


def parse_blocks(blocks: list[tuple[int, bytes]]) -> list[StoredMsg]:
    """Messages of several blocks given as ``(block index, content)``, in block order, one per sequence
    (a record written twice, as after a rebuild, is kept once: the later one)."""
    by_seq: dict[int, StoredMsg] = {}
    for _, content in sorted(blocks):
        for m in parse_block(content):
            by_seq[m.seq] = m
    return [by_seq[s] for s in sorted(by_seq)]


def block_listing_command(store_dir: str, account: str, stream: str) -> str:
    """Shell command that prints one line per message block of the stream: ``<index> <base64 content>``."""
    d = f"{store_dir}/jetstream/{account}/streams/{stream}/msgs"
    return (
        f"cd {d} && for f in $(ls | grep -E '^[0-9]+\\.blk$' | sort -n); do "
        'printf "%s " "${f%.blk}"; base64 -w0 "$f"; echo; done'
    )


def parse_block_listing(text: str) -> list[tuple[int, bytes]]:
    """The output of :func:`block_listing_command` as ``(block index, content)`` pairs."""
    out: list[tuple[int, bytes]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        index, _, content = line.partition(" ")
        out.append((int(index), base64.b64decode(content)))
    return out


def publish_error(exc: BaseException, member: str) -> ClientError:
    """The protocol's error for a failed publish after the connection was open: :class:`Fail` when the
    server certainly did not store it (no responders; a JetStream API error reply from the stream leader),
    :class:`Info` for anything else (a timeout or a lost connection after sending)."""
    if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
        return Fail("no responders: no stream leader for the subject", member)
    if isinstance(exc, nats.js.errors.APIError):
        return Fail(f"JetStream refused: {exc}", member, exc.code)
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        return Info("no acknowledgement in time", member)
    return Info(f"{type(exc).__name__}: {exc}", member)


class NatsClient:
    """Talks to the members of one NATS cluster as one user, over TLS with a client certificate.

    ``cert``/``key`` may be ``None`` (no client certificate: the servers must refuse). ``run(member,
    command) -> stdout`` runs a shell command on a member's host (``lambda m, c: cluster.run(m, c,
    check=True).stdout``); only :meth:`read_log` needs it.
    """

    def __init__(
        self,
        members: list[Member],
        ca: str | Path,
        user: str,
        password: str,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        run: Callable[[str, str], str] | None = None,
        account: str = "APP",
        store_dir: str = "/var/lib/nats",
    ) -> None:
        if not members:
            raise ValueError("a NATS client needs at least one member")
        self.members = {m.name: m for m in members}
        self.user = user
        self.password = password
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.run = run
        self.account = account
        self.store_dir = store_dir
        self._ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        if cert:
            self._ctx.load_cert_chain(str(cert), str(key) if key else None)
        self._conns: dict[str, NATS] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-client-loop", daemon=True)
        self._thread.start()

    # -- the loop --------------------------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout + FACADE_SLACK_S)
        except TimeoutError:
            # The loop did not finish the call in time (a connect to a dead member, an ack that never came):
            # it may or may not have taken effect. An outcome, not a crash of the caller's thread.
            fut.cancel()
            raise Info(f"no answer within {timeout + FACADE_SLACK_S:.0f}s (call cancelled)") from None

    def close(self) -> None:
        """Close every connection and stop the loop."""

        async def close_all() -> None:
            for nc in list(self._conns.values()):
                with contextlib.suppress(Exception):  # closing a dead connection: nothing left to do
                    await nc.close()
            self._conns.clear()

        if self._loop.is_running():
            try:
                self._call(close_all(), self.timeout)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)

    def __enter__(self) -> NatsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _conn(self, member: str) -> NATS:
        nc = self._conns.get(member)
        if nc is not None and nc.is_connected:
            return nc
        m = self.members[member]

        async def quiet(_: Exception) -> None:  # nats-py logs every error of a lost connection otherwise
            return None

        try:
            # nats-py's first connect retries a refused server for ever whatever allow_reconnect says (seen
            # here: max_reconnect_attempts=0 means no limit), so one attempt is bounded from outside.
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=[f"tls://{m.host}:{m.port}"],
                    tls=self._ctx,
                    user=self.user,
                    password=self.password,
                    connect_timeout=self.connect_timeout,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    dont_randomize=True,
                    error_cb=quiet,
                    name="gauntlet",
                ),
                self.connect_timeout + 1.0,
            )
        except Exception as exc:  # nothing was sent: any operation that needed it certainly did not happen
            raise Fail(f"cannot connect to {m.host}:{m.port}: {type(exc).__name__}: {exc}", member) from exc
        self._conns[member] = nc
        return nc

    # -- operations ------------------------------------------------------------------------------------------
    def publish(self, member: str, subject: str, data: bytes, timeout: float | None = None) -> int:
        """Publish through ``member`` and wait for the stream's acknowledgement; the stream sequence."""
        t = timeout or self.timeout

        async def go() -> int:
            nc = await self._conn(member)
            try:
                ack = await nc.jetstream(timeout=t).publish(subject, data, timeout=t)
            except Exception as exc:
                raise publish_error(exc, member) from exc
            return int(ack.seq)

        return self._call(go(), t)

    def add_stream(
        self, member: str, name: str, subjects: list[str], replicas: int = 3, allow_direct: bool = True
    ) -> dict[str, Any]:
        """Create (or update to the same config) a file-backed stream; its info as a dict."""

        async def go() -> dict[str, Any]:
            nc = await self._conn(member)
            cfg = StreamConfig(
                name=name,
                subjects=subjects,
                num_replicas=replicas,
                storage=StorageType.FILE,
                allow_direct=allow_direct,
            )
            try:
                si = await nc.jetstream(timeout=self.timeout).add_stream(cfg)
            except Exception as exc:
                raise Info(f"add_stream: {type(exc).__name__}: {exc}", member) from exc
            return dict(si.as_dict())

        return self._call(go(), self.timeout)

    def stream_info(self, member: str, name: str) -> dict[str, Any]:
        """``$JS.API.STREAM.INFO`` through ``member`` (answered by the stream leader) as a dict."""

        async def go() -> dict[str, Any]:
            nc = await self._conn(member)
            try:
                si = await nc.jetstream(timeout=self.timeout).stream_info(name)
            except Exception as exc:
                raise Fail(f"stream_info: {type(exc).__name__}: {exc}", member) from exc
            return dict(si.as_dict())

        return self._call(go(), self.timeout)

    def stream_leader(self, member: str, name: str) -> str | None:
        """The server name of the stream's leader, as the stream info through ``member`` says."""
        cluster = self.stream_info(member, name).get("cluster") or {}
        leader = cluster.get("leader")
        return str(leader) if leader else None

    def add_durable(self, member: str, stream: str, durable: str, replicas: int = 0) -> None:
        """Create a durable pull consumer on ``stream`` (explicit acks, delivering from the first message;
        ``replicas`` 0: as many as the stream)."""

        async def go() -> None:
            nc = await self._conn(member)
            cfg = ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, num_replicas=replicas or None
            )
            try:
                await nc.jetstream(timeout=self.timeout).add_consumer(stream, cfg)
            except Exception as exc:
                raise Info(f"add_consumer: {type(exc).__name__}: {exc}", member) from exc

        self._call(go(), self.timeout)

    def fetch(
        self, member: str, stream: str, durable: str, batch: int = 100, wait: float = 1.0
    ) -> list[tuple[int, bytes]]:
        """Up to ``batch`` messages from the durable pull consumer, each acked: ``[(stream_seq, data)]``
        (empty when none came within ``wait`` seconds)."""

        async def go() -> list[tuple[int, bytes]]:
            nc = await self._conn(member)
            try:
                sub = await nc.jetstream(timeout=self.timeout).pull_subscribe_bind(durable, stream=stream)
                try:
                    msgs = await sub.fetch(batch, timeout=wait)
                except nats.errors.TimeoutError:
                    return []
                out = []
                for msg in msgs:
                    out.append((int(msg.metadata.sequence.stream), bytes(msg.data)))
                    await msg.ack()
                await sub.unsubscribe()
                return out
            except ClientError:
                raise
            except Exception as exc:
                raise Fail(f"fetch: {type(exc).__name__}: {exc}", member) from exc

        return self._call(go(), self.timeout + wait)

    def direct_get(self, member: str, stream: str, seq: int) -> tuple[int, bytes] | None:
        """``$JS.API.DIRECT.GET`` of one sequence through ``member`` (answered by ANY current replica: see the
        module notes); ``None`` when the answering replica does not have it."""

        async def go() -> tuple[int, bytes] | None:
            nc = await self._conn(member)
            try:
                msg = await nc.jetstream(timeout=self.timeout).get_msg(stream, seq=seq, direct=True)
            except nats.js.errors.NotFoundError:
                return None
            except Exception as exc:
                raise Fail(f"direct get: {type(exc).__name__}: {exc}", member) from exc
            return int(msg.seq or seq), bytes(msg.data or b"")

        return self._call(go(), self.timeout)

    def read_log(self, member: str, stream: str) -> list[tuple[int, bytes]]:
        """The whole stream as ``member``'s replica holds it in its message blocks: ``[(seq, data)]`` in
        sequence order (needs ``run``)."""
        if self.run is None:
            raise ValueError("read_log needs run(member, command): the blocks are read on the host")
        listing = self.run(member, block_listing_command(self.store_dir, self.account, stream))
        return [(m.seq, m.data) for m in parse_blocks(parse_block_listing(listing))]

    # -- recorded operations ---------------------------------------------------------------------------------
    def recorded_publish(
        self, history: History | None, process: str, member: str, subject: str, data: bytes
    ) -> Result:
        """:meth:`publish`, recorded as f ``publish`` with the payload (text) as value; an ``ok`` completion's
        value is the acknowledgement ``{"seq": stream sequence}`` (the queue checker's convention)."""
        return record(
            history,
            process,
            "publish",
            lambda: {"seq": self.publish(member, subject, data)},
            value=data.decode(errors="replace"),
            key=subject,
            returns_value=True,
        )

    def recorded_fetch(
        self,
        history: History | None,
        process: str,
        member: str,
        stream: str,
        durable: str,
        batch: int = 100,
        wait: float = 1.0,
    ) -> Result:
        """:meth:`fetch`, recorded as f ``consume`` keyed by the durable (the queue checker's convention); an
        ``ok`` completion's value is ``[[seq, payload], ...]`` in delivery order."""
        return record(
            history,
            process,
            "consume",
            lambda: [
                [seq, data.decode(errors="replace")]
                for seq, data in self.fetch(member, stream, durable, batch, wait)
            ],
            key=durable,
            returns_value=True,
            read_only=True,
        )

    def recorded_read_log(self, history: History | None, member: str, stream: str) -> Result:
        """:meth:`read_log`, recorded as f ``read_log`` naming the replica (the queue checker's final read);
        an ``ok`` completion's value is ``[[seq, payload], ...]``."""
        return record(
            history,
            f"read-log-{member}",
            "read_log",
            lambda: [[seq, data.decode(errors="replace")] for seq, data in self.read_log(member, stream)],
            value=member,
            key=stream,
            returns_value=True,
            read_only=True,
        )


def for_cluster(
    cluster: Any, group: str = "nats", client: str | None = "gauntlet-client", **kwargs: Any
) -> NatsClient:
    """A :class:`NatsClient` for the members of ``group`` of a :class:`~gauntlet.cluster.Cluster`, as the
    role set them up: its client port, application user and generated password, the tests' client
    certificate (``client=None``: none), ``run`` over each host's own connection."""
    port = int(cluster.setting("nats_client_port", group))
    members = [Member(h.name, h.address, port) for h in cluster.group(group)]
    cert, key = cluster.client_cert(client) if client else (None, None)
    return NatsClient(
        members,
        cluster.ca_cert,
        user=str(cluster.setting("nats_app_user", group)),
        password=cluster.secret("nats_app_password", group),
        cert=cert,
        key=key,
        run=lambda m, c: str(cluster.run(m, c, check=True).stdout),
        account=str(cluster.setting("nats_app_account", group)),
        store_dir=str(cluster.setting("nats_data_dir", group)),
        **kwargs,
    )


__all__ = [
    "BlockFormatError",
    "Member",
    "NatsClient",
    "StoredMsg",
    "block_listing_command",
    "for_cluster",
    "parse_block",
    "parse_block_listing",
    "parse_blocks",
    "publish_error",
]
