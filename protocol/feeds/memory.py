"""An in-memory :class:`~protocol.feeds.Source`: the reference semantics (spec 0009 #testing).

:class:`MemorySource` holds a list of events and answers every :class:`Source` method
exactly as spec 0009 #source says a node or a client must: newest first by
``(ts, id)``, strictly before a :class:`TimeMark`, within the bounds of
:mod:`protocol.feeds`, deleted events never given. It is what the tests of the
built-in feeds run against, and what a feed author tests their own feed with::

    src = MemorySource([post1, post2, like1])
    page = await LongPosts().page(FeedContext(viewer=None, now_ms=now), src)

It trusts its events: give it verified ones (``sign_event`` or ``decode_event``), as a
client or a node would. It does no I/O and needs no event loop of its own; its
methods are coroutines only because :class:`Source`'s are.
"""

from __future__ import annotations

import bisect
import unicodedata
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

from protocol.events import Event
from protocol.feeds import (
    MAX_SOURCE_EVENTS,
    MAX_SOURCE_IDS,
    MAX_TOP,
    Reacted,
    TimeMark,
    await_in_order,
)
from protocol.kinds import DELETE, FOLLOW, LIKE, POST, REPOST, UNFOLLOW
from protocol.limits import MAX_TAG_BYTES

__all__ = ["MAX_AUTHORS", "MemorySource", "normalize_tag", "post_tags"]

T = TypeVar("T")

#: Most authors one :meth:`Source.events` call filters by (spec 0009 #source-events):
#: a Source uses the first this many and ignores the rest.
MAX_AUTHORS: Final = 500


def normalize_tag(tag: str) -> str:
    """The form tags are compared in (spec 0004 #search-tags): one leading ``#``
    dropped, NFKC, Unicode default case folding, surrounding white space dropped."""
    return unicodedata.normalize("NFKC", tag.removeprefix("#")).casefold().strip()


def post_tags(body: dict[str, Any]) -> set[str]:
    """A post's normalized tags: its ``tags`` and the ``tag`` of each ``tag`` facet
    (spec 0004 #search-indexed), read defensively."""
    raw: list[str] = []
    tags = body.get("tags")
    if isinstance(tags, list):
        raw.extend(t for t in tags if isinstance(t, str))
    facets = body.get("facets")
    if isinstance(facets, list):
        for facet in facets:
            if isinstance(facet, dict) and facet.get("type") == "tag":
                tag = facet.get("tag")
                if isinstance(tag, str) and len(tag.encode("utf-8")) <= MAX_TAG_BYTES:
                    raw.append(tag)
    return {norm for t in raw if (norm := normalize_tag(t))}


def _key(event: Event) -> tuple[int, bytes]:
    return (event.ts, event.id)


def _bound(limit: int, most: int) -> int:
    return max(0, min(limit, most))


