"""The SQLite store directly: schema versioning, atomic batches, counters, and the
stream's slow-consumer cut-off (spec 0004 §store, §stream)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from node.api import live
from node.store import SCHEMA_VERSION, SchemaError, SqliteStore
from node.store.sqlite import DB_FILENAME
from protocol.events import Event, decode_event
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


async def test_failed_batch_stores_nothing(tmp_path: Path, clock: Clock) -> None:
    author = new_author(clock)
    good = _verified(author.post("a"))
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
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


async def test_counts_survive_reopen(tmp_path: Path, clock: Clock) -> None:
    a, b = new_author(clock), new_author(clock)
    events = [_verified(e) for e in (a.post(), a.post(), b.post())]
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    await store.apply_batch(events)
    await store.close()
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
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
