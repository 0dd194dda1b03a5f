"""``GET /v1/stream``: the Server-Sent Events handler (protocol in :mod:`node.stream`)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.api.params import did_list, kind_list, list_param
from node.api.render import event_json
from node.state import CONFIG, HUB, METRICS, STORE
from node.stream import PAGE, parse_start_cursor, sse_frame

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
    """Replay from the cursor, then follow new commits; heartbeat while idle."""
    app = request.app
    config = app[CONFIG]
    store, hub, metrics = app[STORE], app[HUB], app[METRICS]
    cursor = parse_start_cursor(request, live=store.counts().cursor)
    kinds = kind_list(request)
    authors = did_list(list_param(request, "authors", max_items=config.limits.max_feed_authors))
    write_timeout = config.limits.stream_write_timeout_ms / 1000
    heartbeat = config.limits.heartbeat_ms / 1000

    loop = asyncio.get_running_loop()
    last_write = loop.time()
    hub.join()
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
            if await hub.wait(cursor, min(heartbeat, _LIVENESS_S)):
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
        hub.leave()
        metrics.stream_disconnects[reason] += 1
    return resp
