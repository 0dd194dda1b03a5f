"""What people read, built on the verified :class:`~client.reader.Reader` (spec 0007 §views).

Each function runs one read session and returns a :class:`View`: the events to show,
the events they refer to (reposted targets, reply parents, quotes), the latest profile
of every author involved, and the read report. The follow set comes from the reader's
own signed ``follow``/``unfollow`` events (latest per subject wins, spec 0003 §3.6);
profiles are the latest ``profile`` per author (§3.2); events whose author deleted them
(a verified ``delete`` by the same author is held) are not shown (§3.8).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from client.api import NodeClient, WireItem
from client.counts import Counts, counts_report, fetch_counts
from client.moves import resolve_moves
from client.paging import Boundary, MergedCursor, MergedList, boundary_after, passed
from client.reader import (
    MAX_FEED_AUTHORS,
    MAX_FEED_PAGES,
    PAGE,
    Reader,
    ReadReport,
    latest_by_seq,
    reply_root,
)
from protocol import kinds
from protocol.errors import NotFoundError
from protocol.events import Event
from protocol.facets import mentioned_dids

__all__ = [
    "AuthorPages",
    "View",
    "author_list",
    "author_view",
    "follow_set",
    "profile_view",
    "search_view",
    "thread_root_id",
    "thread_view",
    "timeline",
    "timeline_feed",
]

log = logging.getLogger("murmur.client.views")

#: Kinds a timeline shows.
TIMELINE_KINDS = (kinds.POST, kinds.REPOST)


@dataclass(slots=True)
class View:
    """Events to show (in display order) and everything needed to render them."""

    items: list[Event]
    report: ReadReport
    related: dict[bytes, Event] = field(default_factory=dict)
    profiles: dict[str, Event] = field(default_factory=dict)
    root: Event | None = None
    #: The reader's follow set, when building the view needed it (the timeline).
    follows: frozenset[str] | None = None
    #: The sources held more items than ``items``: a longer window shows more (spec
    #: 0007 #limit-after-moderation).
    more: bool = False
    #: Likes, reposts, replies and quotes by event id, as the nodes count them (spec
    #: 0007 #counts): the items, reposted targets and a thread's root.
    counts: dict[bytes, Counts] = field(default_factory=dict)
    #: Nodes that gave no counts in this read: url → error code.
    counts_failed: dict[str, str] = field(default_factory=dict)


def references(e: Event) -> list[bytes]:
    """Ids an event points at that a reader wants to see with it."""
    if e.body is None:
        return []
    out: list[bytes] = []
    if e.kind in (kinds.REPOST, kinds.LIKE, kinds.DELETE):
        out.append(e.body["target"])
    if e.kind == kinds.POST:
        if isinstance(e.body.get("reply"), dict):
            out.append(e.body["reply"]["parent"])
        if isinstance(e.body.get("quote"), bytes):
            out.append(e.body["quote"])
    return out


async def resolve(reader: Reader, items: Iterable[Event]) -> dict[bytes, Event]:
    """Referenced events (one level deep), verified, from every node."""
    return await reader.lookup(i for e in items for i in references(e))


async def profiles_of(reader: Reader, dids: Iterable[str]) -> dict[str, Event]:
    """The latest profile of each did (spec 0003 §3.2), from every node's feed."""
    wanted = sorted(set(dids))
    if wanted:
        await reader.fetch_feed(authors=wanted, kinds_=[kinds.PROFILE], limit=PAGE)
    deleted = reader.deleted_ids()
    out: dict[str, Event] = {}
    for did in wanted:
        best = latest_by_seq(
            e
            for e in reader.of_author(did)
            if e.kind == kinds.PROFILE and e.body is not None and e.id not in deleted
        )
        if best is not None:
            out[did] = best
    return out


def _visible(reader: Reader, events: Iterable[Event], kinds_: Iterable[str]) -> list[Event]:
    deleted = reader.deleted_ids()
    wanted = set(kinds_)
    return [e for e in events if e.kind in wanted and e.body is not None and e.id not in deleted]


def _newest_first(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.ts, e.seq, e.id), reverse=True)


def counted_ids(items: Iterable[Event]) -> list[bytes]:
    """The ids whose counts a view shows: each item, and a repost's target."""
    out: list[bytes] = []
    for e in items:
        out.append(e.id)
        if e.kind == kinds.REPOST and e.body is not None:
            out.append(e.body["target"])
    return out


