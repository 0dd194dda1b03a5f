"""Set-based social index writes on PostgreSQL: a stretch of events at once.

The PostgreSQL write path (:mod:`node.store.pg_write`) buffers here the social index
work of a stretch of events (references, counts, notifications, first-seen authors,
follow pairs) and writes it in a few set statements once the stretch's rows are in:
round trips, not the work, are what an event costs there. The rules and tables are
those of :mod:`node.store.pg_social` (and of SQLite's :mod:`node.store.sqlite_social`,
whose pure helpers decide what a body references); the end state is the one the
event-by-event functions reach (tests/node/test_store_postgres.py checks it against
SQLite on random social traffic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from node.store.pg_social import NOTIFY, SOCIAL_KINDS
from node.store.sqlite_social import (
    _ONCE_PER_AUTHOR,
    _RANK,
    _REASON_OF,
    COUNT_KINDS,
    _mentions,
    _refs_of,
)
from protocol import kinds
from protocol.encoding import decode

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = ["SocialWrites", "add_social", "backfill_social"]

#: A (source, recipient) pair's pending notification: reason, ts, cursor.
_Notes = dict[tuple[bytes, str], tuple[str, int, int]]


class SocialWrites:
    """The social index work of a stretch of events, written in a few statements.

    :mod:`node.store.pg_write` buffers here the indexing of a stretch's events, and
    calls :meth:`flush` once the
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
        notes: _Notes = {}
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

    async def _refs(self, c: Conn, notes: _Notes) -> None:
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

    async def _waiting(self, c: Conn, notes: _Notes) -> None:
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
                await c.executemany(NOTIFY, notes)
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
    notes: _Notes,
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


async def _write_notes(c: Conn, notes: _Notes) -> None:
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
            NOTIFY,
            [(r, reason, ts, cursor, src) for (src, r), (reason, ts, cursor) in notes.items()],
        )


async def add_social(
    c: Conn, *, eid: bytes, author: str, kind: str, seq: int, ts: int, cursor: int,
    body: dict[str, Any],
) -> None:  # fmt: skip
    """Index one counting event (``kind`` in SOCIAL_KINDS) at once: a body filled in
    (spec 0004 #body-fill). Idempotent: a reference held already adds nothing."""
    writes = SocialWrites()
    writes.add(eid=eid, author=author, kind=kind, seq=seq, ts=ts, cursor=cursor, body=body)
    await writes.flush(c, now_ms=0)  # no author is buffered: now_ms is not read


async def backfill_social(c: Conn) -> None:
    """Fill the social indexes from the events already held (a migration step, in its
    transaction), a page of events per flush."""
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
        writes = SocialWrites()
        for cursor, eid, author, kind, seq, ts, raw in rows:
            body = decode(raw)
            if isinstance(body, dict):
                writes.add(
                    eid=eid, author=author, kind=kind, seq=seq, ts=ts, cursor=cursor, body=body
                )
        await writes.flush(c, now_ms=0)
