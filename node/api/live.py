"""``GET /v1/stream``: the Server-Sent Events handler (protocol in :mod:`node.stream`)."""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from node.api.params import did_list, kind_list, list_param
from node.api.render import event_json
from node.limits import client_address
from node.state import CONFIG, FEDERATION, HUB, METRICS, STORE
from node.stream import PAGE, parse_start_cursor, sse_frame
from protocol.errors import RateLimitedError

__all__ = ["stream"]


#: While idle, check this often whether the subscriber is still connected, so a
#: vanished one frees its slot without waiting for the next heartbeat write.
_LIVENESS_S = 2.0


class _SlowConsumer(Exception):
    pass


async def _write(resp: web.StreamResponse, data: bytes, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await resp.write(data)
    except TimeoutError:
        raise _SlowConsumer from None


async def stream(request: web.Request) -> web.StreamResponse:
    """Replay from the cursor, then follow new commits; heartbeat while idle; end
    cleanly at the stream's lifetime or when evicted (spec 0004 §stream-slots)."""
    app = request.app
    config = app[CONFIG]
    store, hub, metrics = app[STORE], app[HUB], app[METRICS]
    cursor = parse_start_cursor(request, live=store.counts().cursor)
    kinds = kind_list(request)
    authors = did_list(list_param(request, "authors", max_items=config.limits.max_feed_authors))
    write_timeout = config.limits.stream_write_timeout_ms / 1000
    heartbeat = config.limits.heartbeat_ms / 1000

    address = client_address(request.remote)
    fed = app.get(FEDERATION)
    try:
        sub = hub.join(address, peers=fed.table.working_at(address) if fed is not None else 0)
    except RateLimitedError:
        metrics.rate_limited += 1
        raise
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    # Spread over the last quarter of the lifetime: streams opened together (a node's
    # restart) do not all end together.
    lifetime = config.limits.stream_max_lifetime_ms / 1000
    ends_at = last_write + lifetime * random.uniform(0.75, 1.0)  # noqa: S311 - not crypto
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    reason = "closed"
    try:
        await resp.prepare(request)
        await _write(resp, f"retry: 1000\n: cursor={cursor}\n\n".encode(), write_timeout)
        while not hub.closing:
            if sub.evicted or loop.time() >= ends_at:
                # A clean end (the subscriber resumes by cursor), with the reason.
                reason = "evicted" if sub.evicted else "lifetime"
                await _write(resp, f": closing reason={reason}\n\n".encode(), write_timeout)
                break
            seen = hub.cursor  # read BEFORE the query: everything <= seen is committed
            page = await store.events_after(cursor, limit=PAGE, kinds=kinds, authors=authors)
            if page:
                # One write (one HTTP chunk) per page: a follower reads what arrived
                # together as one batch, and so stores it in one transaction.
                frames = b"".join(sse_frame(ev, event_json(ev, net=config.network)) for ev in page)
                await _write(resp, frames, write_timeout)
                cursor = page[-1].cursor
            if len(page) == PAGE:
                continue
            cursor = max(cursor, seen)  # the query saw every commit up to `seen`
            idle_s = min(heartbeat, _LIVENESS_S, max(0.0, ends_at - loop.time()))
            if await hub.wait(sub, cursor, idle_s):
                continue
            if request.transport is None or request.transport.is_closing():
                reason = "reset"  # the subscriber is gone: free its slot now
                break
            now = loop.time()
            if now - last_write >= heartbeat:
                await _write(resp, b": heartbeat\n\n", write_timeout)
                last_write = now
        else:
            reason = "shutdown"
    except _SlowConsumer:
        reason = "slow"
        if request.transport is not None:
            request.transport.close()
    except (ConnectionResetError, ConnectionError):
        reason = "reset"
    finally:
        hub.leave(sub)
        metrics.stream_disconnects[reason] += 1
    return resp
