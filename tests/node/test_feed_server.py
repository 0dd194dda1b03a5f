"""``node.feeds.FeedServer`` (spec 0004 #feeds, #feed-cache): pages cached per (feed,
viewer, cursor, limit) for the feed's ``cache_s`` in a bounded LRU, identical
concurrent requests computing once, a per-page deadline, a bound on concurrent
computations, and every failure of a feed's code a ``feed-error`` (502), never a 500."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from node.feeds import FeedServer, ServedFeed
from node.store import SqliteStore
from protocol.errors import FeedError, FeedNotFoundError, FeedTimeoutError, UnavailableError
from protocol.feeds import Feed, FeedContext, Page, Source, feed_is_personal
from tests.node import feed_plugins as plugins
from tests.node.conftest import Clock


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def serve(store: SqliteStore, clock: Clock, *feeds: Any, cache_ms: int = 30_000,
          **kw: Any) -> FeedServer:  # fmt: skip
    server = FeedServer(
        [ServedFeed(f.name, f, "d", cache_ms) for f in feeds], now_ms=clock, **kw
    )
    server.bind(store)
    return server


async def until(predicate: Callable[[], bool], what: str, deadline_s: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds (a condition, not a sleep)."""
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0)


async def test_pages_are_cached_per_key_until_their_time_is_up(
    store: SqliteStore, clock: Clock
) -> None:
    """spec 0004 #feed-cache: the same (feed, viewer, cursor, limit) within cache_s is
    served from the cache; another viewer, cursor or limit is another page; after
    cache_s (the injected clock) it is computed again."""
    feed = plugins.Latest()
    server = serve(store, clock, feed, cache_ms=30_000)
    first = await server.page("latest", viewer=None, cursor=None, limit=5)
    assert await server.page("latest", viewer=None, cursor=None, limit=5) == first
    assert feed.calls == 1
    await server.page("latest", viewer="did:key:zX", cursor=None, limit=5)
    await server.page("latest", viewer=None, cursor=None, limit=6)
    assert feed.calls == 3
    clock.advance(29_999)
    await server.page("latest", viewer=None, cursor=None, limit=5)
    assert feed.calls == 3
    clock.advance(1)
    # Stale while revalidate: the old page at once, the new one computed meanwhile.
    assert await server.page("latest", viewer=None, cursor=None, limit=5) == first
    await until(lambda: server.results[("latest", "computed")] == 4, "the refresh")
    assert feed.calls == 4
    assert server.results[("latest", "cached")] == 2
    assert server.results[("latest", "stale")] == 1
    await server.page("latest", viewer=None, cursor=None, limit=5)
    assert server.results[("latest", "cached")] == 3  # the refreshed page, fresh


async def test_a_stale_page_is_served_once_while_one_refresh_runs(
    store: SqliteStore, clock: Clock
) -> None:
    """spec 0004 #feed-cache: past cache_s and within as long again, readers get the
    old page at once while one computation (shared) makes the new one; past twice
    cache_s the old page is gone and the reader waits for a new one."""
    gated = plugins.Gated()
    server = serve(store, clock, gated, cache_ms=10_000)
    gated.gate.set()
    first = await server.page("gated", viewer=None, cursor=None, limit=1)
    gated.gate.clear()
    clock.advance(10_000)
    again = [await server.page("gated", viewer=None, cursor=None, limit=1) for _ in range(3)]
    assert again == [first] * 3
    await until(lambda: gated.entered == 2, "one refresh")
    assert server.pages.in_flight == 1
    gated.gate.set()
    await until(lambda: server.pages.in_flight == 0, "the refresh to land")
    fresh = await server.page("gated", viewer=None, cursor=None, limit=1)
    assert fresh != first and gated.entered == 2
    clock.advance(20_000)  # past twice cache_s: nothing stale to serve
    assert server.pages.stale(("gated", None, None, 1)) is None
    await server.page("gated", viewer=None, cursor=None, limit=1)
    assert gated.entered == 3


