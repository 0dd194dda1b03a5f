"""The social indexes on PostgreSQL: references, notifications, followers, counts.

Spec 0004 #social, the same tables and rules as :mod:`node.store.sqlite_social` (whose
docstring says what each table holds): the write side runs inside the batch's write
transaction (:mod:`node.store.pg_write`), the read side is one index range with a LIMIT
per call. What a body references and which reason wins are computed by the SQLite
module's pure helpers, so both backends index exactly the same things.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from node.store.base import AuthorStats, EventCounts, Notification, StoredEvent
from node.store.sqlite_social import (
    _ONCE_PER_AUTHOR,
    _RANK,
    _REASON_OF,
    COUNT_KINDS,
    SOCIAL_KINDS,
    _mentions,
    _refs_of,
    _stronger,
)
from protocol import kinds
from protocol.encoding import decode

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = [
    "SCHEMA",
    "SOCIAL_KINDS",
    "SocialWrites",
    "add_social",
    "author_stats",
    "backfill_social",
    "event_counts",
    "followers_page",
    "notifications_page",
    "on_insert",
    "reactions_page",
    "remove_social",
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

_NOTIFY: Final = (
    "INSERT INTO notifications (recipient, reason, ts, cursor, src) "
    "VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING"
)
_NEWEST: Final = (2**63 - 1, 2**63 - 1)
_COUNT_FIELD: Final = {"like": "likes", "repost": "reposts", "reply": "replies", "quote": "quotes"}


# -- write side ---------------------------------------------------------------------------


async def _notify(c: Conn, recipient: str, reason: str, ts: int, cursor: int, src: bytes) -> None:
    """One notification of ``recipient`` by ``src``, keeping the strongest reason."""
    held = await c.fetchval(
        "SELECT reason FROM notifications WHERE src = $1 AND recipient = $2", src, recipient
    )
    if held is not None:
        if _RANK[held] <= _RANK[reason]:
            return
        await c.execute(
            "DELETE FROM notifications WHERE src = $1 AND recipient = $2", src, recipient
        )
    await c.execute(_NOTIFY, recipient, reason, ts, cursor, src)


async def _bump(c: Conn, target: bytes, kind: str, delta: int) -> None:
    if delta > 0:
        await c.execute(
            "INSERT INTO ref_counts (target, kind, n) VALUES ($1,$2,1) "
            "ON CONFLICT (target, kind) DO UPDATE SET n = ref_counts.n + 1",
            target, kind,
        )  # fmt: skip
        return
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
            await c.execute(_NOTIFY, subject, "follow", ts, cursor, new)
    if (old is None) != (new is None):
        delta = 1 if new is not None else -1
        await c.executemany(
            "INSERT INTO follow_counts (did, followers, following) VALUES ($1,$2,$3) "
            "ON CONFLICT (did) DO UPDATE SET "
            "followers = follow_counts.followers + excluded.followers, "
            "following = follow_counts.following + excluded.following",
            [(subject, delta, 0), (follower, 0, delta)],
        )


async def add_social(
    c: Conn,
    *,
    eid: bytes,
    author: str,
    kind: str,
    seq: int,
    ts: int,
    cursor: int,
    body: dict[str, Any],
) -> None:
    """Index one counting event (``kind`` in :data:`SOCIAL_KINDS`). Idempotent."""
    if kind in (kinds.FOLLOW, kinds.UNFOLLOW):
        subject = body.get("subject")
        if not isinstance(subject, str):
            return
        await c.execute(
            "INSERT INTO follow_edges (follower, subject, seq, id, follow) "
            "VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING",
            author, subject, seq, eid, kind == kinds.FOLLOW,
        )  # fmt: skip
        await _settle_pair(c, author, subject)
        return
    refs = _refs_of(kind, body)
    mentions = _mentions(body) if kind == kinds.POST else []
    if not refs and not mentions:
        return
    notify: dict[str, str] = {}  # recipient -> strongest reason
    for ref, target in refs:
        added = await c.fetchval(
            "INSERT INTO refs (target, kind, ts, cursor, src, author) "
            "VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING RETURNING 1",
            target, ref, ts, cursor, eid, author,
        )  # fmt: skip
        if added is None:
            continue  # applied before: its notifications are in
        if ref in COUNT_KINDS and (
            ref not in _ONCE_PER_AUTHOR or await _author_refs(c, target, ref, author) == 1
        ):
            await _bump(c, target, ref, 1)
        held = await c.fetchval("SELECT author FROM events WHERE id = $1", target)
        if held is not None and held != author:
            _stronger(notify, held, _REASON_OF[ref])
    for did in mentions:
        if did != author:
            _stronger(notify, did, "mention")
    if notify:
        await c.executemany(
            _NOTIFY, [(recipient, reason, ts, cursor, eid) for recipient, reason in notify.items()]
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
            await _bump(c, target, ref, -1)
    await c.execute("DELETE FROM notifications WHERE src = $1", eid)
    pairs = await c.fetch("SELECT follower, subject FROM follow_edges WHERE id = $1", eid)
    for follower, subject in pairs:
        await c.execute(
            "DELETE FROM follow_edges WHERE follower = $1 AND subject = $2 AND id = $3",
            follower, subject, eid,
        )  # fmt: skip
        await _settle_pair(c, follower, subject)


async def on_insert(
    c: Conn, *, eid: bytes, author: str, new_author: bool, referenced: bool, now_ms: int
) -> None:
    """A new event row: its author's first-seen time, and the notifications of
    references that named it before it was held."""
    if new_author:
        await c.execute(
            "INSERT INTO authors (author, first_seen_ms) VALUES ($1,$2) ON CONFLICT DO NOTHING",
            author, now_ms,
        )  # fmt: skip
    if not referenced:
        return
    waiting = await c.fetch(
        "SELECT kind, ts, cursor, src FROM refs WHERE target = $1 AND author != $2", eid, author
    )
    for ref, ts, cursor, src in waiting:
        await _notify(c, author, _REASON_OF[ref], ts, cursor, src)


async def backfill_social(c: Conn) -> None:
    """Fill the social indexes from the events already held (a migration step, in its
    transaction)."""
    await c.execute(
        "INSERT INTO authors (author, first_seen_ms) "
        "SELECT author, min(received_ms) FROM events GROUP BY author ON CONFLICT DO NOTHING"
    )
    last = 0
    while True:
        rows = await c.fetch(
            "SELECT cursor, id, author, kind, seq, ts, body FROM events WHERE cursor > $1 "
            "AND kind = ANY($2::text[]) AND status = 'canonical' AND NOT deleted "
            "AND body IS NOT NULL ORDER BY cursor LIMIT 2048",
            last, sorted(SOCIAL_KINDS),
        )  # fmt: skip
        if not rows:
            return
        last = rows[-1]["cursor"]
        for cursor, eid, author, kind, seq, ts, raw in rows:
            body = decode(raw)
            if isinstance(body, dict):
                await add_social(
                    c, eid=eid, author=author, kind=kind, seq=seq, ts=ts, cursor=cursor,
                    body=body,
                )  # fmt: skip


class SocialWrites:
    """The social index work of a stretch of events, written in a few statements.

    :mod:`node.store.pg_write` buffers here what :func:`add_social` and
    :func:`on_insert` would do one event at a time, and calls :meth:`flush` once the
    stretch's rows are written (and before anything reads these tables: a delete's
    effects, the probe of the next stretch, a v2 author's settling). The end state is
    the one-at-a-time one: a reference counts once per author for likes and reposts,
    a (source, recipient) pair keeps its strongest reason, and each follower pair ends
    at its latest counting event (spec 0003 §3.6), with the counts moved once.
    """

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        #: (target, kind, ts, cursor, src, author) of every reference.
        self.refs: list[tuple[bytes, str, int, int, bytes, str]] = []
        #: (src, recipient, reason, ts, cursor) decided from the body alone (mentions).
        self.notes: list[tuple[bytes, str, str, int, int]] = []
        #: (follower, subject, seq, id, follow, ts, cursor).
        self.follows: list[tuple[str, str, int, bytes, bool, int, int]] = []
        #: Authors whose first event this stretch stores.
        self.authors: set[str] = set()
        #: Events stored that earlier references named: id -> author.
        self.referenced: dict[bytes, str] = {}

    def __bool__(self) -> bool:
        return bool(self.refs or self.notes or self.follows or self.authors or self.referenced)

    def add(
        self, *, eid: bytes, author: str, kind: str, seq: int, ts: int, cursor: int,
        body: dict[str, Any],
    ) -> list[bytes]:  # fmt: skip
        """Buffer one counting event's indexing; return the ids it references."""
        if kind in (kinds.FOLLOW, kinds.UNFOLLOW):
            subject = body.get("subject")
            if isinstance(subject, str):
                self.follows.append((author, subject, seq, eid, kind == kinds.FOLLOW, ts, cursor))
            return []
        refs = _refs_of(kind, body)
        self.refs += [(target, ref, ts, cursor, eid, author) for ref, target in refs]
        if kind == kinds.POST:
            self.notes += [
                (eid, did, "mention", ts, cursor) for did in _mentions(body) if did != author
            ]
        return [target for _, target in refs]

    async def flush(self, c: Conn, now_ms: int) -> None:
        """Write everything buffered (the stretch's event rows must be written)."""
        if not self:
            return
        if self.authors:
            await c.execute(
                "INSERT INTO authors (author, first_seen_ms) "
                "SELECT a, $2 FROM unnest($1::text[]) AS a ON CONFLICT DO NOTHING",
                sorted(self.authors), now_ms,
            )  # fmt: skip
        notes: dict[tuple[bytes, str], tuple[str, int, int]] = {}
        if self.refs:
            await self._refs(c, notes)
        for src, recipient, reason, ts, cursor in self.notes:
            _candidate(notes, src, recipient, reason, ts, cursor)
        if self.referenced:
            await self._waiting(c, notes)
        if notes:
            await _write_notes(c, notes)
        if self.follows:
            await self._follows(c)
        self._clear()

    async def _refs(self, c: Conn, notes: dict[tuple[bytes, str], tuple[str, int, int]]) -> None:
        once = [(t, k, a) for t, k, _, _, _, a in self.refs if k in _ONCE_PER_AUTHOR]
        prior: set[tuple[bytes, str, str]] = set()
        if once:
            rows = await c.fetch(
                "SELECT DISTINCT r.target, r.kind, r.author FROM refs r JOIN "
                "unnest($1::bytea[], $2::text[], $3::text[]) AS u(target, kind, author) "
                'ON r.target = u.target AND r.kind = u.kind COLLATE "C" '
                'AND r.author = u.author COLLATE "C"',
                *map(list, zip(*once, strict=True)),
            )  # fmt: skip
            prior = {(bytes(t), k, a) for t, k, a in rows}
        added = await c.fetch(
            "INSERT INTO refs (target, kind, ts, cursor, src, author) SELECT * FROM "
            "unnest($1::bytea[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[], "
            "$6::text[]) ON CONFLICT DO NOTHING RETURNING target, kind, ts, cursor, src, author",
            *map(list, zip(*self.refs, strict=True)),
        )  # fmt: skip
        if not added:
            return  # applied before: counts and notifications are in
        deltas: dict[tuple[bytes, str], int] = {}
        for target, ref, _, _, _, author in added:
            key = (bytes(target), ref, author)
            if ref in COUNT_KINDS and (ref not in _ONCE_PER_AUTHOR or key not in prior):
                prior.add(key)
                deltas[key[:2]] = deltas.get(key[:2], 0) + 1
        if deltas:
            await c.execute(
                "INSERT INTO ref_counts (target, kind, n) SELECT * FROM "
                "unnest($1::bytea[], $2::text[], $3::bigint[]) ON CONFLICT (target, kind) "
                "DO UPDATE SET n = ref_counts.n + excluded.n",
                [t for t, _ in deltas], [k for _, k in deltas], list(deltas.values()),
            )  # fmt: skip
        held = {
            bytes(eid): author
            for eid, author in await c.fetch(
                "SELECT id, author FROM events WHERE id = ANY($1::bytea[])",
                list({bytes(r[0]) for r in added}),
            )
        }
        for target, ref, ts, cursor, src, author in added:
            recipient = held.get(bytes(target))
            if recipient is not None and recipient != author:
                _candidate(notes, bytes(src), recipient, _REASON_OF[ref], ts, cursor)

    async def _waiting(self, c: Conn, notes: dict[tuple[bytes, str], tuple[str, int, int]]) -> None:
        """The references that named an event before it was held notify its author."""
        rows = await c.fetch(
            "SELECT target, kind, ts, cursor, src, author FROM refs "
            "WHERE target = ANY($1::bytea[])",
            list(self.referenced),
        )
        for target, ref, ts, cursor, src, author in rows:
            recipient = self.referenced[bytes(target)]
            if author != recipient:
                _candidate(notes, bytes(src), recipient, _REASON_OF[ref], ts, cursor)

    async def _follows(self, c: Conn) -> None:
        """Insert the follow edges, then settle each pair once (:func:`_settle_pair`
        for all of them): followers, follow notifications and counts."""
        edges = self.follows
        await c.execute(
            "INSERT INTO follow_edges (follower, subject, seq, id, follow) SELECT * FROM "
            "unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::bool[]) "
            "ON CONFLICT DO NOTHING",
            *map(list, zip(*(e[:5] for e in edges), strict=True)),
        )  # fmt: skip
        pairs = list(dict.fromkeys((e[0], e[1]) for e in edges))
        followers, subjects = [p[0] for p in pairs], [p[1] for p in pairs]
        latest = {
            (f, s): (bytes(i) if follow else None)
            for f, s, i, follow in await c.fetch(
                "SELECT DISTINCT ON (e.follower, e.subject) e.follower, e.subject, e.id, "
                "e.follow FROM follow_edges e JOIN unnest($1::text[], $2::text[]) AS "
                'u(follower, subject) ON e.follower = u.follower COLLATE "C" '
                'AND e.subject = u.subject COLLATE "C" '
                "ORDER BY e.follower, e.subject, e.seq DESC, e.id DESC",
                followers, subjects,
            )
        }  # fmt: skip
        old = {
            (f, s): bytes(i)
            for s, f, i in await c.fetch(
                "SELECT f.subject, f.follower, f.id FROM followers f JOIN "
                "unnest($1::text[], $2::text[]) AS u(follower, subject) "
                'ON f.subject = u.subject COLLATE "C" AND f.follower = u.follower COLLATE "C"',
                followers, subjects,
            )
        }  # fmt: skip
        changed = [p for p in pairs if latest.get(p) != old.get(p)]
        if not changed:
            return
        gone = [(p, old[p]) for p in changed if p in old]
        if gone:
            await c.execute(
                "DELETE FROM followers f USING unnest($1::text[], $2::text[]) AS "
                'u(follower, subject) WHERE f.subject = u.subject COLLATE "C" '
                'AND f.follower = u.follower COLLATE "C"',
                [p[0] for p, _ in gone], [p[1] for p, _ in gone],
            )  # fmt: skip
            await _drop_notes(c, [(i, p[1]) for p, i in gone])
        new = [(p, i) for p in changed if (i := latest.get(p)) is not None]
        if new:
            at = {e[3]: (e[5], e[6]) for e in edges}
            unknown = [i for _, i in new if i not in at]
            if unknown:
                for i, ts, cursor in await c.fetch(
                    "SELECT id, ts, cursor FROM events WHERE id = ANY($1::bytea[])", unknown
                ):
                    at[bytes(i)] = (ts, cursor)
            rows = [(s, f, i, *at[i]) for (f, s), i in new]
            await c.executemany(
                "INSERT INTO followers (subject, follower, id, ts, cursor) VALUES ($1,$2,$3,$4,$5)",
                rows,
            )
            notes = [(s, "follow", ts, cursor, i) for s, f, i, ts, cursor in rows if f != s]
            if notes:
                await c.executemany(_NOTIFY, notes)
        counts: dict[str, list[int]] = {}
        for f, s in changed:
            delta = 1 if latest.get((f, s)) is not None else -1
            if (old.get((f, s)) is None) != (latest.get((f, s)) is None):
                counts.setdefault(s, [0, 0])[0] += delta
                counts.setdefault(f, [0, 0])[1] += delta
        if counts:
            await c.execute(
                "INSERT INTO follow_counts (did, followers, following) SELECT * FROM "
                "unnest($1::text[], $2::bigint[], $3::bigint[]) ON CONFLICT (did) DO UPDATE SET "
                "followers = follow_counts.followers + excluded.followers, "
                "following = follow_counts.following + excluded.following",
                list(counts), [v[0] for v in counts.values()], [v[1] for v in counts.values()],
            )  # fmt: skip


