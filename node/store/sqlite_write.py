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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from node.store.base import WriteResult
from protocol import kinds
from protocol.encoding import decode
from protocol.errors import BodyRequiredError
from protocol.events import Event

__all__ = ["BatchStats", "apply_batch_sync"]


class BatchStats:
    """What a committed batch changed, for the in-memory counters."""

    __slots__ = ("deleted", "events", "filled", "forked_authors", "new_authors")

    def __init__(self) -> None:
        self.events = 0
        #: Held body-less events completed from a full copy (spec 0004 #body-fill).
        self.filled = 0
        self.deleted = 0
        self.new_authors = 0
        self.forked_authors = 0


def _label_subject(subject: Any) -> str:
    return subject.hex() if isinstance(subject, bytes) else str(subject)


def _profile_fields(body: dict[str, Any]) -> tuple[str, str]:
    name = body.get("name")
    bio = body.get("bio")
    return (name if isinstance(name, str) else ""), (bio if isinstance(bio, str) else "")


def _set_profile(
    conn: sqlite3.Connection, author: str, eid: bytes, seq: int, body: dict[str, Any]
) -> None:
    name, bio = _profile_fields(body)
    conn.execute(
        "INSERT INTO profiles (author, id, seq, name, name_lower, bio) VALUES (?,?,?,?,?,?) "
        "ON CONFLICT (author) DO UPDATE SET id=excluded.id, seq=excluded.seq, "
        "name=excluded.name, name_lower=excluded.name_lower, bio=excluded.bio "
        "WHERE excluded.seq > profiles.seq "
        "OR (excluded.seq = profiles.seq AND excluded.id > profiles.id)",
        (author, eid, seq, name, name.lower(), bio),
    )


def _recompute_profile(conn: sqlite3.Connection, author: str) -> None:
    conn.execute("DELETE FROM profiles WHERE author = ?", (author,))
    row = conn.execute(
        "SELECT id, seq, body FROM events WHERE author = ? AND kind = ? AND body IS NOT NULL "
        "ORDER BY seq DESC, id DESC LIMIT 1",
        (author, kinds.PROFILE),
    ).fetchone()
    if row is not None:
        _set_profile(conn, author, row[0], row[1], decode(row[2]))


def _drop_body(conn: sqlite3.Connection, target: bytes, author: str, stats: BatchStats) -> None:
    """Drop the body of ``target`` (known, by ``author``) and everything derived from it."""
    cur = conn.execute(
        "UPDATE events SET body = NULL, deleted = 1, reply_root = NULL, reply_parent = NULL "
        "WHERE id = ? AND author = ? AND deleted = 0",
        (target, author),
    )
    if cur.rowcount:
        stats.deleted += 1
    conn.execute("DELETE FROM labels WHERE id = ?", (target,))
    current = conn.execute("SELECT id FROM profiles WHERE author = ?", (author,)).fetchone()
    if current is not None and current[0] == target:
        _recompute_profile(conn, author)


def _apply_body(
    conn: sqlite3.Connection, ev: Event, cursor: int, body: dict[str, Any], stats: BatchStats
) -> None:
    if ev.kind == kinds.LABEL:
        exp = body.get("exp")
        conn.execute(
            "INSERT OR IGNORE INTO labels (id, cursor, labeler, subject, val, neg, exp) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                ev.id,
                cursor,
                ev.author,
                _label_subject(body["subject"]),
                body["val"],
                1 if body.get("neg") is True else 0,
                exp if isinstance(exp, int) else None,
            ),
        )
    elif ev.kind == kinds.PROFILE:
        _set_profile(conn, ev.author, ev.id, ev.seq, body)
    elif ev.kind == kinds.DELETE:
        target: bytes = body["target"]
        held = conn.execute("SELECT kind, author FROM events WHERE id = ?", (target,)).fetchone()
        if held is not None and held[0] == kinds.DELETE:
            return  # a delete of a delete has no effect (spec 0003 #delete-of-delete)
        if held is not None and held[1] != ev.author:
            # Another author's event: stored, with no effect (spec 0004 #not-author).
            return
        conn.execute(
            "INSERT OR IGNORE INTO tombstones (target, author, delete_id) VALUES (?,?,?)",
            (target, ev.author, ev.id),
        )
        _drop_body(conn, target, ev.author, stats)


def _reply_of(ev: Event) -> tuple[bytes | None, bytes | None]:
    if ev.kind != kinds.POST or ev.body is None:
        return None, None
    reply = ev.body.get("reply")
    if not isinstance(reply, dict):
        return None, None
    return reply["root"], reply["parent"]


