"""The social indexes (SQLite): references, notifications, followers, counts, first seen.

Spec 0004 #social. Every counting event (canonical, held with its body, not deleted:
0008 #node-effects) that points at another event or identity leaves rows here, and
loses them when it stops counting (deleted, revoked, disputed):

- ``refs``: ``(target, kind)`` per reference of a ``like``, ``repost``, or ``post``
  (``reply`` to its parent, ``root`` to its thread's root when that differs, ``quote``),
  whether the target is held or not; ``ref_counts`` keeps the count of each
  ``(target, kind)`` (likes and reposts once per author, spec 0003 §3.5).
- ``notifications``: one row per (recipient, referencing event), with its reason
  (#notification-reasons). Mentions and follows name the recipient; the other reasons
  notify the target's author, known once the target is held: a target that arrives
  after its references notifies their authors then (:func:`on_insert`).
- ``follow_edges`` (every counting ``follow``/``unfollow``), ``followers`` (for each
  pair, the follow that is the latest event, spec 0003 §3.6) and ``follow_counts``.
- ``authors``: when this node first stored an event of each author (#first-seen).

Everything is keyed so that a write touches a bounded number of rows per event, and
every read is an index range with a LIMIT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any, Final, TypeGuard

from node.store.base import NOTIFICATION_REASONS, REACTION_KINDS
from protocol import kinds
from protocol.encoding import decode
from protocol.errors import InvalidDidError
from protocol.identity import did_method

__all__ = [
    "COUNT_KINDS",
    "MAX_MENTIONS",
    "SOCIAL_KINDS",
    "add_social",
    "backfill_social",
    "on_insert",
    "remove_social",
]

#: Kinds whose body adds rows to the social indexes.
SOCIAL_KINDS: Final = frozenset(
    {kinds.POST, kinds.LIKE, kinds.REPOST, kinds.FOLLOW, kinds.UNFOLLOW}
)
#: Reference kinds that are counted and listed per target (#counts, #reactions).
COUNT_KINDS: Final = REACTION_KINDS
#: Counted once per author and target (spec 0003 §3.5; a repost likewise).
_ONCE_PER_AUTHOR: Final = frozenset({"like", "repost"})
_RANK: Final = {reason: i for i, reason in enumerate(NOTIFICATION_REASONS)}
#: The reason a reference notifies the target's author with.
_REASON_OF: Final = {
    "reply": "reply", "root": "reply", "quote": "quote", "like": "like", "repost": "repost",
}
#: Facets read per post (spec 0003 #facets bounds them at 32; more are ignored here).
MAX_MENTIONS: Final = 32
_ID_LEN: Final = 32


def _is_id(value: Any) -> TypeGuard[bytes]:
    return isinstance(value, bytes) and len(value) == _ID_LEN


def _refs_of(kind: str, body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """``(ref kind, target id)`` of a counting event's body."""
    if kind in (kinds.LIKE, kinds.REPOST):
        target = body.get("target")
        return [(kind, target)] if _is_id(target) else []
    if kind != kinds.POST:
        return []
    out: list[tuple[str, bytes]] = []
    reply = body.get("reply")
    if isinstance(reply, dict):
        parent, root = reply.get("parent"), reply.get("root")
        if _is_id(parent):
            out.append(("reply", parent))
        if _is_id(root) and root != parent:
            out.append(("root", root))
    quote = body.get("quote")
    if _is_id(quote):
        out.append(("quote", quote))
    return out


def _mentions(body: dict[str, Any]) -> list[str]:
    """The dids of a post's mention facets (spec 0003 #facets), read defensively:
    malformed facets and bad dids are ignored, at most :data:`MAX_MENTIONS` facets."""
    facets = body.get("facets")
    if not isinstance(facets, list):
        return []
    out: dict[str, None] = {}
    for facet in facets[:MAX_MENTIONS]:
        if not isinstance(facet, dict) or facet.get("type") != "mention":
            continue
        did = facet.get("did")
        if not isinstance(did, str):
            continue
        try:
            did_method(did)
        except InvalidDidError:
            continue
        out[did] = None
    return list(out)


def _notify(
    conn: sqlite3.Connection, recipient: str, reason: str, ts: int, cursor: int, src: bytes
) -> None:
    """One notification of ``recipient`` by ``src``, keeping the strongest reason."""
    held = conn.execute(
        "SELECT reason FROM notifications WHERE src = ? AND recipient = ?", (src, recipient)
    ).fetchone()
    if held is not None:
        if _RANK[held[0]] <= _RANK[reason]:
            return
        conn.execute(
            "DELETE FROM notifications WHERE src = ? AND recipient = ?", (src, recipient)
        )
    conn.execute(
        "INSERT OR IGNORE INTO notifications (recipient, reason, ts, cursor, src) "
        "VALUES (?,?,?,?,?)",
        (recipient, reason, ts, cursor, src),
    )


