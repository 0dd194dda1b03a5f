"""The aiohttp application factory: ``create_app(config) -> web.Application``.

Resources (the store, the verifier pool) are opened and closed in ``cleanup_ctx``;
state lives under typed ``web.AppKey``s (:mod:`node.state`); handlers are thin (in
:mod:`node.api`). On shutdown the stream hub is closed first so live subscribers
finish, in-flight ingest batches complete (their commit is awaited by
``Store.close``), and only then is the store closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

from node.api import blobs, events, federation, feeds, live, meta, social, views
from node.api.search import search
from node.blobs import BlobKeeper
from node.config import NodeConfig, redact_url
from node.federation.manager import Federation
from node.feeds import RESULTS, FeedServer
from node.limits import AdmissionGate, RateLimiter
from node.metrics import Metrics
from node.middleware import murmur_middleware
from node.state import (
    ANNOUNCE_LIMITER,
    BLOBS,
    CONFIG,
    FEDERATION,
    FEEDS,
    GATE,
    HUB,
    LIMITER,
    METRICS,
    STORE,
    VERIFIER,
)
from node.store.base import Store
from node.store.factory import make_store, open_store
from node.stream import StreamHub
from node.verify import Verifier

if TYPE_CHECKING:
    from node.cluster import ProcessGroup

__all__ = ["create_app"]

log = logging.getLogger("murmur.node")


def _routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/events", events.post_events)
    r.add_get("/v1/events", events.get_events)
    r.add_get("/v1/events/{id}", events.get_event)
    r.add_get("/v1/authors/{did}/events", events.author_events)
    r.add_post("/v1/authors/events", events.author_ranges)
    r.add_get("/v1/authors/{did}/head", events.author_head)
    r.add_get("/v1/authors/{did}/keys", events.author_keys)
    r.add_post("/v1/keys", events.keys_batch)
    r.add_get("/v1/feed", views.feed)
    r.add_post("/v1/feed", views.feed_post)
    r.add_get("/v1/threads/{id}", views.thread)
    r.add_get("/v1/labels", views.labels)
    r.add_get("/v1/profiles", views.profiles)
    r.add_get("/v1/search", search)
    r.add_get("/v1/notifications", social.notifications)
    r.add_get("/v1/followers/{did}", social.followers)
    r.add_get("/v1/events/{id}/reactions", social.reactions)
    r.add_post("/v1/counts", social.counts)
    r.add_post("/v1/stats", social.stats)
    r.add_get("/v1/feeds", feeds.list_feeds)
    r.add_get("/v1/feeds/{name}", feeds.feed_page)
    r.add_get("/v1/reacted", feeds.reacted)
    r.add_post("/v1/blobs", blobs.post_blob)
    r.add_get("/v1/blobs/{hash}", blobs.get_blob)
    r.add_get("/v1/stream", live.stream)
    r.add_post("/v1/sync", federation.sync)
    r.add_get("/v1/peers", federation.list_peers)
    r.add_post("/v1/peers", federation.announce)
    r.add_get("/v1/info", meta.info)
    r.add_get("/health", meta.health)
    r.add_get("/metrics", meta.metrics)
    r.add_get("/openapi.json", meta.openapi)


def _feed_metrics(app: web.Application) -> None:
    served = app[FEEDS]
    m = app[METRICS]

    def pages() -> dict[tuple[str, ...], int]:
        # Every (feed, result) from the start (0 until it happens): a closed set.
        out: dict[tuple[str, ...], int] = {
            (name, result): 0 for name in served.names() for result in RESULTS
        }
        out.update({k: n for k, n in served.results.items()})
        return out

    m.multi_counter(
        "murmur_feed_pages_total",
        "Served feed pages asked for, by feed and result: computed, cached, shared (a "
        "concurrent identical request's computation), error, timeout, unavailable.",
        ("feed", "result"),
        pages,
    )
    m.summary(
        "murmur_feed_page_seconds",
        "Time spent computing feed pages (those that succeeded), by feed.",
        "feed",
        lambda: served.seconds,
    )
    m.gauge(
        "murmur_feed_cache_entries",
        "Feed pages held in the node's cache (at most limits.feed_cache_entries).",
        lambda: len(served.pages),
    )


#: Longest request line accepted (spec 0004 §limits).
MAX_REQUEST_LINE = 64 * 1024


def create_app(
    config: NodeConfig,
    *,
    store: Store | None = None,
    peer_client: httpx.AsyncClient | None = None,
) -> web.Application:
    """Build a node. ``store`` replaces the default SQLite store under ``data_dir``;
    ``peer_client`` replaces the outbound client to peers (tests inject resolvers)."""
    app = web.Application(
        middlewares=[murmur_middleware],
        client_max_size=config.limits.max_request_bytes,
        # Never inflate request bodies: the middleware refuses Content-Encoding (415)
        # instead of letting a small compressed body expand past the limits.
        # The request line carries list parameters: a feed of max_feed_authors (500)
        # percent-encoded dids is about 31 KiB, over aiohttp's 8 KiB default.
        handler_args={"auto_decompress": False, "max_line_size": MAX_REQUEST_LINE},
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[HUB] = StreamHub(
        max_subscribers=config.limits.max_subscribers,
        max_per_address=config.limits.max_streams_per_address,
        peer_reserve=config.limits.peer_stream_reserve,
    )
    app[LIMITER] = RateLimiter(
        rate=config.limits.rate_per_ip,
        burst=config.limits.rate_burst,
        max_keys=config.limits.rate_max_ips,
        now_ms=config.now_ms,
    )
    app[ANNOUNCE_LIMITER] = RateLimiter(
        rate=config.limits.announce_per_minute / 60,
        burst=config.limits.announce_burst,
        max_keys=config.limits.rate_max_ips,
        now_ms=config.now_ms,
        what=f"{config.limits.announce_per_minute} peer announcements a minute",
    )
    gate = app[GATE] = AdmissionGate(
        max_requests=config.limits.max_inflight_ingest,
        max_bytes=config.limits.max_inflight_bytes,
    )
    app[BLOBS] = BlobKeeper(config)
    # Feeds are loaded (their code run) before anything opens: a bad one stops the
    # node at once, with FeedLoadError naming it (spec 0004 #feeds-config).
    app[FEEDS] = FeedServer.load(
        config.feeds,
        now_ms=config.now_ms,
        deadline_s=config.limits.feed_deadline_ms / 1000,
        cache_entries=config.limits.feed_cache_entries,
        concurrency=config.limits.feed_concurrency,
    )
    _feed_metrics(app)
    app[METRICS].gauge(
        "murmur_inflight_requests", "Requests with a body in flight.", lambda: gate.requests
    )
    app[METRICS].gauge(
        "murmur_inflight_bytes", "Body bytes reserved in flight.", lambda: gate.bytes
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        the_store = store or make_store(config)
        await open_store(the_store, config)
        verifier = Verifier(
            workers=config.verify_workers,
            mode=config.verify_in,
            net=config.network,
            max_event_bytes=config.limits.max_event_bytes,
        )
        try:
            await verifier.start()
        except BaseException:
            await verifier.close()
            await the_store.close()
            raise
        the_store.blob_author_bytes = config.limits.blob_author_bytes
        app[STORE] = the_store
        app[FEEDS].bind(the_store)
        app[VERIFIER] = verifier
        app[METRICS].counter(
            "murmur_events_verified_total",
            "Events whose decoding and signature check ran (duplicates and unknown "
            "key events are answered before it).",
            lambda: verifier.verified,
        )
        app[METRICS].counter(
            "murmur_verify_jobs_total",
            "Jobs handed to verification workers; fewer than requests when concurrent "
            "requests were checked together.",
            lambda: verifier.jobs,
        )
        app[METRICS].counter(
            "murmur_verify_pool_restarts_total",
            "Times the verification worker processes were started again after one died.",
            lambda: verifier.restarts,
        )
        app[HUB].publish(the_store.counts().cursor)
        fed = Federation(
            config=config,
            store=the_store,
            verifier=verifier,
            hub=app[HUB],
            metrics=app[METRICS],
            client=peer_client,
        )
        app[FEDERATION] = fed
        group: ProcessGroup | None = None
        if config.store_url is not None:
            # Other processes may serve this node (spec 0004 #store-processes): the
            # federation waits for the leader lock. Imported here: asyncpg is an extra.
            from node.cluster import ProcessGroup
            from node.store.postgres import PostgresStore

            if not isinstance(the_store, PostgresStore):
                raise TypeError("a store_url node needs a PostgresStore")
            await fed.start(lead=False)
            group = ProcessGroup(
                config.store_url, store=the_store, hub=app[HUB], federation=fed,
                metrics=app[METRICS],
            )  # fmt: skip
            await group.start()
        else:
            await fed.start()
        app[BLOBS].start(the_store)
        try:
            yield
        finally:
            await app[BLOBS].stop()
            # Federation first: the leader saves its peers before its lock goes.
            await fed.stop()
            if group is not None:
                await group.stop()
            await verifier.close()
            await the_store.close()
            if config.store_url is None:
                log.info("node stopped data=%s", config.data_dir)
            else:
                log.info("node stopped store=%s", redact_url(config.store_url))

    async def close_streams(app: web.Application) -> None:
        app[HUB].close()
        if FEDERATION in app:
            await app[FEDERATION].stop()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_streams)
    meta.register_gauges(app)
    _routes(app)
    return app
