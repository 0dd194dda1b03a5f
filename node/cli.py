"""``murmur node run``: command-line wiring and the process lifecycle of a node.

:func:`add_node_commands` registers ``node run`` and ``node migrate-store``
(:mod:`node.migrate`) on the ``murmur`` CLI's argparse
subparsers (the handler is stored as ``func`` on the parsed namespace);
:func:`run_node` serves a config until SIGINT or SIGTERM, then shuts down gracefully:
stop accepting, close live streams, let in-flight batches commit and answer, close
the store. It logs exactly one startup line with the URL and the data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from node.app import create_app
from node.config import DEFAULT_PORT, ConfigError, NodeConfig, load_config, redact_url
from node.state import FEDERATION
from node.store.factory import StoreOpenError
from node.store.migrations import SchemaError
from node.workers import MAX_WORKERS, WORKER_ENV, run_workers
from protocol.errors import FeedError

__all__ = ["add_migrate_command", "add_node_commands", "add_run_command", "run_node"]

log = logging.getLogger("murmur.node")

#: Seconds an unread request body is drained after the answer, before closing (aiohttp
#: defaults to 10 s, which a client dripping refused bodies could use to hold sockets).
LINGER_S = 1.0

#: Seconds granted to in-flight requests once a shutdown signal arrives.
SHUTDOWN_GRACE_S = 10.0


def add_run_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``run`` (with its options) on ``subparsers``; return its parser."""
    run = subparsers.add_parser(
        "run",
        help="run a node in the foreground",
        description="Serve the Murmur node API until SIGINT or SIGTERM.",
    )
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument(
        "--port", type=int, help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free port)"
    )
    run.add_argument(
        "--data", metavar="DIR", help="data directory (default $MURMUR_HOME/node or ~/.murmur/node)"
    )
    run.add_argument(
        "--peer", metavar="URL", action="append", help="a peer node URL (repeatable)"
    )
    run.add_argument(
        "--allow-private-peers",
        action="store_true",
        default=None,
        help="allow peers on loopback/private addresses (local devnets; off by default)",
    )
    run.add_argument(
        "--public-url", metavar="URL", help="the URL peers reach this node at (announced to them)"
    )
    run.add_argument(
        "--no-peer-exchange",
        dest="peer_exchange",
        action="store_false",
        default=None,
        help="contact only the configured peers: do not learn or accept new ones",
    )
    run.add_argument(
        "--sync-interval",
        metavar="SECONDS",
        type=_positive_seconds,
        help="anti-entropy with each peer this often (default 60)",
    )
    run.add_argument(
        "--store",
        metavar="URL",
        help="postgresql://USER@HOST:PORT/DB: keep the node's data in that PostgreSQL "
        "database (default: SQLite in the data directory)",
    )
    run.add_argument(
        "--workers",
        metavar="N",
        type=_worker_count,
        default=1,
        help="serve the node with N processes sharing the port (SO_REUSEPORT); needs "
        "--store (default 1)",
    )
    run.add_argument("--config", metavar="FILE", help="TOML configuration file")
    run.add_argument("--network", metavar="NAME", help="network name (default murmur)")
    run.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="log verbosity"
    )
    run.set_defaults(func=_cmd_run)
    return run  # type: ignore[no-any-return]


