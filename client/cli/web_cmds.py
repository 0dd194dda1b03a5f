"""``murmur web``: the client in a browser (issue #17), served by :mod:`client.web`.

This module only parses the flags and calls :func:`client.web.app.run` (or, beside
``murmur devnet up --web``, :func:`client.web.background.serve_until`); everything
else (pages, security) lives in ``client/web/``.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from pathlib import Path

from client.cli.output import Context
from client.secretfiles import STDIN
from client.web import DEFAULT_HOST, DEFAULT_PORT
from protocol.errors import BadRequestError

__all__ = ["DEFAULT_PORT", "register", "serve_beside"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 1-65535")
    return value


def cmd_web(args: argparse.Namespace, ctx: Context) -> int:
    from client.web.app import run  # jinja2 and the pages load only for this command

    if ctx.passphrase_file == STDIN:
        # The server reads it at each action that needs it, long after start.
        raise BadRequestError("murmur web needs --passphrase-file PATH, not '-' (stdin)")

    return run(
        ctx.home,
        host=args.host,
        port=args.port,
        open_browser=args.open,
        allow_remote=args.allow_remote,
        as_name=ctx.as_name,
        nodes=ctx.nodes,
        passphrase_file=ctx.passphrase_file,
    )


def serve_beside(
    home: Path, stop: threading.Event, *, port: int, on_start: Callable[[str], None]
) -> None:
    """``murmur web`` for ``home`` on 127.0.0.1:``port`` from this (worker) thread until
    ``stop`` is set (``murmur devnet up --web``); ``on_start`` gets the token URL.
    ``OSError`` when the port is taken."""
    from client.web.background import serve_until  # the web face loads only for this

    serve_until(home, stop, on_start=on_start, port=port)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "web",
        help="the client in your browser, on http://127.0.0.1:8700 (prints its secret URL)",
        description="Serve the Murmur client as web pages for this home: the same "
        "identities, nodes, filters and labelers as the command line. It prints a URL "
        "with a secret token: open it (only it lets a browser in).",
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to serve on (default {DEFAULT_HOST})"
    )
    p.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a host that is not loopback (anyone who reaches it with the token "
        "reads as you, over plain HTTP)",
    )
    p.set_defaults(handler=cmd_web)
