"""Handlers for events: ingest, event by id, an author's log and head (spec 0004).

Thin by design: parse with :mod:`protocol` and :mod:`node.api.params`, call the
ingest pipeline or the store, render.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.api.params import (
    MAX_CURSOR,
    authors_body,
    did_param,
    event_id_param,
    int_param,
    key_cursor,
    limit_param,
    list_param,
    parse_key_cursor,
)
from node.api.render import event_json, respond, wants_msgpack
from node.federation.blobfetch import wire_image_hashes
from node.ingest import ingest_batch, parse_batch
from node.limits import read_body, read_json
from node.state import CONFIG, FEDERATION, HUB, METRICS, STORE, VERIFIER
from node.store.base import KeyHistory, StoredEvent
from protocol.chain import analyze_chain
from protocol.errors import BadRequestError, NotFoundError

__all__ = [
    "MAX_PREFIX_MATCHES",
    "MIN_ID_PREFIX",
    "MAX_LOG_RANGES",
    "author_events",
    "author_head",
    "author_ranges",
    "author_keys",
    "get_event",
    "get_events",
    "keys_batch",
    "post_events",
]

_DEFAULT_PAGE = 100
#: Most ids in one ``GET /v1/events?ids=`` (keeps the request line under 8 KiB).
MAX_IDS = 100
#: Largest ``POST /v1/keys`` body: 500 dids of ~60 bytes with JSON quoting fit in 32 KiB.
MAX_KEYS_BODY = 64 * 1024
#: Most key events in one ``POST /v1/keys`` answer (spec 0004 #keys-batch): authors
#: past it are listed in ``deferred`` for the single-author form.
MAX_KEYS_BATCH_EVENTS = 2000
#: Most key events in one ``GET /v1/authors/{did}/keys`` page (spec 0004
#: #author-keys): an author with more is read page by page, following ``next``.
MAX_KEYS_PAGE = 1000
#: Shortest ``id_prefix`` (spec 0004 #events-by-prefix): 32 bits, so a prefix matches
#: few events even in a large store, and the answer stays a lookup, not a listing.
MIN_ID_PREFIX = 8
#: Most events one ``id_prefix`` answer carries: two already say "ambiguous"; a few
#: more let the client show the candidates.
MAX_PREFIX_MATCHES = 5
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


async def post_events(request: web.Request) -> web.Response:
    """``POST /v1/events``: a batch in, one result per event out, after commit."""
    app = request.app
    config = app[CONFIG]
    limits = config.limits
    binary = wants_msgpack(request)
    body = await read_body(
        request, max_bytes=limits.max_request_bytes, timeout_s=limits.body_timeout_ms / 1000
    )
    wires = parse_batch(
        request.content_type,
        body,
        max_batch=limits.max_batch,
        max_bytes=limits.max_request_bytes,
    )
    results = await ingest_batch(
        wires,
        verifier=app[VERIFIER],
        store=app[STORE],
        now_ms=config.now_ms,
        on_commit=app[HUB].publish,
    )
    metrics = app[METRICS]
    metrics.batches += 1
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    images = False
    for wire, r in zip(wires, results, strict=True):
        counts[r.status] += 1
        metrics.count_event(r.status, r.error.code if r.error is not None else "")
        if r.status == "accepted" and isinstance(wire, bytes) and wire_image_hashes(wire):
            images = True
    if images:
        # A client uploads a post's images before posting it; any this node lacks (an
        # upload that failed here) are fetched from peers in a round now (spec 0005
        # #blob-fetch), not at the next periodic one. A wake only: each hash keeps its
        # backoff, so posting cannot make the node ask its peers faster.
        app[FEDERATION].blobs.wake()
    doc: dict[str, Any] = {"results": [r.to_json() for r in results], **counts}
    return respond(request, doc, binary=binary)


async def get_event(request: web.Request) -> web.Response:
    """``GET /v1/events/{id}``."""
    eid = event_id_param(request.match_info["id"])
    binary = wants_msgpack(request)
    ev = await request.app[STORE].get_event(eid)
    if ev is None:
        raise NotFoundError(f"no event {eid.hex()} on this node")
    net = request.app[CONFIG].network
    return respond(request, {"event": event_json(ev, net=net, binary=binary)}, binary=binary)


async def get_events(request: web.Request) -> web.Response:
    """``GET /v1/events?ids=<hex>,<hex>,...``: several events by id; unknown ids listed.
    ``GET /v1/events?id_prefix=<hex>``: the few events whose id starts with it."""
    if "id_prefix" in request.query:
        if "ids" in request.query:
            raise BadRequestError("give ids or id_prefix, not both")
        return await _events_by_prefix(request)
    raw = list_param(request, "ids", max_items=MAX_IDS)
    if raw is None:
        raise BadRequestError("ids is required: comma-separated 64-character hex event ids")
    # Dedupe after parsing: "AB.." and "ab.." are the same id.
    ids = list(dict.fromkeys(event_id_param(x, "ids") for x in raw))
    binary = wants_msgpack(request)
    found = await request.app[STORE].get_events(ids)
    by_id = {ev.id: ev for ev in found}
    net = request.app[CONFIG].network
    doc = {
        "events": [event_json(by_id[i], net=net, binary=binary) for i in ids if i in by_id],
        "missing": [i.hex() for i in ids if i not in by_id],
    }
    return respond(request, doc, binary=binary)


async def _events_by_prefix(request: web.Request) -> web.Response:
    """Spec 0004 #events-by-prefix: how a short id the client printed is resolved."""
    prefix = request.query["id_prefix"]
    if not MIN_ID_PREFIX <= len(prefix) <= 64 or not _HEX_DIGITS.issuperset(prefix):
        raise BadRequestError(
            f"id_prefix must be {MIN_ID_PREFIX} to 64 hex characters of an event id"
        )
    binary = wants_msgpack(request)
    found = await request.app[STORE].events_by_id_prefix(prefix.lower(), limit=MAX_PREFIX_MATCHES)
    net = request.app[CONFIG].network
    doc = {"events": [event_json(ev, net=net, binary=binary) for ev in found]}
    return respond(request, doc, binary=binary)


