"""The PostgreSQL store (spec 0004 §store): the same contract as the SQLite one.

Selected by a ``postgresql://USER@HOST:PORT/DB`` url. Every method runs on a small
asyncpg pool; nothing blocks the event loop. Writes are one transaction per batch
(:mod:`node.store.pg_write`), ordered by the ``stream_head`` row lock so that cursors
are strictly increasing in commit order across connections and processes (spec 0004
#store-cursor). Reads are single statements, or one read-only REPEATABLE READ
transaction when several must agree (the negentropy snapshot).

The social indexes (spec 0004 #social) are :mod:`node.store.pg_social`, post search
(#search) :mod:`node.store.pg_search`, ``did:murmur`` (v2) key state (spec 0008
#nodes) :mod:`node.store.pg_keys`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

import asyncpg

from node.store import pg_blobs as blobs
from node.store import pg_keyreads as keyreads
from node.store import pg_social as social
from node.store.base import (
    AuthorStats,
    BlobTotals,
    ChainRow,
    Counts,
    EventCounts,
    FeedQuery,
    HeldBlob,
    KeyHistory,
    LabelRow,
    Notification,
    PeerRecord,
    ProfileRow,
    SearchPage,
    SearchQuery,
    Store,
    StoredEvent,
    WriteResult,
)
from node.store.blobplan import fetched_facts
from node.store.keyplan import split_ids
from node.store.pg_migrations import pg_migrate
from node.store.pg_rows import COLS as _COLS
from node.store.pg_rows import row as _row
from node.store.pg_search import search_keys
from node.store.pg_write import Conn, apply_batch_pg
from node.store.sqlite import id_prefix_range
from node.store.sqlite_effects import BatchStats
from protocol.blobs import BlobInfo
from protocol.embeds import EmbedImage
from protocol.events import Event
from protocol.feeds import Reacted
from protocol.kinds import PROFILE
from protocol.negentropy_storage import NegentropyStorage

__all__ = ["PostgresStore"]

log = logging.getLogger("murmur.node.store")

_T = TypeVar("_T")
#: Feeds and threads leave out revoked and disputed events (spec 0008 #status).
_SHOWN: Final = "status IN ('canonical', 'pending')"
_PEER_COLS: Final = "url, source, node_id, cursor, score, failures, last_ok_ms, added_ms"
#: Connections per process: the writer of a batch holds one until commit.
POOL_SIZE: Final = 8
#: Negentropy items fetched per round trip while the snapshot is built.
_SYNC_PAGE: Final = 8192


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _COLS.split(","))


class _Sql:
    """A statement and its arguments, numbered ``$1, $2, ...`` as they are added."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


