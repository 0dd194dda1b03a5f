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

from node.store.base import BLOB_AUTHOR_BYTES, WriteResult
from node.store.keyplan import CANONICAL, PENDING, batch_phases
from node.store.pg_blobs import add_blob_refs
from node.store.pg_effects import BODY_EFFECTS, apply_body
from node.store.pg_keys import PgKeyBook
from node.store.pg_search import IndexArgs, index_args, index_posts
from node.store.pg_social import SOCIAL_KINDS
from node.store.pg_social_bulk import SocialWrites
from node.store.sqlite_effects import BatchStats
from node.store.sqlite_write import _reply_of
from protocol import kinds
from protocol.errors import BodyRequiredError, ProtocolError
from protocol.events import Event

__all__ = ["Conn", "apply_batch_pg"]

#: A connection, on its own or lent by a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


_HELD, _FILLABLE = 1, 2
#: Everything the write path must know about the events of a phase before inserting
#: them, in one statement, a row each in batch order: already stored (0 no, 1 yes, 2
#: yes without a body a full copy may fill in)? Tombstoned by its author? Another event
#: at this seq (a fork)? Any event of the author? Do held events reference it (they
#: notify its author once it is held)? Then what a v2 event needs to be settled alone
#: (keyplan.Around): the kind and kev of its held prev (NULL: not held), and whether a
#: child is held.
_PROBE: Final = (
    "SELECT coalesce((SELECT CASE WHEN e.body IS NULL AND NOT e.deleted THEN 2 ELSE 1 END "
    "FROM events e WHERE e.id = b.id), 0), "
    "EXISTS(SELECT 1 FROM tombstones t WHERE t.target = b.id AND t.author = b.author), "
    "EXISTS(SELECT 1 FROM events e WHERE e.author = b.author AND e.seq = b.seq), "
    "EXISTS(SELECT 1 FROM events e WHERE e.author = b.author), "
    "EXISTS(SELECT 1 FROM refs r WHERE r.target = b.id), "
    "(SELECT e.kind FROM events e WHERE e.id = b.prev AND e.author = b.author), "
    "(SELECT e.kev FROM events e WHERE e.id = b.prev AND e.author = b.author), "
    "EXISTS(SELECT 1 FROM events e WHERE e.author = b.author AND e.seq = b.seq + 1 "
    "AND e.prev = b.id) "
    'FROM (SELECT u.id, u.author COLLATE "C" AS author, u.seq, u.prev, u.n '
    "FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bytea[]) "
    "WITH ORDINALITY AS u(id, author, seq, prev, n)) AS b ORDER BY b.n"
)
#: Events probed at least at once after a stretch ended early (see _Batch.apply_phase).
_MIN_WINDOW: Final = 16
#: Kinds whose body effects never read the events table (labels, the latest profile).
_NO_EVENT_READS: Final = frozenset({kinds.LABEL, kinds.PROFILE})
#: The columns of an event row, in the order the write path builds them. Rows go in
#: with binary COPY: no row can conflict, since the probe (and the overlay) found each
#: id not held and writers are serialized (spec 0004 #store-cursor).
_COLUMNS: Final = (
    "cursor", "id", "author", "seq", "prev", "ts", "kind", "header", "sig", "body",
    "deleted", "reply_root", "reply_parent", "received_ms", "kev", "key", "status",
)  # fmt: skip


