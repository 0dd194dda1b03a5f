"""What the live pages share: a Server-Sent Events stream of new item ids (spec 0007
#web-live).

The home timeline and the notifications page each put their nodes' stream cursors
(``from=``, read with the page) and the ids they show (``seen=``) in the page;
``app.js`` opens ``GET /live/...?from=...&seen=...`` and this module answers it:
:func:`stream_ids` runs the page's ``pump`` (a watch from those cursors, through the
reader's filters) and sends ``event: NAME`` with ``{"ids": [...]}`` for each batch it
announces, ``ready`` first, a comment line every :data:`HEARTBEAT_S` so a closed tab is
noticed, and ends with the server (``WEB.streams``). Ids rather than a count, so a
reconnecting stream counts none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from client.web.context import WEB
from client.web.security import prepare_headers
from protocol.errors import BadRequestError, ProtocolError

__all__ = ["HEARTBEAT_S", "Announce", "seen_ids", "stream_ids", "stream_starts"]

log = logging.getLogger("murmur.client.web.live")

#: A comment line on the live stream this often, so a closed tab is noticed.
HEARTBEAT_S: Final = 15.0
#: Longest ``from=`` accepted (a few nodes' URLs and cursors).
MAX_FROM_CHARS: Final = 8192
#: Ids of the page the live stream need not announce.
MAX_SEEN: Final = 100
_HEX64 = re.compile(r"[0-9a-f]{64}")

#: How a pump announces new items: their ids (hex).
Announce = Callable[[list[str]], Awaitable[None]]


def stream_starts(request: web.Request, urls: list[str]) -> dict[str, int | None]:
    """``from=``: node URL → stream cursor, for configured nodes (None: from now)."""
    raw = request.query.get("from", "")
    if len(raw) > MAX_FROM_CHARS:
        raise BadRequestError("from= is too long")
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        raise BadRequestError("from= is not the page's stream cursors") from None
    if not isinstance(doc, dict):
        raise BadRequestError("from= is not the page's stream cursors")
    out: dict[str, int | None] = {}
    for url in urls:
        c = doc.get(url)
        ok = isinstance(c, int) and not isinstance(c, bool) and c >= 0
        out[url] = c if ok else None
    return out


def seen_ids(request: web.Request) -> list[str]:
    """``seen=``: ids the page shows already (not announced again)."""
    raw = request.query.get("seen", "")
    ids = [s for s in raw.split(",") if s][:MAX_SEEN]
    if not all(_HEX64.fullmatch(s) for s in ids):
        raise BadRequestError("seen= takes event ids (64 lowercase hex, comma-separated)")
    return ids


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def stream_ids(
    request: web.Request, *, event: str, pump: Callable[[Announce], Awaitable[None]]
) -> web.StreamResponse:
    """Answer ``request`` with a live stream: ``event`` with the ids ``pump`` announces,
    until the browser leaves, the pump ends (its error is logged by code) or the
    server stops."""
    state = request.app[WEB]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    prepare_headers(response)
    await response.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        state.streams.add(task)
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    pumping = asyncio.ensure_future(pump(queue.put))
    try:
        await _send(response, "ready", {})
        while not pumping.done():
            try:
                ids = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await _send(response, event, {"ids": ids})
        while not queue.empty():  # what the pump announced just before it ended
            await _send(response, event, {"ids": queue.get_nowait()})
        pumping.result()  # the watch ended: its error, if any, is raised here
    except ConnectionResetError:
        log.debug("live stream closed by the browser path=%s", request.path)
    except ProtocolError as exc:
        log.warning(
            "live stream ended path=%s code=%s message=%s", request.path, exc.code, exc.message
        )
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        if task is not None:
            state.streams.discard(task)
    return response