class MemorySource:
    """A :class:`~protocol.feeds.Source` over ``events`` (spec 0009 #source, #testing).

    Repeated ids are kept once. A ``delete`` is effective when its author is its
    target's author and the target is not itself a ``delete`` (spec 0003 #delete,
    #delete-of-delete): the target is then never given, and a deleted ``like``,
    ``repost`` or ``follow`` no longer counts. Events without a body (dropped) are
    never given either.
    """

    def __init__(self, events: Iterable[Event]) -> None:
        by_id: dict[bytes, Event] = {}
        for event in events:
            by_id.setdefault(event.id, event)
        deleted = _deleted(by_id)
        live = [e for e in by_id.values() if e.body is not None and e.id not in deleted]
        #: Every live event by id; ascending ``(ts, id)`` for bisection.
        self._by_id: dict[bytes, Event] = {e.id: e for e in live}
        self._sorted: list[Event] = sorted(live, key=_key)
        self._keys: list[tuple[int, bytes]] = [_key(e) for e in self._sorted]
        #: Posts by normalized tag, ascending ``(ts, id)``, and their keys.
        self._tags: dict[str, list[Event]] = defaultdict(list)
        for event in self._sorted:
            if event.kind == POST and event.body is not None:
                for tag in post_tags(event.body):
                    self._tags[tag].append(event)
        self._tag_keys = {tag: [_key(e) for e in posts] for tag, posts in self._tags.items()}

    def __len__(self) -> int:
        """How many events it gives (deleted and body-less ones are not counted)."""
        return len(self._sorted)

    def _newest_first(self, before: TimeMark | None) -> Iterator[Event]:
        end = len(self._sorted)
        if before is not None:
            end = bisect.bisect_left(self._keys, (before.ts, before.id))
        for i in range(end - 1, -1, -1):
            yield self._sorted[i]

    async def events(
        self,
        *,
        kinds: Sequence[str] | None = None,
        authors: Sequence[str] | None = None,
        before: TimeMark | None = None,
        since_ts: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """spec 0009 #source-events."""
        want = _bound(limit, MAX_SOURCE_EVENTS)
        kind_set = None if kinds is None else set(kinds)
        author_set = None if authors is None else set(list(dict.fromkeys(authors))[:MAX_AUTHORS])
        out: list[Event] = []
        if want == 0:
            return out
        for event in self._newest_first(before):
            if since_ts is not None and event.ts < since_ts:
                break  # newest first: everything after is older still
            if kind_set is not None and event.kind not in kind_set:
                continue
            if author_set is not None and event.author not in author_set:
                continue
            out.append(event)
            if len(out) == want:
                break
        return out

    async def tagged(
        self, tag: str, *, before: TimeMark | None = None, limit: int = 100
    ) -> list[Event]:
        """spec 0009 #source-tagged."""
        want = _bound(limit, MAX_SOURCE_EVENTS)
        norm = normalize_tag(tag)
        posts = self._tags.get(norm, [])
        end = len(posts)
        if before is not None and posts:
            end = bisect.bisect_left(self._tag_keys[norm], (before.ts, before.id))
        return posts[max(0, end - want) : end][::-1] if want else []

    async def get(self, ids: Sequence[bytes]) -> dict[bytes, Event]:
        """spec 0009 #source-get."""
        out: dict[bytes, Event] = {}
        for eid in list(ids)[:MAX_SOURCE_IDS]:
            event = self._by_id.get(eid)
            if event is not None:
                out[eid] = event
        return out

    async def follows(self, did: str) -> frozenset[str]:
        """spec 0009 #source-follows."""
        latest: dict[str, Event] = {}
        for event in self._sorted:
            if event.author != did or event.kind not in (FOLLOW, UNFOLLOW):
                continue
            subject = (event.body or {}).get("subject")
            if not isinstance(subject, str):
                continue
            held = latest.get(subject)
            if held is None or (event.seq, event.id) > (held.seq, held.id):
                latest[subject] = event
        return frozenset(s for s, e in latest.items() if e.kind == FOLLOW)

    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        """spec 0009 #source-gather: in order (nothing here waits, so nothing to overlap)."""
        return await await_in_order(calls)

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int = 200) -> list[Reacted]:
        """spec 0009 #source-top-reacted."""
        want = _bound(limit, MAX_TOP)
        likers: dict[bytes, set[str]] = defaultdict(set)
        reposters: dict[bytes, set[str]] = defaultdict(set)
        start = bisect.bisect_left(self._keys, (since_ts, b""))
        for event in self._sorted[start:]:
            if event.ts >= until_ts:
                break
            if event.kind not in (LIKE, REPOST):
                continue
            target = (event.body or {}).get("target")
            if not isinstance(target, bytes) or len(target) != 32:
                continue
            (likers if event.kind == LIKE else reposters)[target].add(event.author)
        targets = set(likers) | set(reposters)
        ranked = sorted(
            (Reacted(t, len(likers.get(t, ())), len(reposters.get(t, ()))) for t in targets),
            key=lambda r: (-(r.likes + r.reposts), r.id),
        )
        return ranked[:want]


def _deleted(by_id: dict[bytes, Event]) -> set[bytes]:
    """Ids of the events an effective ``delete`` among ``by_id`` retracts."""
    out: set[bytes] = set()
    for event in by_id.values():
        if event.kind != DELETE or event.body is None:
            continue
        target_id = event.body.get("target")
        target = by_id.get(target_id) if isinstance(target_id, bytes) else None
        if target is not None and target.author == event.author and target.kind != DELETE:
            out.add(target.id)
    return out
