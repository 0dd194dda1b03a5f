"""The built-in feeds over MemorySource (spec 0009 #builtins)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BadCursorError, FeedError, FeedLoadError
from protocol.events import Event
from protocol.feeds import (
    MAX_SOURCE_IDS,
    MAX_TOP,
    FeedContext,
    Reacted,
    TimeMark,
    feed_is_personal,
    time_cursor,
)
from protocol.feeds.builtins import (
    BUILTIN_FEEDS,
    DAY_MS,
    FOF_MAX_ASKED,
    FOF_MAX_AUTHORS,
    HOT_RANKINGS_KEPT,
    REPOST_WEIGHT,
    FriendsOfFriends,
    Tag,
    WhatsHot,
    _hot_cursor,
)
from protocol.feeds.memory import MemorySource

from .conftest import NOW
from .test_feeds import HOUR, World, ids_of, read_all, run
from .test_feeds_memory import _pool


@dataclass
class Counting:
    """A Source wrapper that records every call (and can answer too much)."""

    inner: Any
    calls: list[tuple[str, Any]] = field(default_factory=list)
    flood_top: int = 0

    async def events(self, **kw: Any) -> list[Event]:
        self.calls.append(("events", kw))
        result: list[Event] = await self.inner.events(**kw)
        return result

    async def gather(self, calls: Sequence[Any]) -> list[Any]:
        result: list[Any] = await self.inner.gather(calls)
        return result

    async def tagged(self, tag: str, **kw: Any) -> list[Event]:
        self.calls.append(("tagged", tag))
        result: list[Event] = await self.inner.tagged(tag, **kw)
        return result

    async def get(self, ids: Sequence[bytes]) -> dict[bytes, Event]:
        self.calls.append(("get", list(ids)))
        result: dict[bytes, Event] = await self.inner.get(ids)
        return result

    async def follows(self, did: str) -> frozenset[str]:
        self.calls.append(("follows", did))
        result: frozenset[str] = await self.inner.follows(did)
        return result

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int = 200) -> list[Reacted]:
        self.calls.append(("top_reacted", (since_ts, until_ts, limit)))
        result: list[Reacted] = await self.inner.top_reacted(
            since_ts=since_ts, until_ts=until_ts, limit=limit
        )
        flood = [Reacted(bytes([i % 256, i // 256]) * 16, 1, 0) for i in range(self.flood_top)]
        return result + flood

    def named(self, what: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == what]


def test_builtin_table() -> None:
    assert BUILTIN_FEEDS == {
        "whats-hot": WhatsHot,
        "friends-of-friends": FriendsOfFriends,
        "tag": Tag,
    }
    for name, cls in BUILTIN_FEEDS.items():
        assert vars(cls)["name"] == name


# -- what's hot ------------------------------------------------------------------------


def _score(reactions: Sequence[tuple[str, int]], at: int = NOW) -> float:
    """spec 0009 #whats-hot, independently: each slice's reactions weigh 2^(-age/h)
    with age the slice's middle; a repost weighs REPOST_WEIGHT."""
    total = 0.0
    for kind, ts in reactions:
        i = (ts - (at - DAY_MS)) * 4 // DAY_MS
        middle = at - DAY_MS + DAY_MS * i // 4 + DAY_MS // 8
        weight = math.pow(2, -(at - middle) / (6 * HOUR))
        total += weight * (REPOST_WEIGHT if kind == "repost" else 1)
    return total