class _Batch:
    """One write transaction: the connection, the cursors it gives, what it changed.

    Round trips are the cost here (one is ~0.3 ms on a loaded box, far more than the
    work of an insert), so the batch is applied in stretches: one statement probes every
    event left in the phase (:data:`_PROBE`), the rows to insert and the posts to index
    are buffered and written in one round trip each (:meth:`flush`), and what the
    stretch itself stores is laid over the probe's answers (an id stored is held, an
    author known, a seq forked, a reference recorded, a v2 event's prev and child
    held). The social index work of the stretch is buffered too and written in a few
    statements after the rows (:class:`node.store.pg_social_bulk.SocialWrites`). A delete,
    whose effects read what the buffers hold, flushes first; one that changes what
    the probe said in ways the overlay does not follow (a delete, a body fill) ends the
    stretch, and the rest of the phase is probed again. Nothing else changes: one
    transaction, under the stream_head lock, cursors given in batch order.
    """

    def __init__(self, conn: Conn, now_ms: int, top: int, blob_quota: int) -> None:
        self.conn = conn
        self.now_ms = now_ms
        self.top = top
        self.stats = BatchStats(blob_quota=blob_quota)
        self.book = PgKeyBook(conn, top, self.next_cursor, self)
        self._rows: list[tuple[Any, ...]] = []
        self._search: list[IndexArgs] = []
        self._social = SocialWrites()
        self._reset()

    def _reset(self) -> None:
        """Forget the overlay: the probe that follows reads what is stored."""
        #: What this stretch stored: id -> (author, kind, kev).
        self._stored: dict[bytes, tuple[str, str, bytes | None]] = {}
        self._authors: set[str] = set()
        self._seqs: set[tuple[str, int]] = set()
        #: (author, seq, prev) of the stored events: a child of a later event.
        self._links: set[tuple[str, int, bytes | None]] = set()
        self._targets: set[bytes] = set()
        #: The probe's answers may be wrong from here on: probe the rest again.
        self.stale = False

    def next_cursor(self) -> int:
        self.top += 1
        return self.top

    async def flush(self) -> None:
        """Write the buffered rows, then their social index work and search entries."""
        if self._rows:
            rows, self._rows = self._rows, []
            await self.conn.copy_records_to_table("events", records=rows, columns=_COLUMNS)
        await self._social.flush(self.conn, self.now_ms)
        if self._search:
            entries, self._search = self._search, []
            await index_posts(self.conn, entries)

    async def probe(self, events: Sequence[Event]) -> list[Sequence[Any]]:
        """The probe's row of each of ``events`` (after writing what is buffered)."""
        await self.flush()
        self._reset()
        rows = await self.conn.fetch(
            _PROBE,
            [ev.id for ev in events],
            [ev.author for ev in events],
            [ev.seq for ev in events],
            [ev.prev for ev in events],
        )
        return list(rows)

    async def apply_one(self, ev: Event, row: Sequence[Any]) -> WriteResult:
        c = self.conn
        author, kind, signer = ev.author, ev.kind, ev.key
        held, tombstoned, same_seq, known_author, referenced = row[:5]
        # What this stretch stored, over what the probe read before it.
        if ev.id in self._stored:
            held = _HELD
        same_seq = same_seq or (author, ev.seq) in self._seqs
        known_author = known_author or author in self._authors
        referenced = referenced or ev.id in self._targets
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
            prev_kind, prev_kev = row[5], row[6]
            if prev_kind is None and ev.prev in self._stored:
                prev_author, prev_kind, prev_kev = self._stored[ev.prev]
                if prev_author != author:
                    prev_kind = prev_kev = None
            child = bool(row[7]) or (author, ev.seq + 1, ev.id) in self._links
            alone = self.book.settles_alone(author, keyed, (prev_kind, prev_kev, child))
            status = CANONICAL if alone else PENDING
        body_bytes = None if tombstoned else ev.body_bytes
        root, parent = (None, None) if tombstoned else _reply_of(ev)
        if not known_author:
            self.stats.new_authors += 1
        cursor = self.next_cursor()
        self._rows.append(
            (
                cursor, ev.id, author, ev.seq, ev.prev, ev.ts, kind, ev.header_bytes, ev.sig,
                body_bytes, bool(tombstoned), root, parent, self.now_ms, ev.kev, signer, status,
            )
        )  # fmt: skip
        self._stored[ev.id] = (author, kind, ev.kev)
        self._authors.add(author)
        self._seqs.add((author, ev.seq))
        self._links.add((author, ev.seq, ev.prev))
        self.stats.events += 1
        if signer is not None:
            self.book.stored(ev.id)
        if not known_author:
            self._social.authors.add(author)
        if referenced:
            # Their references notify this author now (written with the stretch).
            self._social.referenced[ev.id] = author
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
            await self._effects(ev, cursor, ev.body)
        return WriteResult(status="accepted", cursor=cursor)

    async def _effects(self, ev: Event, cursor: int, body: dict[str, Any]) -> None:
        """The body effects of a v1 event just buffered (see :meth:`effect`); a delete
        changes what the probe said."""
        await self.effect(
            eid=ev.id, author=ev.author, kind=ev.kind, seq=ev.seq, ts=ev.ts, cursor=cursor,
            body=body,
        )  # fmt: skip
        if ev.kind == kinds.DELETE:
            self.stale = True

    async def effect(
        self, *, eid: bytes, author: str, kind: str, seq: int, ts: int, cursor: int,
        body: dict[str, Any],
    ) -> None:  # fmt: skip
        """Apply one stored event's body effects (``kind`` in BODY_EFFECTS). Social index
        work and posts' search entries are buffered (written after the rows); labels
        and profiles read nothing the buffers hold; a delete reads and changes the
        indexes, so everything buffered is written first."""
        if kind in SOCIAL_KINDS:
            targets = self._social.add(
                eid=eid, author=author, kind=kind, seq=seq, ts=ts, cursor=cursor, body=body
            )
            self._targets.update(targets)
            if kind == kinds.POST:
                args = index_args(eid=eid, ts=ts, cursor=cursor, body=body)
                if args is not None:
                    self._search.append(args)
                if "embed" in body:
                    # Reads and writes only the blob tables: nothing buffered.
                    await add_blob_refs(self.conn, eid, author, body, self.stats)
            return
        if kind not in _NO_EVENT_READS:
            await self.flush()
        await apply_body(
            self.conn, eid=eid, author=author, kind=kind, seq=seq, ts=ts, cursor=cursor,
            body=body, stats=self.stats,
        )  # fmt: skip

    async def _fill_body(self, ev: Event) -> WriteResult:
        """Complete a held body-less event from a verified full copy (spec 0004
        #body-fill): it moves to a new cursor, so the live stream carries it again."""
        await self.flush()
        self.stale = True
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

    async def apply_phase(
        self, events: Sequence[Event], order: Sequence[int], results: list[WriteResult | None]
    ) -> None:
        """Apply ``events[i]`` for ``i`` in ``order``, in stretches (see the class doc);
        then settle the v2 authors touched and write everything buffered."""
        pos = 0
        window = len(order)
        while pos < len(order):
            rest = order[pos : pos + window]
            rows = await self.probe([events[i] for i in rest])
            start = pos
            for i, row in zip(rest, rows, strict=True):
                results[i] = await self.apply_one(events[i], row)
                pos += 1
                if self.stale:
                    break
            # A batch of many deletes must not probe its whole rest after each one.
            window = max(_MIN_WINDOW, 2 * (pos - start)) if self.stale else window
        await self.flush()
        await self.book.settle(self.stats)
        await self.flush()  # the effects of events settled alone


async def apply_batch_pg(
    conn: Conn, events: Sequence[Event], now_ms: int, *, blob_quota: int = BLOB_AUTHOR_BYTES
) -> tuple[list[WriteResult], BatchStats]:
    """Apply ``events`` in one transaction on ``conn``; return once it has committed.
    ``blob_quota``: the most held blob bytes one author's posts keep (0004 #blob-keep).

    Raises (after rolling back) if PostgreSQL fails: then nothing of the batch is
    stored and nothing may be acknowledged.
    """
    phases = batch_phases(events)
    results: list[WriteResult | None] = [None] * len(events)
    async with conn.transaction(isolation="read_committed"):
        # The writers' lock (spec 0004 #store-cursor): held until commit.
        top = await conn.fetchval("SELECT top FROM stream_head FOR UPDATE")
        batch = _Batch(conn, now_ms, int(top), blob_quota)
        await batch.book.preload(events)
        for order in phases:
            await batch.apply_phase(events, order, results)
        if batch.top != top:
            await conn.execute("UPDATE stream_head SET top = $1", batch.top)
    batch.stats.top_cursor = batch.top
    return [r for r in results if r is not None], batch.stats
