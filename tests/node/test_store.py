"""The store directly: schema versioning, atomic batches, counters, and the stream's
slow-consumer cut-off (spec 0004 §store, §stream). The contract tests run on every
backend (``both_backends``, tests/node/backends.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from node.api import live
from node.store import SCHEMA_VERSION, SchemaError, SqliteStore
from node.store.sqlite import DB_FILENAME
from protocol.events import Event, decode_event
from tests.node.backends import Backend, both_backends
from tests.node.conftest import T0, Clock, new_author


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0)


async def test_schema_is_versioned_and_wal(tmp_path: Path, clock: Clock) -> None:
    store = SqliteStore(tmp_path, now_ms=clock)
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"events_author_seq", "events_author_ts", "events_reply_root",
                "labels_subject", "profiles_name"} <= indexes
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    finally:
        conn.close()
    newer = SqliteStore(tmp_path, now_ms=clock)
    with pytest.raises(SchemaError, match="newer"):
        await newer.open()
    await newer.close()


@both_backends()
async def test_failed_batch_stores_nothing(tmp_path: Path, clock: Clock, backend: Backend) -> None:
    """Spec 0004 #store-contract: a batch is one transaction, nothing of a failed one
    stays."""
    author = new_author(clock)
    good = _verified(author.post("a"))
    store = await backend.open(tmp_path)
    try:

        class Boom(Event):
            @property
            def kind(self) -> str:
                raise RuntimeError("fails mid-transaction")

        bad = Boom(
            header=good.header, header_bytes=good.header_bytes, id=b"\x01" * 32,
            sig=good.sig, body_bytes=good.body_bytes, body=good.body,
        )
        with pytest.raises(RuntimeError):
            await store.apply_batch([good, bad])
        assert await store.get_event(good.id) is None  # rolled back with its batch
        assert store.counts().events == 0
        assert [r.status for r in await store.apply_batch([good])] == ["accepted"]
    finally:
        await store.close()


@both_backends()
async def test_counts_survive_reopen(tmp_path: Path, clock: Clock, backend: Backend) -> None:
    a, b = new_author(clock), new_author(clock)
    events = [_verified(e) for e in (a.post(), a.post(), b.post())]
    store = await backend.open(tmp_path)
    await store.apply_batch(events)
    await store.close()
    store = await backend.open(tmp_path)
    try:
        counts = store.counts()
        assert (counts.events, counts.authors, counts.cursor) == (3, 2, 3)
        after = await store.events_after(1, limit=10)
        assert [e.id for e in after] == [events[1].id, events[2].id]
    finally:
        await store.close()


class _StuckResponse:
    async def write(self, data: bytes) -> None:
        await asyncio.Event().wait()  # a consumer that never drains


async def test_slow_consumer_write_times_out() -> None:
    with pytest.raises(live._SlowConsumer):
        await live._write(_StuckResponse(), b"data", 0.05)  # type: ignore[arg-type]


@both_backends()
@pytest.mark.parametrize("windows", [(2, 5), (4_096, 65_536)])
async def test_many_author_feed_matches_a_full_sort(
    tmp_path: Path,
    clock: Clock,
    windows: tuple[int, ...],
    monkeypatch: pytest.MonkeyPatch,
    backend: Backend,
) -> None:
    """The windowed plan of a many-author feed returns exactly what sorting all would,
    page after page, whether the followed authors are busy or nearly silent."""
    import random

    from node.store import sqlite as sqlite_store
    from node.store.base import FeedQuery

    monkeypatch.setattr(sqlite_store, "_FEED_WINDOWS", windows)
    rng = random.Random(3)
    authors = [new_author(clock) for _ in range(12)]
    events: list[Event] = []
    for i in range(160):
        who = authors[0] if i % 40 == 0 else rng.choice(authors[1:])  # authors[0]: rare
        ts = T0 - rng.randrange(50) * 1000
        if i % 7 == 0:
            ev = who.sign("like", {"target": b"\x07" * 32}, ts=ts)
        else:
            ev = who.sign("post", {"text": f"p{i}"}, ts=ts)
        events.append(_verified(ev))
    store = await backend.open(tmp_path)
    try:
        await store.apply_batch(events)
        every = await store.feed(
            FeedQuery(authors=None, kinds=None, before=None, limit=1000)
        )
        for followed in ([authors[0], authors[1]], [a.did for a in authors[:6]], [authors[0]]):
            dids = tuple(a if isinstance(a, str) else a.did for a in followed)
            for kinds_ in (None, ("post",)):
                expected = [
                    r.id for r in every
                    if r.author in dids and (kinds_ is None or r.kind in kinds_)
                ]
                got: list[bytes] = []
                before: tuple[int, int] | None = None
                while True:
                    page = await store.feed(
                        FeedQuery(authors=dids, kinds=kinds_, before=before, limit=7)
                    )
                    got += [r.id for r in page]
                    if len(page) < 7:
                        break
                    before = (page[-1].ts, page[-1].cursor)
                assert got == expected
    finally:
        await store.close()
