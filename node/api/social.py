"""Handlers for the social reads: notifications, followers, counts, reactions (spec 0004
#social).

Each answers with the referencing events themselves, in the event form with ``wire``,
so that a client verifies them and applies its own moderation; the node's part is the
index (what it holds, not a global truth: spec 0004 #counts-local). Every list is newest
first by the referencing event's ``(ts, cursor)`` and paged with the same opaque cursor
as the feed.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from node.api.params import (
    authors_body,
    did_param,
    event_id_param,
    limit_param,
    list_param,
    pair_cursor,
    parse_pair_cursor,
)
from node.api.render import event_json, respond, wants_msgpack
from node.limits import read_json
from node.state import CONFIG, STORE
from node.store.base import (
    NOTIFICATION_REASONS as REASONS,
)
from node.store.base import (
    REACTION_KINDS,
    AuthorStats,
    EventCounts,
    StoredEvent,
)
from protocol.errors import BadRequestError

__all__ = [
    "MAX_COUNTS_IDS",
    "counts",
    "followers",
    "notifications",
    "reactions",
    "stats",
    "stats_json",
]

#: Most ids in one ``POST /v1/counts`` (a page of the largest feed).
MAX_COUNTS_IDS: Final = 500
#: Largest ``POST /v1/counts`` body: 500 hex ids of 64 characters with quoting fit.
MAX_COUNTS_BODY: Final = 64 * 1024
_COUNTS_BODY: Final = '{"ids": ["<64 hex event id>", ...]}'
_DEFAULT_PAGE: Final = 50


def stats_json(stats: AuthorStats) -> dict[str, Any]:
    """The ``stats`` object of a profile or followers answer (spec 0004 #author-stats)."""
    return {
        "followers": stats.followers,
        "following": stats.following,
        "first_ts": stats.first_ts,
        "first_seen_ms": stats.first_seen_ms,
    }


def counts_json(counts: EventCounts) -> dict[str, int]:
    return {
        "likes": counts.likes,
        "reposts": counts.reposts,
        "replies": counts.replies,
        "quotes": counts.quotes,
    }


def _reasons(request: web.Request) -> tuple[str, ...]:
    asked = list_param(request, "kinds", max_items=len(REASONS))
    if asked is None:
        return REASONS
    unknown = [k for k in asked if k not in REASONS]
    if unknown:
        raise BadRequestError(f"kinds: {unknown[0]!r} is not one of {', '.join(REASONS)}")
    return asked


def _page_next(rows: list[StoredEvent], limit: int) -> str | None:
    return pair_cursor(rows[-1].ts, rows[-1].cursor) if len(rows) == limit else None


async def notifications(request: web.Request) -> web.Response:
    """``GET /v1/notifications?did=&kinds=&before=&limit=`` (spec 0004 #notifications)."""
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    raw = request.query.get("did")
    if not raw:
        raise BadRequestError("did (the identity notified) is required")
    recipient = did_param(raw, "did")
    reasons = _reasons(request)
    before = parse_pair_cursor(request.query.get("before"), "before")
    limit = limit_param(request, _DEFAULT_PAGE, config.limits.max_page)
    found = await request.app[STORE].notifications(
        recipient, reasons=reasons, before=before, limit=limit
    )
    doc = {
        "did": recipient,
        "notifications": [
            {"reason": n.reason, "event": event_json(n.event, net=config.network, binary=binary)}
            for n in found
        ],
        "next": _page_next([n.event for n in found], limit),
    }
    return respond(request, doc, binary=binary)


async def followers(request: web.Request) -> web.Response:
    """``GET /v1/followers/{did}?before=&limit=`` (spec 0004 #followers)."""
    config = request.app[CONFIG]
    store = request.app[STORE]
    binary = wants_msgpack(request)
    subject = did_param(request.match_info["did"], "did")
    before = parse_pair_cursor(request.query.get("before"), "before")
    limit = limit_param(request, _DEFAULT_PAGE * 2, config.limits.max_page)
    rows = await store.followers(subject, before=before, limit=limit)
    stats = (await store.author_stats([subject]))[subject]
    doc = {
        "did": subject,
        "stats": stats_json(stats),
        "events": [event_json(r, net=config.network, binary=binary) for r in rows],
        "next": _page_next(rows, limit),
    }
    return respond(request, doc, binary=binary)


async def reactions(request: web.Request) -> web.Response:
    """``GET /v1/events/{id}/reactions?kind=&before=&limit=`` (spec 0004 #reactions)."""
    config = request.app[CONFIG]
    store = request.app[STORE]
    binary = wants_msgpack(request)
    target = event_id_param(request.match_info["id"])
    kind = request.query.get("kind")
    if kind not in REACTION_KINDS:
        raise BadRequestError(f"kind must be one of {', '.join(REACTION_KINDS)}")
    before = parse_pair_cursor(request.query.get("before"), "before")
    limit = limit_param(request, _DEFAULT_PAGE * 2, config.limits.max_page)
    rows = await store.reactions(target, kind, before=before, limit=limit)
    counted = (await store.event_counts([target]))[target]
    doc = {
        "id": target.hex(),
        "kind": kind,
        "counts": counts_json(counted),
        "events": [event_json(r, net=config.network, binary=binary) for r in rows],
        "next": _page_next(rows, limit),
    }
    return respond(request, doc, binary=binary)


async def counts(request: web.Request) -> web.Response:
    """``POST /v1/counts`` with ``{"ids": [hex]}`` (spec 0004 #counts)."""
    config = request.app[CONFIG]
    doc = await read_json(
        request,
        max_bytes=MAX_COUNTS_BODY,
        timeout_s=config.limits.body_timeout_ms / 1000,
        shape=_COUNTS_BODY,
    )
    if not isinstance(doc, dict) or set(doc) != {"ids"}:
        raise BadRequestError(f"counts body is {_COUNTS_BODY}, no other keys")
    raw = doc["ids"]
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise BadRequestError("ids must be a list of 64-character hex event ids")
    unique = list(dict.fromkeys(v.lower() for v in raw))
    if not unique:
        raise BadRequestError("ids is empty")
    if len(unique) > MAX_COUNTS_IDS:
        raise BadRequestError(f"ids has more than {MAX_COUNTS_IDS} values")
    ids = [event_id_param(v, "ids") for v in unique]
    found = await request.app[STORE].event_counts(ids)
    return respond(request, {"counts": {i.hex(): counts_json(found[i]) for i in ids}})


async def stats(request: web.Request) -> web.Response:
    """``POST /v1/stats`` with ``{"authors": [did]}``: the figures of many authors at once
    (spec 0004 #stats-batch): every did asked, with the ``stats`` of #author-stats."""
    config = request.app[CONFIG]
    authors = await authors_body(
        request,
        "stats",
        max_bytes=MAX_COUNTS_BODY,
        max_authors=config.limits.max_feed_authors,
        timeout_s=config.limits.body_timeout_ms / 1000,
    )
    found = await request.app[STORE].author_stats(authors)
    return respond(request, {"stats": {a: stats_json(found[a]) for a in authors}})
