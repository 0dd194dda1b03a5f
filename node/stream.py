"""The live stream: Server-Sent Events of newly stored events (spec 0004 §stream).

``GET /v1/stream?cursor=N`` sends every event stored after cursor ``N``, in cursor
order, then new ones as they commit. Each SSE message has ``id: <cursor>``, so a
client (or a browser ``EventSource``) resumes after a disconnect with ``Last-Event-ID``
and gets exactly what it missed: at-least-once, no gaps, because the single writer
commits cursors in order and the hub is told only after commit.

Backpressure without unbounded memory: a subscriber does not get a queue. Its handler
reads pages of events from the store at the pace its socket drains; a write that
blocks longer than ``stream_write_timeout_ms`` disconnects it and it resumes by cursor.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from node.api.params import MAX_CURSOR
from protocol.errors import BadRequestError, UnavailableError

if TYPE_CHECKING:
    from node.store.base import StoredEvent

__all__ = ["PAGE", "StreamHub", "parse_start_cursor", "sse_frame"]

log = logging.getLogger("murmur.node.stream")

#: Events read from the store per page while catching up.
PAGE = 256


class StreamHub:
    """Tells waiting subscribers that the store's cursor moved; holds no events."""

    def __init__(self, *, max_subscribers: int) -> None:
        self.max_subscribers = max_subscribers
        self.cursor = 0
        self.subscribers = 0
        self.closing = False
        self._wake = asyncio.Event()

    def publish(self, cursor: int) -> None:
        """Called after a commit with the highest cursor it stored."""
        if cursor > self.cursor:
            self.cursor = cursor
            self._wake_all()

    def close(self) -> None:
        """Ask every subscriber to finish (node shutdown)."""
        self.closing = True
        self._wake_all()

    def _wake_all(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def wait(self, after: int, timeout_s: float) -> bool:
        """Wait until the cursor passes ``after`` or the hub closes; False on timeout."""
        if self.cursor > after or self.closing:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    def join(self) -> None:
        if self.closing:
            raise UnavailableError("node is shutting down")
        if self.subscribers >= self.max_subscribers:
            raise UnavailableError("too many stream subscribers; retry later")
        self.subscribers += 1

    def leave(self) -> None:
        self.subscribers -= 1


def parse_start_cursor(request: web.Request, live: int) -> int:
    """``Last-Event-ID`` (a reconnect) wins over ``?cursor``; neither means "from now"."""
    raw = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if raw is None or raw.strip() == "":
        raw, name = request.query.get("cursor"), "cursor"
    if raw is None or raw == "":
        return live
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_CURSOR:
        raise BadRequestError(f"{name} must be a non-negative integer cursor")
    return int(raw)


def sse_frame(ev: StoredEvent, event_obj: dict[str, object]) -> bytes:
    """One SSE message: ``id`` is the cursor, ``data`` the event's JSON form."""
    data = json.dumps({"cursor": ev.cursor, "event": event_obj}, separators=(",", ":"))
    return f"id: {ev.cursor}\nevent: event\ndata: {data}\n\n".encode()
