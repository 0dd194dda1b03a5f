"""The PostgreSQL store's own guarantees: cursors in commit order under concurrent
writers, one winner per event across connections, versioned schema (spec 0004
#store-cursor, §store). The contract shared with SQLite is tested on both backends
(``both_backends`` in test_store.py and the node API modules)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import asyncpg
import pytest

from node.store import SchemaError, pg_search
from node.store.base import SearchQuery
from node.store.pg_migrations import PG_SCHEMA_VERSION
from node.store.pg_social import SCHEMA as SOCIAL_SCHEMA
from node.store.postgres import PostgresStore
from protocol.events import Event, decode_event
from tests.node.conftest import T0, Clock, new_author
from tests.node.test_social import _social_events

#: Concurrent writers (separate pools: separate connections, as separate processes
#: would have), batches each, events a batch.
_WRITERS, _BATCHES, _PER_BATCH = 4, 15, 8


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0)


async def test_cursors_follow_commit_order_under_concurrent_writers(
    pg_url: str, clock: Clock
) -> None:
    """Spec 0004 #store-cursor: with writers on several connections committing at
    once, a reader that pages ``events_after(last)`` and resumes from the highest
    cursor it saw sees every event exactly once, cursors strictly increasing. (Cursors
    taken from a sequence at insert time fail this: a later cursor commits first, the
    reader moves past the earlier one, and never sees it.)"""
    stores = [PostgresStore(pg_url, now_ms=clock, pool_size=2) for _ in range(_WRITERS + 1)]
    for s in stores:
        await s.open()
    reader, writers = stores[0], stores[1:]
    batches = []
    for _ in range(_WRITERS):
        author = new_author(clock)
        batches.append(
            [
                [_verified(author.post(f"{b}.{i}")) for i in range(_PER_BATCH)]
                for b in range(_BATCHES)
            ]
        )
    written: set[bytes] = set()
    done = asyncio.Event()

    async def write(store: PostgresStore, mine: list[list[Event]]) -> None:
        for batch in mine:
            results = await store.apply_batch(batch)
            assert [r.status for r in results] == ["accepted"] * len(batch)
            written.update(e.id for e in batch)

    seen: list[tuple[int, bytes]] = []

    async def read() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read once more after the writers finished
            page = await reader.events_after(last, limit=1000)
            for e in page:
                assert e.cursor > last, "cursors must be strictly increasing"
                last = e.cursor
                seen.append((e.cursor, e.id))
            if finished and not page:
                return

    try:
        reading = asyncio.create_task(read())
        async with asyncio.timeout(60):
            await asyncio.gather(*(write(s, b) for s, b in zip(writers, batches, strict=True)))
            done.set()
            await reading
        ids = [i for _, i in seen]
        assert len(ids) == len(set(ids)) == _WRITERS * _BATCHES * _PER_BATCH
        assert set(ids) == written  # nothing skipped
        top = max(c for c, _ in seen)
        assert all(s.counts().cursor <= top for s in writers)
        assert max(s.counts().cursor for s in writers) == top
    finally:
        for s in stores:
            await s.close()


async def test_one_event_from_two_connections_is_accepted_once(pg_url: str, clock: Clock) -> None:
    """Dup-first across connections (spec 0004 #store-cursor): the same events sent
    through two stores at once are accepted once each, the other copy a duplicate,
    never an error (the second writer waits for the first to commit, then probes)."""
    author = new_author(clock)
    events = [_verified(author.post(f"p{i}")) for i in range(30)]
    a = PostgresStore(pg_url, now_ms=clock)
    b = PostgresStore(pg_url, now_ms=clock)
    await a.open()
    await b.open()
    try:
        ra, rb = await asyncio.gather(a.apply_batch(events), b.apply_batch(events))
        for x, y in zip(ra, rb, strict=True):
            assert sorted([x.status, y.status]) == ["accepted", "duplicate"]
        held = await a.events_after(0, limit=100)
        assert [e.id for e in held] == [e.id for e in events]
    finally:
        await a.close()
        await b.close()


async def test_newer_schema_refuses_to_open(pg_url: str, clock: Clock) -> None:
    store = PostgresStore(pg_url, now_ms=clock)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT version FROM schema_version") == PG_SCHEMA_VERSION
        await conn.execute("UPDATE schema_version SET version = $1", PG_SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    newer = PostgresStore(pg_url, now_ms=clock)
    with pytest.raises(SchemaError, match="newer"):
        await newer.open()


async def test_opening_twice_at_once_migrates_once(pg_url: str, clock: Clock) -> None:
    """Several processes starting on one empty database: the advisory lock makes one
    migrate and the others find the schema done."""
    stores = [PostgresStore(pg_url, now_ms=clock, pool_size=1) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        ids = {await s.node_id() for s in stores}
        assert len(ids) == 1  # one node id, whoever asked first
    finally:
        for s in stores:
            await s.close()


async def test_upgrade_from_a_populated_v1_database_fills_the_social_indexes(
    pg_url: str, clock: Clock
) -> None:
    """spec 0004 #social: a PostgreSQL database of schema 1 (no social tables) that holds
    events gets the social indexes filled from them when it opens, exactly as ingesting
    them fills them."""
    alice, evs = _social_events(clock)
    store = PostgresStore(pg_url, now_ms=clock)

    async def answers() -> tuple[Any, ...]:
        got = await store.notifications(
            alice.did, reasons=("reply", "mention", "like", "follow"), before=None, limit=50
        )
        counted = await store.event_counts([evs[0].id, b"\x07" * 32])
        stats = await store.author_stats([alice.did])
        return [(n.reason, n.event.id) for n in got], counted, stats

    await store.open()
    try:
        await store.apply_batch([_verified(e) for e in evs])
        ingested = await answers()
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        tables = [s.split()[2] for s in SOCIAL_SCHEMA if s.startswith("CREATE TABLE")]
        # Schemas 3, 4 and 5.
        later = ["post_search", "key_events", "key_paths", "blobs", "blob_refs", "blob_totals"]
        await conn.execute(f"DROP TABLE {', '.join([*tables, *later])}")
        await conn.execute("DROP INDEX events_profiles")  # schema 7
        await conn.execute("UPDATE schema_version SET version = 1")
    finally:
        await conn.close()
    await store.open()
    try:
        assert await answers() == ingested
        assert [r for r, _ in ingested[0]] == ["follow", "mention", "reply", "like"]
    finally:
        await store.close()


async def test_upgrade_from_a_populated_v2_database_indexes_the_posts_held(
    pg_url: str, clock: Clock
) -> None:
    """spec 0004 #search: a database of schema 2 (no search table) holding posts has
    them indexed when it opens, as ingesting them would have: words case- and
    diacritics-insensitive, tags normalized, deleted posts left out."""
    author = new_author(clock)
    cafe = author.post("Un CAFÉ noir", tags=["#Paris"])
    other = author.post("the cafe next door")
    gone = author.post("cafe gone")
    events = [_verified(e) for e in (cafe, other, gone, author.sign("delete", {"target": gone.id}))]
    store = PostgresStore(pg_url, now_ms=clock)

    async def answers() -> tuple[list[bytes], list[bytes]]:
        words = await store.search(SearchQuery(words=("café",), before=None, limit=10))
        tags = await store.search(SearchQuery(tag="paris", before=None, limit=10))
        return [e.id for e in words.events], [e.id for e in tags.events]

    await store.open()
    try:
        await store.apply_batch(events)
        ingested = await answers()
    finally:
        await store.close()
    assert ingested == ([other.id, cafe.id], [cafe.id])
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(  # schemas 3, 4 and 5
            "DROP TABLE post_search, key_events, key_paths, blobs, blob_refs, blob_totals"
        )
        await conn.execute("DROP INDEX refs_kind_ts")  # schema 6
        await conn.execute("DROP INDEX events_profiles")  # schema 7
        await conn.execute("UPDATE schema_version SET version = 2")
    finally:
        await conn.close()
    await store.open()
    try:
        assert await answers() == ingested
    finally:
        await store.close()


async def test_posts_of_one_millisecond_with_colliding_keys_take_the_next_free_key(
    pg_url: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """spec 0004 #search-order: a post whose natural key (ts over the cursor's low 20
    bits) is taken gets the next free key below, and indexing it again is a no-op."""
    store = PostgresStore(pg_url, now_ms=clock)
    await store.open()
    try:
        async with store.pool.acquire() as c:
            body = {"text": "same millisecond"}
            for cursor, eid in ((5, b"\x01" * 32), (5 + (1 << 20), b"\x02" * 32)):
                await pg_search.index_post(c, eid=eid, ts=T0, cursor=cursor, body=body)
            await pg_search.index_post(c, eid=b"\x02" * 32, ts=T0, cursor=5, body=body)
            rows = await c.fetch("SELECT key, id FROM post_search ORDER BY key DESC")
            natural = (T0 << 20) | 5
            assert [(r["key"], bytes(r["id"])) for r in rows] == [
                (natural, b"\x01" * 32),
                (natural - 1, b"\x02" * 32),
            ]
            # Several at once take the free keys below in batch order; once the 64
            # keys at and below the natural one are taken, a post is left out, logged.
            many = [(natural, bytes([3, i]) * 16, ["same"], []) for i in range(63)]
            await pg_search.index_posts(c, many)
            with caplog.at_level(logging.WARNING, logger="murmur.node.store"):
                await pg_search.index_posts(c, [(natural, b"\x04" * 32, ["same"], [])])
            keys = [r["key"] for r in await c.fetch("SELECT key FROM post_search ORDER BY key")]
        assert keys == list(range(natural - 63 - 1, natural + 1))[1:]
        assert "search key space full" in caplog.text
    finally:
        await store.close()


def _entangled_batch(clock: Clock) -> list[Event]:
    """One batch whose events depend on each other: a reply and a like before their
    target, a delete before its target and one after, duplicates, a fork, a new follower, a label,
    a profile, and a did:murmur theft and rotation, children before parents."""
    from tests.node.test_key_rotation import theft

    alice, bob, carol = new_author(clock), new_author(clock), new_author(clock)
    p = alice.post("hello entangled world")
    gone = alice.post("soon gone")
    delete = alice.sign("delete", {"target": gone.id})
    gone_later = alice.post("entangled and deleted in the same batch")
    delete_later = alice.sign("delete", {"target": gone_later.id})
    fork = alice.sign("post", {"text": "another first"}, seq=1, prev=None)
    reply = bob.post("re entangled", reply={"root": p.id, "parent": p.id})
    like = carol.sign("like", {"target": p.id})
    follow = bob.sign("follow", {"subject": alice.did})
    label = carol.sign("label", {"subject": p.id, "val": "spam"})
    profile = bob.sign("profile", {"name": "bob entangled"})
    _, ev = theft("entangled")
    v2 = list(ev.values())[::-1]
    return [
        reply, like, like, p, delete, gone, p, fork, follow, gone_later, delete_later, label,
        profile, *v2, reply,
    ]  # fmt: skip


async def _answers(store: Any, events: list[Event]) -> tuple[Any, ...]:
    """What the store's read API says about ``events`` (no cursors: they may differ)."""
    ids = list(dict.fromkeys(e.id for e in events))
    authors = sorted({e.author for e in events})
    held = {
        e.id: (e.status, e.revoked_by, e.deleted, e.body is None)
        for e in await store.get_events(ids)
    }
    notes = {
        a: sorted(
            (n.reason, n.event.id)
            for n in await store.notifications(
                a, reasons=("reply", "mention", "like", "follow", "repost", "quote"),
                before=None, limit=50,
            )
        )
        for a in authors
    }  # fmt: skip
    found = await store.search(SearchQuery(words=("entangled",), before=None, limit=50))
    return (
        held,
        notes,
        await store.event_counts(ids),
        await store.author_stats(authors),
        {a: await store.forked(a) for a in authors},
        sorted(e.id for e in found.events),
        [(r.author, r.name) for r in await store.profiles("", limit=50)],
        sorted(
            (r.labeler, r.val)
            for r in await store.labels(subject=None, labeler=None, after=0, limit=50)
        ),
        (lambda c: (c.events, c.authors, c.deleted, c.forked_authors))(store.counts()),
    )


