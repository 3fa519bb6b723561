"""``raftkv --config node.toml``: run one node until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from raftkv import __version__
from raftkv.api import make_server
from raftkv.config import ConfigError, load
from raftkv.store import Store

log = logging.getLogger("raftkv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftkv", description="Reference Raft key-value server (pysyncobj)")
    parser.add_argument("-c", "--config", required=True, help="the node's TOML configuration file")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--version", action="version", version=f"raftkv {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"raftkv: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if config.raft.password is None and not config.raft.allow_unencrypted_peers:
        print(
            f"raftkv: {args.config}: [raft] password (or password_file) is required: peer traffic is pickled "
            "Python objects and must be authenticated. Set allow_unencrypted_peers = true only on an isolated "
            "test network.",
            file=sys.stderr,
        )
        return 2
    if args.check:
        print(f"raftkv: {args.config} is valid (node {config.node_id}, {len(config.peers)} members)")
        return 0
    store = Store(config)
    server = make_server(config, store)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    thread.start()
    scheme = "https" if config.tls else "http"
    mtls = f", client certificates: {config.tls.client_auth}" if config.tls else ""
    log.info(
        "node %s: API %s://%s%s, Raft %s (advertised %s), peers %s, data %s, peer encryption %s",
        config.node_id,
        scheme,
        config.listen_client,
        mtls,
        config.listen_peer,
        config.advertise_peer,
        [p.peer for p in config.others],
        config.data_dir,
        "on" if config.raft.password else "OFF",
    )
    stop.wait()
    server.shutdown()
    server.server_close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
