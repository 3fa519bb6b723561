"""The netem-less delayer's netlink encoding (the live behaviour is exercised by integration tests)."""

import socket
import struct

from gauntlet.nemesis import nfqueue_delay as d


def test_verdict_message_layout():
    msg = d._msg(d.NFQNL_MSG_VERDICT, 7, d._attr(d.NFQA_VERDICT_HDR, struct.pack("!II", d.NF_ACCEPT, 42)))
    length, msg_type, flags, _, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) == 16 + 4 + 4 + 8
    assert msg_type == (3 << 8) | 1 and flags == d.NLM_F_REQUEST
    family, version, res_id = struct.unpack_from("=BBH", msg, 16)
    assert (family, version, socket.ntohs(res_id)) == (0, 0, 7)
    assert struct.unpack_from("!II", msg, 24) == (1, 42)


def test_packet_ids_are_parsed_from_a_batch():
    def packet(pid: int) -> bytes:
        body = struct.pack("=BBH", 2, 0, socket.htons(7)) + d._attr(
            d.NFQA_PACKET_HDR, struct.pack("!IHB", pid, 0x800, 3)
        )
        return struct.pack("=IHHII", 16 + len(body), (3 << 8) | 0, 0, 0, 0) + body

    assert d.packet_ids(packet(5) + packet(6)) == [5, 6]


def test_attributes_are_padded_to_four_bytes():
    assert len(d._attr(1, b"\x01")) == 8
