"""``GET /v1/search``: full-text and hashtag search of the posts this node holds
(spec 0004 #search).

One of ``q`` (words, every one must be in the post) or ``tag`` (a hashtag); newest
first by ``ts``, paged with ``before``. Parameters are checked by
:mod:`node.search_terms` (bounded, never search-engine syntax); the answer carries
each post's wire bytes for the client to verify, like the feed.
"""

from __future__ import annotations

from aiohttp import web

from node.api.params import MAX_CURSOR, limit_param
from node.api.render import event_json, respond, wants_msgpack
from node.search_terms import query_tag, query_words
from node.state import CONFIG, STORE
from node.store.base import SearchQuery
from protocol.errors import BadRequestError

__all__ = ["search"]

_DEFAULT_PAGE = 50


def _before(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_CURSOR:
        raise BadRequestError("before is not a cursor returned by this node's search")
    return int(raw)


async def search(request: web.Request) -> web.Response:
    """``GET /v1/search?q=|tag=&before=&limit=``."""
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    q = request.query.get("q")
    tag = request.query.get("tag")
    if (q is None) == (tag is None):
        raise BadRequestError("search needs q (words) or tag (a hashtag), not both")
    query = SearchQuery(
        words=() if q is None else query_words(q),
        tag=None if tag is None else query_tag(tag),
        before=_before(request.query.get("before")),
        limit=limit_param(request, _DEFAULT_PAGE, config.limits.max_page),
    )
    page = await request.app[STORE].search(query)
    doc = {
        "events": [event_json(r, net=config.network, binary=binary) for r in page.events],
        "next": None if page.next is None else str(page.next),
    }
    return respond(request, doc, binary=binary)
