"""The PostgreSQL write path: apply one verified batch in one transaction.

The same rules as :mod:`node.store.sqlite_write`, statement for statement: skip
duplicates (by id), fill in the body of a held body-less event that no deletion
explains (spec 0004 #body-fill), refuse a body-less copy that no deletion explains
(``body-required``, #bodyless), insert the row (header only if its author already
deleted it), flag forks, then apply the body's effects — label index, latest profile,
and for a ``delete`` the tombstone plus dropping the target's body (spec 0004
§deletion, 0003 #delete-of-delete). Events with a body go before the body-less ones.

Cursors (spec 0004 #store-cursor). PostgreSQL sequences hand out numbers in call
order, not commit order: two concurrent transactions may commit cursor ``n + 1``
before ``n``, and a stream reader between the two commits would skip ``n`` for good.
So the first statement of every write transaction locks the single ``stream_head``
row, and cursors are ``top + 1, top + 2, ...`` under that lock, which is released
only when the transaction has committed or rolled back — and PostgreSQL makes a
committed transaction visible to every new snapshot before it releases its locks. A
writer that gets the lock therefore sees every earlier writer's rows, numbers its own
above them, and commits after them: cursor order is commit order, across connections
and processes, and a snapshot that shows cursor ``n`` shows every cursor below it.

The social indexes (spec 0004 #social, :mod:`node.store.pg_social`) and post search
(#search, :mod:`node.store.pg_search`) are kept through :mod:`node.store.pg_effects`.
Events of ``did:murmur`` authors (v2, spec 0008 #nodes) are checked against the
author's held key events (:class:`node.store.pg_keys.PgKeyBook`), stored ``pending``
unless settled alone, and resolved after each phase of the batch, in the same
transaction, as on SQLite (:func:`node.store.keyplan.batch_phases`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from node.store.base import WriteResult
from node.store.keyplan import CANONICAL, PENDING, batch_phases
from node.store.pg_effects import BODY_EFFECTS, apply_body
from node.store.pg_keys import PgKeyBook
from node.store.pg_social import on_insert
from node.store.sqlite_effects import BatchStats
from node.store.sqlite_write import _reply_of
from protocol import kinds
from protocol.errors import BodyRequiredError, ProtocolError
from protocol.events import Event

__all__ = ["Conn", "UnsupportedByStore", "apply_batch_pg"]

#: A connection, on its own or lent by a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class UnsupportedByStore(RuntimeError):
    """The batch holds what this backend cannot store yet; nothing of it was stored."""


_HELD, _FILLABLE = 1, 2
#: Already stored (0 no, 1 yes, 2 yes without a body a full copy may fill in)?
#: Tombstoned by its author? Another event at this seq (a fork)? Any event of the author?
#: Do held events reference it (they notify its author once it is held)?
_PROBE: Final = (
    "SELECT coalesce((SELECT CASE WHEN body IS NULL AND NOT deleted THEN 2 ELSE 1 END "
    "FROM events WHERE id = $1), 0), "
    "EXISTS(SELECT 1 FROM tombstones WHERE target = $1 AND author = $2), "
    "EXISTS(SELECT 1 FROM events WHERE author = $2 AND seq = $3), "
    "EXISTS(SELECT 1 FROM events WHERE author = $2), "
    "EXISTS(SELECT 1 FROM refs WHERE target = $1)"
)
#: For a v2 event, the same and what settling it alone needs: the kind and kev of its
#: held prev (NULL: not held), and whether a child is held (keyplan.Around).
_PROBE_V2: Final = (
    _PROBE + ", (SELECT kind FROM events WHERE id = $4 AND author = $2), "  # noqa: S608
    "(SELECT kev FROM events WHERE id = $4 AND author = $2), "
    "EXISTS(SELECT 1 FROM events WHERE author = $2 AND seq = $3 + 1 AND prev = $1)"
)
_INSERT: Final = (
    "INSERT INTO events (cursor, id, author, seq, prev, ts, kind, header, sig, body, "
    "deleted, reply_root, reply_parent, received_ms, kev, key, status) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
)


class _Batch:
    """One write transaction: the connection, the cursors it gives, what it changed."""

    def __init__(self, conn: Conn, now_ms: int, top: int) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.top = top
        self.stats = BatchStats()
        self.book = PgKeyBook(conn, top, self.next_cursor)

    def next_cursor(self) -> int:
        self.top += 1
        return self.top

    async def apply_one(self, ev: Event) -> WriteResult:
        c = self.conn
        author, kind, signer = ev.author, ev.kind, ev.key
        if signer is None:
            row = await c.fetchrow(_PROBE, ev.id, author, ev.seq)
        else:
            row = await c.fetchrow(_PROBE_V2, ev.id, author, ev.seq, ev.prev)
        assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
        held, tombstoned, same_seq, known_author, referenced = row[:5]
        if kind == kinds.DELETE or (signer is not None and kind in kinds.KEY_EVENT_KINDS):
            # A delete is never deleted (spec 0003 #delete-of-delete), nor is a key
            # event's body ever dropped (0008 #key-event-body).
            tombstoned = False
        if held:
            if held == _FILLABLE and ev.body_bytes is not None and not tombstoned:
                return await self._fill_body(ev)
            return WriteResult(status="duplicate")
        if ev.body_bytes is None and not tombstoned:
            return WriteResult(
                status="rejected",
                error=BodyRequiredError(
                    "a body-less copy is stored only after the author's delete of it"
                ),
            )
        keyed = None
        alone = False
        status = CANONICAL
        if signer is not None:
            # Spec 0008 §8.5 steps 1-4 against the author's held key events.
            try:
                keyed = self.book.check(ev)
            except ProtocolError as exc:
                return WriteResult(status="rejected", error=exc)
            alone = self.book.settles_alone(author, keyed, (row[5], row[6], bool(row[7])))
            status = CANONICAL if alone else PENDING
        body_bytes = None if tombstoned else ev.body_bytes
        root, parent = (None, None) if tombstoned else _reply_of(ev)
        if not known_author:
            self.stats.new_authors += 1
        cursor = self.next_cursor()
        await c.execute(
            _INSERT, cursor, ev.id, author, ev.seq, ev.prev, ev.ts, kind,
            ev.header_bytes, ev.sig, body_bytes, bool(tombstoned), root, parent, self.now_ms,
            ev.kev, signer, status,
        )  # fmt: skip
        self.stats.events += 1
        if signer is not None:
            self.book.stored(ev.id)
        if referenced or not known_author:
            await on_insert(
                c, eid=ev.id, author=author, new_author=not known_author,
                referenced=referenced, now_ms=self.now_ms,
            )  # fmt: skip
        if tombstoned:
            self.stats.deleted += 1
        if same_seq:
            already = await c.fetchval("SELECT 1 FROM forks WHERE author = $1 LIMIT 1", author)
            await c.execute(
                "INSERT INTO forks (author, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                author, ev.seq,
            )  # fmt: skip
            if already is None:
                self.stats.forked_authors += 1
        if keyed is not None:
            # Its effects wait for its status (PgKeyBook.settle, at the end of the phase).
            await self.book.add(
                author, keyed, cursor=cursor, body=None if body_bytes is None else ev.body,
                ts=ev.ts, alone=alone,
            )  # fmt: skip
        elif body_bytes is not None and ev.body is not None and kind in BODY_EFFECTS:
            await apply_body(
                c, eid=ev.id, author=author, kind=kind, seq=ev.seq, ts=ev.ts, cursor=cursor,
                body=ev.body, stats=self.stats,
            )  # fmt: skip
        return WriteResult(status="accepted", cursor=cursor)

    async def _fill_body(self, ev: Event) -> WriteResult:
        """Complete a held body-less event from a verified full copy (spec 0004
        #body-fill): it moves to a new cursor, so the live stream carries it again."""
        cursor = self.next_cursor()
        root, parent = _reply_of(ev)
        status = await self.conn.fetchval(
            "UPDATE events SET cursor = $2, body = $3, deleted = false, reply_root = $4, "
            "reply_parent = $5 WHERE id = $1 RETURNING status",
            ev.id, cursor, ev.body_bytes, root, parent,
        )  # fmt: skip
        self.stats.filled += 1
        # Only a canonical event counts (spec 0008 #status); v1 events always are.
        if ev.body is not None and ev.kind in BODY_EFFECTS and status == CANONICAL:
            await apply_body(
                self.conn, eid=ev.id, author=ev.author, kind=ev.kind, seq=ev.seq, ts=ev.ts,
                cursor=cursor, body=ev.body, stats=self.stats,
            )  # fmt: skip
        return WriteResult(status="accepted", cursor=cursor)


async def apply_batch_pg(
    conn: Conn, events: Sequence[Event], now_ms: int
) -> tuple[list[WriteResult], BatchStats]:
    """Apply ``events`` in one transaction on ``conn``; return once it has committed.

    Raises (after rolling back) if PostgreSQL fails: then nothing of the batch is
    stored and nothing may be acknowledged.
    """
    phases = batch_phases(events)
    results: list[WriteResult | None] = [None] * len(events)
    async with conn.transaction(isolation="read_committed"):
        # The writers' lock (spec 0004 #store-cursor): held until commit.
        top = await conn.fetchval("SELECT top FROM stream_head FOR UPDATE")
        batch = _Batch(conn, now_ms, int(top))
        await batch.book.preload(events)
        for order in phases:
            for i in order:
                results[i] = await batch.apply_one(events[i])
            await batch.book.settle(batch.stats)
        if batch.top != top:
            await conn.execute("UPDATE stream_head SET top = $1", batch.top)
    batch.stats.top_cursor = batch.top
    return [r for r in results if r is not None], batch.stats
