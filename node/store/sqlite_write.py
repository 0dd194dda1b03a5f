"""The SQLite write path: apply one verified batch in one transaction.

Runs on the store's single writer thread. Per event: skip duplicates (by id), fill in
the body of a held body-less event that no deletion explains (spec 0004 #body-fill),
refuse a body-less copy that no deletion explains (``body-required``, spec 0004
#bodyless), insert the row (without its body if the author already deleted it:
a tombstone), flag forks, then apply the body's effects — reply index, label index,
latest profile, and for a ``delete`` the tombstone plus dropping the target's body.
Deletions are final: a later re-delivery of the target is a duplicate or is stored
header-only, never with its body (spec 0004 §deletion); and a ``delete`` is never
deleted (spec 0003 #delete-of-delete), whatever the order of arrival.

Events with a body are applied before the body-less ones of the same batch, so that a
deleted target and its delete that travel together (a peer's stream page, a
reconciliation fetch) are both stored, whichever comes first in the batch.

Events of ``did:murmur`` authors (v2, spec 0008) are checked against the author's held
key events before they are stored (§8.5 steps 1-4, :class:`node.store.sqlite_keys.KeyBook`);
the key events of a batch go first, parents before children, so that the events relying
on them are judged with them held (#nodes). A v2 event is stored ``pending`` with no
body effect; once a phase of the batch is in, the authors it touched are resolved
(§8.6-§8.7) and each event's effects follow its status, in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from node.store.base import BLOB_AUTHOR_BYTES, WriteResult
from node.store.keyplan import PENDING, KeyMemo, batch_phases
from node.store.sqlite_effects import BODY_EFFECTS, CANONICAL, BatchStats, apply_body
from node.store.sqlite_keys import KeyBook
from node.store.sqlite_social import on_insert
from protocol import kinds
from protocol.errors import BodyRequiredError, ProtocolError
from protocol.events import Event

__all__ = ["BatchStats", "apply_batch_sync"]


def _reply_of(ev: Event) -> tuple[bytes | None, bytes | None]:
    if ev.kind != kinds.POST or ev.body is None:
        return None, None
    reply = ev.body.get("reply")
    if not isinstance(reply, dict):
        return None, None
    return reply["root"], reply["parent"]


#: Everything the write path must know about an event before inserting it, in one
#: statement (five index lookups): already stored (0: no, 1: yes, 2: yes but without a
#: body that a full copy may fill in)? tombstoned by its author? does the author
#: already have an event at this seq (a fork)? any event at all? do held events
#: reference it (likes, replies... that notify its author once it is held)?
_HELD, _FILLABLE = 1, 2
_PROBE = (
    "SELECT coalesce((SELECT CASE WHEN body IS NULL AND deleted = 0 THEN 2 ELSE 1 END "
    "FROM events WHERE id = ?1), 0), "
    "EXISTS(SELECT 1 FROM tombstones WHERE target = ?1 AND author = ?2), "
    "EXISTS(SELECT 1 FROM events WHERE author = ?2 AND seq = ?3), "
    "EXISTS(SELECT 1 FROM events WHERE author = ?2), "
    "EXISTS(SELECT 1 FROM refs WHERE target = ?1)"
)
#: For a v2 event, the same and what :meth:`KeyBook.add` needs to settle it alone: the
#: kind and kev of its held prev (NULL: not held), and whether a child is held.
_PROBE_V2 = (
    _PROBE + ", (SELECT kind FROM events WHERE id = ?4 AND author = ?2), "  # noqa: S608
    "(SELECT kev FROM events WHERE id = ?4 AND author = ?2), "
    "EXISTS(SELECT 1 FROM events WHERE author = ?2 AND seq = ?3 + 1 AND prev = ?1)"
)

_INSERT = (
    "INSERT INTO events (id, author, seq, prev, ts, kind, header, sig, body, deleted, "
    "reply_root, reply_parent, received_ms, kev, key, status, revoked_by) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_V1_KEYS = (None, None, "canonical", None)


def _apply_one(
    conn: sqlite3.Connection, ev: Event, now_ms: int, stats: BatchStats, book: KeyBook
) -> WriteResult:
    author = ev.author
    kind = ev.kind
    signer = ev.key
    if signer is None:
        held, tombstoned, same_seq, known_author, referenced = conn.execute(
            _PROBE, (ev.id, author, ev.seq)
        ).fetchone()
    else:
        held, tombstoned, same_seq, known_author, referenced, *around = conn.execute(
            _PROBE_V2, (ev.id, author, ev.seq, ev.prev)
        ).fetchone()
    if kind == kinds.DELETE or (signer is not None and kind in kinds.KEY_EVENT_KINDS):
        # A delete is never deleted (spec 0003 #delete-of-delete), nor is a key event's
        # body ever dropped (0008 #key-event-body): a tombstone naming one, recorded
        # before it arrived, has no effect on it.
        tombstoned = 0
    if held:
        if held == _FILLABLE and ev.body_bytes is not None and not tombstoned:
            return _fill_body(conn, ev, stats)
        return WriteResult(status="duplicate")
    if ev.body_bytes is None and not tombstoned:
        # Anyone can strip the body from a public event; storing such a copy would let
        # a stranger erase a post or cancel a delete (spec 0004 #bodyless).
        return WriteResult(
            status="rejected",
            error=BodyRequiredError(
                "a body-less copy is stored only after the author's delete of it"
            ),
        )
    keyed = None
    alone = False
    if signer is not None:
        # Spec 0008 §8.5 steps 1-4 against the author's held key events.
        try:
            keyed = book.check(ev)
        except ProtocolError as exc:
            return WriteResult(status="rejected", error=exc)
        chain = (around[0], around[1], bool(around[2]))
        alone = book.settles_alone(author, keyed, chain)
    v2_keys = None if keyed is None else (ev.kev, signer, CANONICAL if alone else PENDING, None)
    body_bytes = None if tombstoned else ev.body_bytes
    root, parent = (None, None) if tombstoned else _reply_of(ev)
    if not known_author:
        stats.new_authors += 1
    cursor = conn.execute(
        _INSERT,
        (
            ev.id,
            author,
            ev.seq,
            ev.prev,
            ev.ts,
            kind,
            ev.header_bytes,
            ev.sig,
            body_bytes,
            1 if tombstoned else 0,
            root,
            parent,
            now_ms,
            *(_V1_KEYS if v2_keys is None else v2_keys),
        ),
    ).lastrowid
    assert cursor is not None  # noqa: S101 - sqlite3 always sets it after an INSERT
    stats.events += 1
    if referenced or not known_author:
        on_insert(
            conn, eid=ev.id, author=author, new_author=not known_author,
            referenced=bool(referenced), now_ms=now_ms,
        )
    if tombstoned:
        stats.deleted += 1
    if same_seq:
        already = conn.execute("SELECT 1 FROM forks WHERE author = ? LIMIT 1", (author,)).fetchone()
        conn.execute("INSERT OR IGNORE INTO forks (author, seq) VALUES (?,?)", (author, ev.seq))
        if already is None:
            stats.forked_authors += 1
    if keyed is not None:
        # Its effects wait for its status (KeyBook.settle, at the end of the phase).
        book.add(
            author, keyed, cursor=cursor, body=None if body_bytes is None else ev.body,
            alone=alone,
        )
    elif body_bytes is not None and ev.body is not None and kind in BODY_EFFECTS:
        apply_body(
            conn, eid=ev.id, author=author, kind=kind, seq=ev.seq, cursor=cursor,
            body=ev.body, stats=stats,
        )
    return WriteResult(status="accepted", cursor=cursor)


def _fill_body(conn: sqlite3.Connection, ev: Event, stats: BatchStats) -> WriteResult:
    """Complete a held body-less event from a verified full copy (spec 0004 #body-fill).

    The row moves to a new cursor, so that the live stream carries the completed event
    to every subscriber (peers fill their copies in the same way); its id, header and
    chain position are unchanged.
    """
    received_ms, kev, key, status, revoked_by = conn.execute(
        "SELECT received_ms, kev, key, status, revoked_by FROM events WHERE id = ?", (ev.id,)
    ).fetchone()
    conn.execute("DELETE FROM events WHERE id = ?", (ev.id,))
    root, parent = _reply_of(ev)
    cursor = conn.execute(
        _INSERT,
        (
            ev.id, ev.author, ev.seq, ev.prev, ev.ts, ev.kind, ev.header_bytes, ev.sig,
            ev.body_bytes, 0, root, parent, received_ms, kev, key, status, revoked_by,
        ),
    ).lastrowid
    assert cursor is not None  # noqa: S101 - sqlite3 always sets it after an INSERT
    stats.filled += 1
    # Only a canonical event counts (spec 0008 #status); v1 events always are.
    if ev.body is not None and ev.kind in BODY_EFFECTS and status == "canonical":
        apply_body(
            conn, eid=ev.id, author=ev.author, kind=ev.kind, seq=ev.seq, cursor=cursor,
            body=ev.body, stats=stats,
        )
    return WriteResult(status="accepted", cursor=cursor)


def apply_batch_sync(
    conn: sqlite3.Connection,
    events: Sequence[Event],
    now_ms: int,
    memo: KeyMemo | None = None,
    *,
    blob_quota: int = BLOB_AUTHOR_BYTES,
) -> tuple[list[WriteResult], BatchStats]:
    """Apply ``events`` in one ``BEGIN IMMEDIATE`` transaction; commit; return results.

    ``memo`` is the writer's :class:`KeyMemo` of recent authors' key state, kept
    between calls on this connection (none: the key tables are read as needed).
    ``blob_quota`` is the most held blob bytes one author's posts keep (spec 0004
    #blob-keep). Raises (after rolling back) if SQLite fails: then nothing of the batch is stored
    and nothing may be acknowledged.
    """
    stats = BatchStats(blob_quota=blob_quota)
    results: list[WriteResult | None] = [None] * len(events)
    # Key events first, then the other events with a body, then the body-less ones
    # (keyplan.batch_phases says why).
    bodied, bodiless = batch_phases(events)
    book = KeyBook(conn, memo)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for order in (bodied, bodiless):
            for i in order:
                results[i] = _apply_one(conn, events[i], now_ms, stats, book)
            book.settle(stats)
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (SQLITE_BUSY, disk full) leaves the transaction open: end it,
        # or every later BEGIN would fail.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if memo is not None:
            memo.clear()  # it may hold what the rollback undid
        raise
    if memo is not None:
        memo.trim()
    return [r for r in results if r is not None], stats
