"""The writer's memo of recent authors' key state (spec 0008 #nodes; issue #15: the key
check is a lookup): kept between batches, exactly what is committed.

An ordinary event of a ``did:murmur`` author already written is checked against key
events the writer holds in memory, without reading ``key_events`` or ``key_paths``
again; a batch that rolls back leaves nothing of its key events behind; a memo
smaller than the authors written reloads what it dropped, with the same verdicts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.store import SqliteStore
from node.store.migrations import migrate
from node.store.sqlite_keys import KeyMemo
from node.store.sqlite_write import apply_batch_sync
from protocol.events import Event, decode_event
from protocol.keystate import input_of, resolve
from tests.node.conftest import T0, Clock, new_author
from tests.rotatable import Rotatable


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0 + 60_000, allow_v2=True)


def _conn(store: SqliteStore) -> sqlite3.Connection:
    conn = store._wconn  # the writer's connection: only the test touches it while idle
    assert conn is not None
    return conn


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _statuses(store: SqliteStore, *events: Event) -> list[str]:
    return [
        r.status if r.error is None else r.error.code
        for r in await store.apply_batch([_verified(e) for e in events])
    ]


async def test_a_known_authors_events_read_no_key_table(store: SqliteStore) -> None:
    """After the batch that wrote an author's key events, the checks of their later
    events (one batch each, as they arrive) read neither ``key_events`` nor
    ``key_paths``: the check is a lookup in memory."""
    a = Rotatable("memo-reads")
    first = a.sign("S0", "post", {"text": "one"}, after=a.genesis, kev=a.genesis)
    assert await _statuses(store, a.genesis, first) == ["accepted", "accepted"]
    seen: list[str] = []
    _conn(store).set_trace_callback(seen.append)
    try:
        prev = first
        for n in range(5):
            ev = a.sign("S0", "post", {"text": f"later {n}"}, after=prev, kev=a.genesis)
            assert await _statuses(store, ev) == ["accepted"]
            prev = ev
    finally:
        _conn(store).set_trace_callback(None)
    reads = [s for s in seen if "FROM key_events" in s or "FROM key_paths" in s]
    assert reads == []
    assert any("INSERT INTO events" in s for s in seen)  # the trace did see the writes


async def test_a_rolled_back_batch_leaves_no_key_event_behind(
    store: SqliteStore, clock: Clock
) -> None:
    """A rotation whose batch fails in SQLite after it was recorded is not a key event
    the next batch may rely on: an event under it is ``unknown-key-event`` until the
    rotation is stored for real (spec 0008 §8.5 step 2)."""
    a = Rotatable("memo-rollback")
    p1 = a.sign("S0", "post", {"text": "before"}, after=a.genesis, kev=a.genesis)
    assert await _statuses(store, a.genesis, p1) == ["accepted", "accepted"]
    rotation = a.rotate("N0", "S1", "N1", after=p1, kev=a.genesis)
    under = a.sign("S1", "post", {"text": "after"}, after=rotation, kev=rotation)
    # Another author's event that SQLite refuses to insert (as a full disk would):
    # key events go first in a batch, so the rotation is recorded before it fails.
    other = new_author(clock).post("fails")
    _conn(store).execute(
        f"CREATE TEMP TRIGGER boom BEFORE INSERT ON events WHEN NEW.id = x'{other.id.hex()}' "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        await store.apply_batch([_verified(rotation), _verified(other)])
    _conn(store).execute("DROP TRIGGER boom")
    assert await store.get_event(rotation.id) is None
    assert await _statuses(store, under) == ["unknown-key-event"]
    assert await _statuses(store, rotation) == ["accepted"]
    assert await _statuses(store, under) == ["accepted"]


def test_a_small_memo_gives_the_verdicts_of_none(tmp_path: Path) -> None:
    """Three authors through a memo of one: each batch's verdicts are those of a
    writer with no memo at all (the dropped authors are read again)."""
    authors = [Rotatable(f"memo-small-{n}") for n in range(3)]
    batches: list[list[Event]] = [[a.genesis] for a in authors]
    for a in authors:
        p1 = a.sign("S0", "post", {"text": "one"}, after=a.genesis, kev=a.genesis)
        rotation = a.rotate("N0", "S1", "N1", after=p1, kev=a.genesis)
        stale = a.sign("S0", "post", {"text": "old key"}, after=rotation, kev=rotation)
        fresh = a.sign("S1", "post", {"text": "new key"}, after=rotation, kev=rotation)
        batches += [[p1], [rotation], [stale], [fresh]]
    verdicts = []
    for name, memo in (("none", None), ("small", KeyMemo(max_authors=1))):
        conn = sqlite3.connect(tmp_path / f"{name}.sqlite3", isolation_level=None)
        migrate(conn)
        out = []
        for batch in batches:
            results, _ = apply_batch_sync(conn, [_verified(e) for e in batch], T0, memo)
            out.append([r.status if r.error is None else r.error.code for r in results])
        if memo is not None:
            assert len(memo.keys) <= 1 and len(memo.paths) <= 1
        conn.close()
        verdicts.append(out)
    assert verdicts[0] == verdicts[1]
    assert ["unauthorized-key"] in verdicts[0]  # the old key after the rotation


async def test_an_event_breaking_kev_continuity_is_not_settled_alone(store: SqliteStore) -> None:
    """spec 0008 #kev-continuity: an event naming the head key event whose held ``prev``
    relies on another one (here the thief's fork at the rotation point) is not
    canonical by itself: its status is what a full resolve gives (revoked), though it
    passes §8.5 steps 1-4 and its author has no dispute."""
    a = Rotatable("memo-continuity")
    p1 = a.sign("S0", "post", {"text": "one"}, after=a.genesis, kev=a.genesis)
    rotation = a.rotate("N0", "S1", "N1", after=p1, kev=a.genesis)
    thief = a.sign("S0", "post", {"text": "forged"}, after=p1, kev=a.genesis)  # seq 3
    broken = a.sign("S1", "post", {"text": "after the fork"}, after=thief, kev=rotation)
    events = [a.genesis, p1, rotation, thief, broken]
    for ev in events:  # one batch each, as they arrive
        assert await _statuses(store, ev) == ["accepted"]
    keys: dict[bytes, Any] = {}
    for ev in (a.genesis, rotation):
        keys[ev.id] = input_of(ev, keys, not_key_events=())
    expected = resolve(keys.values(), [input_of(e, keys) for e in (p1, thief, broken)])
    for ev in events:
        stored = await store.get_event(ev.id)
        assert stored is not None and stored.status == expected.status[ev.id].value, ev.kind
    assert expected.status[broken.id].value == "revoked"


async def test_events_settled_alone_then_resolved_in_full_in_one_batch(
    store: SqliteStore,
) -> None:
    """spec 0008 #status: in one batch, an event settled alone (stored canonical, its
    effects applied at the end of the batch) and, after it, an event that makes its
    author resolve in full (the thief's, under the key event the rotation ended): every
    status is a full resolve's, and only canonical events count (the owner's profile)."""
    a = Rotatable("memo-alone-then-full")
    p1 = a.sign("S0", "post", {"text": "one"}, after=a.genesis, kev=a.genesis)
    rotation = a.rotate("N0", "S1", "N1", after=p1, kev=a.genesis)
    assert await _statuses(store, a.genesis, p1, rotation) == ["accepted"] * 3
    profile = a.sign("S1", "profile", {"name": "alice"}, after=rotation, kev=rotation)
    forged = a.sign("S0", "profile", {"name": "mallory"}, after=p1, kev=a.genesis)
    assert await _statuses(store, profile, forged) == ["accepted", "accepted"]
    keys: dict[bytes, Any] = {}
    for ev in (a.genesis, rotation):
        keys[ev.id] = input_of(ev, keys, not_key_events=())
    expected = resolve(keys.values(), [input_of(e, keys) for e in (p1, profile, forged)])
    for ev in (p1, rotation, profile, forged):
        stored = await store.get_event(ev.id)
        assert stored is not None and stored.status == expected.status[ev.id].value, ev.kind
    assert expected.status[profile.id].value == "canonical"
    assert expected.status[forged.id].value == "revoked"
    names = {row.name for row in await store.profiles("", limit=10) if row.author == a.did}
    assert names == {"alice"}
