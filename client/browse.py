"""Lists merged from the reader's nodes: who reacted to a post, post search, hashtags
(spec 0007 #who, #post-search).

Each is a :class:`~client.paging.MergedList` over one node endpoint (``GET
/v1/events/{id}/reactions``, ``GET /v1/search``), so it pages with a cursor that is
right across nodes. Nodes only index; the client checks everything it shows:

- every event is verified from its wire bytes, and an event of a ``did:murmur``
  author only counts while its key state says it is theirs (the reader does both);
- it really is what was asked: a like or repost whose ``target`` is the post, a
  reply whose ``reply.parent`` is it, a quote that quotes it; a post that contains
  every searched word (compared case-folded, without diacritics) or carries the tag
  (NFKC, case-folded). Anything else a node serves is dropped and reported under
  that node (``unexpected-event``);
- it is not deleted: the deletes of the authors on the page are read from every node
  (one feed request per node), so a node that still serves a deleted like or post
  does not get it listed;
- the reader's moderation runs over the page (in the CLI), like any view.

A like or repost is listed once per author (their newest on the page): two likes by
one author count once (spec 0003 §3.5).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from client.api import NodeClient, WireItem
from client.paging import MergedCursor, MergedList
from client.reader import PAGE, Reader
from client.views import View, _finish, _newest_first
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.events import Event
from protocol.facets import TAG, post_facets

__all__ = [
    "REACTIONS",
    "fold",
    "matches_tag",
    "matches_words",
    "reaction_list",
    "reactions_view",
    "search_list",
    "search_view_posts",
]

#: Command name → the ``kind`` of ``GET /v1/events/{id}/reactions``.
REACTIONS: Final = {"likes": "like", "reposts": "repost", "replies": "reply", "quotes": "quote"}
#: Pages read from each node for one page of a list.
MAX_LIST_PAGES: Final = 5
#: Most words in a search, and longest query (spec 0004 #search-query).
MAX_QUERY_WORDS: Final = 8
MAX_QUERY_BYTES: Final = 256


def reacts_to(e: Event, kind: str) -> bytes | None:
    """The event ``e`` reacts to as a ``kind`` (like, repost, reply, quote), or None."""
    body = e.body
    if body is None:
        return None
    if kind in (kinds.LIKE, kinds.REPOST) and e.kind == kind:
        target = body.get("target")
        return target if isinstance(target, bytes) else None
    if e.kind != kinds.POST:
        return None
    if kind == "reply" and isinstance(body.get("reply"), dict):
        parent = body["reply"].get("parent")
        return parent if isinstance(parent, bytes) else None
    if kind == "quote":
        quote = body.get("quote")
        return quote if isinstance(quote, bytes) else None
    return None


def reaction_list(
    reader: Reader, eid: bytes, kind: str, *, cursor: MergedCursor | None
) -> MergedList:
    """Who reacted to ``eid`` as ``kind``, merged from the reader's nodes."""
    if kind not in REACTIONS.values():
        raise BadRequestError(f"unknown reaction {kind!r}")

    async def fetch(
        node: NodeClient, before: str | None, limit: int
    ) -> tuple[list[WireItem], str | None]:
        return await node.reactions(eid.hex(), kind, before=before, limit=limit)

    return MergedList(
        reader,
        f"{kind}:{eid.hex()}",
        fetch,
        lambda e: reacts_to(e, kind) == eid,
        cursor=cursor,
        page=PAGE,
        max_pages=MAX_LIST_PAGES,
    )


# -- search ---------------------------------------------------------------------------


def _word_chars(text: str) -> str:
    """``text`` with every character that is not a letter, digit, mark or private
    use turned into a space (the word rule of spec 0004 #search-query)."""
    return "".join(
        ch if unicodedata.category(ch)[0] in "LNM" or unicodedata.category(ch) == "Co" else " "
        for ch in text
    )


