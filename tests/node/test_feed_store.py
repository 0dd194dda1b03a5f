"""``Store.top_reacted`` (spec 0004 #reacted): the most liked and reposted targets of a
time window, distinct authors per kind, on both backends; one range of the
``(kind, ts)`` index (migration 7), added to older databases on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.store import SCHEMA_VERSION, SqliteStore
from node.store import sqlite_social_read as social
from node.store.base import SEARCH_KEY_LOW_BITS, FeedQuery
from node.store.sqlite import DB_FILENAME
from protocol.events import Event
from protocol.feeds import Reacted
from tests.node.backends import Backend, both_backends
from tests.node.conftest import T0, Author, Clock, new_author

DAY = 86_400_000


def _reactions(clock: Clock) -> tuple[list[Event], dict[str, bytes]]:
    """Posts p1..p3 and reactions around the window ``[T0, T0 + DAY)``."""
    alice, bob, carol, dave = (new_author(clock) for _ in range(4))
    p1, p2, p3 = alice.post("one"), alice.post("two"), alice.post("three")
    unheld = b"\x07" * 32

    def like(a: Author, target: bytes, ts: int, kind: str = "like") -> Event:
        return a.sign(kind, {"target": target}, ts=ts)

    doomed = like(dave, p3.id, T0 + 50)
    events = [
        p1, p2, p3,
        like(bob, p1.id, T0),  # at since: in
        like(bob, p1.id, T0 + 10),  # bob again: counts once
        like(bob, p1.id, T0 + 20, "repost"),
        like(carol, p1.id, T0 + 30),
        like(carol, p2.id, T0 + 40, "repost"),
        like(dave, p2.id, T0 + 41, "repost"),
        doomed,
        dave.sign("delete", {"target": doomed.id}, ts=T0 + 60),  # withdrawn
        like(bob, unheld, T0 + 70),  # the target need not be held
        like(carol, p3.id, T0 - 1),  # before the window
        like(bob, p3.id, T0 + DAY),  # at until: out
        like(dave, p3.id, T0 + DAY + 5),
    ]  # fmt: skip
    return events, {"p1": p1.id, "p2": p2.id, "p3": p3.id, "unheld": unheld}


@both_backends()
async def test_top_reacted_counts_distinct_authors_in_the_window(
    tmp_path: Path, clock: Clock, backend: Backend
) -> None:
    """spec 0004 #reacted: since <= ts < until, an author counts once per target and
    kind, a deleted like counts for nothing, most likes + reposts first, then by id."""
    events, ids = _reactions(clock)
    store = await backend.open(tmp_path / "s")
    try:
        await store.apply_batch(events)
        top = await store.top_reacted(since_ts=T0, until_ts=T0 + DAY, limit=10)
        p2_unheld = sorted([ids["p2"], ids["unheld"]])
        assert top[0] == Reacted(id=ids["p1"], likes=2, reposts=1)
        # p2 (two reposts) before the unheld target (one like)
        assert top[1:] == [Reacted(id=ids["p2"], likes=0, reposts=2),
                           Reacted(id=ids["unheld"], likes=1, reposts=0)]  # fmt: skip
        assert ids["p3"] not in {r.id for r in top}
        # Equal totals: by id. The day after holds p3 (bob, dave) only.
        later = await store.top_reacted(since_ts=T0 + DAY, until_ts=T0 + 2 * DAY, limit=10)
        assert later == [Reacted(id=ids["p3"], likes=2, reposts=0)]
        tied = await store.top_reacted(since_ts=T0 + 40, until_ts=T0 + 71, limit=10)
        assert [r.id for r in tied] == [ids["p2"], ids["unheld"]]
        one = await store.top_reacted(since_ts=T0 + 41, until_ts=T0 + 71, limit=1)
        assert [r.id for r in one] == [min(p2_unheld)]
        assert await store.top_reacted(since_ts=T0, until_ts=T0, limit=10) == []
        assert await store.top_reacted(since_ts=T0 + 5, until_ts=T0, limit=10) == []
        assert len(await store.top_reacted(since_ts=T0, until_ts=T0 + DAY, limit=2)) == 2
    finally:
        await store.close()


async def test_top_reacted_reads_one_range_of_the_kind_ts_index(
    tmp_path: Path, clock: Clock
) -> None:
    """spec 0004 #reacted: EXPLAIN QUERY PLAN is a covering search of refs_kind_ts on
    (kind, ts): no scan of refs, whatever the store holds outside the window."""
    events, _ = _reactions(clock)
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    try:
        await store.apply_batch(events)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    try:
        ran: list[str] = []
        conn.set_trace_callback(ran.append)
        assert social.top_reacted(conn, T0, T0 + DAY, 5)
        conn.set_trace_callback(None)
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {ran[-1]}"))
    finally:
        conn.close()
    assert "SEARCH refs USING COVERING INDEX refs_kind_ts (kind=? AND ts>? AND ts<?)" in plan
    assert "SCAN" not in plan, plan


async def test_a_version_6_database_gets_the_indexes(tmp_path: Path, clock: Clock) -> None:
    """Migrations 7 and 8 add refs_kind_ts and events_profiles to a database written
    before them (its likes kept)."""
    events, ids = _reactions(clock)
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    await store.apply_batch(events)
    await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
    conn.execute("DROP INDEX refs_kind_ts")
    conn.execute("DROP INDEX events_profiles")
    conn.execute("PRAGMA user_version = 6")
    conn.close()
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    try:
        top = await store.top_reacted(since_ts=T0, until_ts=T0 + DAY, limit=1)
        assert top == [Reacted(id=ids["p1"], likes=2, reposts=1)]
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"refs_kind_ts", "events_profiles"} <= names
    finally:
        conn.close()


def test_the_search_key_layout_is_the_backends() -> None:
    """node.feeds pages ``Store.search`` by ``ts`` with SEARCH_KEY_LOW_BITS: the
    backends' own key layout (spec 0004 #search-order)."""
    from node.store import pg_search, sqlite_search

    assert sqlite_search._LOW_BITS == pg_search._LOW_BITS == SEARCH_KEY_LOW_BITS