async def test_a_batch_answers_as_on_sqlite(pg_url: str, clock: Clock, tmp_path: Any) -> None:
    """spec 0004 #store-contract: the PostgreSQL write path probes and inserts a batch in
    bulk (node/store/pg_write.py), yet a batch whose events depend on each other gives
    the same results and the same reads as SQLite, which applies it event by event."""
    from node.store.sqlite import SqliteStore

    events = [
        decode_event(e.wire, now_ms=T0 + 10**9, allow_v2=True) for e in _entangled_batch(clock)
    ]
    got = []
    for store in (SqliteStore(tmp_path, now_ms=clock), PostgresStore(pg_url, now_ms=clock)):
        await store.open()
        try:
            results = await store.apply_batch(events)
            got.append(([r.status for r in results], await _answers(store, events)))
        finally:
            await store.close()
    (sqlite_results, sqlite_reads), (pg_results, pg_reads) = got
    assert sqlite_results.count("accepted") > 10 and "duplicate" in sqlite_results
    assert pg_results == sqlite_results
    for part, (mine, theirs) in enumerate(zip(pg_reads, sqlite_reads, strict=True)):
        assert mine == theirs, part


def _social_mix(clock: Clock, rnd: random.Random) -> list[Event]:
    """A few hundred social events among six authors, targets named before and after
    they exist, likes repeated, follows and unfollows of one pair, deletes of each
    kind, mentions, shuffled."""
    from tests.node.test_social import mention

    people = [new_author(clock) for _ in range(6)]
    posts: list[Event] = []
    events: list[Event] = []
    for _ in range(260):
        me = rnd.choice(people)
        roll = rnd.random()
        if roll < 0.3 or not posts:
            if posts and rnd.random() < 0.5:
                parent = rnd.choice(posts)
                reply = {"root": parent.id, "parent": parent.id}
                # Half of the replies also mention the parent's author: one
                # notification each, with the stronger reason, whichever came first.
                body = mention(parent.author, "re ") if rnd.random() < 0.5 else {"text": "re"}
                if rnd.random() < 0.3:
                    body["quote"] = rnd.choice(posts).id  # a second reason, maybe later
                ev = me.sign("post", {**body, "reply": reply})
            elif rnd.random() < 0.3:
                ev = me.sign("post", mention(rnd.choice(people).did, "social "))
            else:
                ev = me.post("social mix")
            posts.append(ev)
        elif roll < 0.55:
            ev = me.sign("like", {"target": rnd.choice(posts).id})
        elif roll < 0.65:
            ev = me.sign("repost", {"target": rnd.choice(posts).id})
        elif roll < 0.9:
            kind = "follow" if rnd.random() < 0.7 else "unfollow"
            ev = me.sign(kind, {"subject": rnd.choice(people).did})
        else:
            mine = [e for e in events if e.author == me.did and e.kind != "delete"]
            if not mine:
                continue
            ev = me.sign("delete", {"target": rnd.choice(mine).id})
        events.append(ev)
    rnd.shuffle(events)
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_social_batches_answer_as_on_sqlite(
    pg_url: str, clock: Clock, tmp_path: Any, seed: int
) -> None:
    """spec 0004 #social, #store-contract: the PostgreSQL write path buffers a stretch's
    social index work and writes it in set statements (pg_social_bulk.SocialWrites), SQLite
    indexes event by event; after random social traffic in random batches, every
    notification, count, follower list and stat agrees."""
    from node.store.sqlite import SqliteStore

    rnd = random.Random(seed)
    events = [decode_event(e.wire, now_ms=T0 + 10**9) for e in _social_mix(clock, rnd)]
    cuts = sorted(rnd.sample(range(1, len(events)), 12))
    batches = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    got = []
    for store in (SqliteStore(tmp_path, now_ms=clock), PostgresStore(pg_url, now_ms=clock)):
        await store.open()
        try:
            statuses = [r.status for b in batches for r in await store.apply_batch(b)]
            authors = sorted({e.author for e in events})
            followers = {
                a: sorted(e.id for e in await store.followers(a, before=None, limit=100))
                for a in authors
            }
            got.append((statuses, followers, await _answers(store, events)))
        finally:
            await store.close()
    (s_status, s_followers, s_reads), (p_status, p_followers, p_reads) = got
    assert p_status == s_status
    assert p_followers == s_followers
    assert sum(map(len, s_followers.values())) > 3
    for part, (mine, theirs) in enumerate(zip(p_reads, s_reads, strict=True)):
        assert mine == theirs, part
