"""A feed's page as the reader sees it: chosen by the feed, checked by the client
(spec 0007 #feeds, #feed-verify, #feed-fallback, #feed-bounds).

A feed only names event ids. Its page comes from one of two places:

- a **local** feed (:class:`~client.feeds.config.LocalFeed`) is loaded and its
  ``page`` run here over a :class:`~client.feeds.source.ReaderSource`, under a
  deadline (:func:`~client.feeds.run.run_page`);
- a **subscribed** feed (:class:`~client.feeds.config.SubscribedFeed`) is asked of the
  nodes its ``feed`` event names, in order, each under its own short deadline
  (:data:`SERVER_DEADLINE_S`), all within :data:`FEED_DEADLINE_S`: a slow, dead or
  hostile server (too large an answer, a malformed one) falls back to the next, and
  when none serves, :class:`~client.errors.FeedUnavailableError` says what each did.

Either way the ids are then fetched from the **reader's own** nodes
(:meth:`~client.reader.Reader.lookup`: verified, merged, key state applied) and each
named item is kept only if it is a held, verified, undeleted ``post`` or ``repost``
not seen before on the page; every other one is dropped and counted by reason
(:data:`DROP_REASONS`) with a few example ids. The feed's order is kept. The reader's
moderation filters then run over what is left (context ``feed``); when they hide
items, or items were dropped, at most :data:`MAX_FILL_PAGES` more pages are asked to
fill the page. What happened is the view's :class:`FeedReport`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from client.api import NodeClient, Skeleton
from client.errors import FeedUnavailableError
from client.feeds.config import FeedEntry, LocalFeed, SubscribedFeed
from client.feeds.run import LOCAL_FEED_DEADLINE_S, run_page
from client.feeds.source import ReaderSource
from client.moderation.apply import Moderated, Moderation
from client.reader import Reader
from client.textsafety import safe_line
from client.views import View, _finish
from protocol import kinds
from protocol.errors import BadCursorError, ProtocolError
from protocol.events import Event
from protocol.feeds import MAX_CURSOR_CHARS, MAX_LIMIT, MAX_SOURCE_IDS, FeedContext, FeedItem, Page

__all__ = [
    "DROP_REASONS",
    "FEED_DEADLINE_S",
    "MAX_EXAMPLES",
    "MAX_FILL_PAGES",
    "SERVER_DEADLINE_S",
    "SHOWN_KINDS",
    "FeedReport",
    "FeedView",
    "check_cursor",
    "feed_view",
    "fetch_skeleton",
]

log = logging.getLogger("murmur.client.feeds")

#: The whole attempt at a subscribed feed's page, every serving node tried included.
FEED_DEADLINE_S = 2.0
#: One serving node's share: a slow one leaves time for the next.
SERVER_DEADLINE_S = 1.0
#: Pages asked after the first when filters hid items or items were dropped.
MAX_FILL_PAGES = 2
#: Example ids kept per drop reason.
MAX_EXAMPLES = 5
#: What a feed's page may show (a timeline's kinds).
SHOWN_KINDS = (kinds.POST, kinds.REPOST)
#: Why a named item is not shown, as the one-line summary says it.
DROP_REASONS: dict[str, str] = {
    "not-found": "not found on your nodes",
    "unrelated": "not a post",
    "duplicate": "repeated",
    "excluded": "excluded by its author's key state",
    "deleted": "deleted",
}


def check_cursor(cursor: str | None) -> str | None:
    """A ``--cursor`` as a feed may take it (1-512 printable ASCII), else ``bad-cursor``."""
    if cursor is None:
        return None
    if not 0 < len(cursor) <= MAX_CURSOR_CHARS or not all(33 <= ord(c) <= 126 for c in cursor):
        raise BadCursorError("not a feed cursor: use the one the last page printed")
    return cursor


@dataclass(slots=True)
class FeedReport:
    """What a feed page did: where it came from, what was dropped and why."""

    name: str
    kind: Literal["local", "subscribed"]
    source: str
    #: The serving node whose page is shown (None: a local feed).
    node: str | None = None
    #: The feed's cursor of the next page (None: the last page).
    cursor: str | None = None
    pages: int = 0
    #: Reason -> how many items, and up to :data:`MAX_EXAMPLES` example ids.
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[bytes]] = field(default_factory=dict)
    #: What each serving node that failed did: url, code, message.
    servers: list[dict[str, str]] = field(default_factory=list)
    #: Items a server sent past the number asked (not kept).
    extra: int = 0
    #: A server answered a cursor it had given already (paging stopped there).
    endless: bool = False
    #: Why the feed chose each shown item, by id (one line, at most 200 characters).
    why: dict[bytes, str] = field(default_factory=dict)

    def drop(self, reason: str, eid: bytes) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(eid)

    def server_failed(self, url: str, code: str, message: str) -> None:
        self.servers.append({"url": url, "code": code, "message": message})

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> list[str]:
        """The always-on warning lines (empty when nothing went wrong)."""
        lines: list[str] = []
        if self.dropped:
            parts = ", ".join(
                f"{self.dropped[r]} {DROP_REASONS[r]}" for r in DROP_REASONS if r in self.dropped
            )
            lines.append(f"feed: {self.dropped_total} item(s) dropped: {parts}")
        for s in self.servers:
            lines.append(f"feed: {s['url']} failed ({s['code']}): {s['message']}")
        if self.extra:
            lines.append(f"feed: the server sent {self.extra} item(s) more than asked (ignored)")
        if self.endless:
            lines.append("feed: the server gave the same cursor again: paging stopped")
        return [safe_line(line) for line in lines]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "node": self.node,
            "cursor": self.cursor,
            "pages": self.pages,
            "dropped": {
                r: {"count": n, "examples": [i.hex() for i in self.examples.get(r, [])]}
                for r, n in sorted(self.dropped.items())
            },
            "servers": list(self.servers),
            "extra": self.extra,
            "endless": self.endless,
        }


@dataclass(slots=True)
class FeedView:
    """A feed's page: the view (moderated when ``mod`` is given) and its report."""

    view: View
    mod: Moderated | None
    report: FeedReport


