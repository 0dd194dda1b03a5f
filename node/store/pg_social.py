"""The social indexes on PostgreSQL: references, notifications, followers, counts.

Spec 0004 #social, the same tables and rules as :mod:`node.store.sqlite_social` (whose
docstring says what each table holds): the write side runs inside the batch's write
transaction (:mod:`node.store.pg_write`): new events are indexed in sets by
:mod:`node.store.pg_social_bulk`, and withdrawn here, one event at a time (a deletion,
a status change); the read side is one index
range with a LIMIT per call. What a body references and which reason wins are computed by the SQLite
module's pure helpers, so both backends index exactly the same things.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from node.store.base import AuthorStats, EventCounts, Notification, StoredEvent
from node.store.sqlite_social import (
    _ONCE_PER_AUTHOR,
    COUNT_KINDS,
    SOCIAL_KINDS,
)
from protocol.feeds import Reacted

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = [
    "NOTIFY",
    "SCHEMA",
    "SOCIAL_KINDS",
    "author_stats",
    "event_counts",
    "followers_page",
    "notifications_page",
    "reactions_page",
    "remove_social",
    "top_reacted",
]

SCHEMA: Final = [
    """CREATE TABLE refs (
        target BYTEA NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        ts BIGINT NOT NULL,
        cursor BIGINT NOT NULL,
        src BYTEA NOT NULL,
        author TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (target, kind, ts, cursor)
    )""",
    "CREATE INDEX refs_src ON refs (src)",
    "CREATE INDEX refs_author ON refs (target, kind, author)",
    """CREATE TABLE ref_counts (
        target BYTEA NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (target, kind)
    )""",
    """CREATE TABLE notifications (
        recipient TEXT COLLATE "C" NOT NULL,
        reason TEXT COLLATE "C" NOT NULL,
        ts BIGINT NOT NULL,
        cursor BIGINT NOT NULL,
        src BYTEA NOT NULL,
        PRIMARY KEY (recipient, reason, ts, cursor)
    )""",
    "CREATE INDEX notifications_src ON notifications (src, recipient)",
    """CREATE TABLE follow_edges (
        follower TEXT COLLATE "C" NOT NULL,
        subject TEXT COLLATE "C" NOT NULL,
        seq BIGINT NOT NULL,
        id BYTEA NOT NULL,
        follow BOOLEAN NOT NULL,
        PRIMARY KEY (follower, subject, seq, id)
    )""",
    "CREATE INDEX follow_edges_id ON follow_edges (id)",
    """CREATE TABLE followers (
        subject TEXT COLLATE "C" NOT NULL,
        follower TEXT COLLATE "C" NOT NULL,
        id BYTEA NOT NULL,
        ts BIGINT NOT NULL,
        cursor BIGINT NOT NULL,
        PRIMARY KEY (subject, follower)
    )""",
    "CREATE INDEX followers_page ON followers (subject, ts, cursor)",
    """CREATE TABLE follow_counts (
        did TEXT COLLATE "C" PRIMARY KEY,
        followers BIGINT NOT NULL,
        following BIGINT NOT NULL
    )""",
    """CREATE TABLE authors (
        author TEXT COLLATE "C" PRIMARY KEY,
        first_seen_ms BIGINT NOT NULL
    )""",
]

#: One notification; a (source, recipient) pair's strongest reason is kept by the callers.
NOTIFY: Final = (
    "INSERT INTO notifications (recipient, reason, ts, cursor, src) "
    "VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING"
)
_NEWEST: Final = (2**63 - 1, 2**63 - 1)
_COUNT_FIELD: Final = {"like": "likes", "repost": "reposts", "reply": "replies", "quote": "quotes"}


# -- write side ---------------------------------------------------------------------------


async def _unbump(c: Conn, target: bytes, kind: str) -> None:
    """One reference of ``kind`` to ``target`` fewer (the row goes at zero)."""
    await c.execute("UPDATE ref_counts SET n = n - 1 WHERE target = $1 AND kind = $2", target, kind)
    await c.execute(
        "DELETE FROM ref_counts WHERE target = $1 AND kind = $2 AND n <= 0", target, kind
    )


async def _author_refs(c: Conn, target: bytes, kind: str, author: str) -> int:
    n = await c.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM refs WHERE target = $1 AND kind = $2 "
        "AND author = $3 LIMIT 2) AS r",
        target, kind, author,
    )  # fmt: skip
    return int(n)


async def _settle_pair(c: Conn, follower: str, subject: str) -> None:
    """Make ``followers`` (and the follow notification) agree with the pair's latest
    counting event (spec 0003 §3.6: highest seq, then greatest id)."""
    latest = await c.fetchrow(
        "SELECT id, follow FROM follow_edges WHERE follower = $1 AND subject = $2 "
        "ORDER BY seq DESC, id DESC LIMIT 1",
        follower, subject,
    )  # fmt: skip
    new: bytes | None = latest["id"] if latest is not None and latest["follow"] else None
    old: bytes | None = await c.fetchval(
        "SELECT id FROM followers WHERE subject = $1 AND follower = $2", subject, follower
    )
    if old == new:
        return
    if old is not None:
        await c.execute(
            "DELETE FROM followers WHERE subject = $1 AND follower = $2", subject, follower
        )
        await c.execute("DELETE FROM notifications WHERE src = $1 AND recipient = $2", old, subject)
    if new is not None:
        row = await c.fetchrow("SELECT ts, cursor FROM events WHERE id = $1", new)
        assert row is not None  # noqa: S101 - a follow edge is only added for a held event
        ts, cursor = row
        await c.execute(
            "INSERT INTO followers (subject, follower, id, ts, cursor) VALUES ($1,$2,$3,$4,$5)",
            subject, follower, new, ts, cursor,
        )  # fmt: skip
        if follower != subject:
            await c.execute(NOTIFY, subject, "follow", ts, cursor, new)
    if (old is None) != (new is None):
        delta = 1 if new is not None else -1
        await c.executemany(
            "INSERT INTO follow_counts (did, followers, following) VALUES ($1,$2,$3) "
            "ON CONFLICT (did) DO UPDATE SET "
            "followers = follow_counts.followers + excluded.followers, "
            "following = follow_counts.following + excluded.following",
            [(subject, delta, 0), (follower, 0, delta)],
        )


async def remove_social(c: Conn, eid: bytes) -> None:
    """Withdraw everything ``eid`` added (it was deleted, or stopped being canonical)."""
    refs = await c.fetch("SELECT target, kind, author FROM refs WHERE src = $1", eid)
    for target, ref, author in refs:
        await c.execute(
            "DELETE FROM refs WHERE target = $1 AND kind = $2 AND src = $3", target, ref, eid
        )
        if ref in COUNT_KINDS and (
            ref not in _ONCE_PER_AUTHOR or await _author_refs(c, target, ref, author) == 0
        ):
            await _unbump(c, target, ref)
    await c.execute("DELETE FROM notifications WHERE src = $1", eid)
    pairs = await c.fetch("SELECT follower, subject FROM follow_edges WHERE id = $1", eid)
    for follower, subject in pairs:
        await c.execute(
            "DELETE FROM follow_edges WHERE follower = $1 AND subject = $2 AND id = $3",
            follower, subject, eid,
        )  # fmt: skip
        await _settle_pair(c, follower, subject)


# -- read side ----------------------------------------------------------------------------


async def _by_cursor(c: Conn, cols: str, cursors: Sequence[int]) -> dict[int, Any]:
    if not cursors:
        return {}
    rows = await c.fetch(
        f"SELECT {cols} FROM events WHERE cursor = ANY($1::bigint[])",  # noqa: S608 - constant SQL + placeholders
        list(cursors),
    )
    return {r[0]: r for r in rows}


async def notifications_page(
    c: Conn,
    cols: str,
    row: Any,
    recipient: str,
    reasons: Sequence[str],
    before: tuple[int, int] | None,
    limit: int,
) -> list[Notification]:
    """Newest first by the referencing event's ``(ts, cursor)``: at most ``limit`` of
    each reason from its index range, merged."""
    ts, cur = before if before is not None else _NEWEST
    found: list[tuple[int, int, str]] = []
    for reason in reasons:
        found += [
            (r[0], r[1], reason)
            for r in await c.fetch(
                "SELECT ts, cursor FROM notifications WHERE recipient = $1 AND reason = $2 "
                "AND (ts, cursor) < ($3, $4) ORDER BY ts DESC, cursor DESC LIMIT $5",
                recipient,
                reason,
                ts,
                cur,
                limit,
            )
        ]
    found.sort(reverse=True)
    found = found[:limit]
    events = await _by_cursor(c, cols, [x for _, x, _ in found])
    return [
        Notification(reason=reason, event=row(events[x])) for _, x, reason in found if x in events
    ]


async def _page(c: Conn, cols: str, row: Any, sql: str, *args: Any) -> list[StoredEvent]:
    """The events whose cursors ``sql`` lists (one index range, newest first)."""
    cursors = [r[0] for r in await c.fetch(sql, *args)]
    events = await _by_cursor(c, cols, cursors)
    return [row(events[x]) for x in cursors if x in events]


async def followers_page(
    c: Conn, cols: str, row: Any, subject: str, before: tuple[int, int] | None, limit: int
) -> list[StoredEvent]:
    ts, cur = before if before is not None else _NEWEST
    return await _page(
        c, cols, row,
        "SELECT cursor FROM followers WHERE subject = $1 AND (ts, cursor) < ($2, $3) "
        "ORDER BY ts DESC, cursor DESC LIMIT $4",
        subject, ts, cur, limit,
    )  # fmt: skip


async def reactions_page(
    c: Conn,
    cols: str,
    row: Any,
    target: bytes,
    kind: str,
    before: tuple[int, int] | None,
    limit: int,
) -> list[StoredEvent]:
    ts, cur = before if before is not None else _NEWEST
    return await _page(
        c, cols, row,
        "SELECT cursor FROM refs WHERE target = $1 AND kind = $2 "
        "AND (ts, cursor) < ($3, $4) ORDER BY ts DESC, cursor DESC LIMIT $5",
        target, kind, ts, cur, limit,
    )  # fmt: skip


async def event_counts(c: Conn, ids: Sequence[bytes]) -> dict[bytes, EventCounts]:
    unique = list(dict.fromkeys(ids))
    fields: dict[bytes, dict[str, int]] = {eid: {} for eid in unique}
    rows = await c.fetch(
        "SELECT target, kind, n FROM ref_counts WHERE target = ANY($1::bytea[])", unique
    )
    for target, kind, n in rows:
        if kind in _COUNT_FIELD:
            fields[bytes(target)][_COUNT_FIELD[kind]] = int(n)
    return {eid: EventCounts(**f) for eid, f in fields.items()}


async def author_stats(c: Conn, authors: Sequence[str]) -> dict[str, AuthorStats]:
    out: dict[str, AuthorStats] = {}
    for author in dict.fromkeys(authors):
        r = await c.fetchrow(
            "SELECT (SELECT followers FROM follow_counts WHERE did = $1), "
            "(SELECT following FROM follow_counts WHERE did = $1), "
            "(SELECT ts FROM events WHERE author = $1 ORDER BY ts LIMIT 1), "
            "(SELECT first_seen_ms FROM authors WHERE author = $1)",
            author,
        )
        assert r is not None  # noqa: S101 - a SELECT without FROM returns one row
        out[author] = AuthorStats(
            author=author,
            followers=int(r[0] or 0),
            following=int(r[1] or 0),
            first_ts=None if r[2] is None else int(r[2]),
            first_seen_ms=None if r[3] is None else int(r[3]),
        )
    return out


async def top_reacted(c: Conn, since_ts: int, until_ts: int, limit: int) -> list[Reacted]:
    """Spec 0004 #reacted: most distinct likers + reposters first, then by id; the
    window is one range per kind of ``refs_kind_ts`` (PostgreSQL migration 6)."""
    if since_ts >= until_ts or limit < 1:
        return []
    rows = await c.fetch(
        "SELECT target, likes, reposts FROM (SELECT target, "
        "count(DISTINCT author) FILTER (WHERE kind = 'like') AS likes, "
        "count(DISTINCT author) FILTER (WHERE kind = 'repost') AS reposts "
        "FROM refs WHERE kind IN ('like', 'repost') AND ts >= $1 AND ts < $2 "
        "GROUP BY target) AS w ORDER BY likes + reposts DESC, target LIMIT $3",
        since_ts, until_ts, limit,
    )  # fmt: skip
    return [Reacted(id=bytes(t), likes=int(lk), reposts=int(rp)) for t, lk, rp in rows]