@both_backends()
async def test_profiles_of_many_authors_read_the_profile_index(
    tmp_path: Path, clock: Clock, backend: Backend
) -> None:
    """spec 0004 #feed-profiles: ``feed(kinds=[profile], authors=...)`` (every view's
    authors' names) answers every profile of those authors, newest first, deleted ones
    left out, as any feed does; on SQLite it reads the partial index events_profiles
    (INDEXED BY), never each author's whole history."""
    authors = [new_author(clock) for _ in range(5)]
    events: list[Event] = []
    for i, a in enumerate(authors):
        events += [a.post(f"post {k}") for k in range(20)]
        events.append(a.sign("profile", {"name": f"old {i}"}))
        events += [a.post("more")]
        events.append(a.sign("profile", {"name": f"new {i}"}))
    gone = authors[0].sign("profile", {"name": "withdrawn"})
    events += [gone, authors[0].sign("delete", {"target": gone.id})]
    store = await backend.open(tmp_path / "s")
    try:
        await store.apply_batch(events)
        asked = [a.did for a in authors[:4]]
        got = await store.feed(
            FeedQuery(authors=tuple(asked), kinds=("profile",), before=None, limit=100)
        )
    finally:
        await store.close()
    want = [e for e in events if e.kind == "profile" and e.author in asked and e is not gone]
    assert sorted(s.id for s in got) == sorted(e.id for e in want)
    assert [s.ts for s in got] == sorted((s.ts for s in got), reverse=True)
    if backend.kind == "sqlite":  # its query names the index: without it, an error
        conn = sqlite3.connect(tmp_path / "s" / DB_FILENAME)
        conn.execute("DROP INDEX events_profiles")
        conn.close()
        store = await backend.open(tmp_path / "s")
        try:
            with pytest.raises(sqlite3.OperationalError, match="no such index"):
                await store.feed(
                    FeedQuery(authors=tuple(asked), kinds=("profile",), before=None, limit=9)
                )
        finally:
            await store.close()