#: Everything the write path must know about an event before inserting it, in one
#: statement (four index lookups): already stored (0: no, 1: yes, 2: yes but without a
#: body that a full copy may fill in)? tombstoned by its author? does the author
#: already have an event at this seq (a fork)? any event at all?
_HELD, _FILLABLE = 1, 2
_PROBE = (
    "SELECT coalesce((SELECT CASE WHEN body IS NULL AND deleted = 0 THEN 2 ELSE 1 END "
    "FROM events WHERE id = ?1), 0), "
    "EXISTS(SELECT 1 FROM tombstones WHERE target = ?1 AND author = ?2), "
    "EXISTS(SELECT 1 FROM events WHERE author = ?2 AND seq = ?3), "
    "EXISTS(SELECT 1 FROM events WHERE author = ?2)"
)

_INSERT = (
    "INSERT INTO events (id, author, seq, prev, ts, kind, header, sig, body, deleted, "
    "reply_root, reply_parent, received_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _apply_one(
    conn: sqlite3.Connection, ev: Event, now_ms: int, stats: BatchStats
) -> WriteResult:
    author = ev.author
    kind = ev.kind
    held, tombstoned, same_seq, known_author = conn.execute(
        _PROBE, (ev.id, author, ev.seq)
    ).fetchone()
    if kind == kinds.DELETE:
        # A delete is never deleted (spec 0003 #delete-of-delete): a tombstone naming
        # it, recorded before it arrived, has no effect on it.
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
        ),
    ).lastrowid
    assert cursor is not None  # noqa: S101 - sqlite3 always sets it after an INSERT
    stats.events += 1
    if tombstoned:
        stats.deleted += 1
    if same_seq:
        already = conn.execute("SELECT 1 FROM forks WHERE author = ? LIMIT 1", (author,)).fetchone()
        conn.execute("INSERT OR IGNORE INTO forks (author, seq) VALUES (?,?)", (author, ev.seq))
        if already is None:
            stats.forked_authors += 1
    if body_bytes is not None and ev.body is not None and kind in _BODY_EFFECTS:
        _apply_body(conn, ev, cursor, ev.body, stats)
    return WriteResult(status="accepted", cursor=cursor)


def _fill_body(conn: sqlite3.Connection, ev: Event, stats: BatchStats) -> WriteResult:
    """Complete a held body-less event from a verified full copy (spec 0004 #body-fill).

    The row moves to a new cursor, so that the live stream carries the completed event
    to every subscriber (peers fill their copies in the same way); its id, header and
    chain position are unchanged.
    """
    (received_ms,) = conn.execute(
        "SELECT received_ms FROM events WHERE id = ?", (ev.id,)
    ).fetchone()
    conn.execute("DELETE FROM events WHERE id = ?", (ev.id,))
    root, parent = _reply_of(ev)
    cursor = conn.execute(
        _INSERT,
        (
            ev.id, ev.author, ev.seq, ev.prev, ev.ts, ev.kind, ev.header_bytes, ev.sig,
            ev.body_bytes, 0, root, parent, received_ms,
        ),
    ).lastrowid
    assert cursor is not None  # noqa: S101 - sqlite3 always sets it after an INSERT
    stats.filled += 1
    if ev.body is not None and ev.kind in _BODY_EFFECTS:
        _apply_body(conn, ev, cursor, ev.body, stats)
    return WriteResult(status="accepted", cursor=cursor)


#: Kinds whose body changes more than the events table.
_BODY_EFFECTS = frozenset({kinds.LABEL, kinds.PROFILE, kinds.DELETE})


def apply_batch_sync(
    conn: sqlite3.Connection, events: Sequence[Event], now_ms: int
) -> tuple[list[WriteResult], BatchStats]:
    """Apply ``events`` in one ``BEGIN IMMEDIATE`` transaction; commit; return results.

    Raises (after rolling back) if SQLite fails: then nothing of the batch is stored
    and nothing may be acknowledged.
    """
    stats = BatchStats()
    results: list[WriteResult | None] = [None] * len(events)
    # Bodies first: a body-less event is judged once the batch's deletes are applied.
    order = [i for i, ev in enumerate(events) if ev.body_bytes is not None]
    order += [i for i, ev in enumerate(events) if ev.body_bytes is None]
    conn.execute("BEGIN IMMEDIATE")
    try:
        for i in order:
            results[i] = _apply_one(conn, events[i], now_ms, stats)
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (SQLITE_BUSY, disk full) leaves the transaction open: end it,
        # or every later BEGIN would fail.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [r for r in results if r is not None], stats
