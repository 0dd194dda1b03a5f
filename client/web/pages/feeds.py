"""Feeds as tabs (spec 0007 #web-feeds): ``GET /feeds/{name}`` is one page of ``murmur
feed NAME``, and :func:`feed_tabs` is the tab row the home page and every feed page
draw ("Home", then each feed of ``feeds.toml`` in its order).

A feed's page is :func:`client.feeds.view.feed_view` (the feed chooses, the client
fetches every item from the reader's own nodes, verifies it, drops what it may not
show, then runs the reader's filters in the ``feed`` context), drawn with the very
rows of the timeline (:func:`client.web.pages.common.listing`), paged with the feed's
own opaque cursor (``?cursor=``, checked by :func:`client.feeds.view.check_cursor`:
``bad-cursor`` is a 400 page). What the client dropped and each serving node that
failed are the lines of :meth:`client.feeds.view.FeedReport.summary`, as the CLI
prints them; a feed that gave no page (``feed-unavailable``, a local feed's
``feed-timeout`` or ``feed-error``) is the feed page with the error, answered 502.
``GET /feeds`` lists the feeds and says how to add one (the tab row's hint links there
when there is none). ``feeds.toml`` is read afresh on every page, so ``murmur feeds
add`` shows on the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
from aiohttp import web

from client.errors import FeedUnavailableError
from client.feeds.config import FeedEntry, FeedsConfig, LocalFeed
from client.feeds.view import SERVER_DEADLINE_S, FeedReport, FeedView, check_cursor, feed_view
from client.moderation.core import ViewContext
from client.textsafety import safe_line, safe_name
from client.views import follow_set
from client.web.context import WEB, render
from client.web.pages.common import listing, own_state
from client.web.render import Names
from client.web.timing import phase
from protocol.errors import BadCursorError, FeedError, ProtocolError

__all__ = ["PAGE_ITEMS", "FeedTab", "FeedTabs", "feed_href", "feed_tabs", "setup"]

#: Items a feed page asks for (``murmur feed``'s default ``--limit``).
PAGE_ITEMS: Final = 30
#: Status of a feed page when the feed gave no page (as a read the nodes failed).
FEED_FAILED_STATUS: Final = 502

routes = web.RouteTableDef()


@dataclass(slots=True)
class FeedServers:
    """What the feed pages of one app share: the HTTP client serving nodes are asked
    over (a pool of its own, not the reader's nodes' one: spec 0007 #feed-fallback),
    opened on first use and closed with the app; and a lock that runs one local feed
    at a time (a feed stuck in a synchronous loop is interrupted by the process's one
    ``SIGALRM`` timer, which two pages at once would share)."""

    client: httpx.AsyncClient | None = None
    local: asyncio.Lock = field(default_factory=asyncio.Lock)

    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=SERVER_DEADLINE_S, follow_redirects=False)
        return self.client

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


FEED_SERVERS: Final = web.AppKey("murmur.web.feeds", FeedServers)


@dataclass(frozen=True, slots=True)
class FeedTab:
    """One tab: ``label`` is made safe for display, ``name`` is the feed's name."""

    name: str
    label: str
    href: str
    kind: str  # "home", "local" or "subscribed"
    current: bool


@dataclass(frozen=True, slots=True)
class FeedTabs:
    """The tab row: Home and the reader's feeds; ``error`` when ``feeds.toml`` could
    not be read (the row then has Home only and says why)."""

    tabs: list[FeedTab]
    error: str | None = None

    @property
    def feeds(self) -> list[FeedTab]:
        return [t for t in self.tabs if t.kind != "home"]


def feed_href(name: str) -> str:
    """The page of the feed ``name`` (quoted: a hand-edited file is not trusted)."""
    return "/feeds/" + quote(name, safe="")


def _tabs_of(
    feeds: Sequence[FeedEntry], current: str | None, error: str | None = None
) -> FeedTabs:
    home = FeedTab(name="", label="Home", href="/", kind="home", current=current is None)
    tabs = [home]
    for f in feeds:
        kind = "local" if isinstance(f, LocalFeed) else "subscribed"
        tabs.append(
            FeedTab(
                name=f.name,
                label=safe_name(f.name),
                href=feed_href(f.name),
                kind=kind,
                current=f.name == current,
            )
        )
    return FeedTabs(tabs, error)


def feed_tabs(home: Path, current: str | None = None) -> FeedTabs:
    """The tab row for a page (``current``: the feed shown, None: Home). A
    ``feeds.toml`` that does not load leaves Home alone, with the error."""
    try:
        config = FeedsConfig.load(home)
    except ProtocolError as exc:
        return _tabs_of([], current, error=f"{exc.code}: {safe_line(exc.message)}")
    return _tabs_of(config.feeds, current)


def report_lines(report: FeedReport) -> list[str]:
    """What went wrong with the page, one line each (the CLI's ``! feed:`` lines), and
    which node served it when another failed first."""
    lines = [line.removeprefix("feed: ") for line in report.summary()]
    if report.servers and report.node is not None:
        lines.append(f"page served by {safe_line(report.node)}")
    return lines


@routes.get("/feeds", name="feeds")
async def feeds(request: web.Request) -> web.Response:
    """The reader's feeds and how to add one."""
    reads = request.app[WEB].reads
    config = FeedsConfig.load(reads.home)  # feed-load (400) names the bad entry
    rows = [f.to_json() for f in config.feeds]
    for row in rows:
        row["href"] = feed_href(row["name"])
        row["label"] = safe_name(row["name"])
        row["shown_source"] = safe_line(
            row["type"] if row["kind"] == "local" else f"{row['author']}/{row['feed']}"
        )
        row["description"] = safe_line(str(row.get("description", "")))
        row["nodes"] = [safe_line(n) for n in row.get("nodes", [])]
    return render(
        request,
        "feeds.html",
        title="Feeds",
        tabs=_tabs_of(config.feeds, current=None),
        rows=rows,
    )


@routes.get("/feeds/{name}", name="feed")
async def feed(request: web.Request) -> web.Response:
    state = request.app[WEB]
    reads = state.reads
    name = request.match_info["name"]
    config = FeedsConfig.load(reads.home)
    entry = config.find(name)  # feed-not-found: the 404 page naming the feeds there are
    raw = request.query.get("cursor")
    cursor = check_cursor(raw if raw else None)  # bad-cursor: 400, before any request
    me = reads.me()
    servers = request.app[FEED_SERVERS]
    failed: ProtocolError | None = None
    fv: FeedView | None = None
    async with reads.reader() as reader:
        follows = frozenset(await follow_set(reader, me, mark=False)) if me else frozenset()
        moderation = await reads.moderation(
            reader, viewer=me or "", context=ViewContext.FEED, follows=follows
        )
        local = servers.local if isinstance(entry, LocalFeed) else None
        try:
            async with moderation:
                if local is not None:
                    await local.acquire()
                try:
                    with phase("page"):
                        fv = await feed_view(
                            reader,
                            entry,
                            viewer=me or None,
                            limit=PAGE_ITEMS,
                            cursor=cursor,
                            moderation=moderation,
                            http=servers.http(),
                        )
                finally:
                    if local is not None:
                        local.release()
        except BadCursorError:
            raise  # a cursor the local feed refuses: the 400 page, as a malformed one
        except (FeedError, FeedUnavailableError) as exc:
            failed = exc  # the feed gave no page: said on the feed's page, tabs kept
        mine = await own_state(reads, reader, me, fv.view.items if fv else [])
    with phase("render"):
        about: dict[str, Any] = {
            "tabs": _tabs_of(config.feeds, current=name),
            "title": f"Feed {safe_name(name)}",
            "entry": entry,
            "label": safe_name(name),
            "kind": "local" if isinstance(entry, LocalFeed) else "subscribed",
            "source": safe_line(entry.source),
            "remote": "" if isinstance(entry, LocalFeed) else safe_name(entry.feed),
            "description": "" if isinstance(entry, LocalFeed) else safe_line(entry.description),
        }
        if fv is None:
            assert failed is not None  # noqa: S101 - one of the two is set
            names = Names(reads.config, reads.profiles_with_own({}))
            return render(
                request,
                "feed.html",
                status=FEED_FAILED_STATUS,
                names=names,
                served_by=None,
                failed_code=failed.code,
                failed_message=safe_line(failed.message),
                **about,
            )
        view, report = fv.view, fv.report
        names = Names(reads.config, reads.profiles_with_own(view.profiles))
        lst = listing(request, view, fv.mod, names, mine=mine)
        nxt = report.cursor
        return render(
            request,
            "feed.html",
            names=names,
            failed_code=None,
            failed_message=None,
            lst=lst,
            empty=not view.items,
            whys={eid.hex(): safe_line(why) for eid, why in report.why.items()},
            feed_report=report_lines(report),
            served_by=None if report.node is None else safe_line(report.node),
            next_href=None if nxt is None else f"{feed_href(name)}?cursor={quote(nxt, safe='')}",
            **about,
        )


async def _close(app: web.Application) -> None:
    await app[FEED_SERVERS].aclose()


def setup(app: web.Application) -> None:
    app[FEED_SERVERS] = FeedServers()
    app.on_cleanup.append(_close)
    app.router.add_routes(routes)