def _candidate(
    notes: dict[tuple[bytes, str], tuple[str, int, int]],
    src: bytes, recipient: str, reason: str, ts: int, cursor: int,
) -> None:  # fmt: skip
    held = notes.get((src, recipient))
    if held is None or _RANK[reason] < _RANK[held[0]]:
        notes[(src, recipient)] = (reason, ts, cursor)


async def _drop_notes(c: Conn, pairs: Sequence[tuple[bytes, str]]) -> None:
    await c.execute(
        "DELETE FROM notifications n USING unnest($1::bytea[], $2::text[]) AS "
        'u(src, recipient) WHERE n.src = u.src AND n.recipient = u.recipient COLLATE "C"',
        [p[0] for p in pairs], [p[1] for p in pairs],
    )  # fmt: skip


async def _write_notes(c: Conn, notes: dict[tuple[bytes, str], tuple[str, int, int]]) -> None:
    """Each (src, recipient) keeps its strongest reason, against what is stored too."""
    held = await c.fetch(
        "SELECT n.src, n.recipient, n.reason FROM notifications n JOIN "
        "unnest($1::bytea[], $2::text[]) AS u(src, recipient) "
        'ON n.src = u.src AND n.recipient = u.recipient COLLATE "C"',
        [k[0] for k in notes], [k[1] for k in notes],
    )  # fmt: skip
    weaker = []
    for src, recipient, reason in held:
        key = (bytes(src), recipient)
        cand = notes.get(key)
        if cand is None:
            continue
        if _RANK[reason] <= _RANK[cand[0]]:
            del notes[key]  # as strong or stronger already
        else:
            weaker.append(key)
    if weaker:
        await _drop_notes(c, weaker)
    if notes:
        await c.executemany(
            _NOTIFY,
            [(r, reason, ts, cursor, src) for (src, r), (reason, ts, cursor) in notes.items()],
        )


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


async def followers_page(
    c: Conn, cols: str, row: Any, subject: str, before: tuple[int, int] | None, limit: int
) -> list[StoredEvent]:
    ts, cur = before if before is not None else _NEWEST
    cursors = [
        r[0]
        for r in await c.fetch(
            "SELECT cursor FROM followers WHERE subject = $1 AND (ts, cursor) < ($2, $3) "
            "ORDER BY ts DESC, cursor DESC LIMIT $4",
            subject,
            ts,
            cur,
            limit,
        )
    ]
    events = await _by_cursor(c, cols, cursors)
    return [row(events[x]) for x in cursors if x in events]


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
    cursors = [
        r[0]
        for r in await c.fetch(
            "SELECT cursor FROM refs WHERE target = $1 AND kind = $2 "
            "AND (ts, cursor) < ($3, $4) ORDER BY ts DESC, cursor DESC LIMIT $5",
            target,
            kind,
            ts,
            cur,
            limit,
        )
    ]
    events = await _by_cursor(c, cols, cursors)
    return [row(events[x]) for x in cursors if x in events]


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
