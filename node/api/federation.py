"""Handlers for federation: negentropy sync, the peer list and announcements (spec 0005)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from node.api.render import respond
from node.federation.sync import SYNC_CONTENT_TYPE
from node.limits import client_address, read_body, read_json
from node.state import ANNOUNCE_LIMITER, CONFIG, FEDERATION, METRICS
from protocol import jsontext
from protocol.errors import (
    BadRequestError,
    NegentropyError,
    RateLimitedError,
    UnsupportedMediaTypeError,
)
from protocol.negentropy import Negentropy

__all__ = ["announce", "list_peers", "sync"]

#: Largest announcement body, and its shape.
_MAX_ANNOUNCE_BYTES = 4096
_ANNOUNCEMENT = '{"url": "http(s)://host[:port]"}'


async def sync(request: web.Request) -> web.Response:
    """``POST /v1/sync``: one negentropy message in, the next one out.

    Raw bytes (``application/octet-stream``) both ways; a JSON form
    ``{"message": "<hex>"}`` is accepted for tools, and answered in kind. The server
    keeps no session: each message is answered from the current snapshot of the set.
    """
    app = request.app
    config = app[CONFIG]
    limit = config.federation.sync_frame_bytes
    body = await read_body(
        request,
        max_bytes=max(limit, 64 * 1024) * 2 + 1024,
        timeout_s=config.limits.body_timeout_ms / 1000,
    )
    as_json = request.content_type == "application/json"
    if as_json:
        try:
            doc = jsontext.loads(body)
            message = bytes.fromhex(doc["message"])
        except (ValueError, KeyError, TypeError):
            raise BadRequestError('JSON sync body must be {"message": "<hex>"}') from None
    elif request.content_type == SYNC_CONTENT_TYPE:
        message = body
    else:
        raise UnsupportedMediaTypeError(
            f"sync takes {SYNC_CONTENT_TYPE} (or application/json), "
            f"not {request.content_type or 'no type'!r}"
        )
    if not message:
        raise NegentropyError("empty negentropy message")
    storage = await app[FEDERATION].snapshot.get()
    engine = Negentropy(storage, limit)
    # Off the event loop: a first round over a large set hashes many ranges.
    answer = await asyncio.to_thread(engine.reconcile, message)  # NegentropyError -> 400
    if as_json:
        return web.json_response({"message": answer.hex()})
    return web.Response(body=answer, content_type=SYNC_CONTENT_TYPE)


async def list_peers(request: web.Request) -> web.Response:
    """``GET /v1/peers``: every known peer with its URL, state and score."""
    fed = request.app[FEDERATION]
    doc: dict[str, Any] = {
        "node_id": fed.node_id,
        "url": request.app[FEDERATION].advertised_url,
        "peer_exchange": request.app[CONFIG].federation.peer_exchange,
        "peers": fed.peers_json(),
    }
    return respond(request, doc)


async def announce(request: web.Request) -> web.Response:
    """``POST /v1/peers`` ``{"url": ...}``: a node tells this one where it is.

    Anyone may announce any URL, and each new one costs a probe, so announcements
    have their own small bucket per address (429 + Retry-After, spec 0005
    #announce-limits), taken before the body is read.
    """
    config = request.app[CONFIG]
    try:
        request.app[ANNOUNCE_LIMITER].take(client_address(request.remote))
    except RateLimitedError:
        request.app[METRICS].rate_limited += 1
        raise
    doc = await read_json(
        request,
        max_bytes=_MAX_ANNOUNCE_BYTES,
        timeout_s=config.limits.body_timeout_ms / 1000,
        shape=_ANNOUNCEMENT,
    )
    url = doc.get("url") if isinstance(doc, dict) else None
    if not isinstance(url, str):
        raise BadRequestError(f"announcement must be {_ANNOUNCEMENT}")
    try:
        status = request.app[FEDERATION].consider(url, via="announcement")
    except ValueError as exc:
        raise BadRequestError(f"bad peer url: {exc}") from None
    return web.json_response({"status": status}, status=202 if status == "added" else 200)