def _bump(conn: sqlite3.Connection, target: bytes, kind: str, delta: int) -> None:
    if delta > 0:
        conn.execute(
            "INSERT INTO ref_counts (target, kind, n) VALUES (?,?,1) "
            "ON CONFLICT (target, kind) DO UPDATE SET n = n + 1",
            (target, kind),
        )
        return
    conn.execute(
        "UPDATE ref_counts SET n = n - 1 WHERE target = ? AND kind = ?", (target, kind)
    )
    conn.execute("DELETE FROM ref_counts WHERE target = ? AND kind = ? AND n <= 0", (target, kind))


def _author_refs(conn: sqlite3.Connection, target: bytes, kind: str, author: str) -> int:
    (n,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM refs WHERE target = ? AND kind = ? AND author = ? "
        "LIMIT 2)",
        (target, kind, author),
    ).fetchone()
    return int(n)


def _settle_pair(conn: sqlite3.Connection, follower: str, subject: str) -> None:
    """Make ``followers`` (and the follow notification) agree with the pair's latest
    counting event (spec 0003 §3.6: highest seq, then greatest id)."""
    latest = conn.execute(
        "SELECT id, follow FROM follow_edges WHERE follower = ? AND subject = ? "
        "ORDER BY seq DESC, id DESC LIMIT 1",
        (follower, subject),
    ).fetchone()
    new: bytes | None = latest[0] if latest is not None and latest[1] else None
    row = conn.execute(
        "SELECT id FROM followers WHERE subject = ? AND follower = ?", (subject, follower)
    ).fetchone()
    old: bytes | None = None if row is None else row[0]
    if old == new:
        return
    if old is not None:
        conn.execute(
            "DELETE FROM followers WHERE subject = ? AND follower = ?", (subject, follower)
        )
        conn.execute(
            "DELETE FROM notifications WHERE src = ? AND recipient = ?", (old, subject)
        )
    if new is not None:
        ts, cursor = conn.execute(
            "SELECT ts, cursor FROM events WHERE id = ?", (new,)
        ).fetchone()
        conn.execute(
            "INSERT INTO followers (subject, follower, id, ts, cursor) VALUES (?,?,?,?,?)",
            (subject, follower, new, ts, cursor),
        )
        if follower != subject:
            # A follow notifies for no other reason: no stronger row to look for.
            conn.execute(
                "INSERT OR IGNORE INTO notifications (recipient, reason, ts, cursor, src) "
                "VALUES (?,?,?,?,?)",
                (subject, "follow", ts, cursor, new),
            )
    if (old is None) != (new is None):
        delta = 1 if new is not None else -1
        conn.executemany(
            "INSERT INTO follow_counts (did, followers, following) VALUES (?,?,?) "
            "ON CONFLICT (did) DO UPDATE SET followers = followers + excluded.followers, "
            "following = following + excluded.following",
            [(subject, delta, 0), (follower, 0, delta)],
        )


def add_social(
    conn: sqlite3.Connection,
    *,
    eid: bytes,
    author: str,
    kind: str,
    seq: int,
    cursor: int,
    body: dict[str, Any],
) -> None:
    """Index one counting event (``kind`` in :data:`SOCIAL_KINDS`). Idempotent.

    On the single writer for every such event, so it does the least it can: a post
    that references nothing costs nothing; the notifications of one event are decided
    here (the strongest reason per recipient) and inserted without a lookup.
    """
    if kind in (kinds.FOLLOW, kinds.UNFOLLOW):
        subject = body.get("subject")
        if not isinstance(subject, str):
            return
        conn.execute(
            "INSERT OR IGNORE INTO follow_edges (follower, subject, seq, id, follow) "
            "VALUES (?,?,?,?,?)",
            (author, subject, seq, eid, 1 if kind == kinds.FOLLOW else 0),
        )
        _settle_pair(conn, author, subject)
        return
    refs = _refs_of(kind, body)
    mentions = _mentions(body) if kind == kinds.POST else []
    if not refs and not mentions:
        return
    (ts,) = conn.execute("SELECT ts FROM events WHERE cursor = ?", (cursor,)).fetchone()
    notify: dict[str, str] = {}  # recipient -> strongest reason
    for ref, target in refs:
        added = conn.execute(
            "INSERT OR IGNORE INTO refs (target, kind, ts, cursor, src, author) "
            "VALUES (?,?,?,?,?,?)",
            (target, ref, ts, cursor, eid, author),
        ).rowcount
        if not added:
            continue  # applied before: its notifications are in
        if ref in COUNT_KINDS and (
            ref not in _ONCE_PER_AUTHOR or _author_refs(conn, target, ref, author) == 1
        ):
            _bump(conn, target, ref, 1)
        held = conn.execute("SELECT author FROM events WHERE id = ?", (target,)).fetchone()
        if held is not None and held[0] != author:
            _stronger(notify, held[0], _REASON_OF[ref])
    for did in mentions:
        if did != author:
            _stronger(notify, did, "mention")
    if notify:
        # A row for (recipient, this event) exists only if the event was applied
        # before, with the same reasons (or a stronger one :func:`on_insert` set when
        # a target arrived): the primary key makes the insert a no-op then.
        conn.executemany(
            "INSERT OR IGNORE INTO notifications (recipient, reason, ts, cursor, src) "
            "VALUES (?,?,?,?,?)",
            [(recipient, reason, ts, cursor, eid) for recipient, reason in notify.items()],
        )