def _positive_seconds(text: str) -> int:
    """An argparse type: seconds (float) to whole milliseconds, at least 1 ms."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0 or seconds > 86_400:
        raise argparse.ArgumentTypeError("must be above 0 and at most 86400 seconds")
    return max(1, round(seconds * 1000))


def _worker_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_WORKERS}")
    return int(text)


def add_node_commands(subparsers: Any) -> None:
    """Register ``node`` and its subcommands on the ``murmur`` CLI."""
    node = subparsers.add_parser("node", help="run and manage a Murmur node")
    node_sub = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    add_run_command(node_sub)
    add_migrate_command(node_sub)


def add_migrate_command(subparsers: Any) -> None:
    """Register ``migrate-store`` on ``subparsers``."""
    move = subparsers.add_parser(
        "migrate-store",
        help="copy a SQLite node into a PostgreSQL database",
        description="Copy a stopped SQLite node's events (with their cursors), node id and "
        "peers into an empty PostgreSQL database, with progress; resumable; checks counts "
        "and the negentropy fingerprint of both sets before saying it is done.",
    )
    move.add_argument("--from", dest="source", metavar="DATA_DIR", required=True,
                      help="the node's data directory (holding murmur.sqlite3)")  # fmt: skip
    move.add_argument("--to", dest="target", metavar="URL", required=True,
                      help="postgresql://USER@HOST:PORT/DB")  # fmt: skip
    move.set_defaults(func=_cmd_migrate)


def _cmd_migrate(args: argparse.Namespace) -> int:
    try:
        config = load_config(None, {"data_dir": args.source, "store_url": args.target})
    except ConfigError as exc:
        print(f"murmur node: {exc}", file=sys.stderr)
        return 2
    assert config.store_url is not None  # noqa: S101 - given above
    try:
        from node.migrate import MigrationError, migrate_store
    except ImportError:
        print("murmur node: migrate-store needs asyncpg: pip install 'murmur[postgresql]'",
              file=sys.stderr)  # fmt: skip
        return 1
    import asyncpg

    try:
        asyncio.run(migrate_store(config.data_dir, config.store_url))
    except MigrationError as exc:
        print(f"murmur node: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        where = redact_url(config.store_url)
        print(f"murmur node: cannot migrate to {where}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data,
        "peers": args.peer,
        "network": args.network,
        "log_level": args.log_level,
        "allow_private_peers": args.allow_private_peers,
        "public_url": args.public_url,
        "peer_exchange": args.peer_exchange,
        "sync_interval_ms": args.sync_interval,
        "store_url": args.store,
    }
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"murmur node: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        if config.store_url is None:
            print(
                "murmur node: --workers needs a PostgreSQL store (--store or [store] url): "
                "processes cannot share one SQLite node",
                file=sys.stderr,
            )
            return 2
        _setup_logging(config.log_level)
        return run_workers(config, args.workers, _worker_argv())
    return run_node(config, reuse_port=os.environ.get(WORKER_ENV) is not None)


def _worker_argv() -> list[str]:
    """This command's own arguments after ``run``, without ``--workers``."""
    argv = sys.argv[1:]
    argv = argv[argv.index("run") + 1 :] if "run" in argv else argv
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


class _QuietHttpErrors(logging.Filter):
    """Malformed HTTP from a client is answered 400 by aiohttp, which then logs an
    error with a traceback: anyone could fill the log that way. Such records are kept
    only at debug level, as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not log.isEnabledFor(logging.DEBUG):
            return False
        record.msg = f"{record.msg} ({type(exc).__name__})"
        record.exc_info = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
            stream=sys.stderr,
        )
    else:
        root.setLevel(level.upper())
    # httpx logs every request at INFO; the federation logs what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _QuietHttpErrors) for f in server_log.filters):
        server_log.addFilter(_QuietHttpErrors())


async def _serve(config: NodeConfig, *, reuse_port: bool = False) -> None:
    app = create_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_S,
        # aiohttp's keep-alive timer starts when a connection opens and is only reset
        # by a response, so it also bounds the time to send a request head.
        keepalive_timeout=config.limits.idle_timeout_ms / 1000,
        # After answering a request whose body was not read to its end (refused,
        # too slow), aiohttp keeps reading that body this long before closing.
        lingering_time=LINGER_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port or None)
        await site.start()
        port = config.port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                port = int(address[1])
                break
        host = f"[{config.host}]" if ":" in config.host else config.host
        app[FEDERATION].listen_url = f"http://{host}:{port}"
        log.info(
            "murmur node listening url=http://%s:%d %s network=%s pid=%d",
            host,
            port,
            f"data={config.data_dir}"
            if config.store_url is None
            else f"store={redact_url(config.store_url)}",
            config.network,
            os.getpid(),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("murmur node stopping")
    finally:
        await runner.cleanup()


def _port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (checked before the store and
    federation start, so a busy port costs one line and nothing else).

    ``SO_REUSEADDR`` is set as aiohttp sets it, so connections of an earlier run in
    TIME_WAIT do not count. Port 0 is never taken; other bind errors are left to the
    real bind, which reports them.
    """
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def _busy_port_message(config: NodeConfig) -> str:
    return (
        f"murmur node: cannot listen on {config.host}:{config.port}: the port is already in "
        "use (is another node running?); stop it or pick another port with --port"
    )


def run_node(config: NodeConfig, *, reuse_port: bool = False) -> int:
    """Serve ``config`` until SIGINT/SIGTERM; return a process exit code. ``reuse_port``:
    one of several workers sharing the port (SO_REUSEPORT)."""
    if not reuse_port and _port_taken(config.host, config.port):
        print(_busy_port_message(config), file=sys.stderr)
        return 1
    _setup_logging(config.log_level)
    try:
        asyncio.run(_serve(config, reuse_port=reuse_port))
    except (SchemaError, StoreOpenError) as exc:
        log.error("cannot open store error=%s", exc)
        print(f"murmur node: cannot open the store: {exc}", file=sys.stderr)
        return 1
    except FeedError as exc:  # a [[feeds]] entry that does not load (spec 0004 #feeds-config)
        log.error("cannot load feed error=%s", exc.message)
        print(f"murmur node: cannot load a feed: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # taken between the check and the bind
            print(_busy_port_message(config), file=sys.stderr)
            return 1
        log.error("cannot start node error=%s", exc)
        return 1
    return 0
