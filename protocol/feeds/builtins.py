"""The built-in feeds (spec 0009 #builtins): what's hot, friends of friends, a tag.

Each is a plain feed plugin (spec 0009 #interface), written only against
:class:`~protocol.feeds.Source`, so it runs the same in a reader's client and on a
node. Each is bounded whatever the data: a fixed number of Source calls per page, each
within the Source bounds, and work proportional to what those calls return.

- :class:`WhatsHot` (``whats-hot``): posts most liked and reposted over a window
  (a day by default), each reaction decayed by its age (spec 0009 #whats-hot).
- :class:`FriendsOfFriends` (``friends-of-friends``): posts by the people the people
  you follow follow, newest first (spec 0009 #friends-of-friends).
- :class:`Tag` (``tag``): posts carrying a hashtag, or any of a few, newest first
  (spec 0009 #tag-feed).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any, Final

from protocol.errors import BadCursorError, FeedError, FeedLoadError
from protocol.events import Event
from protocol.feeds import (
    MAX_SOURCE_IDS,
    MAX_TOP,
    FeedContext,
    FeedItem,
    Page,
    Reacted,
    Source,
    read_time_cursor,
    time_cursor,
)
from protocol.feeds.memory import MAX_AUTHORS, normalize_tag, post_tags
from protocol.kinds import POST
from protocol.limits import MAX_TAG_BYTES, MAX_TS

__all__ = [
    "BUILTIN_FEEDS",
    "DAY_MS",
    "FOF_MAX_ASKED",
    "FOF_MAX_AUTHORS",
    "HOT_RANKINGS_KEPT",
    "HOT_SLICES",
    "MAX_TAG_FEED_TAGS",
    "REPOST_WEIGHT",
    "FriendsOfFriends",
    "Tag",
    "WhatsHot",
]

DAY_MS: Final = 86_400_000
#: Time slices of a what's-hot window: one ``top_reacted`` call each (spec 0009 #whats-hot).
HOT_SLICES: Final = 4
#: Rankings a what's-hot feed keeps, one per (source, evaluation time): the pages a
#: cursor continues read the ranking of their first page.
HOT_RANKINGS_KEPT: Final = 8
#: Most rankings ``keep_rankings`` may ask a what's-hot feed to keep.
MAX_HOT_RANKINGS_KEPT: Final = 64
#: One ranked target: ``(id, score, likes, reposts)``.
Ranked = tuple[bytes, float, int, int]
#: A repost counts this many likes: it puts the post before the reposter's followers.
REPOST_WEIGHT: Final = 2.0
#: Longest what's-hot window: a node's ``top_reacted`` spans at most 7 days per call
#: (spec 0004 #feeds), and each slice is one call.
MAX_HOT_WINDOW_MS: Final = HOT_SLICES * 7 * DAY_MS
#: Friends of friends: most of the viewer's follows whose follows are asked, and most
#: candidate authors kept (the Source's author bound).
FOF_MAX_ASKED: Final = 100
FOF_MAX_AUTHORS: Final = MAX_AUTHORS
#: Most tags of one tag feed (one ``tagged`` call each per page).
MAX_TAG_FEED_TAGS: Final = 8

# -- what's hot -------------------------------------------------------------------------

_HOT_CURSOR = struct.Struct(">QI")  # evaluation time (ms), offset into the ranking


def _hot_cursor(at_ms: int, offset: int) -> str:
    return "h" + base64.urlsafe_b64encode(_HOT_CURSOR.pack(at_ms, offset)).decode().rstrip("=")


def _read_hot_cursor(cursor: str) -> tuple[int, int]:
    bad = BadCursorError("not a cursor of whats-hot: start again without one")
    if not cursor.startswith("h") or len(cursor) != 17:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor[1:] + "=" * (-len(cursor[1:]) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    if len(raw) != _HOT_CURSOR.size or _hot_cursor(*_HOT_CURSOR.unpack(raw)) != cursor:
        raise bad  # one spelling per position: no aliases to defeat a page cache
    at_ms, offset = _HOT_CURSOR.unpack(raw)
    if at_ms > MAX_TS:
        raise bad
    return at_ms, offset


def _span_text(ms: int) -> str:
    """``86_400_000`` -> "the last day"; "the last 6 hours"; "the last 90 minutes"."""
    for unit_ms, unit in ((DAY_MS, "day"), (3_600_000, "hour"), (60_000, "minute")):
        if ms % unit_ms == 0:
            n = ms // unit_ms
            return f"the last {unit}" if n == 1 else f"the last {n} {unit}s"
    return f"the last {ms / 1000:g} seconds"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class WhatsHot:
    """Posts most liked and reposted over the last day, older reactions counting less.

    ``window_ms``: how far back reactions count (1 minute to 28 days); ``halflife_ms``:
    the age at which a reaction counts half; ``anchor_ms``: a fixed "now" (replays,
    benchmarks), else the reader's clock. spec 0009 #whats-hot.
    """

    name = "whats-hot"
    personal = False  # the same page for every reader: a node shares it

    def __init__(
        self,
        window_ms: int = DAY_MS,
        halflife_ms: int = 21_600_000,
        anchor_ms: int | None = None,
        keep_rankings: int = HOT_RANKINGS_KEPT,
    ) -> None:
        if not _is_int(window_ms) or not 60_000 <= window_ms <= MAX_HOT_WINDOW_MS:
            raise FeedLoadError(
                f"whats-hot: window_ms must be an integer from 60000 to {MAX_HOT_WINDOW_MS}"
            )
        if not _is_int(halflife_ms) or halflife_ms < 1:
            raise FeedLoadError("whats-hot: halflife_ms must be a positive integer")
        if anchor_ms is not None and (not _is_int(anchor_ms) or not 0 <= anchor_ms <= MAX_TS):
            raise FeedLoadError("whats-hot: anchor_ms must be an integer time in ms, or absent")
        if not _is_int(keep_rankings) or not 0 <= keep_rankings <= MAX_HOT_RANKINGS_KEPT:
            raise FeedLoadError(
                f"whats-hot: keep_rankings must be an integer from 0 to {MAX_HOT_RANKINGS_KEPT}"
            )
        self.window_ms = window_ms
        self.halflife_ms = halflife_ms
        self.anchor_ms = anchor_ms
        self.keep_rankings = keep_rankings
        self.description = f"Posts most liked and reposted in {_span_text(window_ms)}"
        #: Recent rankings by (source, T): a later page's cursor pins T, so its
        #: ranking is the first page's, not recomputed (spec 0009 #whats-hot, 8).
        self._rankings: OrderedDict[tuple[int, int], tuple[Source, list[Ranked]]] = (
            OrderedDict()
        )

    async def ranked(self, src: Source, at_ms: int) -> list[Ranked]:
        """:meth:`ranking`, kept for the last ``keep_rankings`` ``(src, T)``."""
        if self.keep_rankings == 0:
            return await self.ranking(src, at_ms)
        key = (id(src), at_ms)
        kept = self._rankings.get(key)
        if kept is not None and kept[0] is src:
            self._rankings.move_to_end(key)
            return kept[1]
        ranking = await self.ranking(src, at_ms)
        self._rankings[key] = (src, ranking)
        while len(self._rankings) > self.keep_rankings:
            self._rankings.popitem(last=False)
        return ranking

    async def ranking(self, src: Source, at_ms: int) -> list[Ranked]:
        """Targets by decayed score at ``at_ms``: ``(id, score, likes, reposts)``, best
        first, then by id; at most :data:`MAX_TOP` (spec 0009 #whats-hot)."""
        start = at_ms - self.window_ms
        edges = [max(0, start + self.window_ms * i // HOT_SLICES) for i in range(HOT_SLICES + 1)]
        slices = [(edges[i], edges[i + 1]) for i in range(HOT_SLICES) if edges[i] < edges[i + 1]]
        answers = await src.gather(
            [src.top_reacted(since_ts=a, until_ts=b, limit=MAX_TOP) for a, b in slices]
        )
        # id -> [score, likes, reposts]; slices summed in order (the spec's Σ_k).
        tally: dict[bytes, list[Any]] = {}
        for (since, until), answer in zip(slices, answers, strict=True):
            age = at_ms - (since + until) / 2
            weight = math.pow(2.0, -age / self.halflife_ms)
            for one in answer[:MAX_TOP]:  # a Source that answers more is cut, not trusted
                if not isinstance(one, Reacted) or len(one.id) != 32:
                    raise FeedError("whats-hot: the source answered top_reacted badly")
                n_likes, n_reposts = one.likes, one.reposts
                if n_likes < 0:
                    n_likes = 0
                if n_reposts < 0:
                    n_reposts = 0
                gained = weight * (n_likes + REPOST_WEIGHT * n_reposts)
                acc = tally.get(one.id)
                if acc is None:
                    tally[one.id] = [0.0 + gained, n_likes, n_reposts]
                else:
                    acc[0] += gained
                    acc[1] += n_likes
                    acc[2] += n_reposts
        # Tuples sort in C: score descending, then id ascending bytewise.
        order = sorted((-s, eid, n_l, n_r) for eid, (s, n_l, n_r) in tally.items() if s > 0)
        return [(eid, -neg, n_l, n_r) for neg, eid, n_l, n_r in order[:MAX_TOP]]

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        if ctx.cursor is None:
            at_ms = self.anchor_ms if self.anchor_ms is not None else ctx.now_ms
            offset = 0
        else:
            at_ms, offset = _read_hot_cursor(ctx.cursor)
        if offset >= MAX_TOP:
            return Page()
        ranked = await self.ranked(src, at_ms)
        span = _span_text(self.window_ms)
        items: list[FeedItem] = []
        pos = offset
        while len(items) < ctx.limit and pos < len(ranked):
            need = ctx.limit - len(items)
            chunk = ranked[pos : pos + min(MAX_SOURCE_IDS, 2 * need + 8)]
            held = await src.get([eid for eid, *_ in chunk])
            for eid, _score, n_likes, n_reposts in chunk:
                pos += 1
                event = held.get(eid)
                if event is None or event.id != eid or not _is_post(event):
                    continue
                why = f"{_plural(n_likes, 'like')}, {_plural(n_reposts, 'repost')} in {span}"
                items.append(FeedItem(eid, why))
                if len(items) == ctx.limit:
                    break
        cursor = _hot_cursor(at_ms, pos) if pos < len(ranked) else None
        return Page(tuple(items), cursor)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_post(event: Event) -> bool:
    """A held post with a body: what a feed of posts may show."""
    return event.kind == POST and event.body is not None


# -- friends of friends -------------------------------------------------------------------


class FriendsOfFriends:
    """Posts by people followed by the people you follow (not you, not whom you follow).

    spec 0009 #friends-of-friends.
    """

    name = "friends-of-friends"
    personal = True  # the viewer's follows choose the authors
    description = "Posts by people the people you follow follow"

    async def authors(self, viewer: str, src: Source) -> dict[str, int]:
        """Candidate authors and how many of the viewer's follows follow each: at most
        :data:`FOF_MAX_AUTHORS`, from the follows of at most :data:`FOF_MAX_ASKED` of
        the viewer's follows (the first in did order)."""
        mine = await src.follows(viewer)
        asked = sorted(mine)[:FOF_MAX_ASKED]
        theirs = await src.gather([src.follows(did) for did in asked])
        counts: Counter[str] = Counter()
        for follows in theirs:
            counts.update(did for did in follows if did != viewer and did not in mine)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:FOF_MAX_AUTHORS]
        return dict(ranked)

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        if ctx.viewer is None:
            raise FeedError("friends-of-friends needs a viewer: say who is reading")
        before = read_time_cursor(ctx.cursor)
        counts = await self.authors(ctx.viewer, src)
        if not counts:
            return Page()
        posts = await src.events(kinds=[POST], authors=list(counts), before=before, limit=ctx.limit)
        items: list[FeedItem] = []
        for event in posts[: ctx.limit]:
            n = counts.get(event.author)
            if n is None or not _is_post(event):
                continue  # not what was asked: a Source's mistake, never shown
            who = "1 person" if n == 1 else f"{n} people"
            items.append(FeedItem(event.id, f"followed by {who} you follow"))
        full = len(posts) >= ctx.limit
        return Page(tuple(items), time_cursor(posts[ctx.limit - 1]) if full else None)


# -- tag ----------------------------------------------------------------------------------


class Tag:
    """Posts carrying a hashtag (``tag="python"``), or any of a few (``tags=[...]``),
    newest first. spec 0009 #tag-feed."""

    name = "tag"
    personal = False

    def __init__(self, tag: str | None = None, tags: Sequence[str] | None = None) -> None:
        if isinstance(tags, str | bytes):
            raise FeedLoadError('tag: tags is a list of tags: tags=["python", "rust"]')
        given: list[Any] = ([tag] if tag is not None else []) + list(tags or [])
        if not given or (tag is not None and tags is not None):
            raise FeedLoadError('tag: give tag="python" or tags=["python", "rust"]')
        norms: dict[str, str] = {}
        for raw in given:
            if not isinstance(raw, str):
                raise FeedLoadError("tag: each tag is a string")
            norm = normalize_tag(raw)
            if not 0 < len(norm.encode("utf-8")) <= MAX_TAG_BYTES:
                raise FeedLoadError(f"tag: {raw!r} is not a tag of 1-{MAX_TAG_BYTES} bytes")
            norms.setdefault(norm, raw.strip().removeprefix("#"))
        if len(norms) > MAX_TAG_FEED_TAGS:
            raise FeedLoadError(f"tag: at most {MAX_TAG_FEED_TAGS} tags")
        #: Normalized tag -> the tag as configured (what ``why`` shows).
        self.tags = norms
        self.description = "Posts tagged " + ", ".join(f"#{t}" for t in norms.values())

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        before = read_time_cursor(ctx.cursor)
        norms = list(self.tags)
        answers = await src.gather([src.tagged(t, before=before, limit=ctx.limit) for t in norms])
        merged: dict[bytes, Event] = {}
        for answer in answers:
            for event in answer[: ctx.limit]:
                if _is_post(event) and (
                    before is None or (event.ts, event.id) < (before.ts, before.id)
                ):
                    merged.setdefault(event.id, event)
        ordered = sorted(merged.values(), key=lambda e: (e.ts, e.id), reverse=True)
        chosen = ordered[: ctx.limit]
        items = []
        for event in chosen:
            carried = post_tags(event.body or {})
            shown = [f"#{self.tags[t]}" for t in norms if t in carried] or [
                f"#{self.tags[norms[0]]}"
            ]
            items.append(FeedItem(event.id, "tagged " + ", ".join(shown)))
        full = len(ordered) >= ctx.limit
        return Page(tuple(items), time_cursor(chosen[-1]) if full and chosen else None)


#: The built-in feed types, by the ``type`` a configuration names them with.
BUILTIN_FEEDS: Final[dict[str, type]] = {
    WhatsHot.name: WhatsHot,
    FriendsOfFriends.name: FriendsOfFriends,
    Tag.name: Tag,
}
