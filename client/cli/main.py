"""Entry point of the ``murmur`` command: global options, dispatch, error handling.

Global options come before the command (``murmur --home DIR id list``); ``--json``
comes after it and makes the command print exactly one JSON document on stdout.
Every failure a person can cause ends with a one-line message, a stable code (in the
JSON document) and a non-zero exit status — never a traceback. Set
``MURMUR_DEBUG=1`` to see tracebacks of internal errors. Exit statuses (spec 0007
#exit-status) are in :data:`EXIT_STATUS_HELP`, printed by ``murmur --help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import protocol
from client.cli import (
    browse_cmds,
    devnet_cmds,
    feed_cmds,
    id_cmds,
    media_cmds,
    mod_cmds,
    nodes_cmds,
    notify_cmds,
    post_cmds,
    read_cmds,
    social_cmds,
    web_cmds,
)
from client.cli.output import Context, Result, emit, emit_error
from client.cli.session import node_url_arg, quorum_arg
from client.keystore import default_home
from client.textsafety import safe_text
from protocol.errors import ProtocolError

__all__ = ["build_parser", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT

EXIT_STATUS_HELP = f"""exit status:
  0    success; a read that at least one node answered (problems with the other
       nodes are printed after the items, with '!')
  {EXIT_ERROR}    error: one line on stderr, and with --json the document
       {{"error": CODE, "message": ...}}; e.g. no-node-answered when no configured
       node answered a read, node-unreachable when none took a post
  {EXIT_USAGE}    usage error (unknown command or option)
  {EXIT_INTERNAL}   internal error (a bug; MURMUR_DEBUG=1 shows the traceback)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="murmur",
        description="Murmur: signed posts, federating nodes, and moderation you choose.",
        epilog="Run 'murmur COMMAND --help' for a command's options.\n"
        "Docs: README.md and specs/ in the source tree.\n\n" + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"murmur {protocol.__version__}")
    parser.add_argument(
        "--home",
        metavar="DIR",
        type=Path,
        help="client home (default: $MURMUR_HOME or ~/.murmur)",
    )
    parser.add_argument("--as", dest="as_name", metavar="NAME", help="identity to act as")
    parser.add_argument(
        "--node",
        dest="nodes",
        metavar="URL",
        action="append",
        default=[],
        type=node_url_arg,
        help="node to use for this call (repeatable; overrides the configured set)",
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="PATH",
        help="read the passphrase of a sealed key (or of a new one) from PATH, '-' for "
        "standard input (default: $MURMUR_PASSPHRASE, else a prompt on the terminal)",
    )
    parser.add_argument(
        "--quorum",
        metavar="N",
        type=quorum_arg,
        help="a post (like, follow...) returns once N nodes stored it; the others get a "
        "moment more, then are reported (default: 'quorum' in config.toml, else 1)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv for debug)"
    )

    # Options every leaf command accepts after its name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", help="print exactly one JSON document on stdout"
    )

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    id_cmds.register(sub, common)
    nodes_cmds.register(sub, common)
    post_cmds.register(sub, common)
    media_cmds.register(sub, common)
    social_cmds.register(sub, common)
    read_cmds.register(sub, common)
    browse_cmds.register(sub, common)
    feed_cmds.register(sub, common)
    notify_cmds.register(sub, common)
    mod_cmds.register(sub, common)
    devnet_cmds.register(sub, common)
    web_cmds.register(sub)
    try:
        from node.cli import add_node_commands
    except ModuleNotFoundError as exc:  # a client-only install has no node package
        if exc.name not in ("node", "node.cli"):
            raise
    else:
        add_node_commands(sub)
    try:
        from bench.cli import add_bench_command
    except ModuleNotFoundError as exc:  # installed without the benchmarks
        if exc.name not in ("bench", "bench.cli"):
            raise
    else:
        add_bench_command(sub)
    return parser


class _TerminalSafeFormatter(logging.Formatter):
    """Log lines quote nodes' messages and URLs: escape them like any text shown
    (spec 0007 #terminal-safety)."""

    def format(self, record: logging.LogRecord) -> str:
        return safe_text(super().format(record))


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(_TerminalSafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])  # no-op if logging is set up


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    node_command = getattr(args, "func", None)
    if node_command is not None:  # node commands run the server; they manage their own output
        return int(node_command(args))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    ctx = Context(
        home=(args.home or default_home()).expanduser(),
        as_name=args.as_name,
        nodes=tuple(args.nodes),
        json=bool(getattr(args, "json", False)),
        passphrase_file=args.passphrase_file,
        quorum=args.quorum,
    )
    try:
        result = handler(args, ctx)
    except ProtocolError as exc:
        emit_error(ctx, exc.code, exc.message)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # an internal bug: say so plainly, keep the traceback opt-in
        if os.environ.get("MURMUR_DEBUG"):
            traceback.print_exc()
        emit_error(ctx, "internal-error", f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL
    if isinstance(result, int):  # long-running commands (node run) return an exit status
        return result
    if not isinstance(result, Result):
        raise TypeError(f"command handler returned {type(result).__name__}, not Result")
    emit(ctx, result)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