async def _finish(
    reader: Reader, items: list[Event], *extra_dids: str, extra_ids: Iterable[bytes] = ()
) -> View:
    # Counts are asked at the same time as what the items refer to (spec 0007 #counts).
    related, counts = await asyncio.gather(
        resolve(reader, items), fetch_counts(reader, [*counted_ids(items), *extra_ids])
    )
    shown = [*items, *related.values()]
    dids = {e.author for e in shown} | set(extra_dids)
    # Mentioned people too, so a mention can show their name (spec 0007 #facets).
    dids |= {d for e in shown if e.kind == kinds.POST and e.body for d in mentioned_dids(e.body)}
    profiles = await profiles_of(reader, dids)
    return View(
        items=items,
        report=reader.report,
        related=related,
        profiles=profiles,
        counts=counts,
        counts_failed=dict(counts_report(reader).failed),
    )


async def follow_set(reader: Reader, did: str, *, mark: bool = True) -> dict[str, Event]:
    """``did``'s follows: subject → the ``follow`` event that is the latest for it.

    A followed did:key with a confirmed move brings its new did:murmur in, under the
    same follow event, unless ``did`` follows or unfollows that did itself (spec 0008
    #move; contested and unconfirmed moves are only reported). With ``mark``, nodes
    that did not serve a follow/unfollow event are reported.
    """
    horizon = await reader.fetch_feed(
        authors=[did],
        kinds_=[kinds.FOLLOW, kinds.UNFOLLOW],
        limit=PAGE,
        max_pages=MAX_FEED_PAGES,
    )
    latest: dict[str, list[Event]] = {}
    for e in _visible(reader, reader.of_author(did), (kinds.FOLLOW, kinds.UNFOLLOW)):
        latest.setdefault(e.body["subject"], []).append(e)  # type: ignore[index]
    out: dict[str, Event] = {}
    for subject, events in latest.items():
        best = latest_by_seq(events)
        if best is not None and best.kind == kinds.FOLLOW:
            out[subject] = best
    for source, move in (await resolve_moves(reader, out)).items():
        if move.target is not None and move.target not in latest:
            out[move.target] = out[source]
    if mark:
        shown = [e for evs in latest.values() for e in evs]
        reader.mark_withheld(shown, lambda url, e: _vouched(horizon, url, e))
    return out


def _vouched(horizon: dict[str, int | None], url: str, e: Event) -> bool:
    """Did the node at ``url`` promise ``e`` by the extent of the feed it served?"""
    if url not in horizon:
        return False
    h = horizon[url]
    return h is None or e.ts > h


def timeline_feed(
    reader: Reader, me: str, follows: Iterable[str], *, cursor: MergedCursor | None = None
) -> MergedList:
    """The merged feed of ``me`` and the accounts it follows (posts, reposts and the
    deletes that hide some), from ``cursor`` (spec 0007 #paging)."""
    authors = sorted(set(follows) | {me})
    if len(authors) > MAX_FEED_AUTHORS:
        log.warning("feed truncated to %d of %d authors", MAX_FEED_AUTHORS, len(authors))
        authors = authors[:MAX_FEED_AUTHORS]
    wanted, kinds_ = set(authors), [*TIMELINE_KINDS, kinds.DELETE]

    async def fetch(
        node: NodeClient, before: str | None, limit: int
    ) -> tuple[list[WireItem], str | None]:
        page = await node.feed_page(authors=authors, kinds=kinds_, limit=limit, before=before)
        reader.keys.offer_tips(node.url, page.key_tips)  # spec 0004 #feed-key-tips
        return page.items, page.next

    return MergedList(
        reader,
        "timeline",
        fetch,
        lambda e: e.author in wanted and e.kind in kinds_,
        cursor=cursor,
        page=PAGE,
        max_pages=MAX_FEED_PAGES,
    )


async def timeline(
    reader: Reader,
    me: str,
    *,
    limit: int,
    follows: Mapping[str, Event] | None = None,
    feed: MergedList | None = None,
) -> View:
    """Posts, replies and reposts of the accounts ``me`` follows (and ``me``), newest first.

    The merged feed holds at least ``2 * limit + 20`` events where it can, so deletes
    (fetched to hide their targets) do not crowd posts out of the window.
    ``follows`` is ``me``'s follow set when an earlier window of the same read has it;
    ``feed`` the :func:`timeline_feed` to read (from a cursor), which a longer window
    of the same read reads further.
    """
    if follows is None:
        follows = await follow_set(reader, me, mark=False)  # `following` reports those
    if feed is None:
        feed = timeline_feed(reader, me, follows)
    authors = sorted(set(follows) | {me})
    await feed.fill(2 * limit + 20)
    # Gap repair: seqs missing between an author's oldest and newest feed events.
    lows: dict[str, int] = {}
    for e in reader.events.values():
        if e.author in authors and e.kind in TIMELINE_KINDS and feed.complete(e):
            lows[e.author] = min(lows.get(e.author, e.seq), e.seq)
    await reader.repair_all(lows)
    reader.check_chains(lows, low=lows)
    wanted = set(authors)
    # Only what this page of the merged feed may show (spec 0007 #paging).
    pool = [e for e in reader.events.values() if e.author in wanted and feed.complete(e)]
    visible = _newest_first(_visible(reader, pool, TIMELINE_KINDS))
    items = visible[:limit]
    reader.mark_withheld(items, feed.vouched)
    # Served without a body that no deletion explains: withheld (spec 0007 #withheld-body).
    reader.mark_withheld(reader.stripped(pool), lambda url, e: True)
    view = await _finish(reader, items)
    view.follows = frozenset(follows)
    view.more = len(visible) > limit or feed.more
    return view


