"""Handlers for derived views: feed, thread, labels and profile search (spec 0004).

Each is one store query with cursor paging. Events whose body was dropped by a
deletion are left out of the feed and of threads (they remain available by id and in
the author's log, header only).
"""

from __future__ import annotations

from aiohttp import web

from node.api.params import (
    MAX_KINDS,
    check_kinds,
    did_list,
    did_param,
    event_id_param,
    int_param,
    json_list,
    kind_list,
    limit_param,
    list_param,
    pair_cursor,
    parse_pair_cursor,
)
from node.api.render import event_json, respond, wants_msgpack
from node.api.social import stats_json
from node.limits import read_json
from node.state import CONFIG, STORE
from node.store.base import FeedQuery
from protocol.errors import BadRequestError, NotFoundError
from protocol.identity import DID_MURMUR_PREFIX
from protocol.limits import MAX_NAME_BYTES

__all__ = ["feed", "feed_post", "labels", "profiles", "thread"]

_DEFAULT_PAGE = 50


async def feed(request: web.Request) -> web.Response:
    """``GET /v1/feed?authors=&kinds=&limit=&before=``: newest first."""
    config = request.app[CONFIG]
    query = FeedQuery(
        authors=did_list(
            list_param(request, "authors", max_items=config.limits.max_feed_authors)
        ),
        kinds=kind_list(request),
        before=parse_pair_cursor(request.query.get("before"), "before"),
        limit=limit_param(request, _DEFAULT_PAGE, config.limits.max_page),
    )
    return await _feed_page(request, query)


#: Largest ``POST /v1/feed`` body: 500 dids of 56 bytes with JSON quoting fit in 32 KiB.
MAX_FEED_BODY = 64 * 1024
_FEED_BODY = '{"authors": [did], "kinds": [kind], "limit": n, "before": cursor}'


async def feed_post(request: web.Request) -> web.Response:
    """``POST /v1/feed`` with the query in a JSON body (every key optional).

    The same query as the ``GET`` form, checked the same way, for long author lists:
    a 500-did query string is ~31 KiB, which HTTP clients (and intermediaries) handle
    poorly.
    """
    config = request.app[CONFIG]
    doc = await read_json(
        request,
        max_bytes=MAX_FEED_BODY,
        timeout_s=config.limits.body_timeout_ms / 1000,
        shape=_FEED_BODY,
    )
    if not isinstance(doc, dict) or set(doc) - {"authors", "kinds", "limit", "before"}:
        raise BadRequestError(f"feed body is {_FEED_BODY}, no other keys")
    limit = doc.get("limit", _DEFAULT_PAGE)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise BadRequestError("limit must be a positive integer")
    before = doc.get("before")
    if before is not None and not isinstance(before, str):
        raise BadRequestError("before must be a cursor string")
    query = FeedQuery(
        authors=did_list(json_list(doc, "authors", max_items=config.limits.max_feed_authors)),
        kinds=check_kinds(json_list(doc, "kinds", max_items=MAX_KINDS)),
        before=parse_pair_cursor(before, "before"),
        limit=min(limit, config.limits.max_page),
    )
    return await _feed_page(request, query)


async def _feed_page(request: web.Request, query: FeedQuery) -> web.Response:
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    store = request.app[STORE]
    rows = await store.feed(query)
    nxt = pair_cursor(rows[-1].ts, rows[-1].cursor) if len(rows) == query.limit else None
    # The key-event tips of the page's did:murmur authors (spec 0004 #feed-key-tips):
    # a reader whose home holds them resolves from those and skips POST /v1/keys.
    rotatable = sorted({r.author for r in rows if r.author.startswith(DID_MURMUR_PREFIX)})
    tips = await store.key_tips(rotatable) if rotatable else {}
    doc = {
        "events": [event_json(r, net=config.network, binary=binary) for r in rows],
        "next": nxt,
        "key_tips": {a: [t.hex() for t in tips[a]] for a in rotatable if a in tips},
    }
    return respond(request, doc, binary=binary)


async def thread(request: web.Request) -> web.Response:
    """``GET /v1/threads/{id}?limit=&after=``: the root and its replies, oldest first."""
    root_id = event_id_param(request.match_info["id"])
    config = request.app[CONFIG]
    store = request.app[STORE]
    binary = wants_msgpack(request)
    limit = limit_param(request, _DEFAULT_PAGE * 2, config.limits.max_page)
    after = parse_pair_cursor(request.query.get("after"), "after")
    root = await store.get_event(root_id)
    replies = await store.thread(root_id, after=after, limit=limit)
    if root is None and not replies and after is None:
        raise NotFoundError(f"no thread {root_id.hex()} on this node")
    nxt = pair_cursor(replies[-1].ts, replies[-1].cursor) if len(replies) == limit else None
    doc = {
        "root": None if root is None else event_json(root, net=config.network, binary=binary),
        "replies": [event_json(r, net=config.network, binary=binary) for r in replies],
        "next": nxt,
    }
    return respond(request, doc, binary=binary)


def _subject(raw: str) -> str:
    if raw.startswith("did:"):
        return did_param(raw, "subject")
    return event_id_param(raw, "subject").hex()


async def labels(request: web.Request) -> web.Response:
    """``GET /v1/labels?subject=&labeler=&after=&limit=``."""
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    raw_subject = request.query.get("subject")
    raw_labeler = request.query.get("labeler")
    if not raw_subject and not raw_labeler:
        raise BadRequestError("labels needs subject (event id or did), labeler, or both")
    subject = _subject(raw_subject) if raw_subject else None
    labeler = did_param(raw_labeler, "labeler") if raw_labeler else None
    after = int_param(request, "after", 0) or 0
    limit = limit_param(request, _DEFAULT_PAGE * 2, config.limits.max_page)
    rows = await request.app[STORE].labels(
        subject=subject, labeler=labeler, after=after, limit=limit
    )
    doc = {
        "labels": [
            {
                "labeler": r.labeler,
                "subject": r.subject,
                "val": r.val,
                "neg": r.neg,
                "exp": r.exp,
                "event": event_json(r.event, net=config.network, binary=binary),
            }
            for r in rows
        ],
        "next": str(rows[-1].event.cursor) if len(rows) == limit else None,
    }
    return respond(request, doc, binary=binary)


async def profiles(request: web.Request) -> web.Response:
    """``GET /v1/profiles?q=&limit=``: latest profile per author, name contains q."""
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    q = request.query.get("q", "").strip()
    if not q:
        raise BadRequestError("q (part of a display name) is required")
    if len(q.encode("utf-8")) > MAX_NAME_BYTES:
        raise BadRequestError(f"q is longer than {MAX_NAME_BYTES} bytes")
    limit = limit_param(request, 20, config.limits.max_page)
    store = request.app[STORE]
    rows = await store.profiles(q, limit=limit)
    stats = await store.author_stats([r.author for r in rows])
    doc = {
        "profiles": [
            {
                "author": r.author,
                "name": r.name,
                "bio": r.bio,
                "stats": stats_json(stats[r.author]),
                "event": event_json(r.event, net=config.network, binary=binary),
            }
            for r in rows
        ]
    }
    return respond(request, doc, binary=binary)