class Everyone(plugins.Latest):
    """Posts, newest first, the same for every reader"""

    personal = False

    def __init__(self) -> None:
        super().__init__()
        self.viewers: list[str | None] = []

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        self.viewers.append(ctx.viewer)
        return await super().page(ctx, src)


async def test_a_feed_that_is_not_personal_is_one_page_for_every_viewer(
    store: SqliteStore, clock: Clock
) -> None:
    """spec 0009 #personal, 0004 #feed-cache: a feed saying ``personal = False`` runs
    without a viewer and its page is shared by every viewer (no cold page per reader);
    a personal feed (the default) is computed per viewer."""
    everyone, latest = Everyone(), plugins.Latest()
    server = FeedServer(
        [ServedFeed("all", everyone, "d", 30_000, personal=feed_is_personal(everyone)),
         ServedFeed("latest", latest, "d", 30_000, personal=feed_is_personal(latest))],
        now_ms=clock,
    )  # fmt: skip
    server.bind(store)
    for viewer in ("did:key:zA", "did:key:zB", None):
        await server.page("all", viewer=viewer, cursor=None, limit=5)
        await server.page("latest", viewer=viewer, cursor=None, limit=5)
    assert everyone.viewers == [None]
    assert latest.calls == 3
    assert server.results[("all", "cached")] == 2


async def test_the_cache_is_a_bounded_lru(store: SqliteStore, clock: Clock) -> None:
    """spec 0004 #feed-cache: at most feed_cache_entries pages, least recently used
    dropped first; cache_s = 0 keeps nothing."""
    echo = plugins.Echo()
    server = serve(store, clock, echo, cache_entries=3)
    for cursor in ("a", "b", "c"):
        await server.page("echo", viewer=None, cursor=cursor, limit=1)
    await server.page("echo", viewer=None, cursor="a", limit=1)  # a is fresh again
    await server.page("echo", viewer=None, cursor="d", limit=1)  # drops b
    assert len(server.pages) == 3
    assert server.pages.cached(("echo", None, "a", 1)) is not None
    assert server.pages.cached(("echo", None, "b", 1)) is None
    for i in range(50):
        await server.page("echo", viewer=None, cursor=f"x{i}", limit=1)
    assert len(server.pages) == 3
    uncached = serve(store, clock, plugins.Latest(), cache_ms=0)
    await uncached.page("latest", viewer=None, cursor=None, limit=1)
    assert len(uncached.pages) == 0


async def test_identical_concurrent_requests_share_one_computation(
    store: SqliteStore, clock: Clock
) -> None:
    """spec 0004 #feed-cache: two identical requests at once run the feed once and get
    the same page; a different request runs it again."""
    gated = plugins.Gated()
    server = serve(store, clock, gated)
    a = asyncio.create_task(server.page("gated", viewer=None, cursor=None, limit=5))
    await until(lambda: gated.entered == 1, "the first computation")
    b = asyncio.create_task(server.page("gated", viewer=None, cursor=None, limit=5))
    await until(lambda: server.results[("gated", "shared")] == 1, "the second request joined")
    other = asyncio.create_task(server.page("gated", viewer=None, cursor="c", limit=5))
    await until(lambda: gated.entered == 2, "the other request's computation")
    gated.gate.set()
    pa, pb, po = await asyncio.gather(a, b, other)
    assert pa == pb and pa != po
    assert gated.entered == 2
    assert server.results[("gated", "shared")] == 1
    assert server.results[("gated", "computed")] == 2


async def test_a_request_leaving_does_not_cancel_the_shared_computation(
    store: SqliteStore, clock: Clock
) -> None:
    gated = plugins.Gated()
    server = serve(store, clock, gated)
    a = asyncio.create_task(server.page("gated", viewer=None, cursor=None, limit=5))
    await until(lambda: gated.entered == 1, "the computation")
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    gated.gate.set()
    await until(lambda: len(server.pages) == 1, "the page cached")
    await server.page("gated", viewer=None, cursor=None, limit=5)
    assert gated.entered == 1