def fold(text: str) -> str:
    """Case-folded, without diacritics: how search compares words."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def query_words(q: str) -> list[str]:
    """The words of a post search, folded; ``BadRequestError`` as a node would."""
    if len(q.encode("utf-8", "surrogatepass")) > MAX_QUERY_BYTES:
        raise BadRequestError(f"the search is longer than {MAX_QUERY_BYTES} bytes")
    words = list(dict.fromkeys(fold(w) for w in _word_chars(q).split()))
    words = [w for w in words if w]
    if not words:
        raise BadRequestError("the search has no word (letters or digits)")
    if len(words) > MAX_QUERY_WORDS:
        raise BadRequestError(f"a search has at most {MAX_QUERY_WORDS} words")
    return words


def normalize_tag(tag: str) -> str:
    """Tags compare NFKC-normalized and case-folded, one leading ``#`` dropped
    (spec 0004 #search-tags)."""
    return unicodedata.normalize("NFKC", tag.strip().removeprefix("#")).casefold().strip()


def _tags(body: dict[str, object]) -> list[str]:
    raw = body.get("tags")
    out = [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
    out += [f.value for f in post_facets(body) if f.type == TAG and isinstance(f.value, str)]
    return out


def matches_words(e: Event, words: Iterable[str]) -> bool:
    """Does post ``e`` hold every (folded) word, in its text or tags? A lenient check
    (a word inside a longer one passes) that no honest node's answer fails."""
    if e.kind != kinds.POST or e.body is None:
        return False
    text = e.body.get("text")
    parts = [text if isinstance(text, str) else "", *_tags(e.body)]
    hay = fold(_word_chars("\n".join(parts)))
    return all(w in hay for w in words)


def matches_tag(e: Event, tag: str) -> bool:
    if e.kind != kinds.POST or e.body is None:
        return False
    return any(normalize_tag(t) == tag for t in _tags(e.body))


def search_list(
    reader: Reader, *, q: str | None = None, tag: str | None = None, cursor: MergedCursor | None
) -> MergedList:
    """Posts matching the words ``q`` or the hashtag ``tag``, merged from the nodes."""
    if (q is None) == (tag is None):
        raise BadRequestError("search words or a tag, not both")
    accept: Callable[[Event], bool]
    if q is not None:
        words = query_words(q)
        name = "search:" + " ".join(words)
        accept = lambda e: matches_words(e, words)  # noqa: E731
    else:
        assert tag is not None  # noqa: S101 - checked above
        wanted = normalize_tag(tag)
        if not wanted:
            raise BadRequestError("the tag is empty")
        name = "tag:" + wanted
        accept = lambda e: matches_tag(e, wanted)  # noqa: E731

    async def fetch(
        node: NodeClient, before: str | None, limit: int
    ) -> tuple[list[WireItem], str | None]:
        return await node.search(q=q, tag=tag, before=before, limit=limit)

    return MergedList(
        reader, name, fetch, accept, cursor=cursor, page=PAGE, max_pages=MAX_LIST_PAGES
    )


# -- views ----------------------------------------------------------------------------


async def _deletes_of(reader: Reader, events: Iterable[Event]) -> None:
    """Read the deletes of ``events``' authors from every node (one page each)."""
    authors = sorted({e.author for e in events})
    if authors:
        await reader.fetch_feed(authors=authors, kinds_=[kinds.DELETE], limit=PAGE)


def _once_per_author(events: list[Event]) -> list[Event]:
    seen: set[str] = set()
    out: list[Event] = []
    for e in events:  # newest first: the newest of each author stays
        if e.author not in seen:
            seen.add(e.author)
            out.append(e)
    return out


async def _list_view(
    reader: Reader,
    lst: MergedList,
    limit: int,
    *,
    once_per_author: bool,
    extra_ids: Iterable[bytes] = (),
    extra_dids: Iterable[str] = (),
) -> View:
    await lst.fill(limit + 10)  # a margin for deleted and duplicate items
    events = lst.events()
    await _deletes_of(reader, events)
    deleted = reader.deleted_ids()
    visible = [e for e in events if e.body is not None and e.id not in deleted]
    visible = _newest_first(visible)
    if once_per_author:
        visible = _once_per_author(visible)
    view = await _finish(reader, visible[:limit], *extra_dids, extra_ids=extra_ids)
    view.more = len(visible) > limit or lst.more
    return view


def reactions_view(
    reader: Reader, lst: MergedList, eid: bytes, kind: str
) -> Callable[[int], Awaitable[View]]:
    """``build(n)``: the view of the ``n`` newest ``kind`` reactions to ``eid`` (the
    post itself in ``view.related`` and ``view.root`` when a node holds it)."""

    async def build(n: int) -> View:
        target = (await reader.lookup([eid])).get(eid)
        view = await _list_view(
            reader,
            lst,
            n,
            once_per_author=kind in (kinds.LIKE, kinds.REPOST),
            extra_ids=[eid],
            extra_dids=[target.author] if target is not None else [],
        )
        if target is not None:
            view.related[eid] = target  # context, not judged as an item
        return view

    return build


def search_view_posts(reader: Reader, lst: MergedList) -> Callable[[int], Awaitable[View]]:
    """``build(n)``: the view of the ``n`` newest posts of a search or tag list."""

    async def build(n: int) -> View:
        return await _list_view(reader, lst, n, once_per_author=False)

    return build
