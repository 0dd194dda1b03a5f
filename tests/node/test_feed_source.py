"""``node.feeds.StoreSource`` (spec 0004 #feeds, spec 0009 #source): a feed's Source
over a real SQLite store answers exactly what the reference ``MemorySource`` answers
for the same events: newest first by ``(ts, id)`` even among events of one
millisecond (which the store keeps in another order), strictly before a TimeMark,
deleted and body-less events never given, follows by the latest event per subject."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.feeds import StoreSource, stored_event
from node.store import SqliteStore
from protocol.events import Event
from protocol.feeds import TimeMark
from protocol.feeds.memory import MemorySource
from tests.node.conftest import T0, Author, Clock, new_author


def _corpus(clock: Clock) -> tuple[list[Event], list[Author]]:
    """Four authors, many events sharing few milliseconds (stored in seq order, so the
    store's cursor order within a millisecond is not the id order), tags, likes,
    follows and unfollows, deletions, and a post held without its body."""
    rnd = random.Random(7)
    authors = [new_author(clock) for _ in range(4)]
    events: list[Event] = []
    stamps = [T0 + 1000 * i for i in range(6)]
    for i in range(48):
        a = authors[i % 4]
        ts = rnd.choice(stamps)
        tags = [rnd.choice(["#Py", "py", "rust", "#PY"])] if i % 3 else []
        events.append(a.sign("post", {"text": f"post {i}", "tags": tags}, ts=ts))
    posts = list(events)
    for i, a in enumerate(authors):
        for target in rnd.sample(posts, 6):
            events.append(a.sign("like", {"target": target.id}, ts=rnd.choice(stamps)))
        events.append(a.sign("repost", {"target": posts[i].id}, ts=stamps[2]))
    a0, a1, a2, a3 = authors
    events += [
        a0.sign("follow", {"subject": a1.did}, ts=stamps[0]),
        a0.sign("follow", {"subject": a2.did}, ts=stamps[0]),
        a0.sign("unfollow", {"subject": a1.did}, ts=stamps[1]),
        a0.sign("follow", {"subject": a3.did}, ts=stamps[1]),
        a1.sign("follow", {"subject": a0.did}, ts=stamps[3]),
    ]
    # a0 deletes two of its posts and one of its likes.
    own = [e for e in events if e.author == a0.did and e.kind in ("post", "like")]
    events += [a0.sign("delete", {"target": e.id}, ts=stamps[5]) for e in own[:3]]
    # A post held without its body: never given.
    bare = a2.sign("post", {"text": "bodiless", "tags": ["py"]}, ts=stamps[3])
    events.append(bare.without_body())
    return events, authors


@pytest.fixture
async def sources(
    tmp_path: Path, clock: Clock
) -> AsyncIterator[tuple[StoreSource, MemorySource, list[Author]]]:
    events, authors = _corpus(clock)
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    await store.apply_batch(events)
    try:
        yield StoreSource(store, clock), MemorySource(events), authors
    finally:
        await store.close()


def _ids(events: list[Event]) -> list[str]:
    return [f"{e.ts}:{e.id.hex()[:8]}" for e in events]


async def test_events_match_the_reference_page_by_page(
    sources: tuple[StoreSource, MemorySource, list[Author]],
) -> None:
    """spec 0009 #source-events: every page, for several filters and page sizes,
    continued from TimeMark.of(the last event), is the reference's."""
    store_src, memory, authors = sources
    filters: list[dict[str, object]] = [
        {},
        {"kinds": ["post"]},
        {"kinds": ["post", "repost"], "authors": [authors[1].did, authors[2].did]},
        {"authors": [authors[0].did]},
        {"kinds": ["like"], "since_ts": T0 + 2000},
    ]
    for f in filters:
        for limit in (1, 3, 7, 500):
            before: TimeMark | None = None
            walked: list[Event] = []
            while True:
                want = await memory.events(before=before, limit=limit, **f)  # type: ignore[arg-type]
                got = await store_src.events(before=before, limit=limit, **f)  # type: ignore[arg-type]
                assert _ids(got) == _ids(want), (f, limit, before)
                assert got == want  # the same events, header and body
                walked += got
                if len(got) < limit:
                    break
                before = TimeMark.of(got[-1])
            everything = await memory.events(limit=500, **f)  # type: ignore[arg-type]
            assert _ids(walked) == _ids(everything)
    # A mark between two events of one millisecond, by id.
    all_posts = await memory.events(kinds=["post"], limit=500)
    tie = next(e for e, n in itertools.pairwise(all_posts) if e.ts == n.ts)
    mark = TimeMark(tie.ts, tie.id)
    assert await store_src.events(kinds=["post"], before=mark, limit=5) == await memory.events(
        kinds=["post"], before=mark, limit=5
    )
    assert await store_src.events(kinds=[], limit=5) == []
    assert await store_src.events(authors=[], limit=5) == []


async def test_tagged_get_follows_and_top_reacted_match_the_reference(
    sources: tuple[StoreSource, MemorySource, list[Author]],
) -> None:
    """spec 0009 #source-tagged, #source-get, #source-follows, #source-top-reacted."""
    store_src, memory, authors = sources
    for tag in ("py", "#PY", "Rust", "nothing", "", "#"):
        for limit in (2, 5, 500):
            before: TimeMark | None = None
            while True:
                want = await memory.tagged(tag, before=before, limit=limit)
                got = await store_src.tagged(tag, before=before, limit=limit)
                assert got == want, (tag, limit, before)
                if len(got) < limit:
                    break
                before = TimeMark.of(got[-1])
    everything = await memory.events(limit=500)
    ids = [*[e.id for e in everything][:20], b"\x01" * 32]
    deleted = [e.body["target"] for e in everything if e.kind == "delete" and e.body]
    assert await store_src.get(ids + deleted) == await memory.get(ids + deleted)
    assert not set(deleted) & set(await store_src.get(deleted))
    for a in authors:
        assert await store_src.follows(a.did) == await memory.follows(a.did)
    assert await store_src.follows(authors[0].did) == {authors[2].did, authors[3].did}
    for since, until in ((T0, T0 + 6000), (T0 + 1000, T0 + 3000), (T0 + 5, T0 + 5)):
        assert await store_src.top_reacted(
            since_ts=since, until_ts=until, limit=7
        ) == await memory.top_reacted(since_ts=since, until_ts=until, limit=7)


async def test_a_stored_event_decodes_to_the_signed_event(tmp_path: Path, clock: Clock) -> None:
    """The cheap decode (header and body, no second verification) gives back the very
    event that was signed, wire bytes included."""
    author = new_author(clock)
    ev = author.post("hello", tags=["x"])
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    try:
        await store.apply_batch([ev])
        (held,) = await store.get_events([ev.id])
    finally:
        await store.close()
    again = stored_event(held)
    assert again == ev and again.wire == ev.wire and again.author == author.did
