"""Feeds served by a node (spec 0004 #feeds): the store as a feed's Source, and the server.

:class:`StoreSource` is :class:`protocol.feeds.Source` over the node's :class:`Store`:
the same read-only, bounded access a feed has in the reader's client (spec 0009), with
events decoded from the exact bytes the node verified when it stored them. Events are
given newest first by ``(ts, id)`` as the interface says, while the store pages by
``(ts, cursor)`` (its feed) or by search key (tags): the two orders differ only among
events of one millisecond, so each call reads until that millisecond's group is
complete and sorts it by id (at most :data:`MAX_TIE_READ` events a call: beyond,
``feed-error``).

:class:`FeedServer` serves the feeds an operator enabled (``[[feeds]]``, spec 0004
#feeds-config), loaded when the node starts. A page is computed under a deadline
(``feed-timeout``), checked (:func:`protocol.feeds.check_page`), kept in a bounded LRU
cache for the feed's ``cache_s``; identical concurrent requests share one computation,
and each feed computes at most ``feed_concurrency`` pages at once (spec 0004
#feed-cache). Whatever the feed's code raises is ``feed-error`` (502), logged in one
line: never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from node.config import FeedConfig
from node.search_terms import query_tag
from node.store.base import SEARCH_KEY_LOW_BITS, FeedQuery, SearchQuery, Store, StoredEvent
from protocol.encoding import decode
from protocol.errors import (
    BadRequestError,
    FeedError,
    FeedLoadError,
    FeedNotFoundError,
    FeedTimeoutError,
    UnavailableError,
)
from protocol.events import Event, Header
from protocol.feeds import (
    MAX_SOURCE_EVENTS,
    MAX_SOURCE_IDS,
    MAX_TOP,
    Feed,
    FeedContext,
    Page,
    Reacted,
    TimeMark,
    check_page,
    feed_description,
    feed_is_personal,
)
from protocol.feeds.load import load_feed

__all__ = [
    "MAX_TIE_READ",
    "FeedServer",
    "ServedFeed",
    "StoreSource",
]

log = logging.getLogger("murmur.node.feeds")

#: Most stored events one Source call reads (its page, the events of the boundary
#: millisecond, those skipped): a millisecond holding more is ``feed-error``.
MAX_TIE_READ: Final = 10 * MAX_SOURCE_EVENTS
#: Most authors one :meth:`StoreSource.events` call asks for (the interface's bound).
MAX_SOURCE_AUTHORS: Final = 500
#: Most follow and unfollow events :meth:`StoreSource.follows` reads of one author.
MAX_FOLLOW_EVENTS: Final = 5000
#: How long a request waits for a free computation slot of its feed before 503.
SLOT_WAIT_S: Final = 0.25
#: The store's integers (SQLite and PostgreSQL: signed 64 bits).
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
#: Events the node's feeds show (as the store's feed: spec 0008 #status).
_SHOWN: Final = frozenset({"canonical", "pending"})
_FOLLOW_KINDS: Final = ("follow", "unfollow")


def _clamp(value: int) -> int:
    return max(_INT_MIN, min(_INT_MAX, value))


def stored_event(se: StoredEvent) -> Event:
    """The :class:`Event` of a stored event that holds its body.

    The node verified these bytes (signature, body hash, body shape) when it stored
    them, and they are the exact bytes it serves: decoding the header and body again
    is all a feed needs. Nothing is hashed or verified twice."""
    assert se.body is not None  # noqa: S101 - callers keep only events with a body
    return Event(
        header=Header.from_map(decode(se.header), allow_v2=True),
        header_bytes=se.header,
        id=se.id,
        sig=se.sig,
        body_bytes=se.body,
        body=decode(se.body),
    )


Fetch = Callable[[Any, int], Awaitable[tuple[list[StoredEvent], Any]]]


async def _newest_by_ts_id(
    fetch: Fetch, start: Any, before: TimeMark | None, since_ts: int | None, limit: int
) -> list[StoredEvent]:
    """At most ``limit`` shown events with a body, newest first by ``(ts, id)``,
    strictly before ``before`` and with ``ts >= since_ts``.

    ``fetch(continuation, n)`` reads the next ``n`` events of the store in ``ts``
    descending order (ties in the store's own order) from ``start``, and returns them
    with the continuation after them (None at the end). Reading goes on past the
    ``limit``-th event until its millisecond is complete, then the events are sorted
    by ``(ts, id)``: an event of that millisecond with a greater id may come later in
    the store's order."""
    found: list[StoredEvent] = []
    edge: int | None = None  # ts of the limit-th event found
    read = 0
    cont = start
    size = min(limit + 1, MAX_SOURCE_EVENTS)
    while True:
        rows, cont = await fetch(cont, size)
        for row in rows:
            if (edge is not None and row.ts < edge) or (since_ts is not None and row.ts < since_ts):
                cont = None
                break
            read += 1
            if before is not None and (row.ts, row.id) >= (before.ts, before.id):
                continue
            if row.body is None or row.deleted or row.status not in _SHOWN:
                continue
            found.append(row)
            if len(found) == limit:
                edge = row.ts
        if cont is None:
            break
        if read >= MAX_TIE_READ:
            raise FeedError(
                f"more than {MAX_TIE_READ} events of one millisecond around ts {edge}: "
                "this node cannot order them for a feed"
            )
    found.sort(key=lambda e: (e.ts, e.id), reverse=True)
    return found[:limit]


K = TypeVar("K")
V = TypeVar("V")


class StoreSource:
    """:class:`protocol.feeds.Source` over a node's store (spec 0004 #feeds)."""

    def __init__(self, store: Store, clock: Callable[[], int]) -> None:
        self._store = store
        self._clock = clock

    async def events(
        self,
        *,
        kinds: Sequence[str] | None = None,
        authors: Sequence[str] | None = None,
        before: TimeMark | None = None,
        since_ts: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        n = min(int(limit), MAX_SOURCE_EVENTS)
        kinds_t = None if kinds is None else tuple(dict.fromkeys(str(k) for k in kinds))
        authors_t = (
            None
            if authors is None
            else tuple(dict.fromkeys(str(a) for a in authors))[:MAX_SOURCE_AUTHORS]
        )
        if n < 1 or kinds_t == () or authors_t == ():
            return []

        async def fetch(
            cont: tuple[int, int] | None, size: int
        ) -> tuple[list[StoredEvent], tuple[int, int] | None]:
            rows = await self._store.feed(
                FeedQuery(authors=authors_t, kinds=kinds_t, before=cont, limit=size)
            )
            more = len(rows) == size
            return rows, ((rows[-1].ts, rows[-1].cursor) if more else None)

        # Every event of before.ts is read: the store's (ts, cursor) bound cannot
        # say "id below"; _newest_by_ts_id drops the ones not before the mark.
        start = None if before is None else (_clamp(before.ts), _INT_MAX)
        rows = await _newest_by_ts_id(fetch, start, before, since_ts, n)
        return [stored_event(r) for r in rows]

    async def tagged(
        self, tag: str, *, before: TimeMark | None = None, limit: int = 100
    ) -> list[Event]:
        n = min(int(limit), MAX_SOURCE_EVENTS)
        try:
            norm = query_tag(str(tag))
        except BadRequestError:
            return []  # no stored post carries a tag of that shape
        if n < 1 or (before is not None and before.ts < 0):
            return []

        async def fetch(cont: int | None, size: int) -> tuple[list[StoredEvent], int | None]:
            page = await self._store.search(SearchQuery(tag=norm, before=cont, limit=size))
            return page.events, page.next

        start: int | None = None
        if before is not None and before.ts + 1 < 2 ** (63 - SEARCH_KEY_LOW_BITS):
            # Keys below this one are the posts of before.ts and older.
            start = (before.ts + 1) << SEARCH_KEY_LOW_BITS
        rows = await _newest_by_ts_id(fetch, start, before, None, n)
        return [stored_event(r) for r in rows]

    async def get(self, ids: Sequence[bytes]) -> dict[bytes, Event]:
        wanted = [i for i in dict.fromkeys(ids[:MAX_SOURCE_IDS]) if isinstance(i, bytes)]
        wanted = [i for i in wanted if len(i) == 32]
        if not wanted:
            return {}
        held = await self._store.get_events(wanted)
        return {
            se.id: stored_event(se)
            for se in held
            if se.body is not None and not se.deleted and se.status in _SHOWN
        }

    async def follows(self, did: str) -> frozenset[str]:
        """The subjects of ``did``'s latest follow or unfollow per subject (highest
        seq, then greatest id: spec 0003 §3.6), from its newest
        :data:`MAX_FOLLOW_EVENTS` such events."""
        latest: dict[str, tuple[int, bytes, bool]] = {}
        before: tuple[int, int] | None = None
        read = 0
        while read < MAX_FOLLOW_EVENTS:
            rows = await self._store.feed(
                FeedQuery(authors=(str(did),), kinds=_FOLLOW_KINDS, before=before,
                          limit=MAX_SOURCE_EVENTS)
            )  # fmt: skip
            read += len(rows)
            for row in rows:
                if row.body is None:
                    continue
                subject = decode(row.body).get("subject")
                if not isinstance(subject, str):
                    continue
                mark = (row.seq, row.id, row.kind == "follow")
                if subject not in latest or mark[:2] > latest[subject][:2]:
                    latest[subject] = mark
            if len(rows) < MAX_SOURCE_EVENTS:
                break
            before = (rows[-1].ts, rows[-1].cursor)
        return frozenset(s for s, (_, _, on) in latest.items() if on)

    async def top_reacted(
        self, *, since_ts: int, until_ts: int, limit: int = 200
    ) -> list[Reacted]:
        n = min(int(limit), MAX_TOP)
        since, until = _clamp(int(since_ts)), _clamp(int(until_ts))
        if n < 1 or since >= until:
            return []
        return await self._store.top_reacted(since_ts=since, until_ts=until, limit=n)

    async def gather(self, calls: Sequence[Awaitable[V]]) -> list[V]:
        """spec 0009 #source-gather: at once (the store's read threads overlap them)."""
        return list(await asyncio.gather(*calls))


# -- serving -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServedFeed:
    """A loaded feed and how the node serves it."""

    name: str
    feed: Feed
    description: str
    cache_ms: int
    params: Mapping[str, Any] = field(default_factory=dict)
    #: False: pages do not depend on the viewer, so one page serves every reader
    #: (spec 0009 #personal): the feed runs without one.
    personal: bool = True


class SharedWork(Generic[K, V]):
    """A bounded LRU cache with a time to live per entry, in front of computations
    that identical concurrent requests share (one runs; the others await it).

    An entry is fresh for its time to live, then stale for as long again
    (:meth:`stale`: served while a new one is computed), then gone."""

    def __init__(self, *, entries: int, now_ms: Callable[[], int]) -> None:
        self._entries = entries
        self._now_ms = now_ms
        #: key -> (fresh until, stale until, value), least recently used first.
        self._cache: OrderedDict[K, tuple[int, int, V]] = OrderedDict()
        self._flights: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def cached(self, key: K) -> V | None:
        """The fresh value of ``key``, if any."""
        hit = self._cache.get(key)
        if hit is None or hit[0] <= self._now_ms():
            return None
        self._cache.move_to_end(key)
        return hit[2]

    def stale(self, key: K) -> V | None:
        """The value of ``key`` past its time to live but within as long again (a
        caller serves it while it computes the new one); older ones are dropped."""
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[1] <= self._now_ms():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return hit[2]

    def keep(self, key: K, value: V, ttl_ms: int) -> None:
        if ttl_ms <= 0:
            return
        now = self._now_ms()
        self._cache[key] = (now + ttl_ms, now + 2 * ttl_ms, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._entries:
            self._cache.popitem(last=False)

    def flight(
        self, key: K, compute: Callable[[], Coroutine[Any, Any, V]]
    ) -> tuple[asyncio.Future[V], bool]:
        """The computation of ``key`` in flight, started with ``compute()`` if there
        is none (then ``False``: not joined). Await what it returns: a request going
        away does not cancel the computation (its own deadline bounds it)."""
        task = self._flights.get(key)
        if task is not None:
            return asyncio.shield(task), True
        task = asyncio.create_task(compute())
        self._flights[key] = task
        task.add_done_callback(lambda t: self._landed(key, t))
        return asyncio.shield(task), False

    def _landed(self, key: K, task: asyncio.Task[V]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when all left


#: Page cache key: feed name, viewer, cursor, limit.
PageKey = tuple[str, str | None, str | None, int]
#: ``pages_total`` results (spec 0004 #feed-cache).
RESULTS: Final = ("cached", "computed", "error", "shared", "stale", "timeout", "unavailable")


class FeedServer:
    """The feeds a node serves (spec 0004 #feeds), with their cache and bounds."""

    def __init__(
        self,
        feeds: Sequence[ServedFeed],
        *,
        now_ms: Callable[[], int],
        deadline_s: float = 1.0,
        cache_entries: int = 1000,
        concurrency: int = 4,
        slot_wait_s: float = SLOT_WAIT_S,
    ) -> None:
        self._feeds = {f.name: f for f in feeds}
        self._now_ms = now_ms
        self.deadline_s = deadline_s
        self._slot_wait_s = slot_wait_s
        self._slots = {f.name: asyncio.Semaphore(concurrency) for f in feeds}
        self._reacted_slots = asyncio.Semaphore(concurrency)
        self.pages: SharedWork[PageKey, Page] = SharedWork(entries=cache_entries, now_ms=now_ms)
        self.reacted: SharedWork[tuple[int, int, int], list[Reacted]] = SharedWork(
            entries=max(1, cache_entries // 10), now_ms=now_ms
        )
        self._source: StoreSource | None = None
        self._store: Store | None = None
        #: Pages asked for, by (feed, result); computation seconds and count by feed.
        self.results: Counter[tuple[str, str]] = Counter()
        self.seconds: dict[str, tuple[float, int]] = {}

    @classmethod
    def load(
        cls, configs: Sequence[FeedConfig], *, now_ms: Callable[[], int], **kw: Any
    ) -> FeedServer:
        """Load every configured feed (``load_feed``: this runs their code); a feed
        that does not load raises :class:`FeedLoadError` naming it."""
        served = []
        for c in configs:
            try:
                feed = load_feed(c.type, c.params)
            except FeedError as exc:
                raise FeedLoadError(f"feeds {c.name!r}: {exc.message}") from None
            served.append(
                ServedFeed(
                    name=c.name,
                    feed=feed,
                    description=c.description
                    if c.description is not None
                    else feed_description(feed),
                    cache_ms=round(c.cache_s * 1000),
                    params=dict(c.params),
                    personal=feed_is_personal(feed),
                )
            )
            log.info("feed loaded name=%s type=%s", c.name, c.type)
        return cls(served, now_ms=now_ms, **kw)

    def bind(self, store: Store) -> None:
        """Serve from ``store`` (once it is open)."""
        self._store = store
        self._source = StoreSource(store, self._now_ms)

    def names(self) -> list[str]:
        return sorted(self._feeds)

    def listing(self) -> list[dict[str, str]]:
        return [
            {"name": f.name, "description": f.description}
            for f in sorted(self._feeds.values(), key=lambda f: f.name)
        ]

    def serves(self, name: str) -> bool:
        return name in self._feeds

    def _count(self, name: str, result: str) -> None:
        self.results[(name, result)] += 1

    async def page(
        self, name: str, *, viewer: str | None, cursor: str | None, limit: int
    ) -> Page:
        """One page of feed ``name`` (spec 0004 #feeds, #feed-cache)."""
        served = self._feeds.get(name)
        if served is None:
            raise FeedNotFoundError(f"this node serves no feed {name!r} (GET /v1/feeds)")
        if not served.personal:
            viewer = None  # one page for every reader (spec 0009 #personal)
        key: PageKey = (name, viewer, cursor, limit)
        hit = self.pages.cached(key)
        if hit is not None:
            self._count(name, "cached")
            return hit
        old = self.pages.stale(key)
        computing, joined = self.pages.flight(key, lambda: self._compute(served, key))
        if old is not None:
            # Stale while revalidate: this reader gets the page at once; the new one,
            # computed meanwhile (once, whoever asks), serves the next.
            self._count(name, "stale")
            return old
        if joined:
            self._count(name, "shared")
        return await computing

    async def _slot(self, slots: asyncio.Semaphore, what: str) -> None:
        try:
            async with asyncio.timeout(self._slot_wait_s):
                await slots.acquire()
        except TimeoutError:
            raise UnavailableError(f"{what} is busy: try again shortly") from None

    async def _compute(self, served: ServedFeed, key: PageKey) -> Page:
        name, viewer, cursor, limit = key
        source = self._source
        if source is None:
            raise UnavailableError("the node's store is not open yet")
        try:
            await self._slot(self._slots[name], f"feed {name}")
        except UnavailableError:
            self._count(name, "unavailable")
            raise
        try:
            ctx = FeedContext(
                viewer=viewer, now_ms=self._now_ms(), limit=limit, cursor=cursor,
                where="node", params=served.params,
            )  # fmt: skip
            started = time.perf_counter()
            page = await self._run_feed(served, ctx, source)
            spent = time.perf_counter() - started
            total, count = self.seconds.get(name, (0.0, 0))
            self.seconds[name] = (total + spent, count + 1)
        finally:
            self._slots[name].release()
        self._count(name, "computed")
        self.pages.keep(key, page, served.cache_ms)
        return page

    async def _run_feed(self, served: ServedFeed, ctx: FeedContext, source: StoreSource) -> Page:
        """The feed's page within the deadline, checked; every failure a FeedError."""
        name = served.name
        deadline = asyncio.timeout(self.deadline_s)
        try:
            async with deadline:
                raw = await served.feed.page(ctx, source)
            return check_page(raw, limit=ctx.limit, name=name)
        except TimeoutError:
            if not deadline.expired():
                self._failed(name, "TimeoutError")
                raise FeedError(f"feed {name} failed: TimeoutError") from None
            self._count(name, "timeout")
            log.warning("feed timeout feed=%s deadline_s=%g", name, self.deadline_s)
            raise FeedTimeoutError(
                f"feed {name} did not make its page within {self.deadline_s:g} s"
            ) from None
        except (FeedError, UnavailableError):
            # A feed's own refusal (bad-cursor, a viewer needed), check_page's verdict,
            # or the store unavailable: as they are.
            self._count(name, "error")
            raise
        except Exception as exc:  # the feed's code: reported, never a 500
            self._failed(name, type(exc).__name__)
            raise FeedError(f"feed {name} failed: {type(exc).__name__}") from None

    def _failed(self, name: str, error: str) -> None:
        self._count(name, "error")
        log.warning("feed failed feed=%s error=%s", name, error)

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int) -> list[Reacted]:
        """``GET /v1/reacted`` (spec 0004 #reacted): the store's answer, cached for
        30 s and shared by identical requests, at most ``feed_concurrency`` at once."""
        store = self._store
        if store is None:
            raise UnavailableError("the node's store is not open yet")
        key = (since_ts, until_ts, limit)
        hit = self.reacted.cached(key)
        if hit is not None:
            return hit

        async def compute() -> list[Reacted]:
            await self._slot(self._reacted_slots, "GET /v1/reacted")
            try:
                found = await store.top_reacted(since_ts=since_ts, until_ts=until_ts, limit=limit)
            finally:
                self._reacted_slots.release()
            self.reacted.keep(key, found, _REACTED_CACHE_MS)
            return found

        computing, _ = self.reacted.flight(key, compute)
        return await computing


#: How long a ``/v1/reacted`` answer is served from the cache.
_REACTED_CACHE_MS: Final = 30_000