async def author_view(
    reader: Reader, did: str, *, limit: int, fetch: bool = True, after: Boundary | None = None
) -> View:
    """An author's posts and reposts from their whole verified, repaired log.

    ``fetch=False`` builds a longer window from the log this reader already read;
    ``after``: only items that boundary did not pass (a page after the first, spec 0007
    #paging: the whole log is read, so no node cursor is needed).
    """
    if fetch:
        await reader.fetch_log(did)
        await reader.repair(did)
        reader.check_chains([did])
    log_events = reader.of_author(did)
    reader.mark_withheld(log_events, lambda url, e: True)  # every node was asked for all
    visible = _newest_first(_visible(reader, log_events, TIMELINE_KINDS))
    visible = [e for e in visible if not passed(after, e)]
    view = await _finish(reader, visible[:limit], did)
    view.more = len(visible) > limit
    return view


def author_list(did: str) -> str:
    """The cursor list name of ``did``'s page (spec 0007 #paging)."""
    return f"author:{did}"


class AuthorPages:
    """Pages of ``did``'s posts and reposts for every face (``murmur author``, the web's
    author page): :meth:`build` is the page builder a moderated page calls with longer
    windows (the log is read once, by the first call); :meth:`next_cursor` is where the
    next page starts (the whole log is read, so only the boundary: #paging)."""

    def __init__(self, reader: Reader, did: str, *, after: Boundary | None = None) -> None:
        self.reader = reader
        self.did = did
        self.after = after
        self._fetched = False

    async def build(self, n: int) -> View:
        view = await author_view(
            self.reader, self.did, limit=n, fetch=not self._fetched, after=self.after
        )
        self._fetched = True
        return view

    def next_cursor(self, view: View) -> MergedCursor | None:
        if not (view.more and view.items):
            return None
        boundary = boundary_after(view.items, self.after)
        return MergedCursor(list=author_list(self.did), nodes={}, boundary=boundary)


async def thread_view(reader: Reader, eid: bytes) -> View:
    """The thread ``eid`` belongs to: its root and every reply, oldest first."""
    found = await reader.lookup([eid])
    target = found.get(eid)
    root = (reply_root(target) if target is not None else None) or eid
    await reader.fetch_thread(root)
    replies = [e for e in reader.events.values() if reply_root(e) == root]
    root_event = reader.events.get(root)
    if root_event is None and not replies:
        raise NotFoundError(f"no configured node holds event {eid.hex()}")
    replies = sorted(_visible(reader, replies, (kinds.POST,)), key=lambda e: (e.ts, e.id))
    reader.mark_withheld(
        [*([root_event] if root_event is not None else []), *replies], lambda url, e: True
    )
    # Parents that no thread answer carried (withheld everywhere) are asked by id.
    await reader.lookup(e.body["reply"]["parent"] for e in replies if e.body is not None)
    # The root's author is named too, even when the root is deleted (spec 0007 #own-name).
    view = await _finish(
        reader,
        replies,
        *([root_event.author] if root_event else []),
        extra_ids=[root_event.id] if root_event else [],
    )
    view.root = root_event
    return view


def thread_root_id(view: View, eid: bytes) -> bytes:
    """The id of the root of ``view`` (a :func:`thread_view` of ``eid``): the root held,
    else the root the replies name, else ``eid`` itself."""
    if view.root is not None:
        return view.root.id
    return (reply_root(view.items[0]) if view.items else eid) or eid


async def profile_view(reader: Reader, did: str) -> View:
    """``did``'s latest profile (``view.profiles[did]`` when there is one)."""
    profiles = await profiles_of(reader, [did])
    return View(items=[], report=reader.report, profiles=profiles)


async def search_view(reader: Reader, q: str, *, limit: int) -> View:
    """Authors whose *latest verified* profile name contains ``q`` (case-insensitive)."""
    await reader.search_profiles(q, limit=limit)
    latest = await profiles_of(reader, {e.author for e in reader.events.values()})
    needle = q.casefold()

    def name(e: Event) -> str:
        return str((e.body or {}).get("name", "")).casefold()

    hits = [e for e in latest.values() if needle in name(e)]
    hits.sort(key=lambda e: (not name(e).startswith(needle), name(e)))
    return View(items=hits[:limit], report=reader.report, profiles=latest)
