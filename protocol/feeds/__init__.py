"""Feed plugins: a feed chooses and orders events; it never forges or shows them (spec 0009).

A **feed** is a small class with a ``name`` and one coroutine, ``page(ctx, src)``. It
is given the reader's :class:`FeedContext` (who reads, the clock, how many items, the
cursor of the page asked for) and a :class:`Source`, the read-only access to the events
of some nodes, and returns a :class:`Page`: an ordered list of event ids (each with an
optional ``why``) and an opaque cursor for the next page. The same class runs in two
places with the same :class:`Source` shape:

- in the reader's client (``murmur feed NAME``), over the reader's own nodes;
- on a node whose operator enabled it (``GET /v1/feeds/{name}``), over the node's store.

A feed never returns events, only ids: the client fetches those events from the
reader's nodes, verifies each one, drops what does not verify or is not what the page
named, and applies the reader's moderation filters after the feed (spec 0007 #feeds).
So a feed can choose and order, but cannot forge an event, hide one from moderation,
or skip the reader's filters.

Example (``examples/feeds/long_posts.py``)::

    from protocol.feeds import FeedContext, Page, Source, time_cursor, read_time_cursor

    class LongPosts:
        name = "long-posts"
        description = "Recent posts of more than 280 characters"

        async def page(self, ctx: FeedContext, src: Source) -> Page:
            before = read_time_cursor(ctx.cursor)
            posts = await src.events(kinds=["post"], before=before, limit=200)
            long = [e for e in posts if len(e.body["text"]) > 280][: ctx.limit]
            return Page.of(long, cursor=time_cursor(posts[-1]) if posts else None)

Every :class:`Source` call is bounded (at most :data:`MAX_SOURCE_EVENTS` events,
:data:`MAX_SOURCE_IDS` ids, :data:`MAX_TOP` reacted targets); what a feed returns is
checked by :func:`check_page` (at most ``ctx.limit`` items, distinct 32-byte ids, a
cursor of at most :data:`MAX_CURSOR_CHARS` printable ASCII characters, ``why`` of at
most :data:`MAX_WHY_CHARS`).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeVar, runtime_checkable

from protocol.errors import BadCursorError, FeedError
from protocol.events import Event
from protocol.limits import MAX_TS

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_CURSOR_CHARS",
    "MAX_LIMIT",
    "MAX_SOURCE_EVENTS",
    "MAX_SOURCE_IDS",
    "MAX_TOP",
    "MAX_WHY_CHARS",
    "Feed",
    "FeedContext",
    "FeedItem",
    "Page",
    "Reacted",
    "Source",
    "TimeMark",
    "await_in_order",
    "check_page",
    "feed_description",
    "feed_is_personal",
    "read_time_cursor",
    "time_cursor",
]

T = TypeVar("T")

#: Items a page holds when the reader does not say (``ctx.limit``).
DEFAULT_LIMIT: Final = 50
#: Most items one page may hold: what a node serves and a client asks for at once.
MAX_LIMIT: Final = 100
#: Longest cursor, in characters (printable ASCII, no spaces).
MAX_CURSOR_CHARS: Final = 512
#: Longest ``why`` of one item, in characters; longer ones are cut.
MAX_WHY_CHARS: Final = 200
#: Most events one :meth:`Source.events` or :meth:`Source.tagged` call returns.
MAX_SOURCE_EVENTS: Final = 500
#: Most ids one :meth:`Source.get` call takes.
MAX_SOURCE_IDS: Final = 500
#: Most targets one :meth:`Source.top_reacted` call returns.
MAX_TOP: Final = 1000


@dataclass(frozen=True, slots=True)
class FeedContext:
    """What a feed knows of the page it is asked for.

    ``viewer`` is the reader's did, or None when nobody said (a node serving an
    anonymous request): a feed that needs it (friends of friends) raises
    :class:`~protocol.errors.FeedError` with a message saying so. ``cursor`` is what
    the feed's previous page returned (None for the first page); ``limit`` the most
    items to return (1-:data:`MAX_LIMIT`). ``where`` is ``"client"`` or ``"node"``.
    ``params`` are the feed's configured parameters, as given to its constructor.
    """

    viewer: str | None
    now_ms: int
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    where: Literal["client", "node"] = "client"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One item of a page: an event id and, optionally, why the feed chose it."""

    id: bytes
    why: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    """An ordered page of event ids and the cursor of the next page (None: the end)."""

    items: tuple[FeedItem, ...] = ()
    cursor: str | None = None

    @classmethod
    def of(
        cls,
        chosen: Iterable[Event | bytes | FeedItem],
        *,
        cursor: str | None = None,
        why: Mapping[bytes, str] | None = None,
    ) -> Page:
        """A page of events, ids or items, in order; ``why`` maps an id to its reason."""
        items: list[FeedItem] = []
        for one in chosen:
            if isinstance(one, FeedItem):
                items.append(one)
                continue
            eid = one.id if isinstance(one, Event) else one
            items.append(FeedItem(eid, (why or {}).get(eid, "")))
        return cls(tuple(items), cursor)

    @property
    def ids(self) -> list[bytes]:
        return [item.id for item in self.items]


