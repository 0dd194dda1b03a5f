"""Handlers about the node itself: info, health, metrics and the OpenAPI document."""

from __future__ import annotations

import functools
import importlib.resources

from aiohttp import web

from node.api.render import respond
from node.metrics import CONTENT_TYPE
from node.state import BLOBS, CONFIG, FEDERATION, FEEDS, HUB, METRICS, NODE_VERSION, STORE
from protocol import limits as plimits
from protocol.errors import UnavailableError
from protocol.events import EVENT_VERSION

__all__ = ["health", "info", "metrics", "openapi", "openapi_text"]


@functools.cache
def openapi_text() -> str:
    """``node/openapi.json`` as shipped in the package (a copy of specs/openapi.json)."""
    return importlib.resources.files("node").joinpath("openapi.json").read_text("utf-8")


async def info(request: web.Request) -> web.Response:
    """``GET /v1/info``: version, network, limits and counts."""
    config = request.app[CONFIG]
    lim = config.limits
    counts = request.app[STORE].counts()
    doc = {
        "software": "murmur-node",
        "version": NODE_VERSION,
        "node_id": request.app[FEDERATION].node_id,
        "url": request.app[FEDERATION].advertised_url,
        "protocol": EVENT_VERSION,
        "network": config.network,
        "limits": {
            "max_request_bytes": lim.max_request_bytes,
            "max_batch": lim.max_batch,
            "max_event_bytes": lim.max_event_bytes,
            "max_body_bytes": plimits.MAX_BODY_BYTES,
            "max_depth": plimits.MAX_DEPTH,
            "future_skew_ms": plimits.FUTURE_SKEW_MS,
            "rate_per_ip": lim.rate_per_ip,
            "rate_burst": lim.rate_burst,
            "request_timeout_ms": lim.request_timeout_ms,
            "max_page": lim.max_page,
            "max_feed_authors": lim.max_feed_authors,
        },
        "counts": {
            "events": counts.events,
            "authors": counts.authors,
            "deleted": counts.deleted,
            "forked_authors": counts.forked_authors,
        },
        "cursor": counts.cursor,
        "stream": {"transport": "sse", "path": "/v1/stream"},
        "federation": {
            "sync": {"path": "/v1/sync", "protocol": "negentropy-v1"},
            "peers": "/v1/peers",
            "peer_exchange": config.federation.peer_exchange,
            "sync_frame_bytes": config.federation.sync_frame_bytes,
            # This process runs the node's federation (spec 0004 #store-processes).
            "leader": request.app[FEDERATION].leading,
        },
        "store": request.app[STORE].backend,
        # The feeds served at /v1/feeds/{name} (spec 0004 #feeds).
        "feeds": request.app[FEEDS].names(),
    }
    return respond(request, doc)


async def health(request: web.Request) -> web.Response:
    """``GET /health``: 200 when the store answers, 503 otherwise."""
    try:
        await request.app[STORE].check()
    except Exception as exc:  # any store failure means "not healthy", by design
        raise UnavailableError("store is not available") from exc
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    app = request.app
    return web.Response(text=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document, verbatim."""
    return web.Response(text=openapi_text(), content_type="application/json")


def register_gauges(app: web.Application) -> None:
    """Gauges read at scrape time."""
    m = app[METRICS]
    m.gauge("murmur_events_stored", "Events held by the store.", lambda: app[STORE].counts().events)
    m.gauge("murmur_authors", "Distinct authors held.", lambda: app[STORE].counts().authors)
    m.gauge("murmur_stream_cursor", "Highest stream cursor.", lambda: app[STORE].counts().cursor)
    m.gauge("murmur_stream_subscribers", "Open stream connections.", lambda: app[HUB].subscribers)
    m.gauge(
        "murmur_blobs_held",
        "Images held because stored posts use them (spec 0004 #blob-keep).",
        lambda: app[STORE].blob_totals().held,
    )
    m.gauge(
        "murmur_blob_bytes_held",
        "Bytes of the images held.",
        lambda: app[STORE].blob_totals().held_bytes,
    )
    m.gauge(
        "murmur_blob_bytes_pending",
        "Bytes of uploads no stored post uses yet (in their grace period).",
        lambda: app[STORE].blob_totals().pending_bytes,
    )
    m.labeled_counter(
        "murmur_blob_uploads_total",
        "Image uploads by result: stored, or the refusal's error code.",
        "result",
        lambda: app[BLOBS].uploads,
    )
    m.labeled_counter(
        "murmur_blobs_dropped_total",
        "Images whose bytes were dropped, by reason: grace (no post used the upload "
        "in time), deleted (no post uses it any more), author-quota.",
        "reason",
        lambda: app[STORE].blob_drops,
    )
    m.counter(
        "murmur_write_transactions_total",
        "Write transactions the store ran (concurrent batches share one: group commit).",
        lambda: app[STORE].write_groups()[0],
    )
    m.counter(
        "murmur_write_batches_total",
        "Batches written (several in one transaction when they arrive together).",
        lambda: app[STORE].write_groups()[1],
    )