def test_whats_hot_ranks_by_decayed_likes_and_reposts() -> None:
    """spec 0009 #whats-hot: recent beats old, a repost counts 2 likes, ties by id,
    reactions outside [now - window, now) do not count."""
    w = World()
    fans = [f"fan{i}" for i in range(6)]
    recent = w.post("ann", "recent", NOW - 2 * DAY_MS)
    old = w.post("ann", "old", NOW - 2 * DAY_MS)
    reposted = w.post("bob", "reposted", NOW - DAY_MS)
    liked = w.post("bob", "liked", NOW - DAY_MS)
    tie_a, tie_b = w.post("cy", "tie a", NOW - 5), w.post("cy", "tie b", NOW - 5)
    cold = w.post("cy", "cold", NOW - 5)
    for fan in fans[:5]:
        w.like(fan, recent, NOW - HOUR)
        w.like(fan, old, NOW - 20 * HOUR)
    for fan in fans[:2]:
        w.repost(fan, reposted, NOW - 3 * HOUR)
    for fan in fans[:3]:
        w.like(fan, liked, NOW - 3 * HOUR)
    w.like("fan0", tie_a, NOW - 2 * HOUR)
    w.like("fan0", tie_b, NOW - 2 * HOUR)
    w.like("fan1", cold, NOW - DAY_MS - 1)  # before the window
    w.like("fan2", cold, NOW)  # at "now": after it
    pages = run(read_all(WhatsHot(), w.source(), now_ms=NOW))
    ties = sorted([tie_a.id, tie_b.id])
    assert ids_of(pages) == [recent.id, reposted.id, liked.id, *ties, old.id]
    why = {item.id: item.why for page in pages for item in page.items}
    assert why[recent.id] == "5 likes, 0 reposts in the last day"
    assert why[reposted.id] == "0 likes, 2 reposts in the last day"
    assert why[tie_a.id] == "1 like, 0 reposts in the last day"
    assert _score([("repost", NOW - 3 * HOUR)] * 2) > _score([("like", NOW - 3 * HOUR)] * 3)
    assert _score([("like", NOW - 20 * HOUR)] * 5) < _score([("like", NOW - 3 * HOUR)] * 3)
    assert _score([("like", NOW - HOUR)] * 5) > _score([("repost", NOW - 3 * HOUR)] * 2)


def test_whats_hot_shows_only_held_posts_with_a_body() -> None:
    """spec 0009 #whats-hot: a liked like, a deleted post and an unheld id are skipped."""
    w = World()
    post = w.post("ann", "post", NOW - HOUR)
    deleted = w.post("ann", "deleted", NOW - HOUR)
    like = w.like("bob", post, NOW - HOUR)
    w.delete("ann", deleted, NOW - HOUR)
    for fan in ("cy", "dee", "eve"):
        w.like(fan, like, NOW - 10)
        w.like(fan, deleted, NOW - 10)
        w.like(fan, b"\x09" * 32, NOW - 10)
    assert ids_of(run(read_all(WhatsHot(), w.source()))) == [post.id]


@cache
def _hot_world() -> tuple[Event, ...]:
    """40 posts with 1 to 40 likes at several ages (scores mostly distinct, some equal)."""
    w = World()
    fans = [f"f{i}" for i in range(40)]
    for i in range(40):
        post = w.post("ann", f"post {i}", NOW - DAY_MS)
        for fan in fans[: i % 13 + 1]:
            w.like(fan, post, NOW - (i % 5) * 4 * HOUR - 1)
    w.like("f0", w.post("bob", "a post liked too late", NOW), NOW + HOUR)
    return tuple(w.events)


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(1, 45))
def test_whats_hot_pages_continue_without_repeats_or_gaps(limit: int) -> None:
    """spec 0009 #whats-hot, #cursors: any page size gives the one-page ranking."""
    src = MemorySource(_hot_world())
    whole = ids_of(run(read_all(WhatsHot(), src, limit=100)))
    assert len(whole) == 40
    assert ids_of(run(read_all(WhatsHot(), src, limit=limit))) == whole


def test_whats_hot_cursor_pins_the_time_of_the_first_page() -> None:
    """spec 0009 #whats-hot: page 2 read an hour later continues page 1's ranking."""
    events = list(_hot_world())
    src = MemorySource(events)
    first = run(WhatsHot().page(FeedContext(viewer=None, now_ms=NOW, limit=10), src))
    later = NOW + HOUR  # new reactions since the first page do not reorder the rest
    w = World()
    newcomer = w.post("zed", "new", NOW + 10)
    for fan in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o"):
        w.like(fan, newcomer, NOW + 20)
    src2 = MemorySource([*events, *w.events])
    ctx = FeedContext(viewer=None, now_ms=later, limit=100, cursor=first.cursor)
    second = run(WhatsHot().page(ctx, src2))
    whole = ids_of(run(read_all(WhatsHot(), src, limit=100)))
    assert first.ids + second.ids == whole
    assert newcomer.id not in second.ids
    assert newcomer.id == run(WhatsHot().page(FeedContext(viewer=None, now_ms=later), src2)).ids[0]


