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
import json
import time
from typing import Final

from aiohttp import web

from client.moderation.core import ViewContext
from client.paging import MergedCursor
from client.reader import Reader
from client.views import View, follow_set, timeline, timeline_feed
from client.watch import TimelineWatch, start_cursors
from client.web.context import WEB, render
from client.web.pages.common import listing, own_state
from client.web.pages.feeds import feed_tabs
from client.web.pages.live import Announce, seen_ids, stream_ids, stream_starts
from client.web.render import Names
from client.web.timing import phase, record

__all__ = ["setup"]

#: Items a page shows (after moderation).
PAGE_ITEMS: Final = 50

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

    started = time.perf_counter()
    async with reads.reader() as reader:
        record("validate", started)  # the read cache validated: one /v1/info a node
        # The live stream starts where each node stood before the page was read
        # (nothing posted meanwhile is missed): the cursors the cache was validated
        # with, else asked alongside the page.
        starts_task = None
        if cursor is None and reads.cache is None:
            starts_task = asyncio.ensure_future(start_cursors(reader.nodes))
        try:
            with phase("follows"):
                follows = await follow_set(reader, me, mark=False)
            feed = timeline_feed(reader, me, follows, cursor=cursor)

            async def build(n: int) -> View:
                return await timeline(reader, me, limit=n, follows=follows, feed=feed)

            with phase("page"):
                view, mod = await reads.page(
                    reader,
                    build,
                    PAGE_ITEMS,
                    viewer=me,
                    context=ViewContext.TIMELINE,
                    follows=frozenset(follows),
                )
            mine = await own_state(reads, reader, me, view.items)  # Like or Unlike…
            nxt = feed.next_cursor(view.items)
            starts: dict[str, int | None] | None = None
            if starts_task is not None:
                starts = await starts_task
            elif cursor is None and reads.cache is not None:
                starts = reads.cache.cursors([n.url for n in reader.nodes])
        finally:
            if starts_task is not None and not starts_task.done():
                starts_task.cancel()
    with phase("render"):
        names = Names(reads.config, reads.profiles_with_own(view.profiles))
        return render(
            request,
            "timeline.html",
            title="Home",
            tabs=feed_tabs(reads.home),
            lst=listing(request, view, mod, names, mine=mine),
            empty=not view.items,
            next_cursor=None if nxt is None else nxt.encode(),
            live_from=None if starts is None else json.dumps(starts, separators=(",", ":")),
            seen=",".join(e.id_hex for e in view.items),
        )


@routes.get("/live/timeline", name="live-timeline")
async def live(request: web.Request) -> web.StreamResponse:
    """New timeline items that the reader's filters show, as ids, live."""
    reads = request.app[WEB].reads
    me = reads.me()
    if me is None:
        raise web.HTTPNotFound()
    nodes = reads.node_clients()
    starts = stream_starts(request, [n.url for n in nodes])
    seen = seen_ids(request)

    async def pump(announce: Announce) -> None:
        reader = Reader(nodes, net=reads.net(), timeout=reads.timeout(), keycache=reads.keycache)
        follows = frozenset(await follow_set(reader, me, mark=False))
        watch = TimelineWatch(reader, me, follows, starts=starts, seen=seen)
        async for view in watch.views():
            # The reader's filters as they are now, for each batch of new items: the
            # stream holds no pipeline between them (pages borrow the kept one).
            moderation = await reads.moderation(
                reader, viewer=me, context=ViewContext.TIMELINE, follows=follows
            )
            async with moderation:
                mod = await moderation.judge(view)
            if mod.shown:
                await announce([e.id_hex for e, _ in mod.shown])

    return await stream_ids(request, event="posts", pump=pump)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
