"""``murmur web`` served beside something else (``murmur devnet up --web``): the same
application as :func:`client.web.app.run`, run on its own event loop in the calling
(worker) thread until a :class:`threading.Event` is set.

``murmur devnet up`` calls it from the thread it seeds the demo in, so the web client
starts once the demo is on every node, and stops when the devnet stops (Ctrl-C sets
the event; the supervisor waits for this thread). Loopback only: it serves the demo
home's keys.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from client.web import DEFAULT_HOST, DEFAULT_PORT
from client.web.app import make_app
from client.web.context import WEB
from client.web.security import is_loopback
from protocol.errors import BadRequestError

__all__ = ["serve_until"]

log = logging.getLogger("murmur.client.web.background")

#: How long open pages (live streams) get to close when the server stops.
SHUTDOWN_S: Final = 2.0


def serve_until(
    home: Path,
    stop: threading.Event,
    *,
    on_start: Callable[[str], None],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    as_name: str | None = None,
) -> None:
    """Serve the web client of ``home`` on ``host:port`` from this thread until ``stop``
    is set. ``on_start(url)`` gets the URL with the secret token once the port is
    listening. Raises ``OSError`` when the port cannot be bound (taken), before
    ``on_start``; ``bad-request`` for a host that is not loopback."""
    if not is_loopback(host):
        raise BadRequestError(f"{host} is not a loopback address")

    async def serve() -> None:
        app = make_app(home, host=host, port=port, as_name=as_name)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, host.strip("[]"), port).start()
            log.info("web client serving home=%s host=%s port=%d", home, host, port)
            on_start(app[WEB].guard.url())
            await asyncio.to_thread(stop.wait)
        finally:
            await runner.cleanup()
            log.info("web client stopped port=%d", port)

    asyncio.run(serve())
