"""Notifications: replies, mentions, quotes, likes, reposts and follows of the acting
identity (spec 0007 #notifications, #web-notifications), as ``murmur notifications``.

``GET /notifications`` is one page of :class:`client.notifications.Notifier` over
every configured node: verified, checked to concern the reader, moderated (hidden
ones are rows that say why, with "show anyway"), newest first, paged with the merged
cursor (``?cursor=``); ``?unread=1`` lists only what no view showed yet. What a page
shows or hides is then marked seen (:class:`client.notify_state.SeenState`, the
file the CLI uses), so unread items are marked on the page that first shows them.
The first page reads each node's stream cursor with it; ``app.js`` then follows
``GET /live/notifications`` (Server-Sent Events fed by
:class:`client.watch.NotificationWatch` from those cursors), which sends
``event: notifications`` with the ids of new notifications the filters show; the page
says "N new notifications — show".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Final

from aiohttp import web

from client.moderation.apply import Moderated
from client.moderation.core import ViewContext
from client.notifications import (
    NOTIFICATIONS_LIST,
    REASON_TEXT,
    Notification,
    NotificationPage,
    Notifier,
)
from client.notify_state import SeenState
from client.paging import MergedCursor, key_of
from client.reader import Reader
from client.views import View, follow_set
from client.watch import NotificationWatch, start_cursors
from client.web.context import WEB, render
from client.web.pages.common import listing, own_state
from client.web.pages.live import Announce, seen_ids, stream_ids, stream_starts
from client.web.render import Names
from protocol import kinds
from protocol.events import Event

__all__ = ["setup"]

#: Notifications a page shows (after moderation).
PAGE_ITEMS: Final = 30

routes = web.RouteTableDef()


@routes.get("/notifications", name="notifications")
async def notifications(request: web.Request) -> web.Response:
    reads = request.app[WEB].reads
    me = reads.me()
    if me is None:
        return render(request, "no_identity.html", title="Notifications")
    raw_cursor = request.query.get("cursor")
    cursor = None if not raw_cursor else MergedCursor.decode(raw_cursor, NOTIFICATIONS_LIST)
    only_unread = request.query.get("unread") == "1"
    seen = SeenState.load(reads.home, me)

    async with reads.reader() as reader:
        starts_task = asyncio.ensure_future(start_cursors(reader.nodes)) if cursor is None else None
        try:
            follows = frozenset(await follow_set(reader, me, mark=False))
            moderation = await reads.moderation(
                reader, viewer=me, context=ViewContext.NOTIFICATIONS, follows=follows
            )
            async with moderation:
                notifier = Notifier(
                    reader, me, moderation=moderation, keep=seen.unread if only_unread else None
                )
                stop = (lambda e: e.ts <= seen.floor) if only_unread else None
                page = await notifier.page(limit=PAGE_ITEMS, cursor=cursor, stop=stop)
            posts = [n.event for n in [*page.shown, *page.hidden] if n.event.kind == kinds.POST]
            mine = await own_state(reads, reader, me, posts)
            starts = None if starts_task is None else await starts_task
        finally:
            if starts_task is not None and not starts_task.done():
                starts_task.cancel()
    walked = _newest_first([*page.shown, *page.hidden])
    unread = {n.event.id: seen.unread(n.event) for n in walked}
    seen.mark([n.event for n in walked])
    seen.save()
    names = Names(reads.config, reads.profiles_with_own(page.profiles))
    view = View(
        items=[n.event for n in walked],
        report=reader.report,
        related=page.related,
        profiles=page.profiles,
    )
    mod = Moderated(shown=[], hidden=[], verdicts=page.verdicts, warnings=page.warnings)
    lst = listing(request, view, mod, names, mine=mine)
    by_id = {n.event.id: n for n in walked}
    next_query = {"cursor": page.next.encode()} if page.next is not None else None
    if next_query is not None and only_unread:
        next_query["unread"] = "1"
    return render(
        request,
        "notifications.html",
        title="Notifications",
        lst=lst,
        about=by_id,
        unread=unread,
        verbs=REASON_TEXT,
        only_unread=only_unread,
        unread_count=sum(unread.values()),
        next_href=None
        if next_query is None
        else str(request.app.router["notifications"].url_for().with_query(next_query)),
        live_from=None if starts is None else json.dumps(starts, separators=(",", ":")),
        seen=",".join(n.event.id_hex for n in walked),
    )


def _newest_first(found: list[Notification]) -> list[Notification]:
    """Shown and hidden rows in the order of every list (spec 0007 #merged-pages)."""
    return sorted(found, key=lambda n: key_of(n.event), reverse=True)


@routes.get("/live/notifications", name="live-notifications")
async def live(request: web.Request) -> web.StreamResponse:
    """New notifications that the reader's filters show, as ids, live."""
    reads = request.app[WEB].reads
    me = reads.me()
    if me is None:
        raise web.HTTPNotFound()
    nodes = reads.node_clients()
    starts = stream_starts(request, [n.url for n in nodes])
    shown = [bytes.fromhex(i) for i in seen_ids(request)]

    async def pump(announce: Announce) -> None:
        base = Reader(nodes, net=reads.net(), timeout=reads.timeout(), keycache=reads.keycache)
        follows = frozenset(await follow_set(base, me, mark=False))
        moderation = await reads.moderation(
            base, viewer=me, context=ViewContext.NOTIFICATIONS, follows=follows, keep=False
        )
        async with moderation:

            def make(keep: Callable[[Event], bool]) -> Notifier:
                fresh = Reader(nodes, net=base.net, timeout=base.timeout, keycache=base.keycache)
                return Notifier(fresh, me, moderation=moderation, keep=keep)

            async def on_new(new: list[Notification], page: NotificationPage) -> None:
                if new:
                    await announce([n.event.id_hex for n in new])

            watch = NotificationWatch(nodes, me, make, on_new, net=base.net, shown=shown)
            await watch.run(starts)

    return await stream_ids(request, event="notifications", pump=pump)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
