"""What the network commands share: the library's :class:`client.session.Session` made
from the global options, argument types, asyncio.

The node set is ``--node URL`` (repeatable) if given, else ``nodes`` of the config;
the identity is ``--as NAME``, else the default one; ``--quorum N``. The rest (timeout,
network, reads, publishers) is the library's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from client import session as library
from client.cli.output import Context, warn
from client.cli.passphrase import ask_passphrase
from client.cli.render import Names
from client.config import normalize_node_url
from protocol.errors import BadRequestError
from protocol.events import Event

__all__ = ["Session", "limit_arg", "node_url_arg", "parse_event_id", "quorum_arg", "run"]

T = TypeVar("T")


MAX_LIMIT = 500


def limit_arg(text: str) -> int:
    """argparse type for ``--limit``: an integer in 1..500."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return value


def quorum_arg(text: str) -> int:
    """argparse type for ``--quorum``: a positive number of nodes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of nodes") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def node_url_arg(text: str) -> str:
    """argparse type for ``--node``: a node URL, normalised; anything else is a usage
    error (``notaurl`` is not the node ``http://notaurl``)."""
    try:
        return normalize_node_url(text)
    except BadRequestError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def parse_event_id(text: str) -> bytes:
    """A full 64-hex event id; raises ``BadRequestError`` with a hint otherwise."""
    cleaned = text.strip().lower()
    if len(cleaned) == 64:
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            pass
    raise BadRequestError(f"{text!r} is not an event id (64 hex characters, see --json output)")


class Session(library.Session):
    """The library's session for one command: settings read once, the passphrase of a
    sealed key from ``--passphrase-file``, ``$MURMUR_PASSPHRASE`` or the terminal,
    warnings on stderr, names for a terminal."""

    __slots__ = ("ctx",)
    ctx: Context

    @classmethod
    def open(cls, ctx: Context) -> Session:
        session = cls(
            home=ctx.home,
            as_name=ctx.as_name,
            nodes=ctx.nodes,
            quorum_nodes=ctx.quorum,
            passphrase=lambda stored: ask_passphrase(
                f"Passphrase for {stored.name}: ", file=ctx.passphrase_file
            ),
            warn=lambda message: warn(ctx, message),
            settings_once=True,
        )
        session.ctx = ctx
        _ = session.config  # a config.toml that does not parse fails the command here
        return session

    def names(self, profiles: Mapping[str, Event] | None = None) -> Names:
        """Names for this command: petnames, ``profiles``, and the acting identity's
        own latest profile (spec 0007 #own-name)."""
        return Names(self.config, self.profiles_with_own(profiles))


#: After Ctrl-C, how long a command may take to wind down before it is ended hard.
INTERRUPT_GRACE_S = 5.0
_EXIT_INTERRUPTED = 130  # 128 + SIGINT, as client.cli.main


def _force_exit() -> None:
    """Ctrl-C came and the command did not end within the grace: end it anyway."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(_EXIT_INTERRUPTED)


def _on_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: raise KeyboardInterrupt as Python does, and end the process hard if
    winding down (closing streams, stopping tasks) has not ended it within
    :data:`INTERRUPT_GRACE_S` (a second Ctrl-C raises again at once)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(INTERRUPT_GRACE_S, _force_exit)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one async command body to completion. Ctrl-C always ends it: a command
    that does not wind down within :data:`INTERRUPT_GRACE_S` is ended with status
    130 (a SIGINT the parent ignored stays ignored)."""

    async def main() -> T:
        return await fn()

    guarded = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if guarded:
        signal.signal(signal.SIGINT, _on_interrupt)
    try:
        return asyncio.run(main())
    finally:
        if guarded and signal.getsignal(signal.SIGINT) is _on_interrupt:
            signal.signal(signal.SIGINT, signal.default_int_handler)
