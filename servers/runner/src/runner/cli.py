"""``runner --config node.toml``: run one runner until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
import threading
from types import FrameType

from runner import __version__
from runner.api import contexts, make_server
from runner.config import ConfigError, load
from runner.etcd import Etcd
from runner.runtime import Runtime
from runner.store import Store

log = logging.getLogger("runner")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runner", description="Reference entity runtime (etcd + PostgreSQL)"
    )
    parser.add_argument("-c", "--config", required=True, help="the runner's TOML configuration file")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"runner: {args.config} is valid (runner {config.node_id}, {config.runner.shards} shards)")
        return 0
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    server_ctx, client_ctx = contexts(config)
    etcd = Etcd(config.etcd.endpoints, client_ctx, config.etcd.timeout)
    ca_file = config.tls.ca_file if config.tls else ""
    store = Store(config.postgres, ca_file, config.runner.fencing)
    runtime = Runtime(config, etcd, store)
    server = make_server(config, runtime, server_ctx, client_ctx)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    # SIGUSR1 prints every thread's stack to the journal: what a stuck runner is waiting on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, name="api", daemon=True).start()
    log.info(
        "runner %s: API %s, %d shards, etcd %s, PostgreSQL %s:%s, fencing %s, timers inherited %s, state durable %s",
        config.node_id,
        config.listen_client,
        config.runner.shards,
        list(config.etcd.endpoints),
        config.postgres.host,
        config.postgres.port,
        "on" if config.runner.fencing else "OFF",
        "yes" if config.runner.inherit_timers else "NO",
        "yes" if config.runner.durable_state else "NO",
    )
    runtime.start()
    stop.wait()
    runtime.stop()
    server.shutdown()
    server.server_close()
    return 0
