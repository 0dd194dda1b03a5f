"""Reads of the social indexes (SQLite): notifications, followers, counts, reactions.

Spec 0004 #social. Each is an index range with a LIMIT, whatever a stranger wrote:
notifications are read per reason from ``(recipient, reason, ts, cursor)`` (at most
``limit`` rows of each of the six reasons, merged), followers from ``(subject, ts,
cursor)``, reactions from ``(target, kind, ts, cursor)``, counts and author figures
are primary-key lookups. The events are then read by primary key
(:mod:`node.store.sqlite_social` keeps the indexes; this module only reads them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from node.store.base import AuthorStats, EventCounts, Notification, StoredEvent
from protocol.feeds import Reacted

__all__ = [
    "author_stats",
    "event_counts",
    "followers_page",
    "notifications_page",
    "reactions_page",
    "top_reacted",
]

#: A page's upper bound on ``(ts, cursor)``: ts, ts, cursor.
_BEFORE: Final = "(ts < ? OR (ts = ? AND cursor < ?))"
_NEWEST: Final = (2**63 - 1, 2**63 - 1)
_COUNT_FIELD: Final = {"like": "likes", "repost": "reposts", "reply": "replies", "quote": "quotes"}


def _bound(before: tuple[int, int] | None) -> list[int]:
    ts, cursor = before if before is not None else _NEWEST
    return [ts, ts, cursor]


def _events_by_cursor(
    conn: sqlite3.Connection, cols: str, cursors: Sequence[int]
) -> dict[int, Any]:
    if not cursors:
        return {}
    marks = ",".join("?" * len(cursors))
    rows = conn.execute(
        f"SELECT {cols} FROM events WHERE cursor IN ({marks})",  # noqa: S608 - constant SQL + placeholders
        list(cursors),
    ).fetchall()
    return {r[0]: r for r in rows}


def notifications_page(
    conn: sqlite3.Connection,
    cols: str,
    row: Any,
    recipient: str,
    reasons: Sequence[str],
    before: tuple[int, int] | None,
    limit: int,
) -> list[Notification]:
    """Newest first by the referencing event's ``(ts, cursor)``. ``cols`` starts with
    ``cursor``; ``row`` turns one events row into a :class:`StoredEvent`."""
    found: list[tuple[int, int, str]] = []
    bound = _bound(before)
    for reason in reasons:
        found += [
            (ts, cursor, reason)
            for ts, cursor in conn.execute(
                "SELECT ts, cursor FROM notifications WHERE recipient = ? AND reason = ? "  # noqa: S608 - constant SQL
                f"AND {_BEFORE} ORDER BY ts DESC, cursor DESC LIMIT ?",
                (recipient, reason, *bound, limit),
            ).fetchall()
        ]
    found.sort(reverse=True)
    found = found[:limit]
    events = _events_by_cursor(conn, cols, [c for _, c, _ in found])
    return [
        Notification(reason=reason, event=row(events[cursor]))
        for _, cursor, reason in found
        if cursor in events
    ]


def followers_page(
    conn: sqlite3.Connection,
    cols: str,
    row: Any,
    subject: str,
    before: tuple[int, int] | None,
    limit: int,
) -> list[StoredEvent]:
    """The follow events of ``subject``'s current followers, newest first."""
    cursors = [
        c
        for (c,) in conn.execute(
            "SELECT cursor FROM followers WHERE subject = ? "  # noqa: S608 - constant SQL
            f"AND {_BEFORE} ORDER BY ts DESC, cursor DESC LIMIT ?",
            (subject, *_bound(before), limit),
        ).fetchall()
    ]
    events = _events_by_cursor(conn, cols, cursors)
    return [row(events[c]) for c in cursors if c in events]


def reactions_page(
    conn: sqlite3.Connection,
    cols: str,
    row: Any,
    target: bytes,
    kind: str,
    before: tuple[int, int] | None,
    limit: int,
) -> list[StoredEvent]:
    """The counting events of ``kind`` that reference ``target``, newest first."""
    cursors = [
        c
        for (c,) in conn.execute(
            "SELECT cursor FROM refs WHERE target = ? AND kind = ? "  # noqa: S608 - constant SQL
            f"AND {_BEFORE} ORDER BY ts DESC, cursor DESC LIMIT ?",
            (target, kind, *_bound(before), limit),
        ).fetchall()
    ]
    events = _events_by_cursor(conn, cols, cursors)
    return [row(events[c]) for c in cursors if c in events]


def event_counts(conn: sqlite3.Connection, ids: Sequence[bytes]) -> dict[bytes, EventCounts]:
    """The counts of each of ``ids`` (zeros for an id nothing references)."""
    out: dict[bytes, EventCounts] = {}
    for eid in dict.fromkeys(ids):
        fields = {
            _COUNT_FIELD[kind]: n
            for kind, n in conn.execute(
                "SELECT kind, n FROM ref_counts WHERE target = ?", (eid,)
            ).fetchall()
            if kind in _COUNT_FIELD
        }
        out[eid] = EventCounts(**fields)
    return out


def author_stats(conn: sqlite3.Connection, authors: Sequence[str]) -> dict[str, AuthorStats]:
    """Follower and following counts and first-seen facts of each of ``authors``."""
    out: dict[str, AuthorStats] = {}
    for author in dict.fromkeys(authors):
        counts = conn.execute(
            "SELECT followers, following FROM follow_counts WHERE did = ?", (author,)
        ).fetchone()
        first_ts = conn.execute(
            "SELECT ts FROM events WHERE author = ? ORDER BY ts LIMIT 1", (author,)
        ).fetchone()
        seen = conn.execute(
            "SELECT first_seen_ms FROM authors WHERE author = ?", (author,)
        ).fetchone()
        out[author] = AuthorStats(
            author=author,
            followers=0 if counts is None else int(counts[0]),
            following=0 if counts is None else int(counts[1]),
            first_ts=None if first_ts is None else int(first_ts[0]),
            first_seen_ms=None if seen is None else int(seen[0]),
        )
    return out


#: The window's likes and reposts, one range per kind of the ``refs_kind_ts`` index
#: (migration 7, covering); each author counts once per target and kind.
_TOP_REACTED: Final = (
    "SELECT target, count(DISTINCT CASE WHEN kind = 'like' THEN author END) AS likes, "
    "count(DISTINCT CASE WHEN kind = 'repost' THEN author END) AS reposts "
    "FROM refs INDEXED BY refs_kind_ts "
    "WHERE kind IN ('like', 'repost') AND ts >= ? AND ts < ? "
    "GROUP BY target ORDER BY likes + reposts DESC, target LIMIT ?"
)


def top_reacted(
    conn: sqlite3.Connection, since_ts: int, until_ts: int, limit: int
) -> list[Reacted]:
    """Spec 0004 #reacted: most distinct likers + reposters first, then by id."""
    if since_ts >= until_ts or limit < 1:
        return []
    rows = conn.execute(_TOP_REACTED, (since_ts, until_ts, limit)).fetchall()
    return [Reacted(id=bytes(t), likes=int(lk), reposts=int(rp)) for t, lk, rp in rows]
