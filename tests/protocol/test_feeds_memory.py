"""MemorySource, the reference Source (spec 0009 #source, #testing)."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FeedError
from protocol.events import Event
from protocol.feeds import MAX_SOURCE_EVENTS, MAX_SOURCE_IDS, MAX_TOP, Reacted, TimeMark
from protocol.feeds.memory import MAX_AUTHORS, MemorySource

from .conftest import NOW
from .test_feeds import World, run


def test_events_newest_first_by_ts_then_id_strictly_before_the_mark() -> None:
    """spec 0009 #source-events: (ts, id) order, ties in ts broken by id."""
    w = World()
    posts = [w.post("ann", f"p{i}", NOW + (i // 2)) for i in range(6)]  # pairs share a ts
    src = w.source()
    got = run(src.events(kinds=["post"]))
    assert got == sorted(posts, key=lambda e: (e.ts, e.id), reverse=True)
    mark = TimeMark.of(got[2])
    assert run(src.events(before=mark)) == got[3:]
    assert run(src.events(before=TimeMark(got[2].ts))) == got[2:]  # default id: all of ts
    assert run(src.events(since_ts=NOW + 1)) == got[:4]
    assert run(src.events(limit=2)) == got[:2]
    assert run(src.events(limit=0)) == []


def test_events_by_kind_and_author_and_bounds() -> None:
    """spec 0009 #source-events: kinds, authors (the first MAX_AUTHORS), the limit bound."""
    w = World()
    a = w.post("ann", "a", NOW)
    b = w.post("bob", "b", NOW + 1)
    f = w.follow("ann", "bob", NOW + 2)
    src = w.source()
    assert run(src.events(kinds=["post"], authors=[w.did("ann")])) == [a]
    assert run(src.events(authors=[w.did("ann")])) == [f, a]
    assert run(src.events(kinds=[])) == [] and run(src.events(authors=[])) == []
    assert run(src.events(kinds=["post", "follow"])) == [f, b, a]
    others = [f"did:key:z{i}" for i in range(MAX_AUTHORS)]
    assert run(src.events(authors=[*others, w.did("bob")])) == []  # bob is the 501st
    many = World()
    for i in range(MAX_SOURCE_EVENTS + 20):
        many.post("ann", str(i), NOW + i)
    assert len(run(many.source().events(limit=10_000))) == MAX_SOURCE_EVENTS


def test_deleted_and_bodyless_events_are_never_given() -> None:
    """spec 0009 #source: a delete by the author hides its target; one by another
    author does not; a delete of a delete undoes nothing (spec 0003 #delete-of-delete)."""
    w = World()
    gone = w.post("ann", "gone", NOW)
    kept = w.post("ann", "kept", NOW + 1)
    first = w.delete("ann", gone, NOW + 2)
    w.delete("bob", kept, NOW + 3)  # not the author: no effect
    w.delete("ann", first, NOW + 4)  # a delete of a delete: no effect
    liked = w.like("bob", kept, NOW + 5)
    w.delete("bob", liked, NOW + 6)  # a withdrawn like
    dropped = w.post("cy", "dropped", NOW + 7).without_body()
    src = MemorySource([*w.events[:-1], dropped])
    posts = run(src.events(kinds=["post"]))
    assert posts == [kept]
    assert run(src.get([gone.id, kept.id, dropped.id, liked.id])) == {kept.id: kept}
    assert run(src.top_reacted(since_ts=0, until_ts=NOW + 100)) == []
    assert first.id in run(src.get([first.id]))


def test_get_takes_at_most_max_source_ids() -> None:
    """spec 0009 #source-get: ids past the bound are not looked at."""
    w = World()
    post = w.post("ann", "x", NOW)
    ids = [bytes([i % 256, i // 256]) * 16 for i in range(MAX_SOURCE_IDS)]
    assert run(w.source().get([*ids, post.id])) == {}
    assert run(w.source().get([post.id, b"\x00" * 32])) == {post.id: post}


def test_follows_latest_per_subject_by_seq() -> None:
    """spec 0009 #source-follows, spec 0003 #follow: the latest by seq wins, not by ts."""
    w = World()
    w.follow("ann", "bob", NOW + 50)
    w.follow("ann", "cy", NOW)
    w.follow("ann", "bob", NOW, kind="unfollow")  # later seq, earlier ts: it wins
    w.follow("ann", "dee", NOW)
    undone = w.follow("ann", "eve", NOW)
    w.delete("ann", undone, NOW)  # a deleted follow does not count
    w.follow("bob", "ann", NOW)
    src = w.source()
    assert run(src.follows(w.did("ann"))) == {w.did("cy"), w.did("dee")}
    assert run(src.follows(w.did("nobody"))) == frozenset()


def test_top_reacted_distinct_authors_per_kind_in_the_window() -> None:
    """spec 0009 #source-top-reacted: since <= ts < until, distinct authors per kind,
    most (likes + reposts) first then by id; targets need not be held."""
    w = World()
    p1, p2 = w.post("ann", "1", NOW), w.post("ann", "2", NOW)
    ghost = b"\x07" * 32
    w.like("bob", p1, NOW + 10)
    w.like("bob", p1, NOW + 11)  # the same author again: counts once
    w.like("cy", p1, NOW + 12)
    w.repost("bob", p1, NOW + 13)
    w.like("bob", p2, NOW + 10)
    w.repost("cy", ghost, NOW + 10)
    w.like("dee", ghost, NOW + 10)
    w.like("eve", p2, NOW + 20)  # at until: outside
    w.like("eve", p1, NOW + 9)  # before since: outside
    got = run(w.source().top_reacted(since_ts=NOW + 10, until_ts=NOW + 20))
    by_id = sorted([(p2.id, 1, 0), (ghost, 1, 1)], key=lambda t: (-(t[1] + t[2]), t[0]))
    assert got == [Reacted(p1.id, 2, 1), *(Reacted(i, l_, r) for i, l_, r in by_id)]
    assert run(w.source().top_reacted(since_ts=NOW + 10, until_ts=NOW + 20, limit=1)) == got[:1]
    assert run(w.source().top_reacted(since_ts=NOW + 20, until_ts=NOW + 10)) == []


def test_top_reacted_is_bounded_by_max_top() -> None:
    w = World()
    for i in range(MAX_TOP + 5):
        w.like("bob", bytes([i % 256, i // 256]) * 16, NOW)
    assert len(run(w.source().top_reacted(since_ts=0, until_ts=NOW + 1, limit=5000))) == MAX_TOP


def test_tagged_compares_tags_case_insensitively_and_reads_tag_facets() -> None:
    """spec 0009 #source-tagged (the comparison of spec 0004 #search-tags)."""
    w = World()
    a = w.post("ann", "a", NOW, tags=["Python"])
    b = w.post("bob", "#python", NOW + 1, facets=[
        {"type": "tag", "start": 0, "end": 7, "tag": "PYTHON"}])  # fmt: skip
    w.post("cy", "c", NOW + 2, tags=["pythonic"])
    w.sign("cy", "org.example.note", {"tags": ["python"]}, NOW + 3)  # not a post
    src = w.source()
    assert run(src.tagged("python")) == [b, a]
    assert run(src.tagged("#PyThOn", before=TimeMark.of(b))) == [a]
    assert run(src.tagged("python", limit=1)) == [b]
    assert run(src.tagged("rust")) == []


# -- paging any MemorySource visits every matching event exactly once -------------------


@cache
def _pool() -> tuple[Event, ...]:
    """60 events of 3 authors and several kinds, many sharing a ts."""
    w = World()
    for i in range(60):
        who = ("ann", "bob", "cy")[i % 3]
        ts = NOW + (i * 7) % 13
        if i % 4 == 0:
            w.like(who, b"\x01" * 32, ts)
        else:
            tags = ["x"] if i % 2 else ["y", "X"] if i % 3 == 0 else ["y"]
            w.post(who, f"post {i}", ts, tags=tags)
    return tuple(w.events)


@settings(max_examples=60, deadline=None)
@given(
    chosen=st.lists(st.integers(0, 59), unique=True, max_size=60),
    page=st.integers(1, 12),
    kind=st.sampled_from([None, "post"]),
)
def test_paging_events_visits_each_match_once_in_order(
    chosen: list[int], page: int, kind: str | None
) -> None:
    """spec 0009 #source-events, #cursors: before = the last event of a page."""
    pool = _pool()
    src = MemorySource(pool[i] for i in chosen)
    expected = sorted(
        (pool[i] for i in chosen if kind is None or pool[i].kind == kind),
        key=lambda e: (e.ts, e.id),
        reverse=True,
    )
    seen: list[Event] = []
    before: TimeMark | None = None
    kinds = None if kind is None else [kind]
    while True:
        got = run(src.events(kinds=kinds, before=before, limit=page))
        seen += got
        if len(got) < page:
            break
        before = TimeMark.of(got[-1])
    assert seen == expected


@settings(max_examples=40, deadline=None)
@given(chosen=st.lists(st.integers(0, 59), unique=True, max_size=60), page=st.integers(1, 12))
def test_paging_tagged_visits_each_tagged_post_once(chosen: list[int], page: int) -> None:
    pool = _pool()
    src = MemorySource(pool[i] for i in chosen)
    events = [pool[i] for i in chosen]
    tagged = [e for e in events if "x" in str((e.body or {}).get("tags")).lower()]
    expected = sorted(tagged, key=lambda e: (e.ts, e.id), reverse=True)
    assert {e.kind for e in expected} <= {"post"}
    seen: list[Event] = []
    before: TimeMark | None = None
    while True:
        got = run(src.tagged("x", before=before, limit=page))
        seen += got
        if len(got) < page:
            break
        before = TimeMark.of(got[-1])
    assert seen == expected


def test_gather_in_memory_answers_in_order_and_closes_the_rest_on_error() -> None:
    """spec 0009 #source-gather: MemorySource awaits the calls one after another, the
    answers in order; the first error is raised and the calls after it are closed
    (never left pending: no "coroutine was never awaited")."""
    src = MemorySource([])

    async def answer(x: int) -> int:
        return x

    async def fail() -> int:
        raise FeedError("no")

    assert run(src.gather([answer(1), answer(2), answer(3)])) == [1, 2, 3]
    later = answer(4)
    with pytest.raises(FeedError):
        run(src.gather([answer(1), fail(), later]))
    assert later.cr_frame is None  # closed