async def test_a_page_past_its_deadline_is_feed_timeout(store: SqliteStore, clock: Clock) -> None:
    """spec 0004 #feeds: a feed that never answers gets feed-timeout (504) at the node's
    deadline; nothing is cached."""
    server = serve(store, clock, plugins.Forever(), deadline_s=0.05)
    with pytest.raises(FeedTimeoutError) as caught:
        await server.page("forever", viewer=None, cursor=None, limit=5)
    assert caught.value.status == 504 and caught.value.code == "feed-timeout"
    assert server.results[("forever", "timeout")] == 1 and len(server.pages) == 0


async def test_a_feed_raising_is_feed_error_with_its_type_and_one_log_line(
    store: SqliteStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """spec 0004 #feeds: an exception in the feed's code is feed-error (502) naming its
    type, not its message; one key=value log line."""
    server = serve(store, clock, plugins.Boom())
    with caplog.at_level(logging.WARNING, logger="murmur.node.feeds"):
        with pytest.raises(FeedError) as caught:
            await server.page("boom", viewer=None, cursor=None, limit=5)
    assert (caught.value.code, caught.value.status) == ("feed-error", 502)
    assert "ValueError" in caught.value.message and "secret" not in caught.value.message
    lines = [r.getMessage() for r in caplog.records if r.name == "murmur.node.feeds"]
    assert lines == ["feed failed feed=boom error=ValueError"]
    assert server.results[("boom", "error")] == 1


@pytest.mark.parametrize(
    "feed", [plugins.TooMany(), plugins.BadCursor(), plugins.NotAPage()], ids=lambda f: f.name
)
async def test_pages_breaking_the_rules_are_feed_error(
    store: SqliteStore, clock: Clock, feed: Feed
) -> None:
    """spec 0009 #check-page via spec 0004 #feeds: more items than asked, a bad cursor
    or not a Page is feed-error (502), not served and not cached."""
    server = serve(store, clock, feed)
    with pytest.raises(FeedError) as caught:
        await server.page(feed.name, viewer=None, cursor=None, limit=3)
    assert caught.value.code == "feed-error" and len(server.pages) == 0


async def test_computations_of_one_feed_are_bounded(store: SqliteStore, clock: Clock) -> None:
    """spec 0004 #feed-cache: past feed_concurrency pages of one feed computing at
    once, a request waits briefly, then gets 503 unavailable; other feeds are not
    held up."""
    gated = plugins.Gated()
    server = serve(store, clock, gated, plugins.Latest(), concurrency=1, slot_wait_s=0.01)
    held = asyncio.create_task(server.page("gated", viewer=None, cursor="1", limit=5))
    await until(lambda: gated.entered == 1, "the computation holding the slot")
    with pytest.raises(UnavailableError):
        await server.page("gated", viewer=None, cursor="2", limit=5)
    assert server.results[("gated", "unavailable")] == 1
    await server.page("latest", viewer=None, cursor=None, limit=5)
    gated.gate.set()
    await held
    await server.page("gated", viewer=None, cursor="2", limit=5)


async def test_an_unknown_feed_is_feed_not_found(store: SqliteStore, clock: Clock) -> None:
    server = serve(store, clock, plugins.Latest())
    for name in ("nope", "Latest", "../latest", ""):
        with pytest.raises(FeedNotFoundError):
            await server.page(name, viewer=None, cursor=None, limit=5)


async def test_reacted_answers_are_shared_and_cached(store: SqliteStore, clock: Clock) -> None:
    """spec 0004 #reacted: GET /v1/reacted's store read runs once for identical
    requests within 30 s."""
    server = serve(store, clock, plugins.Latest())
    reads = 0
    real: Callable[..., Awaitable[Any]] = store.top_reacted

    async def counted(**kw: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real(**kw)

    store.top_reacted = counted  # type: ignore[method-assign]
    await asyncio.gather(*(server.top_reacted(since_ts=0, until_ts=10, limit=5) for _ in range(3)))
    await server.top_reacted(since_ts=0, until_ts=10, limit=5)
    assert reads == 1
    clock.advance(30_000)
    await server.top_reacted(since_ts=0, until_ts=10, limit=5)
    assert reads == 2
