"""What an event's body changes besides its own row, and how to undo it (SQLite).

The label index, the latest profile of each author, and a ``delete``'s tombstone with
the dropped body of its target (spec 0004 §deletion). The write path applies these when
an event is stored (v1) or when it becomes canonical (v2, spec 0008 #status), and
undoes them when a v2 event stops being canonical: a revoked or disputed event leaves
the indexes, and a revoked ``delete`` stops counting (0008 #revoked-delete, 0003
#revoked-delete) — its target is no longer deleted, and keeps no body, so the body
repair step fetches it again from a peer (spec 0005 #body-repair).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from node.store.base import BLOB_AUTHOR_BYTES, BlobTotals
from node.store.sqlite_blobs import add_blob_refs, drop_blob_refs
from node.store.sqlite_search import index_post, unindex_post
from node.store.sqlite_social import SOCIAL_KINDS, add_social, remove_social
from protocol import kinds
from protocol.encoding import decode

__all__ = [
    "BODY_EFFECTS",
    "BatchStats",
    "apply_body",
    "drop_body",
    "recompute_profile",
    "set_profile",
    "undo_body",
]

#: Kinds whose body changes more than the events table (the social ones: references,
#: notifications and followers, node/store/sqlite_social.py).
BODY_EFFECTS: Final = frozenset({kinds.LABEL, kinds.PROFILE, kinds.DELETE}) | SOCIAL_KINDS

#: The status whose events count in indexes, profiles and deletions (spec 0008 #status).
CANONICAL: Final = "canonical"


class BatchStats:
    """What a committed batch changed, for the in-memory counters."""

    __slots__ = (
        "blob_drops", "blob_quota", "blob_totals", "deleted", "events", "filled",
        "forked_authors", "moved", "new_authors", "top_cursor",
    )  # fmt: skip

    def __init__(self, *, blob_quota: int = BLOB_AUTHOR_BYTES) -> None:
        #: Most held blob bytes one author's posts keep (spec 0004 #blob-keep).
        self.blob_quota = blob_quota
        #: Blobs whose bytes the batch dropped, by reason.
        self.blob_drops: dict[str, int] = {}
        #: The blob totals after the batch, when it changed them.
        self.blob_totals: BlobTotals | None = None
        self.events = 0
        #: Held events moved to a new cursor because their status changed (spec 0004
        #: #stream-status), and the highest cursor such a move gave.
        self.moved = 0
        self.top_cursor = 0
        #: Held body-less events completed from a full copy (spec 0004 #body-fill).
        self.filled = 0
        #: Net change of deleted events (a revoked delete un-deletes its target).
        self.deleted = 0
        self.new_authors = 0
        self.forked_authors = 0


def _label_subject(subject: Any) -> str:
    return subject.hex() if isinstance(subject, bytes) else str(subject)


def _profile_fields(body: dict[str, Any]) -> tuple[str, str]:
    name = body.get("name")
    bio = body.get("bio")
    return (name if isinstance(name, str) else ""), (bio if isinstance(bio, str) else "")


def set_profile(
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


def recompute_profile(conn: sqlite3.Connection, author: str) -> None:
    """The author's latest profile among its canonical events with a body."""
    conn.execute("DELETE FROM profiles WHERE author = ?", (author,))
    row = conn.execute(
        "SELECT id, seq, body FROM events WHERE author = ? AND kind = ? AND body IS NOT NULL "
        "AND status = 'canonical' ORDER BY seq DESC, id DESC LIMIT 1",
        (author, kinds.PROFILE),
    ).fetchone()
    if row is not None:
        set_profile(conn, author, row[0], row[1], decode(row[2]))


def drop_body(conn: sqlite3.Connection, target: bytes, author: str, stats: BatchStats) -> None:
    """Drop the body of ``target`` (known, by ``author``) and everything derived from it."""
    unindex_post(conn, target, author)  # needs the body: first
    cur = conn.execute(
        "UPDATE events SET body = NULL, deleted = 1, reply_root = NULL, reply_parent = NULL "
        "WHERE id = ? AND author = ? AND deleted = 0",
        (target, author),
    )
    if cur.rowcount:
        stats.deleted += 1
    conn.execute("DELETE FROM labels WHERE id = ?", (target,))
    remove_social(conn, target)
    drop_blob_refs(conn, target, stats)
    current = conn.execute("SELECT id FROM profiles WHERE author = ?", (author,)).fetchone()
    if current is not None and current[0] == target:
        recompute_profile(conn, author)


