"""A feed's :class:`~protocol.feeds.Source` over the reader's own nodes (spec 0007 #feeds).

:class:`ReaderSource` answers a local feed's questions from every node of a
:class:`~client.reader.Reader` at once: each event comes through the reader, so it is
verified from its wire bytes (a forged one is dropped and its node reported), merged
by id, and a ``did:murmur`` author's event counts only while its key state says it is
canonical. Events without a body (deleted), and those a held deletion names, are never
given. Every call is bounded as :mod:`protocol.feeds` says (500 events, 500 ids, 1000
reacted targets) and reads at most :data:`MAX_SOURCE_PAGES` pages from a node.

Time positions: a feed pages by :class:`~protocol.feeds.TimeMark` ``(ts, id)``, a node
by its own cursors (``ts.cursor`` for ``/v1/feed``, spec 0004 #feed; a search key for
``/v1/search``), which mean nothing on another node. So a mark is asked as "at or
before ``ts``" in the node's form and the events are then cut at ``(ts, id)`` here:
ties at one millisecond are honoured whatever order each node keeps them in. A node
that keeps other cursors answers ``bad-request`` and is reported like any failing node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from client.api import NodeClient, WireItem
from client.browse import matches_tag, normalize_tag
from client.reader import MAX_FEED_AUTHORS, PAGE, Reader
from client.views import follow_set
from protocol.events import Event
from protocol.feeds import MAX_SOURCE_EVENTS, MAX_SOURCE_IDS, MAX_TOP, Reacted, TimeMark

__all__ = ["MAX_SOURCE_PAGES", "ReaderSource", "feed_before", "search_before"]

log = logging.getLogger("murmur.client.feeds")

#: Pages one :class:`ReaderSource` call reads from one node at most.
MAX_SOURCE_PAGES = 8
#: A node cursor's largest integer (spec 0004: SQLite's signed 64 bits).
_MAX_CURSOR = 2**63 - 1
#: Low bits of a search key below the ``ts`` (spec 0004 #search-order).
_SEARCH_LOW_BITS = 20


def feed_before(mark: TimeMark) -> str:
    """The ``before`` of ``GET /v1/feed`` that asks for every event at or before
    ``mark.ts`` (the node's cursor ``ts.cursor``, with the largest cursor)."""
    return f"{min(mark.ts, _MAX_CURSOR)}.{_MAX_CURSOR}"


def search_before(mark: TimeMark) -> str:
    """The ``before`` of ``GET /v1/search`` that asks for every post at or before
    ``mark.ts`` (search keys are ``ts`` above 20 low bits)."""
    return str(min((mark.ts + 1) << _SEARCH_LOW_BITS, _MAX_CURSOR))


def _newest_first(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.ts, e.id), reverse=True)


#: One page of a node's list from its cursor: the items and the next cursor.
Fetch = Callable[[NodeClient, str | None, int], Awaitable[tuple[list[WireItem], str | None]]]


T = TypeVar("T")


