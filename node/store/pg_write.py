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
(#search, :mod:`node.store.pg_search`) are kept here too. Not yet here (the SQLite
store has them): events of ``did:murmur`` authors (v2, spec 0008: the key tables and
statuses) are refused with :class:`UnsupportedByStore` (issue #18).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from node.store.base import WriteResult
from node.store.pg_search import index_post, unindex_post
from node.store.pg_social import SOCIAL_KINDS, add_social, on_insert, remove_social
from node.store.sqlite_effects import BatchStats, _label_subject, _profile_fields
from node.store.sqlite_write import _reply_of
from protocol import kinds
from protocol.encoding import decode
from protocol.errors import BodyRequiredError
from protocol.events import Event

__all__ = ["Conn", "UnsupportedByStore", "apply_batch_pg"]

#: A connection, on its own or lent by a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class UnsupportedByStore(RuntimeError):
    """The batch holds what this backend cannot store yet; nothing of it was stored."""


#: The kinds whose body changes more than the events table.
_BODY_EFFECTS: Final = frozenset({kinds.LABEL, kinds.PROFILE, kinds.DELETE}) | SOCIAL_KINDS
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
_INSERT: Final = (
    "INSERT INTO events (cursor, id, author, seq, prev, ts, kind, header, sig, body, "
    "deleted, reply_root, reply_parent, received_ms) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)"
)


def _rowcount(status: str) -> int:
    """The row count of an asyncpg command tag (``UPDATE 1``, ``INSERT 0 1``)."""
    return int(status.rsplit(" ", 1)[-1])


class _Batch:
    """One write transaction: the connection, the cursors it gives, what it changed."""

    def __init__(self, conn: Conn, now_ms: int, top: int) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.top = top
        self.stats = BatchStats()

    def next_cursor(self) -> int:
        self.top += 1
        return self.top

    async def apply_one(self, ev: Event) -> WriteResult:
        c = self.conn
        row = await c.fetchrow(_PROBE, ev.id, ev.author, ev.seq)
        assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
        held, tombstoned, same_seq, known_author, referenced = row
        if ev.kind == kinds.DELETE:
            tombstoned = False  # a delete is never deleted (spec 0003 #delete-of-delete)
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
        body_bytes = None if tombstoned else ev.body_bytes
        root, parent = (None, None) if tombstoned else _reply_of(ev)
        if not known_author:
            self.stats.new_authors += 1
        cursor = self.next_cursor()
        await c.execute(
            _INSERT, cursor, ev.id, ev.author, ev.seq, ev.prev, ev.ts, ev.kind,
            ev.header_bytes, ev.sig, body_bytes, bool(tombstoned), root, parent, self.now_ms,
        )  # fmt: skip
        self.stats.events += 1
        if referenced or not known_author:
            await on_insert(
                c, eid=ev.id, author=ev.author, new_author=not known_author,
                referenced=referenced, now_ms=self.now_ms,
            )  # fmt: skip
        if tombstoned:
            self.stats.deleted += 1
        if same_seq:
            already = await c.fetchval("SELECT 1 FROM forks WHERE author = $1 LIMIT 1", ev.author)
            await c.execute(
                "INSERT INTO forks (author, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                ev.author, ev.seq,
            )  # fmt: skip
            if already is None:
                self.stats.forked_authors += 1
        if body_bytes is not None and ev.body is not None and ev.kind in _BODY_EFFECTS:
            await self._apply_body(ev, cursor, ev.body)
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
        if ev.body is not None and ev.kind in _BODY_EFFECTS and status == "canonical":
            await self._apply_body(ev, cursor, ev.body)
        return WriteResult(status="accepted", cursor=cursor)

    async def _apply_body(self, ev: Event, cursor: int, body: dict[str, Any]) -> None:
        c = self.conn
        eid, author, kind = ev.id, ev.author, ev.kind
        if kind == kinds.LABEL:
            exp = body.get("exp")
            await c.execute(
                "INSERT INTO labels (id, cursor, labeler, subject, val, neg, exp) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
                eid, cursor, author, _label_subject(body["subject"]), body["val"],
                body.get("neg") is True, exp if isinstance(exp, int) else None,
            )  # fmt: skip
        elif kind == kinds.PROFILE:
            await _set_profile(c, author, eid, ev.seq, body)
        elif kind in SOCIAL_KINDS:
            await add_social(
                c, eid=eid, author=author, kind=kind, seq=ev.seq, ts=ev.ts, cursor=cursor,
                body=body,
            )  # fmt: skip
            if kind == kinds.POST:
                await index_post(c, eid=eid, ts=ev.ts, cursor=cursor, body=body)
        elif kind == kinds.DELETE:
            target: bytes = body["target"]
            held = await c.fetchrow("SELECT kind, author FROM events WHERE id = $1", target)
            if held is not None and held["kind"] == kinds.DELETE:
                return  # a delete of a delete has no effect (spec 0003 #delete-of-delete)
            if held is not None and held["author"] != author:
                return  # another author's event: stored, no effect (spec 0004 #not-author)
            await c.execute(
                "INSERT INTO tombstones (target, author, delete_id) VALUES ($1,$2,$3) "
                "ON CONFLICT DO NOTHING",
                target, author, eid,
            )  # fmt: skip
            await self._drop_body(target, author)

    async def _drop_body(self, target: bytes, author: str) -> None:
        c = self.conn
        done = await c.execute(
            "UPDATE events SET body = NULL, deleted = true, reply_root = NULL, "
            "reply_parent = NULL WHERE id = $1 AND author = $2 AND NOT deleted",
            target, author,
        )  # fmt: skip
        self.stats.deleted += _rowcount(done)
        await c.execute("DELETE FROM labels WHERE id = $1", target)
        await remove_social(c, target)
        await unindex_post(c, target)
        current = await c.fetchval("SELECT id FROM profiles WHERE author = $1", author)
        if current == target:
            await _recompute_profile(c, author)


async def _set_profile(
    c: Conn, author: str, eid: bytes, seq: int, body: dict[str, Any]
) -> None:
    name, bio = _profile_fields(body)
    await c.execute(
        "INSERT INTO profiles (author, id, seq, name, name_lower, bio) "
        "VALUES ($1,$2,$3,$4,$5,$6) "
        "ON CONFLICT (author) DO UPDATE SET id = excluded.id, seq = excluded.seq, "
        "name = excluded.name, name_lower = excluded.name_lower, bio = excluded.bio "
        "WHERE excluded.seq > profiles.seq "
        "OR (excluded.seq = profiles.seq AND excluded.id > profiles.id)",
        author, eid, seq, name, name.lower(), bio,
    )  # fmt: skip


async def _recompute_profile(c: Conn, author: str) -> None:
    """The author's latest profile among its canonical events with a body."""
    await c.execute("DELETE FROM profiles WHERE author = $1", author)
    row = await c.fetchrow(
        "SELECT id, seq, body FROM events WHERE author = $1 AND kind = $2 "
        "AND body IS NOT NULL AND status = 'canonical' ORDER BY seq DESC, id DESC LIMIT 1",
        author, kinds.PROFILE,
    )  # fmt: skip
    if row is not None:
        await _set_profile(c, author, row["id"], row["seq"], decode(row["body"]))


async def apply_batch_pg(
    conn: Conn, events: Sequence[Event], now_ms: int
) -> tuple[list[WriteResult], BatchStats]:
    """Apply ``events`` in one transaction on ``conn``; return once it has committed.

    Raises (after rolling back) if PostgreSQL fails, or :class:`UnsupportedByStore`
    before starting: then nothing of the batch is stored and nothing may be
    acknowledged.
    """
    v2 = [ev for ev in events if ev.key is not None]
    if v2:
        raise UnsupportedByStore(
            f"the PostgreSQL store does not hold did:murmur (v2) events yet ({v2[0].author})"
        )
    bodied = [i for i, ev in enumerate(events) if ev.body_bytes is not None]
    bodiless = [i for i, ev in enumerate(events) if ev.body_bytes is None]
    results: list[WriteResult | None] = [None] * len(events)
    async with conn.transaction(isolation="read_committed"):
        # The writers' lock (spec 0004 #store-cursor): held until commit.
        top = await conn.fetchval("SELECT top FROM stream_head FOR UPDATE")
        batch = _Batch(conn, now_ms, int(top))
        for i in bodied + bodiless:
            results[i] = await batch.apply_one(events[i])
        if batch.top != top:
            await conn.execute("UPDATE stream_head SET top = $1", batch.top)
    batch.stats.top_cursor = batch.top
    return [r for r in results if r is not None], batch.stats
