#!/usr/bin/env python3
"""Delay packets without netem: an NFQUEUE listener that holds each packet for a while, then accepts it.

Copied to a host and run there (stdlib only, Python 3.9+) by the nemesis when the host's kernel has no
netem qdisc. iptables sends the packets to delay to ``--queue`` (``-j NFQUEUE --queue-bypass``); this
program binds the queue over nfnetlink (the protocol libnetfilter_queue speaks), copies only metadata,
and issues each NF_ACCEPT verdict ``delay ± jitter`` ms after the packet arrived. Packets keep their order
unless jitter reorders them, as netem would. The queue is set to fail open, so a full queue passes
packets rather than dropping them: the fault is latency, not loss.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
AF_UNSPEC = 0


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _msg(msg_type: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def _parse_attrs(data: bytes) -> dict[int, bytes]:
    attrs, off = {}, 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        attrs[kind & 0x7FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return attrs


def bind(sock: socket.socket, queue: int) -> None:
    """Bind ``queue``, copy metadata only, fail open, room for many held packets; raise on NLMSG_ERROR."""
    config = [
        _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, socket.htons(AF_UNSPEC))),
        _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
        _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536)),
        _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
        + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
    ]
    for seq, attrs in enumerate(config, start=1):
        sock.send(_msg(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        reply = sock.recv(65536)
        _, msg_type, _, _, _ = struct.unpack_from("=IHHII", reply)
        if msg_type == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", reply, 16)
            if err:
                raise OSError(-err, f"nfqueue config step {seq}: {os.strerror(-err)}")


def verdict(sock: socket.socket, queue: int, packet_id: int) -> None:
    sock.send(
        _msg(NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)))
    )


def packet_ids(buf: bytes) -> list[int]:
    """Packet ids of every NFQNL_MSG_PACKET in one netlink datagram."""
    ids, off = [], 0
    while off + 16 <= len(buf):
        length, msg_type, _, _, _ = struct.unpack_from("=IHHII", buf, off)
        if length < 16:
            break
        if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            attrs = _parse_attrs(buf[off + 20 : off + length])
            hdr = attrs.get(NFQA_PACKET_HDR)
            if hdr:
                ids.append(struct.unpack_from("!I", hdr)[0])
        off += (length + 3) & ~3
    return ids


def run(queue: int, delay_ms: float, jitter_ms: float, max_seconds: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind((0, 0))
    bind(sock, queue)
    held: list[tuple[float, int]] = []  # (release time, packet id)
    stop_at = time.monotonic() + max_seconds
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"nfqueue_delay: queue {queue}, {delay_ms} ms ± {jitter_ms} ms", flush=True)
    while not stopping and time.monotonic() < stop_at:
        now = time.monotonic()
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if readable:
            try:
                buf = sock.recv(262144)
            except OSError:  # ENOBUFS: the kernel dropped notifications; fail-open keeps traffic flowing
                continue
            arrived = time.monotonic()
            for pid in packet_ids(buf):
                d = delay_ms + (random.gauss(0, jitter_ms) if jitter_ms else 0.0)
                heapq.heappush(held, (arrived + max(0.0, d) / 1000.0, pid))
        now = time.monotonic()
        while held and held[0][0] <= now:
            verdict(sock, queue, heapq.heappop(held)[1])
    # Release everything still held, so stopping never drops traffic.
    while held:
        verdict(sock, queue, heapq.heappop(held)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue", type=int, default=7)
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    # A bound on the fault: the delayer stops itself even if the nemesis never comes back.
    p.add_argument("--max-seconds", type=float, default=1800.0)
    a = p.parse_args(argv)
    run(a.queue, a.delay_ms, a.jitter_ms, a.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