class PostgresStore(Store):
    """:class:`Store` on one PostgreSQL database (``url``: ``postgresql://...``)."""

    backend = "postgresql"

    def __init__(self, url: str, *, now_ms: Callable[[], int], pool_size: int = POOL_SIZE):
        self._url = url
        self._now_ms = now_ms
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._counts = Counts(events=0, authors=0, deleted=0, forked_authors=0, cursor=0)
        self._blob_totals = BlobTotals()
        self.blob_drops = {}
        #: Awaited on the batch's connection after each commit that stored something
        #: (node.cluster: NOTIFY the node's other processes, spec 0004 #store-processes).
        self.after_commit: Callable[[Conn, BatchStats], Awaitable[None]] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        pool = await asyncpg.create_pool(self._url, min_size=1, max_size=self._pool_size)
        try:
            async with pool.acquire() as conn:
                old = await pg_migrate(conn)
                if old:
                    log.debug("store schema from=%d", old)
                self._counts = await self._load_counts(conn)
                self._blob_totals = await blobs.load_totals(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    @staticmethod
    async def _load_counts(conn: Conn) -> Counts:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events), "
            "(SELECT count(*) FROM events WHERE deleted), "
            "(SELECT count(DISTINCT author) FROM events), "
            "(SELECT count(DISTINCT author) FROM forks), "
            "(SELECT top FROM stream_head)"
        )
        assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
        return Counts(
            events=row[0], deleted=row[1], authors=row[2], forked_authors=row[3], cursor=row[4]
        )

    async def close(self) -> None:
        # Waits for the connections in use (a batch being committed) to be released.
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- writes -----------------------------------------------------------------------

    async def _apply_batch(self, events: Sequence[Event]) -> list[WriteResult]:
        if not events:
            return []
        now = self._now_ms()
        async with self.pool.acquire() as conn:
            results, stats = await apply_batch_pg(
                conn, events, now, blob_quota=self.blob_author_bytes
            )
            if self.after_commit is not None and stats.top_cursor:
                await self.after_commit(conn, stats)
        self.absorb(stats)
        return results

    def absorb(self, stats: BatchStats) -> None:
        """Add a committed batch's changes to :meth:`counts` (this process's batches,
        and other processes' ones as :mod:`node.cluster` hears of them)."""
        if stats.blob_totals is not None:
            self._blob_totals = stats.blob_totals
        for reason, n in stats.blob_drops.items():
            self.blob_drops[reason] = self.blob_drops.get(reason, 0) + n
        c = self._counts
        self._counts = Counts(
            events=c.events + stats.events,
            authors=c.authors + stats.new_authors,
            deleted=c.deleted + stats.deleted,
            forked_authors=c.forked_authors + stats.forked_authors,
            cursor=max(c.cursor, stats.top_cursor),
        )

    # -- blobs (spec 0004 #blobs, node/store/pg_blobs.py) ------------------------------

    def blob_totals(self) -> BlobTotals:
        return self._blob_totals

    async def _blob_write(self, fn: Callable[[Conn, BatchStats], Awaitable[_T]]) -> _T:
        stats = BatchStats(blob_quota=self.blob_author_bytes)
        async with self.pool.acquire() as conn:
            out = await fn(conn, stats)
        self.absorb(stats)  # committed
        return out

    async def put_upload(
        self, digest: bytes, info: BlobInfo, data: bytes, *, now_ms: int, max_pending: int
    ) -> bool:
        return await self._blob_write(
            lambda c, s: blobs.put_upload(
                c, digest, info, data, now_ms=now_ms, max_pending=max_pending, stats=s
            )
        )

    async def put_fetched_blob(self, digest: bytes, data: bytes) -> bool:
        facts = await asyncio.to_thread(fetched_facts, digest, data)
        if facts is None:
            return False  # not the bytes of that hash, or not an acceptable image
        now = self._now_ms()
        return await self._blob_write(
            lambda c, s: blobs.put_fetched(c, digest, data, facts, now_ms=now, stats=s)
        )

    async def sweep_blobs(self, *, received_before_ms: int, limit: int) -> int:
        return await self._blob_write(
            lambda c, s: blobs.sweep(c, received_before_ms=received_before_ms, limit=limit, stats=s)
        )

    async def get_blob(self, digest: bytes) -> HeldBlob | None:
        async with self.pool.acquire() as c:
            return await blobs.get_blob(c, digest)

    async def missing_blobs(
        self, limit: int, *, after: bytes = b""
    ) -> list[tuple[bytes, EmbedImage]]:
        async with self.pool.acquire() as c:
            return await blobs.missing_blobs(c, limit, after=after)

    async def blob_ref_count(self, digest: bytes) -> int:
        n = await self.pool.fetchval("SELECT count(*) FROM blob_refs WHERE hash = $1", digest)
        return int(n)

    async def blob_bytes_stored(self, digest: bytes) -> bool:
        return bool(await self.pool.fetchval("SELECT 1 FROM blobs WHERE hash = $1", digest))

    # -- reads ------------------------------------------------------------------------

    def counts(self) -> Counts:
        return self._counts

    async def check(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def _events(self, sql: str, *args: Any) -> list[StoredEvent]:
        return [_row(r) for r in await self.pool.fetch(sql, *args)]

    async def get_event(self, eid: bytes) -> StoredEvent | None:
        r = await self.pool.fetchrow(f"SELECT {_COLS} FROM events WHERE id = $1", eid)  # noqa: S608 - constant SQL + placeholders
        return None if r is None else _row(r)

    async def author_events(
        self, author: str, *, from_seq: int, to_seq: int | None, limit: int
    ) -> list[StoredEvent]:
        hi = to_seq if to_seq is not None else 2**63 - 1
        return await self._events(
            f"SELECT {_COLS} FROM events WHERE author = $1 AND seq BETWEEN $2 AND $3 "  # noqa: S608 - constant SQL + placeholders
            "ORDER BY seq, cursor LIMIT $4",
            author, from_seq, hi, limit,
        )  # fmt: skip

    async def author_chain(self, author: str, *, limit: int) -> list[ChainRow]:
        rows = await self.pool.fetch(
            "SELECT seq, prev, id FROM events WHERE author = $1 ORDER BY seq LIMIT $2",
            author, limit,
        )  # fmt: skip
        return [ChainRow(author=author, seq=s, prev=p, id=i) for s, p, i in rows]

    async def forked(self, author: str) -> bool:
        r = await self.pool.fetchval("SELECT 1 FROM forks WHERE author = $1 LIMIT 1", author)
        return r is not None

    async def feed(self, query: FeedQuery) -> list[StoredEvent]:
        q = _Sql()
        where = ["NOT deleted", _SHOWN]
        if query.authors is not None:
            where.append(f"author = ANY({q(list(query.authors))}::text[])")
        if query.kinds is not None and set(query.kinds) == {PROFILE}:
            where.append(f"kind = '{PROFILE}'")  # literal: the partial index events_profiles
        elif query.kinds is not None:
            where.append(f"kind = ANY({q(list(query.kinds))}::text[])")
        if query.before is not None:
            where.append(f"(ts, cursor) < ({q(query.before[0])}, {q(query.before[1])})")
        sql = (
            f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)} "  # noqa: S608 - constant SQL + placeholders
            f"ORDER BY ts DESC, cursor DESC LIMIT {q(query.limit)}"
        )
        return await self._events(sql, *q.args)

    async def thread(
        self, root: bytes, *, after: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        lo_ts, lo_cursor = after if after is not None else (-1, -1)
        return await self._events(
            f"SELECT {_COLS} FROM events WHERE reply_root = $1 AND {_SHOWN} "  # noqa: S608 - constant SQL + placeholders
            "AND (ts, cursor) > ($2, $3) ORDER BY ts, cursor LIMIT $4",
            root, lo_ts, lo_cursor, limit,
        )  # fmt: skip

    async def labels(
        self, *, subject: str | None, labeler: str | None, after: int, limit: int
    ) -> list[LabelRow]:
        q = _Sql()
        where = [f"l.cursor > {q(after)}"]
        if subject is not None:
            where.append(f"l.subject = {q(subject)}")
        if labeler is not None:
            where.append(f"l.labeler = {q(labeler)}")
        sql = (
            f"SELECT l.labeler, l.subject, l.val, l.neg, l.exp, {_prefixed('e')} FROM labels l "  # noqa: S608 - constant SQL + placeholders
            f"JOIN events e ON e.id = l.id WHERE {' AND '.join(where)} "
            f"ORDER BY l.cursor LIMIT {q(limit)}"
        )
        return [
            LabelRow(
                labeler=r[0], subject=r[1], val=r[2], neg=r[3], exp=r[4], event=_row(tuple(r)[5:])
            )
            for r in await self.pool.fetch(sql, *q.args)
        ]

    async def profiles(self, query: str, *, limit: int) -> list[ProfileRow]:
        needle = _like_escape(query.lower())
        rows = await self.pool.fetch(
            f"SELECT p.author, p.name, p.bio, {_prefixed('e')} FROM profiles p "  # noqa: S608 - constant SQL + placeholders
            "JOIN events e ON e.id = p.id WHERE p.name_lower LIKE $1 ESCAPE '\\' "
            "ORDER BY (p.name_lower LIKE $2 ESCAPE '\\') DESC, p.name_lower, p.author LIMIT $3",
            f"%{needle}%", f"{needle}%", limit,
        )  # fmt: skip
        return [
            ProfileRow(author=r[0], name=r[1], bio=r[2], event=_row(tuple(r)[3:])) for r in rows
        ]

    async def search(self, query: SearchQuery) -> SearchPage:
        async with (
            self.pool.acquire() as c,
            c.transaction(isolation="repeatable_read", readonly=True),
        ):  # the keys and the events they name agree
            keys = await search_keys(
                c, words=query.words, tag=query.tag, before=query.before, limit=query.limit
            )
            rows = await c.fetch(
                f"SELECT {_COLS} FROM events WHERE id = ANY($1::bytea[])",  # noqa: S608 - constant SQL + placeholders
                [eid for _, eid in keys],
            )
        by_id = {bytes(r[1]): _row(r) for r in rows}
        nxt = keys[-1][0] if len(keys) == query.limit else None
        return SearchPage(events=[by_id[e] for _, e in keys if e in by_id], next=nxt)

    async def events_after(
        self,
        cursor: int,
        *,
        limit: int,
        kinds: tuple[str, ...] | None = None,
        authors: tuple[str, ...] | None = None,
    ) -> list[StoredEvent]:
        q = _Sql()
        where = [f"cursor > {q(cursor)}"]
        if kinds is not None:
            where.append(f"kind = ANY({q(list(kinds))}::text[])")
        if authors is not None:
            where.append(f"author = ANY({q(list(authors))}::text[])")
        sql = (
            f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)} "  # noqa: S608 - constant SQL + placeholders
            f"ORDER BY cursor LIMIT {q(limit)}"
        )
        return await self._events(sql, *q.args)

    async def key_history(
        self, author: str, *, after: tuple[int, bytes] | None = None, limit: int
    ) -> KeyHistory | None:
        async with self.pool.acquire() as c:
            # The page, its statuses and the contenders agree.
            async with c.transaction(isolation="repeatable_read", readonly=True):
                return await keyreads.key_page(c, author, after, limit)

    async def key_histories(
        self, authors: Sequence[str], *, max_events: int
    ) -> tuple[dict[str, KeyHistory], list[str]]:
        async with self.pool.acquire() as c:
            async with c.transaction(isolation="repeatable_read", readonly=True):
                return await keyreads.key_histories(c, authors, max_events)

    async def key_tips(self, authors: Sequence[str]) -> dict[str, list[bytes]]:
        # One read of the fork-choice rows (as the SQLite store's): the path's last id,
        # then the contenders, whatever the length of the histories.
        rows = await self.pool.fetch(
            "SELECT author, substring(path FROM greatest(octet_length(path) - 31, 1)) "
            "|| contenders FROM key_paths WHERE author = ANY($1::text[])",
            list(dict.fromkeys(authors)),
        )
        return {r[0]: list(split_ids(bytes(r[1]))) for r in rows}

    async def get_events(self, ids: Sequence[bytes]) -> list[StoredEvent]:
        if not ids:
            return []
        return await self._events(
            f"SELECT {_COLS} FROM events WHERE id = ANY($1::bytea[])",  # noqa: S608 - constant SQL + placeholders
            list(dict.fromkeys(ids)),
        )

    async def events_by_id_prefix(self, prefix: str, *, limit: int) -> list[StoredEvent]:
        low, high = id_prefix_range(prefix)
        if high is None:
            return await self._events(
                f"SELECT {_COLS} FROM events WHERE id >= $1 ORDER BY id LIMIT $2",  # noqa: S608 - constant SQL + placeholders
                low, limit,
            )  # fmt: skip
        return await self._events(
            f"SELECT {_COLS} FROM events WHERE id >= $1 AND id < $2 ORDER BY id LIMIT $3",  # noqa: S608 - constant SQL + placeholders
            low, high, limit,
        )  # fmt: skip

    async def held_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        if not ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT id FROM events WHERE id = ANY($1::bytea[])", list(dict.fromkeys(ids))
        )
        return {bytes(r[0]) for r in rows}

    async def _settled_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        if not ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT id FROM events WHERE id = ANY($1::bytea[]) AND (body IS NOT NULL OR deleted)",
            list(dict.fromkeys(ids)),
        )
        return {bytes(r[0]) for r in rows}

    async def missing_bodies(self, *, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows = await self.pool.fetch(
            "SELECT cursor, id FROM events WHERE body IS NULL AND NOT deleted "
            "AND cursor > $1 ORDER BY cursor LIMIT $2",
            after, limit,
        )  # fmt: skip
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def sync_storage(self) -> NegentropyStorage:
        """One snapshot, read page by page while :meth:`NegentropyStorage.from_sorted`
        consumes it on a thread: about 44 bytes an event, plus one page."""
        loop = asyncio.get_running_loop()
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cur = await conn.cursor("SELECT ts, id FROM events ORDER BY ts, id")

            def rows() -> Iterator[tuple[int, bytes]]:
                while True:
                    page = asyncio.run_coroutine_threadsafe(cur.fetch(_SYNC_PAGE), loop).result()
                    if not page:
                        return
                    for r in page:
                        yield int(r[0]), bytes(r[1])

            return await asyncio.to_thread(NegentropyStorage.from_sorted, rows())

    async def node_id(self) -> str:
        await self.pool.execute(
            "INSERT INTO meta (key, value) VALUES ('node_id', $1) ON CONFLICT DO NOTHING",
            secrets.token_hex(16),
        )
        return str(await self.pool.fetchval("SELECT value FROM meta WHERE key = 'node_id'"))

    async def load_peers(self) -> list[PeerRecord]:
        rows = await self.pool.fetch(f"SELECT {_PEER_COLS} FROM peers ORDER BY added_ms, url")  # noqa: S608 - constant SQL
        return [
            PeerRecord(
                url=r[0],
                source=r[1],
                node_id=r[2],
                cursor=r[3],
                score=r[4],
                failures=r[5],
                last_ok_ms=r[6],
                added_ms=r[7],
            )
            for r in rows
        ]

    async def save_peer(self, peer: PeerRecord) -> None:
        await self.pool.execute(
            f"INSERT INTO peers ({_PEER_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) "  # noqa: S608 - constant SQL + placeholders
            "ON CONFLICT (url) DO UPDATE SET source = excluded.source, "
            "node_id = excluded.node_id, cursor = excluded.cursor, score = excluded.score, "
            "failures = excluded.failures, last_ok_ms = excluded.last_ok_ms, "
            "added_ms = excluded.added_ms",
            peer.url, peer.source, peer.node_id, peer.cursor, peer.score,
            peer.failures, peer.last_ok_ms, peer.added_ms,
        )  # fmt: skip

    async def delete_peer(self, url: str) -> None:
        await self.pool.execute("DELETE FROM peers WHERE url = $1", url)

    # -- social indexes (node/store/pg_social.py) -----------------------------------------

    async def notifications(
        self,
        recipient: str,
        *,
        reasons: Sequence[str],
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Notification]:
        async with self.pool.acquire() as c:
            return await social.notifications_page(
                c, _COLS, _row, recipient, reasons, before, limit
            )

    async def followers(
        self, subject: str, *, before: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        async with self.pool.acquire() as c:
            return await social.followers_page(c, _COLS, _row, subject, before, limit)

    async def reactions(
        self, target: bytes, kind: str, *, before: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        async with self.pool.acquire() as c:
            return await social.reactions_page(c, _COLS, _row, target, kind, before, limit)

    async def event_counts(self, ids: Sequence[bytes]) -> dict[bytes, EventCounts]:
        async with self.pool.acquire() as c:
            return await social.event_counts(c, ids)

    async def author_stats(self, authors: Sequence[str]) -> dict[str, AuthorStats]:
        async with self.pool.acquire() as c:
            return await social.author_stats(c, authors)

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int) -> list[Reacted]:
        async with self.pool.acquire() as c:
            return await social.top_reacted(c, since_ts, until_ts, limit)
