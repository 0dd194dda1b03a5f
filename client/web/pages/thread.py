"""A thread as a tree: ``GET /thread/{id}`` (spec 0007 §views, as ``murmur thread``).

The id is any post of the thread (64 hex, or a short id of at least 8 hex resolved on
the reader's nodes and among the home's own sent events, as the CLI does, spec 0007
#short-ids); the root and every reply are read from
every node, verified, moderated in the thread context, and drawn indented by depth.
The post asked for is marked and shown behind its warning, if it has one.
"""

from __future__ import annotations

from aiohttp import web

from client.moderation.core import ViewContext
from client.shortids import parse_event_ref
from client.threadtree import reply_tree
from client.views import follow_set, thread_root_id, thread_view
from client.web.context import WEB, render
from client.web.pages.common import listing, own_state
from client.web.render import Names

__all__ = ["setup"]

routes = web.RouteTableDef()


@routes.get("/thread/{id}", name="thread")
async def thread(request: web.Request) -> web.Response:
    reads = request.app[WEB].reads
    ref = parse_event_ref(request.match_info["id"])
    me = reads.me() or ""
    async with reads.reader() as reader:
        eid = await reads.event_id(reader, ref)  # spec 0007 #short-ids, own events too
        view = await thread_view(reader, eid)
        follows = frozenset(await follow_set(reader, me, mark=False)) if me else frozenset()
        mod = await reads.judge(
            reader, view, viewer=me, context=ViewContext.THREAD, follows=follows
        )
        shown = [view.root, *view.items] if view.root is not None else view.items
        mine = await own_state(reads, reader, me, shown)
    names = Names(reads.config, reads.profiles_with_own(view.profiles))
    root_id = thread_root_id(view, eid)
    order = reply_tree(view.items, root_id)
    root_rows = listing(
        request, view, mod, names, items=[view.root] if view.root else [], mine=mine
    )
    replies = listing(
        request,
        view,
        mod,
        names,
        items=[e for _, e in order],
        depths={e.id: d for d, e in order},
        focus=eid,
        mine=mine,
    )
    for row in root_rows.rows:
        row.focus = row.event.id == eid
    return render(
        request,
        "thread.html",
        title="Thread",
        root=root_rows.rows[0] if root_rows.rows else None,
        root_id=root_id.hex(),
        lst=replies,
    )


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