def test_whats_hot_later_pages_reuse_the_first_pages_ranking() -> None:
    """spec 0009 #whats-hot step 7: one feed object ranks once per (source, T); the
    pages its cursor continues read that ranking (no top_reacted calls); another T,
    another source, or more than HOT_RANKINGS_KEPT rankings later, it ranks again."""
    src = Counting(MemorySource(_hot_world()))
    feed = WhatsHot()
    first = run(feed.page(FeedContext(viewer=None, now_ms=NOW, limit=10), src))
    assert len(src.named("top_reacted")) == 4
    ctx = FeedContext(viewer=None, now_ms=NOW + HOUR, limit=10, cursor=first.cursor)
    second = run(feed.page(ctx, src))
    assert len(src.named("top_reacted")) == 4
    assert second.ids and set(second.ids).isdisjoint(first.ids)
    other = Counting(MemorySource(_hot_world()))
    assert run(feed.page(ctx, other)).ids == second.ids and len(other.named("top_reacted")) == 4
    for k in range(1, HOT_RANKINGS_KEPT + 1):
        run(feed.page(FeedContext(viewer=None, now_ms=NOW + k, limit=1), src))
    run(feed.page(ctx, src))
    assert len(src.named("top_reacted")) == 4 * (HOT_RANKINGS_KEPT + 2)
    src.calls.clear()
    forgetful = WhatsHot(keep_rankings=0)
    first = run(forgetful.page(FeedContext(viewer=None, now_ms=NOW, limit=10), src))
    run(forgetful.page(FeedContext(viewer=None, now_ms=NOW, limit=10, cursor=first.cursor), src))
    assert len(src.named("top_reacted")) == 8


def test_whats_hot_anchor_fixes_now() -> None:
    src = MemorySource(_hot_world())
    a = run(WhatsHot(anchor_ms=NOW).page(FeedContext(viewer=None, now_ms=NOW + 5 * DAY_MS), src))
    b = run(WhatsHot().page(FeedContext(viewer=None, now_ms=NOW), src))
    assert a.ids == b.ids and len(a.ids) == 40