@dataclass(frozen=True, slots=True)
class Reacted:
    """A target of likes and reposts within a window: how many distinct authors liked
    it and reposted it (each author counts once per kind)."""

    id: bytes
    likes: int = 0
    reposts: int = 0


@runtime_checkable
class Source(Protocol):
    """Read-only access to the events of some nodes (the reader's, or the serving node).

    On the client every event was verified before a feed sees it; on a node, it was
    verified when the node stored it. Events whose body a deletion dropped are never
    given. Every method is bounded; asking for more than the bound gets the bound.
    """

    async def events(
        self,
        *,
        kinds: Sequence[str] | None = None,
        authors: Sequence[str] | None = None,
        before: TimeMark | None = None,
        since_ts: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Newest first by ``(ts, id)``: events of these kinds (all when None) by these
        authors (everyone when None; at most 500), strictly before ``before``, with
        ``ts >= since_ts``; at most ``min(limit, MAX_SOURCE_EVENTS)``."""
        ...

    async def tagged(
        self, tag: str, *, before: TimeMark | None = None, limit: int = 100
    ) -> list[Event]:
        """Newest first by ``(ts, id)``: posts carrying the hashtag ``tag`` (without
        ``#``, compared case-insensitively), strictly before ``before``; at most
        ``min(limit, MAX_SOURCE_EVENTS)``."""
        ...

    async def get(self, ids: Sequence[bytes]) -> dict[bytes, Event]:
        """The events held of these ids (at most :data:`MAX_SOURCE_IDS`), by id."""
        ...

    async def follows(self, did: str) -> frozenset[str]:
        """Whom ``did`` follows: its latest ``follow``/``unfollow`` per subject."""
        ...

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int = 200) -> list[Reacted]:
        """The events most liked and reposted by ``like`` and ``repost`` events with
        ``since_ts <= ts < until_ts``: distinct authors per kind, most (likes +
        reposts) first, then by id; at most ``min(limit, MAX_TOP)``. The targets need
        not be held: a feed :meth:`get`\\ s the ones it shows."""
        ...

    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        """Await ``calls`` (of this source's methods) overlapped where this source can
        overlap them; the answers in order, the first error raised. A feed asks
        several things at once through this, never through an event loop of its own
        (spec 0009 #source-gather)."""
        ...


async def await_in_order(calls: Sequence[Awaitable[T]]) -> list[T]:
    """``calls`` awaited one after another (a source whose calls do not wait, such
    as :class:`~protocol.feeds.memory.MemorySource`): the answers in order; on the
    first error the calls not yet awaited are closed, never left pending."""
    out: list[T] = []
    for i, call in enumerate(calls):
        try:
            out.append(await call)
        except BaseException:
            for rest in calls[i + 1 :]:
                close = getattr(rest, "close", None)
                if close is not None:
                    close()
            raise
    return out


@runtime_checkable
class Feed(Protocol):
    """A feed plugin: built as ``Class(**params)``; ``page`` makes one page.

    ``description`` (optional) is one line shown by ``murmur feeds list`` and
    announced in the ``feed`` event; it defaults to the class docstring's first line.
    ``personal = False`` (optional) promises that pages do not depend on
    ``ctx.viewer``: a node then runs the feed without one and shares its pages among
    all readers (:func:`feed_is_personal`, spec 0009 #interface).
    """

    name: str

    async def page(self, ctx: FeedContext, src: Source) -> Page: ...


def feed_is_personal(feed: object) -> bool:
    """Whether ``feed``'s pages may depend on the viewer: true unless it says
    ``personal = False`` (exactly ``False``: anything else is taken as personal)."""
    return getattr(feed, "personal", True) is not False


def feed_description(feed: object) -> str:
    """A feed's one-line description: its ``description``, else its docstring's first line."""
    text = getattr(feed, "description", None)
    if not isinstance(text, str) or not text.strip():
        doc = type(feed).__doc__ or ""
        text = doc.strip().splitlines()[0] if doc.strip() else ""
    return " ".join(text.split())[:MAX_WHY_CHARS]


# -- time cursors -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class TimeMark:
    """A position in ``(ts, id)`` order: "strictly before this event"."""

    ts: int
    id: bytes = b"\xff" * 32

    @classmethod
    def of(cls, event: Event) -> TimeMark:
        return cls(event.ts, event.id)


def time_cursor(last: Event | TimeMark) -> str:
    """The cursor of the page after ``last``: a feed that pages by time returns it."""
    mark = TimeMark.of(last) if isinstance(last, Event) else last
    raw = struct.pack(">Q", mark.ts) + mark.id
    return "t" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_time_cursor(cursor: str | None) -> TimeMark | None:
    """The position a :func:`time_cursor` names (None for None); anything else is
    :class:`~protocol.errors.BadCursorError`."""
    if cursor is None:
        return None
    if not cursor.startswith("t") or len(cursor) > 64:
        raise BadCursorError("not a cursor of this feed: start again without one")
    try:
        raw = base64.urlsafe_b64decode(cursor[1:] + "=" * (-len(cursor[1:]) % 4))
    except (binascii.Error, ValueError):
        raise BadCursorError("not a cursor of this feed: start again without one") from None
    if len(raw) != 40:
        raise BadCursorError("not a cursor of this feed: start again without one")
    (ts,) = struct.unpack(">Q", raw[:8])
    if ts > MAX_TS:  # a time no event has, and more than a store's integer holds
        raise BadCursorError("not a cursor of this feed: start again without one")
    return TimeMark(ts, raw[8:])


# -- checking what a feed returned ------------------------------------------------------


def _cursor_ok(cursor: str) -> bool:
    return 0 < len(cursor) <= MAX_CURSOR_CHARS and all(33 <= ord(c) <= 126 for c in cursor)


def check_page(page: object, *, limit: int, name: str = "feed") -> Page:
    """``page`` as a feed may return it, or :class:`~protocol.errors.FeedError`.

    Ids must be 32 bytes; a repeated id is kept once (the first); a ``why`` is made
    one line and cut to :data:`MAX_WHY_CHARS`; more than ``limit`` items or a bad
    cursor is an error (a feed that cannot count is not trusted with the rest).
    """
    if not isinstance(page, Page):
        raise FeedError(f"feed {name} returned {type(page).__name__}, not a Page")
    if len(page.items) > limit:
        raise FeedError(f"feed {name} returned {len(page.items)} items, more than {limit}")
    if page.cursor is not None and (
        not isinstance(page.cursor, str) or not _cursor_ok(page.cursor)
    ):
        raise FeedError(
            f"feed {name} returned a bad cursor (1-{MAX_CURSOR_CHARS} printable ASCII characters)"
        )
    seen: set[bytes] = set()
    items: list[FeedItem] = []
    for item in page.items:
        if not isinstance(item, FeedItem) or not isinstance(item.id, bytes) or len(item.id) != 32:
            raise FeedError(f"feed {name} returned an item that is not a 32-byte event id")
        if item.id in seen:
            continue
        seen.add(item.id)
        why = item.why if isinstance(item.why, str) else ""
        why = " ".join("".join(c if c.isprintable() else " " for c in why).split())
        items.append(FeedItem(item.id, why[:MAX_WHY_CHARS]))
    return Page(tuple(items), page.cursor)