# -- skeletons from serving nodes (spec 0007 #feed-fallback) -----------------------------


async def fetch_skeleton(
    servers: Sequence[NodeClient],
    name: str,
    *,
    limit: int,
    cursor: str | None,
    viewer: str | None,
    report: FeedReport,
    total_s: float = FEED_DEADLINE_S,
    server_s: float = SERVER_DEADLINE_S,
) -> tuple[Skeleton, NodeClient]:
    """The first usable page of feed ``name`` from ``servers``, in order.

    Each server gets ``min(server_s, what is left of total_s)``; a failure (a timeout,
    an error answer, an answer too large or malformed) is recorded in ``report`` and
    the next is tried. None served: :class:`FeedUnavailableError` naming each."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    tried: list[str] = []
    for node in servers:
        left = deadline - loop.time()
        if left <= 0:
            tried.append(f"{node.url}: not tried (the {total_s:g} s deadline passed)")
            continue
        wait = min(server_s, left)
        try:
            page = await asyncio.wait_for(
                node.feed_skeleton(name, limit=limit, cursor=cursor, viewer=viewer), timeout=wait
            )
        except TimeoutError:
            message = f"no answer within {wait:g} s"
            report.server_failed(node.url, "node-timeout", message)
            tried.append(f"{node.url}: node-timeout ({message})")
            continue
        except ProtocolError as exc:
            report.server_failed(node.url, exc.code, exc.message)
            tried.append(f"{node.url}: {exc.code} ({safe_line(exc.message)})")
            continue
        return page, node
    raise FeedUnavailableError(
        f"feed {name}: no serving node gave a page within {total_s:g} s: " + "; ".join(tried)
    )


# -- pages of ids, from a local feed or from serving nodes -------------------------------

#: Make the next page of ids: (cursor, limit) -> page, or None when no page can be had.
NextPage = Callable[[str | None, int], Awaitable[Page | None]]


def _local_pages(
    entry: LocalFeed,
    reader: Reader,
    viewer: str | None,
    report: FeedReport,
    *,
    deadline_s: float,
    now_ms: int,
) -> NextPage:
    from protocol.feeds.load import load_feed  # P's loader: runs the feed's module

    feed = load_feed(entry.type, entry.params)
    src = ReaderSource(reader)

    async def next_page(cursor: str | None, limit: int) -> Page | None:
        ctx = FeedContext(
            viewer=viewer, now_ms=now_ms, limit=limit, cursor=cursor, params=entry.params
        )
        return await run_page(feed, ctx, src, deadline_s=deadline_s)

    return next_page


def _remote_pages(
    entry: SubscribedFeed,
    http: httpx.AsyncClient,
    viewer: str | None,
    report: FeedReport,
    *,
    total_s: float,
    server_s: float,
) -> NextPage:
    servers = [NodeClient(url, http, timeout=server_s) for url in entry.nodes]
    used: list[NodeClient] = []

    def keep(skeleton: Skeleton) -> Page:
        report.extra += skeleton.extra
        report.endless = report.endless or skeleton.endless
        return Page(tuple(skeleton.items), skeleton.cursor)

    async def next_page(cursor: str | None, limit: int) -> Page | None:
        if not used:  # the first page: fall back along the serving nodes
            skeleton, node = await fetch_skeleton(
                servers,
                entry.feed,
                limit=limit,
                cursor=cursor,
                viewer=viewer,
                report=report,
                total_s=total_s,
                server_s=server_s,
            )
            used.append(node)
            report.node = node.url
            return keep(skeleton)
        node = used[0]  # a fill page: its cursor is that node's
        try:
            skeleton = await asyncio.wait_for(
                node.feed_skeleton(entry.feed, limit=limit, cursor=cursor, viewer=viewer),
                timeout=server_s,
            )
        except TimeoutError:
            report.server_failed(node.url, "node-timeout", f"no answer within {server_s:g} s")
            return None
        except ProtocolError as exc:
            report.server_failed(node.url, exc.code, exc.message)
            return None
        return keep(skeleton)

    return next_page


# -- checking what a page names (spec 0007 #feed-verify) -------------------------------


async def _resolve(
    reader: Reader, items: Sequence[FeedItem], seen: set[bytes], report: FeedReport
) -> list[Event]:
    """The page's items that may be shown, in the feed's order; the rest dropped and
    counted in ``report``."""
    fresh: list[FeedItem] = []
    for item in items:
        if item.id in seen:
            report.drop("duplicate", item.id)
            continue
        seen.add(item.id)
        fresh.append(item)
    await reader.lookup([i.id for i in fresh], limit=MAX_SOURCE_IDS)
    deleted = reader.deleted_ids()
    excluded = reader.report.excluded
    kept: list[Event] = []
    for item in fresh:
        e = reader.events.get(item.id)
        if item.id in excluded:
            report.drop("excluded", item.id)
        elif e is None:
            report.drop("not-found", item.id)
        elif e.kind not in SHOWN_KINDS:
            report.drop("unrelated", item.id)
        elif e.body is None or e.id in deleted:
            report.drop("deleted", item.id)
        else:
            kept.append(e)
            if item.why:
                report.why[e.id] = item.why
    return kept


async def feed_view(
    reader: Reader,
    entry: FeedEntry,
    *,
    viewer: str | None,
    limit: int,
    cursor: str | None = None,
    moderation: Moderation | None = None,
    http: httpx.AsyncClient | None = None,
    now_ms: int | None = None,
    local_deadline_s: float = LOCAL_FEED_DEADLINE_S,
    total_s: float = FEED_DEADLINE_S,
    server_s: float = SERVER_DEADLINE_S,
    max_fill: int = MAX_FILL_PAGES,
) -> FeedView:
    """``limit`` items of feed ``entry`` from ``cursor``, checked and moderated.

    ``http`` is the client the serving nodes of a subscribed feed are asked over (the
    reader's nodes' own, usually). ``moderation`` (None: unmoderated) judges the items
    after the feed; while fewer than ``limit`` are shown, the page had a cursor and
    fewer than ``max_fill`` more pages were asked, the next page is asked for the
    missing number. ``report.cursor`` is where the next page starts.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    cursor = check_cursor(cursor)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    report: FeedReport
    next_page: NextPage
    if isinstance(entry, LocalFeed):
        report = FeedReport(name=entry.name, kind="local", source=entry.type)
        next_page = _local_pages(
            entry, reader, viewer, report, deadline_s=local_deadline_s, now_ms=now
        )
    else:
        if http is None:
            raise ValueError("a subscribed feed needs an HTTP client")
        report = FeedReport(name=entry.name, kind="subscribed", source=entry.source)
        next_page = _remote_pages(entry, http, viewer, report, total_s=total_s, server_s=server_s)
    seen: set[bytes] = set()
    cursors: set[str] = set() if cursor is None else {cursor}
    items: list[Event] = []
    page_cursor = cursor
    want = limit
    mod: Moderated | None = None
    view = View(items=[], report=reader.report)
    for round_ in range(1 + max_fill):
        page = await next_page(page_cursor, want)
        if page is None:  # a fill page that could not be had: keep what there is
            break
        report.pages += 1
        items += await _resolve(reader, page.items, seen, report)
        if page.cursor is not None and page.cursor in cursors:
            report.endless, page_cursor = True, None
        else:
            page_cursor = page.cursor
        if page_cursor is not None:
            cursors.add(page_cursor)
        view = await _finish(reader, list(items))
        view.more = page_cursor is not None
        shown = len(items)
        if moderation is not None:
            mod = await moderation.judge(view)
            shown = len(mod.shown)
        want = limit - shown
        if want <= 0 or page_cursor is None or round_ == max_fill:
            break
    report.cursor = page_cursor
    return FeedView(view=view, mod=mod, report=report)