def test_whats_hot_is_bounded_whatever_the_source_answers() -> None:
    """spec 0009 #whats-hot: 4 top_reacted calls of MAX_TOP; gets only what the page
    needs; a Source answering more than MAX_TOP is cut; offset past MAX_TOP ends."""
    src = Counting(MemorySource(_hot_world()), flood_top=3 * MAX_TOP)
    page = run(WhatsHot().page(FeedContext(viewer=None, now_ms=NOW, limit=10), src))
    assert len(page.ids) == 10 and page.cursor is not None
    tops = src.named("top_reacted")
    assert len(tops) == 4 and all(limit == MAX_TOP for _, _, limit in tops)
    assert sorted((a, b) for a, b, _ in tops) == [
        (NOW - DAY_MS + DAY_MS * i // 4, NOW - DAY_MS + DAY_MS * (i + 1) // 4) for i in range(4)
    ]
    asked = [eid for ids in src.named("get") for eid in ids]
    assert len(asked) <= 2 * 10 + 8 and all(len(ids) <= MAX_SOURCE_IDS for ids in src.named("get"))
    # The flood of unheld ids outranks some posts: the ranking is cut at MAX_TOP, each
    # get asks at most MAX_SOURCE_IDS, and the feed ends.
    src.calls.clear()
    pages = run(read_all(WhatsHot(), src, limit=100, max_pages=MAX_TOP))
    assert 0 < len(ids_of(pages)) < 40
    gets = src.named("get")
    assert all(len(ids) <= MAX_SOURCE_IDS for ids in gets)
    assert len({eid for ids in gets for eid in ids}) == MAX_TOP
    end = run(
        WhatsHot().page(FeedContext(viewer=None, now_ms=NOW, cursor=_hot_cursor(NOW, MAX_TOP)), src)
    )
    assert end.items == () and end.cursor is None


@pytest.mark.parametrize(
    "cursor",
    ["x", "h", "hAAAA", "h" + "A" * 16 + "A", "h!!!!!!!!!!!!!!!!", "hAAAAAAAAAAAAAAAB=",
     "t" + "A" * 53, "h" + "_" * 16],
)  # fmt: skip
def test_whats_hot_bad_cursors(cursor: str) -> None:
    """spec 0009 #cursors: a cursor whats-hot did not make is bad-cursor."""
    src = MemorySource(_hot_world())
    with pytest.raises(BadCursorError) as info:
        run(WhatsHot().page(FeedContext(viewer=None, now_ms=NOW, cursor=cursor), src))
    assert info.value.code == "bad-cursor"


@pytest.mark.parametrize(
    "params",
    [{"window_ms": 1}, {"window_ms": 29 * DAY_MS}, {"halflife_ms": 0}, {"window_ms": "1d"},
     {"anchor_ms": -1}, {"halflife_ms": True}],
)  # fmt: skip
def test_whats_hot_refuses_bad_parameters(params: dict[str, Any]) -> None:
    with pytest.raises(FeedLoadError):
        WhatsHot(**params)


def test_whats_hot_describes_its_window() -> None:
    assert WhatsHot().description == "Posts most liked and reposted in the last day"
    assert WhatsHot(window_ms=6 * HOUR).description.endswith("in the last 6 hours")


# -- friends of friends ------------------------------------------------------------------


def _fof_world() -> tuple[World, dict[str, Event]]:
    w = World()
    for a, b in [("me", "bob"), ("me", "cy"), ("bob", "dee"), ("cy", "dee"), ("bob", "eve"),
                 ("bob", "me"), ("cy", "bob"), ("eve", "fay")]:  # fmt: skip
        w.follow(a, b, NOW - DAY_MS)
    posts = {
        "dee1": w.post("dee", "dee 1", NOW - 5),
        "eve1": w.post("eve", "eve 1", NOW - 4),
        "dee2": w.post("dee", "dee 2", NOW - 3),
        "bob1": w.post("bob", "bob 1", NOW - 2),  # followed by me: not here
        "me1": w.post("me", "me 1", NOW - 1),  # mine: not here
        "fay1": w.post("fay", "fay 1", NOW - 1),  # three steps away
    }
    w.like("dee", posts["eve1"], NOW)  # not a post
    return w, posts


def test_friends_of_friends_posts_newest_first_with_why() -> None:
    """spec 0009 #friends-of-friends."""
    w, posts = _fof_world()
    pages = run(read_all(FriendsOfFriends(), w.source(), viewer=w.did("me")))
    assert ids_of(pages) == [posts["dee2"].id, posts["eve1"].id, posts["dee1"].id]
    why = [item.why for item in pages[0].items]
    assert why == [
        "followed by 2 people you follow",
        "followed by 1 person you follow",
        "followed by 2 people you follow",
    ]


def test_friends_of_friends_needs_a_viewer() -> None:
    w, _ = _fof_world()
    with pytest.raises(FeedError, match="needs a viewer"):
        run(FriendsOfFriends().page(FeedContext(viewer=None, now_ms=NOW), w.source()))


def test_friends_of_friends_pages_and_bad_cursor() -> None:
    """spec 0009 #cursors: a time cursor; each post once whatever the page size."""
    w, _ = _fof_world()
    for i in range(9):
        w.post(("dee", "eve")[i % 2], f"more {i}", NOW - 100 + i // 2)
    src = w.source()
    whole = ids_of(run(read_all(FriendsOfFriends(), src, viewer=w.did("me"), limit=100)))
    assert len(whole) == 12
    for limit in (1, 2, 5, 12):
        assert ids_of(run(read_all(FriendsOfFriends(), src, viewer=w.did("me"), limit=limit))) == (
            whole
        )
    with pytest.raises(BadCursorError):
        run(FriendsOfFriends().page(FeedContext(viewer=w.did("me"), now_ms=NOW, cursor="h"), src))


def test_friends_of_friends_fan_out_is_bounded() -> None:
    """spec 0009 #friends-of-friends: at most 100 follows asked, 500 authors ranked by
    how many of them follow each (ties by did)."""
    w = World()
    for i in range(FOF_MAX_ASKED + 30):
        w.follow("me", f"friend{i:03d}", NOW - DAY_MS)
    asked = sorted(w.did(f"friend{i:03d}") for i in range(FOF_MAX_ASKED + 30))[:FOF_MAX_ASKED]
    names = {w.did(f"friend{i:03d}"): f"friend{i:03d}" for i in range(FOF_MAX_ASKED + 30)}
    first, second = names[asked[0]], names[asked[1]]
    for i in range(FOF_MAX_AUTHORS + 100):
        w.follow(first, f"stranger{i}", NOW - DAY_MS)
    popular = "stranger599"
    w.follow(second, popular, NOW - DAY_MS)
    w.post(popular, "hello", NOW - 1)
    src = Counting(w.source())
    page = run(FriendsOfFriends().page(FeedContext(viewer=w.did("me"), now_ms=NOW), src))
    assert len(page.ids) == 1 and page.items[0].why == "followed by 2 people you follow"
    follows = src.named("follows")
    assert len(follows) == 1 + FOF_MAX_ASKED and set(follows[1:]) == set(asked)
    (events,) = src.named("events")
    assert len(events["authors"]) == FOF_MAX_AUTHORS and events["authors"][0] == w.did(popular)
    assert events["kinds"] == ["post"]


# -- tag ---------------------------------------------------------------------------------


def test_tag_feed_one_tag_newest_first() -> None:
    """spec 0009 #tag-feed."""
    w = World()
    a = w.post("ann", "a", NOW - 3, tags=["Python"])
    w.post("ann", "b", NOW - 2, tags=["rust"])
    c = w.post("bob", "c", NOW - 1, tags=["python"])
    pages = run(read_all(Tag(tag="#python"), w.source()))
    assert ids_of(pages) == [c.id, a.id]
    assert {item.why for item in pages[0].items} == {"tagged #python"}
    assert Tag(tag="python").description == "Posts tagged #python"


def test_tag_feed_several_tags_merge_once_each() -> None:
    w = World()
    posts = []
    for i in range(12):
        tags = [["python"], ["rust"], ["python", "Rust"]][i % 3]
        posts.append(w.post("ann", f"p{i}", NOW - 100 + i // 2, tags=tags))
    w.post("ann", "other", NOW, tags=["go"])
    expected = [e.id for e in sorted(posts, key=lambda e: (e.ts, e.id), reverse=True)]
    feed = Tag(tags=["python", "rust"])
    for limit in (1, 2, 3, 5, 12, 50):
        pages = run(read_all(feed, w.source(), limit=limit))
        assert ids_of(pages) == expected, limit
    why = {item.id: item.why for page in run(read_all(feed, w.source())) for item in page.items}
    assert why[posts[2].id] == "tagged #python, #rust"
    assert why[posts[1].id] == "tagged #rust"


@pytest.mark.parametrize(
    "params",
    [{}, {"tag": "a", "tags": ["b"]}, {"tags": []}, {"tag": ""}, {"tag": "#"}, {"tag": 7},
     {"tags": "python"}, {"tag": "x" * 65}, {"tags": [f"t{i}" for i in range(9)]}],
)  # fmt: skip
def test_tag_feed_refuses_bad_parameters(params: dict[str, Any]) -> None:
    with pytest.raises(FeedLoadError):
        Tag(**params)


def test_tag_feed_bad_cursor() -> None:
    w = World()
    w.post("ann", "a", NOW, tags=["x"])
    with pytest.raises(BadCursorError):
        run(Tag(tag="x").page(FeedContext(viewer=None, now_ms=NOW, cursor="nope"), w.source()))
    mark = time_cursor(TimeMark(NOW + 1))
    page = run(Tag(tag="x").page(FeedContext(viewer=None, now_ms=NOW, cursor=mark), w.source()))
    assert len(page.ids) == 1


@settings(max_examples=40, deadline=None)
@given(chosen=st.lists(st.integers(0, 59), unique=True, max_size=60), limit=st.integers(1, 12))
def test_tag_feed_paging_any_source_visits_each_post_once(chosen: list[int], limit: int) -> None:
    """spec 0009 #tag-feed, #cursors: two tags merged, any page size, each post once."""
    pool = _pool()
    src = MemorySource(pool[i] for i in chosen)
    posts = [pool[i] for i in chosen if pool[i].kind == "post"]
    expected = [e.id for e in sorted(posts, key=lambda e: (e.ts, e.id), reverse=True)]
    assert ids_of(run(read_all(Tag(tags=["x", "Y"]), src, limit=limit))) == expected


def test_which_built_ins_are_personal() -> None:
    """spec 0009 #personal: what's hot and tag pages are the same for every reader;
    friends of friends depends on the viewer; a feed that says nothing, or anything
    but ``False``, is personal."""
    assert not feed_is_personal(WhatsHot())
    assert not feed_is_personal(Tag(tag="python"))
    assert feed_is_personal(FriendsOfFriends())

    class Quiet:
        name = "quiet"

    class Vague:
        name = "vague"
        personal = 0

    assert feed_is_personal(Quiet()) and feed_is_personal(Vague())