class ReaderSource:
    """:class:`protocol.feeds.Source` over ``reader``'s nodes; every event verified."""

    def __init__(self, reader: Reader, *, max_pages: int = MAX_SOURCE_PAGES) -> None:
        self.reader = reader
        self.max_pages = max_pages

    # -- events -------------------------------------------------------------------

    async def events(
        self,
        *,
        kinds: Sequence[str] | None = None,
        authors: Sequence[str] | None = None,
        before: TimeMark | None = None,
        since_ts: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        limit = max(0, min(limit, MAX_SOURCE_EVENTS))
        author_list = None if authors is None else list(dict.fromkeys(authors))[:MAX_FEED_AUTHORS]
        kind_list = None if kinds is None else list(dict.fromkeys(kinds))
        if limit == 0 or author_list == [] or kind_list == []:
            return []
        wanted_authors = None if author_list is None else set(author_list)
        wanted_kinds = None if kind_list is None else set(kind_list)

        def accept(e: Event) -> bool:
            return (wanted_authors is None or e.author in wanted_authors) and (
                wanted_kinds is None or e.kind in wanted_kinds
            )

        async def fetch(
            node: NodeClient, cursor: str | None, n: int
        ) -> tuple[list[WireItem], str | None]:
            page = await node.feed_page(
                authors=author_list, kinds=kind_list, limit=n, before=cursor
            )
            self.reader.keys.offer_tips(node.url, page.key_tips)  # spec 0004 #feed-key-tips
            return page.items, page.next

        start = None if before is None else feed_before(before)
        return await self._newest(fetch, start, accept, before, since_ts, limit)

    async def tagged(
        self, tag: str, *, before: TimeMark | None = None, limit: int = 100
    ) -> list[Event]:
        limit = max(0, min(limit, MAX_SOURCE_EVENTS))
        wanted = normalize_tag(tag)
        if limit == 0 or not wanted or len(wanted.encode()) > 64:
            return []

        async def fetch(
            node: NodeClient, cursor: str | None, n: int
        ) -> tuple[list[WireItem], str | None]:
            return await node.search(tag=wanted, before=cursor, limit=n)

        start = None if before is None else search_before(before)
        # The node's word is not taken for the tag: each post must carry it.
        return await self._newest(
            fetch, start, lambda e: matches_tag(e, wanted), before, None, limit
        )

    async def _newest(
        self,
        fetch: Fetch,
        start: str | None,
        accept: Callable[[Event], bool],
        before: TimeMark | None,
        since_ts: int | None,
        limit: int,
    ) -> list[Event]:
        """The newest ``limit`` events by ``(ts, id)`` strictly before ``before`` with
        ``ts >= since_ts`` that ``accept`` takes, from every node, verified.

        Each node is read (its own cursors from ``start``) until it has given
        ``limit`` such events *and* an event older than the ``ts`` of its
        ``limit``-th: all its events of that millisecond are then in, so the merged
        cut at ``(ts, id)`` is exact. At most :attr:`max_pages` pages a node.
        """
        reader = self.reader
        got: set[bytes] = set()
        size = min(PAGE, max(limit, 50))

        def keep(e: Event) -> bool:
            return (
                e.body is not None
                and (before is None or (e.ts, e.id) < (before.ts, before.id))
                and (since_ts is None or e.ts >= since_ts)
            )

        async def one(node: NodeClient) -> None:
            cursor = start
            mine: list[Event] = []
            for _ in range(self.max_pages):
                items, nxt = await fetch(node, cursor, size)
                await reader.preverify(items)
                oldest: int | None = None
                for item in items:
                    e = reader.add(node.url, item, accept)
                    if e is None:
                        continue
                    oldest = e.ts if oldest is None else min(oldest, e.ts)
                    if keep(e):
                        got.add(e.id)
                        mine.append(e)
                if nxt is None or nxt == cursor or not items:
                    return
                if since_ts is not None and oldest is not None and oldest < since_ts:
                    return
                if len(mine) >= limit:
                    edge = _newest_first(mine)[limit - 1].ts
                    if oldest is not None and oldest < edge:
                        return
                cursor = nxt
            log.debug("source pages exhausted url=%s pages=%d", node.url, self.max_pages)

        await reader.each(one)
        deleted = reader.deleted_ids()
        held = [reader.events[i] for i in got if i in reader.events]
        return _newest_first([e for e in held if keep(e) and e.id not in deleted])[:limit]

    # -- by id, follows, reactions --------------------------------------------------

    async def get(self, ids: Sequence[bytes]) -> dict[bytes, Event]:
        wanted = [i for i in dict.fromkeys(ids) if isinstance(i, bytes) and len(i) == 32]
        found = await self.reader.lookup(wanted, limit=MAX_SOURCE_IDS)
        deleted = self.reader.deleted_ids()
        return {
            i: e
            for i, e in found.items()
            if e.body is not None and i not in deleted and i in self.reader.events
        }

    async def follows(self, did: str) -> frozenset[str]:
        return frozenset(await follow_set(self.reader, did, mark=False))

    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        """spec 0009 #source-gather: at once (each asks the reader's nodes)."""
        return list(await asyncio.gather(*calls))

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int = 200) -> list[Reacted]:
        """Every node's counts merged: nodes overlap, so a target's figure is the
        largest one node claims (per kind), never a sum."""
        limit = max(0, min(limit, MAX_TOP))
        if limit == 0 or since_ts >= until_ts:
            return []
        best: dict[bytes, list[int]] = {}

        async def one(node: NodeClient) -> None:
            for r in await node.reacted(since=since_ts, until=until_ts, limit=limit):
                row = best.setdefault(r.id, [0, 0])
                row[0], row[1] = max(row[0], r.likes), max(row[1], r.reposts)

        await self.reader.each(one)
        ranked = sorted(best.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
        return [Reacted(i, likes, reposts) for i, (likes, reposts) in ranked[:limit]]