async def author_events(request: web.Request) -> web.Response:
    """``GET /v1/authors/{did}/events?from_seq=&to_seq=&limit=``: ascending by seq."""
    author = did_param(request.match_info["did"])
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    from_seq = int_param(request, "from_seq", 1, lo=1)
    to_seq = int_param(request, "to_seq", None, lo=1)
    limit = limit_param(request, _DEFAULT_PAGE, config.limits.max_page)
    assert from_seq is not None  # noqa: S101 - has a default
    rows = await request.app[STORE].author_events(
        author, from_seq=from_seq, to_seq=to_seq, limit=limit + 1
    )
    rows, next_from = _log_page(rows, limit)
    doc = {
        "author": author,
        "events": [event_json(r, net=config.network, binary=binary) for r in rows],
        "next_from_seq": next_from,
    }
    return respond(request, doc, binary=binary)


def _log_page(rows: list[StoredEvent], limit: int) -> tuple[list[StoredEvent], int | None]:
    """At most ``limit`` of ``rows`` (read with ``limit + 1``) and the next from_seq."""
    if len(rows) <= limit:
        return rows, None
    # Never split the events of one seq (a fork) across pages.
    next_from = rows[limit].seq
    page = [r for r in rows[:limit] if r.seq < next_from]
    if not page:
        return rows[:limit], next_from + 1
    return page, next_from


#: Most seq ranges in one ``POST /v1/authors/events`` (spec 0004 #author-ranges).
MAX_LOG_RANGES = 200
#: Widest range: the seqs a reader repairs per author and read (spec 0007 #repair).
MAX_RANGE_SEQS = 500
_RANGES_BODY = '{"ranges": [{"author": did, "from_seq": int, "to_seq": int}], "limit": int}'


