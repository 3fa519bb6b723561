"""The pure parts of the NATS client: how a failed publish is classified, and the JetStream message-block
parser read_log relies on (a replica's own files: nats-server 2.9's record format, written here by hand).
No NATS server and no mock of one: the client's calls against a server are checked on hosts."""

from __future__ import annotations

import struct

import nats.errors
import nats.js.errors
import pytest

from gauntlet.clients.base import classify
from gauntlet.clients.nats import (
    BlockFormatError,
    StoredMsg,
    block_listing_command,
    parse_block,
    parse_block_listing,
    parse_blocks,
    publish_error,
)


def record(seq: int, subject: str, msg: bytes, hdr: bytes = b"", erased: bool = False, ts: int = 7) -> bytes:
    """One block record as nats-server 2.9 writes it (filestore.go writeMsgRecord), with a dummy hash."""
    body = subject.encode() + ((struct.pack("<I", len(hdr)) + hdr) if hdr else b"") + msg
    rl = 22 + len(body) + 8
    return (
        struct.pack("<IQqH", rl | (1 << 31 if hdr else 0), seq | (1 << 63 if erased else 0), ts, len(subject))
        + body
        + b"\x00" * 8
    )


def test_a_block_reads_back_its_messages() -> None:
    buf = (
        record(1, "q.a", b"m1")
        + record(2, "q.b", b"m2", hdr=b"NATS/1.0\r\nX: y\r\n\r\n")
        + record(3, "q.a", b"")
    )
    assert parse_block(buf) == [
        StoredMsg(1, "q.a", b"m1", b"", 7),
        StoredMsg(2, "q.b", b"m2", b"NATS/1.0\r\nX: y\r\n\r\n", 7),
        StoredMsg(3, "q.a", b"", b"", 7),
    ]


def test_erased_records_are_left_out() -> None:
    buf = record(1, "q", b"a") + record(2, "q", b"", erased=True) + record(3, "q", b"c")
    assert [m.seq for m in parse_block(buf)] == [1, 3]


@pytest.mark.parametrize("cut", [1, 10, 25, 30])
def test_a_truncated_block_is_an_error_not_a_shorter_log(cut: int) -> None:
    """A block cut inside its last record (the Jepsen fault) is reported, never read as one message less."""
    buf = record(1, "q", b"a") + record(2, "q", b"bbbb")
    with pytest.raises(BlockFormatError):
        parse_block(buf[:-cut])


def test_blocks_are_read_in_block_order_one_message_per_sequence() -> None:
    b1 = record(1, "q", b"a") + record(2, "q", b"b")
    b2 = record(3, "q", b"c")
    b10 = record(4, "q", b"d")
    got = parse_blocks([(10, b10), (2, b2), (1, b1)])
    assert [(m.seq, m.data) for m in got] == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]


def test_the_listing_round_trips() -> None:
    import base64

    text = f"1 {base64.b64encode(b'xyz').decode()}\n\n12 {base64.b64encode(b'').decode()}\n"
    assert parse_block_listing(text) == [(1, b"xyz"), (12, b"")]
    cmd = block_listing_command("/var/lib/nats", "APP", "T")
    assert "/var/lib/nats/jetstream/APP/streams/T/msgs" in cmd and "sort -n" in cmd


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (nats.js.errors.NoStreamResponseError(), "fail"),  # no stream leader subscribed: nobody stored it
        (nats.errors.NoRespondersError(), "fail"),
        (nats.js.errors.APIError(code=503, err_code=10077, description="maximum messages exceeded"), "fail"),
        (nats.errors.TimeoutError(), "info"),  # sent, no ack: it may be stored
        (TimeoutError(), "info"),
        (nats.errors.UnexpectedEOF(), "info"),
        (nats.errors.ConnectionClosedError(), "info"),
        (RuntimeError("anything else"), "info"),
    ],
)
def test_a_failed_publish_is_fail_only_when_certainly_not_stored(exc: BaseException, kind: str) -> None:
    err = publish_error(exc, "n1")
    assert classify(err) == kind, err
    assert err.member == "n1"
