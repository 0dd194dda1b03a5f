"""Home: the reader's timeline, and new posts announced live (spec 0007 #watch).

``GET /`` is one page of ``murmur timeline``: every configured node, verified,
moderated with the reader's filters (hidden items are rows that say why, with "show
anyway"), counts from ``POST /v1/counts``, paged with the merged cursor
(``?cursor=``). The first page also reads each node's stream cursor (``/v1/info``,
alongside the page) and puts it in the page; ``app.js`` then opens
``GET /live/timeline?from=...``, a Server-Sent Events stream fed by
:class:`client.watch.TimelineWatch` from those cursors (nothing posted while the page
was read is missed), which sends ``event: posts`` with the ids of the new items the
reader's filters let through (ids, so a reconnecting stream counts none twice); the
page shows "N new posts — show".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any, Final

from aiohttp import web

from client.moderation.core import ViewContext
from client.paging import MergedCursor
from client.reader import Reader
from client.views import View, follow_set, timeline, timeline_feed
from client.watch import TimelineWatch, start_cursors
from client.web.context import WEB, render
from client.web.pages.common import listing
from client.web.render import Names
from client.web.security import prepare_headers
from protocol.errors import BadRequestError, ProtocolError

__all__ = ["setup"]

log = logging.getLogger("murmur.client.web.timeline")

#: Items a page shows (after moderation).
PAGE_ITEMS: Final = 30
#: A comment line on the live stream this often, so a closed tab is noticed.
HEARTBEAT_S: Final = 15.0
#: Longest ``from=`` accepted (a few nodes' URLs and cursors).
MAX_FROM_CHARS: Final = 8192
#: Ids of the page the live stream need not announce.
MAX_SEEN: Final = 100
_HEX64 = re.compile(r"[0-9a-f]{64}")

routes = web.RouteTableDef()


@routes.get("/", name="home")
async def home(request: web.Request) -> web.Response:
    state = request.app[WEB]
    reads = state.reads
    me = reads.me()
    if me is None:
        return render(request, "no_identity.html", title="Home")
    raw_cursor = request.query.get("cursor")
    cursor = None if not raw_cursor else MergedCursor.decode(raw_cursor, "timeline")

    async with reads.reader() as reader:
        starts_task = asyncio.ensure_future(start_cursors(reader.nodes)) if cursor is None else None
        try:
            follows = await follow_set(reader, me, mark=False)
            feed = timeline_feed(reader, me, follows, cursor=cursor)

            async def build(n: int) -> View:
                return await timeline(reader, me, limit=n, follows=follows, feed=feed)

            view, mod = await reads.page(
                reader,
                build,
                PAGE_ITEMS,
                viewer=me,
                context=ViewContext.TIMELINE,
                follows=frozenset(follows),
            )
            nxt = feed.next_cursor(view.items)
            starts = None if starts_task is None else await starts_task
        finally:
            if starts_task is not None and not starts_task.done():
                starts_task.cancel()
    names = Names(reads.config, reads.profiles_with_own(view.profiles))
    return render(
        request,
        "timeline.html",
        title="Home",
        lst=listing(request, view, mod, names),
        empty=not view.items,
        next_cursor=None if nxt is None else nxt.encode(),
        live_from=None if starts is None else json.dumps(starts, separators=(",", ":")),
        seen=",".join(e.id_hex for e in view.items),
    )


def _starts(request: web.Request, urls: list[str]) -> dict[str, int | None]:
    """``from=`` of the live stream: node URL → stream cursor, for configured nodes."""
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


async def _send(response: web.StreamResponse, event: str | None, data: dict[str, Any]) -> None:
    head = f"event: {event}\n" if event else ""
    await response.write(f"{head}data: {json.dumps(data)}\n\n".encode())


@routes.get("/live/timeline", name="live-timeline")
async def live(request: web.Request) -> web.StreamResponse:
    """New timeline items that the reader's filters show, as a count, live."""
    state = request.app[WEB]
    reads = state.reads
    me = reads.me()
    if me is None:
        raise web.HTTPNotFound()
    nodes = reads.node_clients()
    starts = _starts(request, [n.url for n in nodes])
    seen = _seen(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    prepare_headers(response)
    await response.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        state.streams.add(task)
    queue: asyncio.Queue[list[str]] = asyncio.Queue()

    async def pump() -> None:
        reader = Reader(nodes, net=reads.net(), timeout=reads.timeout(), keycache=reads.keycache)
        follows = frozenset(await follow_set(reader, me, mark=False))
        moderation = await reads.moderation(
            reader, viewer=me, context=ViewContext.TIMELINE, follows=follows
        )
        async with moderation:
            watch = TimelineWatch(reader, me, follows, starts=starts, seen=seen)
            async for view in watch.views():
                mod = await moderation.judge(view)
                if mod.shown:
                    await queue.put([e.id_hex for e, _ in mod.shown])

    pumping = asyncio.ensure_future(pump())
    try:
        await _send(response, "ready", {})
        while not pumping.done():
            try:
                ids = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await _send(response, "posts", {"ids": ids})
        pumping.result()  # the watch ended: its error, if any, is raised here
    except ConnectionResetError:
        log.debug("live timeline closed by the browser")
    except ProtocolError as exc:
        log.warning("live timeline ended code=%s message=%s", exc.code, exc.message)
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        if task is not None:
            state.streams.discard(task)
    return response


def _seen(request: web.Request) -> list[str]:
    """``seen=``: ids the page shows already (not announced again)."""
    raw = request.query.get("seen", "")
    ids = [s for s in raw.split(",") if s][:MAX_SEEN]
    if not all(_HEX64.fullmatch(s) for s in ids):
        raise BadRequestError("seen= takes event ids (64 lowercase hex, comma-separated)")
    return ids


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