def apply_body(
    conn: sqlite3.Connection,
    *,
    eid: bytes,
    author: str,
    kind: str,
    seq: int,
    cursor: int,
    body: dict[str, Any],
    stats: BatchStats,
) -> None:
    """Apply the effects of one counting event's body (``kind`` in BODY_EFFECTS)."""
    if kind == kinds.LABEL:
        exp = body.get("exp")
        conn.execute(
            "INSERT OR IGNORE INTO labels (id, cursor, labeler, subject, val, neg, exp) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                eid,
                cursor,
                author,
                _label_subject(body["subject"]),
                body["val"],
                1 if body.get("neg") is True else 0,
                exp if isinstance(exp, int) else None,
            ),
        )
    elif kind == kinds.PROFILE:
        set_profile(conn, author, eid, seq, body)
    elif kind in SOCIAL_KINDS:
        add_social(conn, eid=eid, author=author, kind=kind, seq=seq, cursor=cursor, body=body)
        if kind == kinds.POST:
            index_post(conn, cursor, body)
            if "embed" in body:
                add_blob_refs(conn, eid, author, body, stats)
    elif kind == kinds.DELETE:
        target: bytes = body["target"]
        held = conn.execute("SELECT kind, author FROM events WHERE id = ?", (target,)).fetchone()
        if held is not None and held[0] == kinds.DELETE:
            return  # a delete of a delete has no effect (spec 0003 #delete-of-delete)
        if held is not None and held[0] in kinds.KEY_EVENT_KINDS and held[1] == author:
            return  # a key event's body is never dropped (spec 0008 #key-event-body)
        if held is not None and held[1] != author:
            # Another author's event: stored, with no effect (spec 0004 #not-author).
            return
        conn.execute(
            "INSERT OR IGNORE INTO tombstones (target, author, delete_id) VALUES (?,?,?)",
            (target, author, eid),
        )
        drop_body(conn, target, author, stats)


def _undo_delete(
    conn: sqlite3.Connection, eid: bytes, author: str, body: dict[str, Any], stats: BatchStats
) -> None:
    """A delete that stopped counting (0008 #revoked-delete): its target is deleted no
    more, unless another canonical delete of the author names it too. The target's body
    stays NULL: the row becomes a missing body that a peer's copy completes."""
    target: bytes = body["target"]
    gone = conn.execute(
        "DELETE FROM tombstones WHERE target = ? AND author = ? AND delete_id = ?",
        (target, author, eid),
    )
    if not gone.rowcount:
        return  # it had no effect (delete of a delete, or another delete's tombstone)
    others = conn.execute(
        "SELECT id, body FROM events WHERE author = ? AND kind = ? AND status = 'canonical' "
        "AND body IS NOT NULL AND id != ?",
        (author, kinds.DELETE, eid),
    ).fetchall()
    for other_id, other_body in others:
        if decode(other_body).get("target") == target:
            conn.execute(
                "INSERT OR IGNORE INTO tombstones (target, author, delete_id) VALUES (?,?,?)",
                (target, author, other_id),
            )
            return
    cur = conn.execute(
        "UPDATE events SET deleted = 0 WHERE id = ? AND author = ? AND deleted = 1",
        (target, author),
    )
    if cur.rowcount:
        stats.deleted -= 1


def undo_body(
    conn: sqlite3.Connection,
    *,
    eid: bytes,
    author: str,
    kind: str,
    body: dict[str, Any],
    stats: BatchStats,
) -> None:
    """Undo :func:`apply_body` for an event that stopped counting. A profile's undoing
    is the caller's :func:`recompute_profile` once every change is in."""
    if kind == kinds.LABEL:
        conn.execute("DELETE FROM labels WHERE id = ?", (eid,))
    elif kind in SOCIAL_KINDS:
        remove_social(conn, eid)
        if kind == kinds.POST:
            unindex_post(conn, eid, author)
            drop_blob_refs(conn, eid, stats)
    elif kind == kinds.DELETE:
        _undo_delete(conn, eid, author, body, stats)