def _seq(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CURSOR:
        raise BadRequestError(f"{name} must be an integer from 1")
    return value


async def author_ranges(request: web.Request) -> web.Response:
    """``POST /v1/authors/events``: seq ranges of many authors' logs in one request
    (spec 0004 #author-ranges), each answered as ``GET /v1/authors/{did}/events`` would
    be, under one ``limit`` of events for the whole answer."""
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    doc = await read_json(
        request,
        max_bytes=MAX_KEYS_BODY,
        timeout_s=config.limits.body_timeout_ms / 1000,
        shape=_RANGES_BODY,
    )
    if not isinstance(doc, dict) or not set(doc) <= {"ranges", "limit"} or "ranges" not in doc:
        raise BadRequestError(f"ranges body is {_RANGES_BODY}, no other keys")
    raw = doc["ranges"]
    if not isinstance(raw, list) or not raw:
        raise BadRequestError("ranges must be a non-empty list")
    if len(raw) > MAX_LOG_RANGES:
        raise BadRequestError(f"ranges has more than {MAX_LOG_RANGES} values")
    limit = doc.get("limit", config.limits.max_page)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise BadRequestError("limit must be a positive integer")
    limit = min(limit, config.limits.max_page)
    ranges: list[tuple[str, int, int]] = []
    for r in raw:
        if not isinstance(r, dict) or set(r) != {"author", "from_seq", "to_seq"}:
            raise BadRequestError(f"each range is {{author, from_seq, to_seq}}: {_RANGES_BODY}")
        if not isinstance(r["author"], str):
            raise BadRequestError("author must be a did")
        author = did_param(r["author"], "author")
        first, last = _seq(r["from_seq"], "from_seq"), _seq(r["to_seq"], "to_seq")
        if last < first or last - first >= MAX_RANGE_SEQS:
            raise BadRequestError(f"to_seq: from from_seq to from_seq + {MAX_RANGE_SEQS - 1}")
        ranges.append((author, first, last))
    store = request.app[STORE]
    room = limit
    logs: list[dict[str, Any]] = []
    for author, first, last in ranges:
        rows: list[StoredEvent] = []
        next_from: int | None = first
        if room > 0:
            found = await store.author_events(author, from_seq=first, to_seq=last, limit=room + 1)
            rows, next_from = _log_page(found, room)
            room -= len(rows)
        logs.append(
            {
                "author": author,
                "from_seq": first,
                "to_seq": last,
                "events": [event_json(e, net=config.network, binary=binary) for e in rows],
                "next_from_seq": next_from,
            }
        )
    return respond(request, {"logs": logs}, binary=binary)


async def author_head(request: web.Request) -> web.Response:
    """``GET /v1/authors/{did}/head``: highest seq, contiguous head, gaps, forks."""
    author = did_param(request.match_info["did"])
    config = request.app[CONFIG]
    store = request.app[STORE]
    chain = await store.author_chain(author, limit=config.limits.max_chain_scan + 1)
    truncated = len(chain) > config.limits.max_chain_scan
    if truncated:
        chain = chain[: config.limits.max_chain_scan]
    if not chain:
        raise NotFoundError(f"no events of {author} on this node")
    report = analyze_chain(chain)
    doc = {
        "author": author,
        "max_seq": report.max_seq,
        "head_seq": report.head_seq,
        "head_id": None if report.head_id is None else report.head_id.hex(),
        "count": len(chain),
        "gaps": [[a, b] for a, b in report.gaps],
        "forks": [{"seq": s, "ids": [i.hex() for i in ids]} for s, ids in report.forks],
        "broken_links": list(report.broken_links),
        "forked": bool(report.forks) or await store.forked(author),
        "truncated": truncated,
    }
    return respond(request, doc)


def _keys_doc(history: KeyHistory, *, net: str, binary: bool) -> dict[str, Any]:
    """One author's ``/keys`` answer (or page): its key events, path and dispute."""
    disputed = None
    if history.disputed:
        point = None if history.point is None else history.point.hex()
        disputed = {"point": point, "contenders": [c.hex() for c in history.contenders]}
    nxt = None
    if history.more and history.events:
        last = history.events[-1]
        nxt = key_cursor(last.seq, last.id)
    return {
        "author": history.author,
        "events": [event_json(r, net=net, binary=binary) for r in history.events],
        "path": [k.hex() for k in history.path],
        "disputed": disputed,
        "next": nxt,
    }


async def author_keys(request: web.Request) -> web.Response:
    """``GET /v1/authors/{did}/keys?after=&limit=``: the held key events of a
    ``did:murmur`` author, on every branch, by ``(seq, id)``, a bounded page at a time
    (``next``), with the fork choice this node computed (spec 0004 #author-keys)."""
    author = did_param(request.match_info["did"])
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    after = parse_key_cursor(request.query.get("after"), "after")
    limit = limit_param(request, MAX_KEYS_PAGE, MAX_KEYS_PAGE)
    history = await request.app[STORE].key_history(author, after=after, limit=limit)
    if history is None:
        raise NotFoundError(f"no key events of {author} on this node")
    return respond(request, _keys_doc(history, net=config.network, binary=binary), binary=binary)


async def keys_batch(request: web.Request) -> web.Response:
    """``POST /v1/keys`` with ``{"authors": [did]}``: the ``/keys`` answer of every
    listed author that has held key events, in one response (spec 0004 #keys-batch).

    Bounded: at most ``max_feed_authors`` dids, and at most
    :data:`MAX_KEYS_BATCH_EVENTS` key events; the authors whose histories do not fit
    are named in ``deferred`` (ask them one by one). An author with no held key event
    (any ``did:key``) is simply absent from ``keys``.
    """
    config = request.app[CONFIG]
    binary = wants_msgpack(request)
    authors = await authors_body(
        request,
        "keys",
        max_bytes=MAX_KEYS_BODY,
        max_authors=config.limits.max_feed_authors,
        timeout_s=config.limits.body_timeout_ms / 1000,
    )
    # Bounded in the store: a history that does not fit is never read in full.
    histories, deferred = await request.app[STORE].key_histories(
        authors, max_events=MAX_KEYS_BATCH_EVENTS
    )
    keys = [
        _keys_doc(histories[a], net=config.network, binary=binary)
        for a in authors
        if a in histories
    ]
    return respond(request, {"keys": keys, "deferred": deferred}, binary=binary)