def _stronger(notify: dict[str, str], recipient: str, reason: str) -> None:
    held = notify.get(recipient)
    if held is None or _RANK[reason] < _RANK[held]:
        notify[recipient] = reason


def remove_social(conn: sqlite3.Connection, eid: bytes) -> None:
    """Withdraw everything ``eid`` added (it was deleted, or stopped being canonical)."""
    refs = conn.execute(
        "SELECT target, kind, author FROM refs WHERE src = ?", (eid,)
    ).fetchall()
    for target, ref, author in refs:
        conn.execute(
            "DELETE FROM refs WHERE target = ? AND kind = ? AND src = ?", (target, ref, eid)
        )
        if ref in COUNT_KINDS and (
            ref not in _ONCE_PER_AUTHOR or _author_refs(conn, target, ref, author) == 0
        ):
            _bump(conn, target, ref, -1)
    conn.execute("DELETE FROM notifications WHERE src = ?", (eid,))
    pairs = conn.execute(
        "SELECT follower, subject FROM follow_edges WHERE id = ?", (eid,)
    ).fetchall()
    for follower, subject in pairs:
        conn.execute(
            "DELETE FROM follow_edges WHERE follower = ? AND subject = ? AND id = ?",
            (follower, subject, eid),
        )
        _settle_pair(conn, follower, subject)


def on_insert(
    conn: sqlite3.Connection,
    *,
    eid: bytes,
    author: str,
    new_author: bool,
    referenced: bool,
    now_ms: int,
) -> None:
    """A new event row (any kind, with or without its body): its author's first-seen
    time, and the notifications of references that named it before it was held
    (``referenced``: the write path's probe saw some)."""
    if new_author:
        conn.execute(
            "INSERT OR IGNORE INTO authors (author, first_seen_ms) VALUES (?,?)",
            (author, now_ms),
        )
    if not referenced:
        return
    waiting = conn.execute(
        "SELECT kind, ts, cursor, src FROM refs WHERE target = ? AND author != ?",
        (eid, author),
    ).fetchall()
    for ref, ts, cursor, src in waiting:
        _notify(conn, author, _REASON_OF[ref], ts, cursor, src)


def _counting(conn: sqlite3.Connection, batch: int) -> Iterator[list[Any]]:
    last = 0
    placeholders = ",".join("?" * len(SOCIAL_KINDS))
    while True:
        rows = conn.execute(
            "SELECT cursor, id, author, kind, seq, body FROM events "  # noqa: S608 - constant SQL + placeholders
            f"WHERE cursor > ? AND kind IN ({placeholders}) AND status = 'canonical' "
            "AND deleted = 0 AND body IS NOT NULL ORDER BY cursor LIMIT ?",
            (last, *sorted(SOCIAL_KINDS), batch),
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def backfill_social(conn: sqlite3.Connection) -> None:
    """Fill the social indexes from the events already held (the v5 migration, inside
    its transaction): every row is held already, so the order does not matter."""
    conn.execute(
        "INSERT OR IGNORE INTO authors (author, first_seen_ms) "
        "SELECT author, min(received_ms) FROM events GROUP BY author"
    )
    for rows in _counting(conn, 2048):
        for cursor, eid, author, kind, seq, raw in rows:
            body = decode(raw)
            if isinstance(body, dict):
                add_social(
                    conn, eid=eid, author=author, kind=kind, seq=seq, cursor=cursor, body=body
                )
