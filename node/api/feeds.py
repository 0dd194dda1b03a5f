"""Handlers of the served feeds (spec 0004 #feeds) and of the reacted targets (#reacted).

``GET /v1/feeds`` lists the feeds this node's operator enabled, ``GET
/v1/feeds/{name}`` answers one page of one (event ids and a cursor only: the reader
fetches and verifies the events from its own nodes), ``GET /v1/reacted`` the most
liked and reposted targets of a window (what a client's feed Source asks a node).
Parameters are checked here; the pages themselves come from :class:`node.feeds.FeedServer`.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from node.api.params import did_param, int_param
from node.api.render import respond
from node.state import FEEDS
from protocol.errors import BadCursorError, BadRequestError, FeedNotFoundError
from protocol.feeds import DEFAULT_LIMIT, MAX_CURSOR_CHARS, MAX_LIMIT, MAX_TOP

__all__ = ["feed_page", "list_feeds", "reacted"]

#: The longest window ``GET /v1/reacted`` reads (spec 0004 #reacted).
MAX_REACTED_SPAN_MS: Final = 7 * 86_400_000
#: ``GET /v1/reacted``'s default number of targets.
DEFAULT_REACTED: Final = 200


async def list_feeds(request: web.Request) -> web.Response:
    """``GET /v1/feeds``: the feeds served here, by name."""
    return respond(request, {"feeds": request.app[FEEDS].listing()})


def _cursor_param(request: web.Request) -> str | None:
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_CURSOR_CHARS or not all(33 <= ord(c) <= 126 for c in raw):
        raise BadCursorError("cursor is not one this feed returned: start again without one")
    return raw


async def feed_page(request: web.Request) -> web.Response:
    """``GET /v1/feeds/{name}?limit=&cursor=&viewer=``: one page, ids and a cursor."""
    server = request.app[FEEDS]
    name = request.match_info["name"]
    if not server.serves(name):  # any name not served, well-formed or not
        raise FeedNotFoundError(f"this node serves no feed {name!r} (GET /v1/feeds)")
    limit = int_param(request, "limit", DEFAULT_LIMIT, lo=1)
    assert limit is not None  # noqa: S101 - default is an int
    viewer_raw = request.query.get("viewer")
    viewer = did_param(viewer_raw, "viewer") if viewer_raw else None
    page = await server.page(
        name, viewer=viewer, cursor=_cursor_param(request), limit=min(limit, MAX_LIMIT)
    )
    doc = {
        "feed": name,
        "items": [{"id": item.id.hex(), "why": item.why} for item in page.items],
        "cursor": page.cursor,
    }
    return respond(request, doc)


async def reacted(request: web.Request) -> web.Response:
    """``GET /v1/reacted?since=&until=&limit=``: targets by distinct likes + reposts."""
    since = int_param(request, "since", None)
    until = int_param(request, "until", None)
    if since is None or until is None:
        raise BadRequestError("since and until are required (milliseconds since the epoch)")
    if since >= until:
        raise BadRequestError("since must be before until")
    if until - since > MAX_REACTED_SPAN_MS:
        raise BadRequestError(f"the window is at most {MAX_REACTED_SPAN_MS} ms (7 days)")
    limit = int_param(request, "limit", DEFAULT_REACTED, lo=1)
    assert limit is not None  # noqa: S101 - default is an int
    found = await request.app[FEEDS].top_reacted(
        since_ts=since, until_ts=until, limit=min(limit, MAX_TOP)
    )
    targets = [{"id": r.id.hex(), "likes": r.likes, "reposts": r.reposts} for r in found]
    return respond(request, {"targets": targets})
