"""The default store: SQLite in WAL mode (spec 0004 §store).

One writer thread owns the only write connection, so batches are applied one at a
time in commit order — which is what makes the stream cursor safe to resume from: a
reader can never see cursor ``n + 1`` committed before ``n``. Reads run on a small
pool of threads, each with its own read-only connection (WAL lets them proceed while
the writer commits). Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from node.store import sqlite_blobs as blobs
from node.store import sqlite_social_read as social
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
from node.store.migrations import migrate
from node.store.sqlite_effects import BatchStats
from node.store.sqlite_keys import KeyMemo, key_contenders
from node.store.sqlite_search import search_keys, tag_keys
from node.store.sqlite_write import apply_batch_sync
from protocol.blobs import BlobInfo
from protocol.embeds import EmbedImage
from protocol.events import Event
from protocol.feeds import Reacted
from protocol.kinds import PROFILE
from protocol.negentropy_storage import NegentropyStorage

__all__ = ["DB_FILENAME", "SqliteStore", "id_prefix_range"]

log = logging.getLogger("murmur.node.store")

DB_FILENAME = "murmur.sqlite3"
_T = TypeVar("_T")
_COLS = "cursor, id, author, seq, prev, ts, kind, header, sig, body, deleted, status, revoked_by"
#: Feeds and threads leave out the events a key event revoked or that are disputed
#: (spec 0008 #status); pending ones (a gap hides their fate) stay, marked.
_SHOWN = "status IN ('canonical', 'pending')"
_READ_THREADS = 4
#: Page cache of the writer connection, in KiB (readers keep SQLite's default).
_WRITER_CACHE_KIB = 32 * 1024
#: WAL pages after which a commit checkpoints (SQLite's default: 1,000). Every batch
#: writes to random pages of the id-keyed indexes (events.id, refs, ref_counts,
#: notifications by source): from ~100k events on, one batch of 500 dirties more than
#: 1,000 pages, so with the default every commit copied its whole WAL back into the
#: database; a longer WAL (~40 MiB) lets pages written by several batches in a row
#: (the events table's tail, each author's index pages, the search index) be copied
#: once. Durability is unchanged: a commit is durable once its WAL frames are synced.
_WAL_AUTOCHECKPOINT_PAGES = 10_000
_PEER_COLS = "url, source, node_id, cursor, score, failures, last_ok_ms, added_ms"
#: Ids per ``IN (...)`` query: well under SQLite's host-parameter limit.
_IDS_PER_QUERY = 500


def _key_page(
    c: sqlite3.Connection, author: str, after: tuple[int, bytes] | None, limit: int
) -> KeyHistory | None:
    """At most ``limit`` key events of ``author`` after ``(seq, id)`` ``after``, by
    ``(seq, id)`` (index order of ``key_events_author``), with the path and contenders
    among them: the canonical key events are exactly the path (spec 0008 §8.7), so no
    page reads the whole path."""
    contenders = key_contenders(c, author)
    if contenders is None:
        return None
    seq, eid = after if after is not None else (0, b"")
    rows = c.execute(
        f"SELECT {_COLS} FROM events WHERE id IN "  # noqa: S608 - constant SQL + placeholders
        "(SELECT id FROM key_events WHERE author = ? AND (seq, id) > (?, ?) "
        "ORDER BY seq, id LIMIT ?) ORDER BY seq, id",
        (author, seq, eid, limit + 1),
    ).fetchall()
    point = None
    if contenders:
        kev = c.execute("SELECT kev FROM key_events WHERE id = ?", (contenders[0],)).fetchone()
        point = None if kev is None else kev[0]
    events = [_row(r) for r in rows[:limit]]
    return KeyHistory.page(author, events, contenders, point, more=len(rows) > limit)


def _row(r: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        cursor=r[0],
        id=r[1],
        author=r[2],
        seq=r[3],
        prev=r[4],
        ts=r[5],
        kind=r[6],
        header=r[7],
        sig=r[8],
        body=r[9],
        deleted=bool(r[10]),
        status=r[11],
        revoked_by=r[12],
    )


#: A feed page's upper bound, ``(ts, cursor) < (?, ?)``: ts, ts, cursor.
_BEFORE = "(ts < ? OR (ts = ? AND cursor < ?))"

#: A feed of several authors first looks for its page among the newest events, in
#: windows of this many rows of the time index, before the per-author index is asked
#: for the rest (see ``_many_authors_feed``).
_FEED_WINDOWS = (4_096, 65_536)


def _many_authors_feed(
    c: sqlite3.Connection, cond: str, args: list[Any], before: list[Any], limit: int
) -> list[StoredEvent]:
    """A page of a many-author feed with bounded work, whatever the authors' activity.

    SQLite's own plan reads every event of every listed author through the
    ``(author, ts)`` index and sorts them all: at 500 followed authors of a million
    events that is tens of thousands of rows for a page of 50. Followed authors who
    post are found quickly by walking the time index from the newest event instead,
    so that is tried first, in windows bounded by the ``ts`` of the Nth newest row
    (an index-only step). Only if the windows hold too few matches are the older
    events (``ts`` below the last window) taken through the author index; that is
    cheap precisely then, since the authors posted little.
    """
    since = f"WHERE {_BEFORE}" if before else ""
    floor: int | None = None
    rows: list[Any] = []
    for window in _FEED_WINDOWS:
        edge = c.execute(
            f"SELECT ts FROM events INDEXED BY events_ts {since} "  # noqa: S608 - constant SQL
            "ORDER BY ts DESC, cursor DESC LIMIT 1 OFFSET ?",
            [*before, window],
        ).fetchone()
        floor = None if edge is None else int(edge[0])
        bound = "" if floor is None else "AND ts >= ?"
        rows = c.execute(
            f"SELECT {_COLS} FROM events INDEXED BY events_ts WHERE {cond} {bound} "  # noqa: S608 - constant SQL + placeholders
            "ORDER BY ts DESC, cursor DESC LIMIT ?",
            [*args, *([] if floor is None else [floor]), limit],
        ).fetchall()
        if floor is None or len(rows) >= limit:
            return [_row(r) for r in rows]
    rows += c.execute(
        f"SELECT {_COLS} FROM events WHERE {cond} AND ts < ? "  # noqa: S608 - constant SQL + placeholders
        "ORDER BY ts DESC, cursor DESC LIMIT ?",
        [*args, floor, limit - len(rows)],
    ).fetchall()
    return [_row(r) for r in rows]


def id_prefix_range(prefix: str) -> tuple[bytes, bytes | None]:
    """The 32-byte ids whose hex starts with ``prefix``: ``low <= id < high`` (``high``
    None when the prefix is all ``f``). An odd-length prefix pads with ``0`` below and
    with the next hex digit above, so ``abc`` spans ``abc000…`` up to ``abd000…``."""
    width = 64
    low = bytes.fromhex(prefix.ljust(width, "0"))
    value = int(prefix, 16) + 1
    if value >= 16 ** len(prefix):
        return low, None
    high = f"{value:0{len(prefix)}x}".ljust(width, "0")
    return low, bytes.fromhex(high)


def _rows_by_id(
    c: sqlite3.Connection, cols: str, ids: Sequence[bytes], *, missing_body: bool = False
) -> list[Any]:
    """``cols`` of the stored events among ``ids`` (only those without a body that no
    deletion explains, with ``missing_body``), in chunks that fit SQLite's parameter
    limit."""
    unique = list(dict.fromkeys(ids))
    out: list[Any] = []
    source = (
        "events INDEXED BY events_missing_body WHERE body IS NULL AND deleted = 0 AND"
        if missing_body
        else "events WHERE"
    )
    for i in range(0, len(unique), _IDS_PER_QUERY):
        chunk = unique[i : i + _IDS_PER_QUERY]
        sql = f"SELECT {cols} FROM {source} id IN ({_in(chunk)})"  # noqa: S608 - constant SQL + placeholders
        out.extend(c.execute(sql, chunk).fetchall())
    return out


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqliteStore(Store):
    """:class:`Store` on one SQLite file under ``data_dir``."""

    backend = "sqlite"

    def __init__(
        self, data_dir: Path, *, synchronous: str = "full", now_ms: Callable[[], int]
    ) -> None:
        self._path = Path(data_dir) / DB_FILENAME
        self._synchronous = synchronous.upper()
        self._now_ms = now_ms
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="murmur-write")
        self._readers = ThreadPoolExecutor(
            max_workers=_READ_THREADS, thread_name_prefix="murmur-read"
        )
        self._wconn: sqlite3.Connection | None = None
        #: Recent authors' key state, kept by the writer between batches.
        self._key_memo = KeyMemo()
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._rlock = threading.Lock()
        self._counts = Counts(events=0, authors=0, deleted=0, forked_authors=0, cursor=0)
        self._blob_totals = BlobTotals()
        self.blob_drops = {}

    @property
    def path(self) -> Path:
        return self._path

    # -- plumbing ---------------------------------------------------------------------

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(
                f"file:{self._path}?mode=ro", uri=True, isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # Event ids are random, so every insert touches a random page of the id
            # index: the writer keeps more of it cached than SQLite's 2 MiB default.
            conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
        return conn

    def _rconn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._rlock:
                self._rconns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._rconn()))

    async def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._wconn
        if conn is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(conn))

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._wconn = await loop.run_in_executor(self._writer, self._open_sync)

    def _open_sync(self) -> sqlite3.Connection:
        conn = self._connect(readonly=False)
        old = migrate(conn)
        if old:
            log.debug("store schema from=%d", old)
        events, deleted, cursor = conn.execute(
            "SELECT count(*), coalesce(sum(deleted), 0), coalesce(max(cursor), 0) FROM events"
        ).fetchone()
        (authors,) = conn.execute("SELECT count(DISTINCT author) FROM events").fetchone()
        (forked,) = conn.execute("SELECT count(DISTINCT author) FROM forks").fetchone()
        self._counts = Counts(
            events=events, authors=authors, deleted=deleted, forked_authors=forked, cursor=cursor
        )
        self._blob_totals = blobs.load_totals(conn)
        return conn

    async def close(self) -> None:
        # The writer finishes the batch it is applying (commit or rollback) first.
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        # Readers close first: the last connection to close checkpoints the WAL and
        # removes it, and only the read-write connection may do that.
        with self._rlock:
            for conn in self._rconns:
                conn.close()
            self._rconns.clear()
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    # -- writes -----------------------------------------------------------------------

    async def _apply_batch(self, events: Sequence[Event]) -> list[WriteResult]:
        if not events:
            return []
        now = self._now_ms()
        memo = self._key_memo
        quota = self.blob_author_bytes
        results, stats = await self._write(
            lambda c: apply_batch_sync(c, events, now, memo, blob_quota=quota)
        )
        self._absorb_blobs(stats)
        c = self._counts
        cursors = [r.cursor for r in results if r.cursor is not None]
        self._counts = Counts(
            events=c.events + stats.events,
            authors=c.authors + stats.new_authors,
            deleted=c.deleted + stats.deleted,
            forked_authors=c.forked_authors + stats.forked_authors,
            cursor=max([c.cursor, stats.top_cursor, *cursors]),
        )
        return results

    # -- blobs (spec 0004 #blobs, node/store/sqlite_blobs.py) --------------------------

    def _absorb_blobs(self, stats: BatchStats) -> None:
        if stats.blob_totals is not None:
            self._blob_totals = stats.blob_totals
        for reason, n in stats.blob_drops.items():
            self.blob_drops[reason] = self.blob_drops.get(reason, 0) + n

    async def _blob_write(self, fn: Callable[[sqlite3.Connection, BatchStats], _T]) -> _T:
        stats = BatchStats(blob_quota=self.blob_author_bytes)
        out = await self._write(lambda c: fn(c, stats))
        self._absorb_blobs(stats)  # committed
        return out

    def blob_totals(self) -> BlobTotals:
        return self._blob_totals

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
        return await self._read(lambda c: blobs.get_blob(c, digest))

    async def missing_blobs(
        self, limit: int, *, after: bytes = b""
    ) -> list[tuple[bytes, EmbedImage]]:
        return await self._read(lambda c: blobs.missing_blobs(c, limit, after=after))

    async def blob_ref_count(self, digest: bytes) -> int:
        return await self._read(
            lambda c: int(
                c.execute("SELECT count(*) FROM blob_refs WHERE hash = ?", (digest,)).fetchone()[0]
            )
        )

    async def blob_bytes_stored(self, digest: bytes) -> bool:
        return await self._read(
            lambda c: c.execute("SELECT 1 FROM blobs WHERE hash = ?", (digest,)).fetchone()
            is not None
        )

    # -- reads ------------------------------------------------------------------------

    def counts(self) -> Counts:
        return self._counts

    async def check(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def get_event(self, eid: bytes) -> StoredEvent | None:
        def q(c: sqlite3.Connection) -> StoredEvent | None:
            r = c.execute(f"SELECT {_COLS} FROM events WHERE id = ?", (eid,)).fetchone()  # noqa: S608 - constant SQL + placeholders
            return None if r is None else _row(r)

        return await self._read(q)

    async def author_events(
        self, author: str, *, from_seq: int, to_seq: int | None, limit: int
    ) -> list[StoredEvent]:
        hi = to_seq if to_seq is not None else 2**63 - 1

        def q(c: sqlite3.Connection) -> list[StoredEvent]:
            rows = c.execute(
                f"SELECT {_COLS} FROM events WHERE author = ? AND seq BETWEEN ? AND ? "  # noqa: S608 - constant SQL + placeholders
                "ORDER BY seq, cursor LIMIT ?",
                (author, from_seq, hi, limit),
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._read(q)

    async def author_chain(self, author: str, *, limit: int) -> list[ChainRow]:
        def q(c: sqlite3.Connection) -> list[ChainRow]:
            rows = c.execute(
                "SELECT seq, prev, id FROM events WHERE author = ? ORDER BY seq LIMIT ?",
                (author, limit),
            ).fetchall()
            return [ChainRow(author=author, seq=s, prev=p, id=i) for s, p, i in rows]

        return await self._read(q)

    async def forked(self, author: str) -> bool:
        def q(c: sqlite3.Connection) -> bool:
            r = c.execute("SELECT 1 FROM forks WHERE author = ? LIMIT 1", (author,)).fetchone()
            return r is not None

        return await self._read(q)

    async def feed(self, query: FeedQuery) -> list[StoredEvent]:
        where = ["deleted = 0", _SHOWN]
        args: list[Any] = []
        if query.authors is not None:
            where.append(f"author IN ({_in(query.authors)})")
            args.extend(query.authors)
        profiles_only = query.kinds is not None and set(query.kinds) == {PROFILE}
        if profiles_only:
            # Literal, so the planner may use the partial index events_profiles.
            where.append(f"kind = '{PROFILE}'")
        elif query.kinds is not None:
            where.append(f"kind IN ({_in(query.kinds)})")
            args.extend(query.kinds)
        before: list[Any] = []
        if query.before is not None:
            where.append(_BEFORE)
            before = [query.before[0], query.before[0], query.before[1]]
        cond = " AND ".join(where)
        args += before
        order = "ORDER BY ts DESC, cursor DESC LIMIT ?"
        if query.authors is None or len(query.authors) < 2 or profiles_only:
            # INDEXED BY: the plan SQLite must take (an error, never a walk, without it).
            table = "events INDEXED BY events_profiles" if profiles_only else "events"
            sql = f"SELECT {_COLS} FROM {table} WHERE {cond} {order}"  # noqa: S608 - constant SQL + placeholders
            return await self._read(
                lambda c: [_row(r) for r in c.execute(sql, [*args, query.limit]).fetchall()]
            )
        return await self._read(lambda c: _many_authors_feed(c, cond, args, before, query.limit))

    async def thread(
        self, root: bytes, *, after: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        lo_ts, lo_cursor = after if after is not None else (-1, -1)

        def q(c: sqlite3.Connection) -> list[StoredEvent]:
            rows = c.execute(
                f"SELECT {_COLS} FROM events WHERE reply_root = ? AND {_SHOWN} "  # noqa: S608 - constant SQL + placeholders
                "AND (ts > ? OR (ts = ? AND cursor > ?)) ORDER BY ts, cursor LIMIT ?",
                (root, lo_ts, lo_ts, lo_cursor, limit),
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._read(q)

    async def labels(
        self, *, subject: str | None, labeler: str | None, after: int, limit: int
    ) -> list[LabelRow]:
        where = ["l.cursor > ?"]
        args: list[Any] = [after]
        if subject is not None:
            where.append("l.subject = ?")
            args.append(subject)
        if labeler is not None:
            where.append("l.labeler = ?")
            args.append(labeler)
        cols = ", ".join(f"e.{c.strip()}" for c in _COLS.split(","))
        sql = (
            f"SELECT l.labeler, l.subject, l.val, l.neg, l.exp, {cols} FROM labels l "  # noqa: S608 - constant SQL + placeholders
            f"JOIN events e ON e.id = l.id WHERE {' AND '.join(where)} "
            "ORDER BY l.cursor LIMIT ?"
        )
        args.append(limit)

        def q(c: sqlite3.Connection) -> list[LabelRow]:
            return [
                LabelRow(
                    labeler=r[0], subject=r[1], val=r[2], neg=bool(r[3]), exp=r[4],
                    event=_row(r[5:]),
                )
                for r in c.execute(sql, args).fetchall()
            ]

        return await self._read(q)

    async def profiles(self, query: str, *, limit: int) -> list[ProfileRow]:
        cols = ", ".join(f"e.{c.strip()}" for c in _COLS.split(","))
        needle = query.lower()
        sql = (
            f"SELECT p.author, p.name, p.bio, {cols} FROM profiles p "  # noqa: S608 - constant SQL + placeholders
            "JOIN events e ON e.id = p.id WHERE p.name_lower LIKE ? ESCAPE '\\' "
            "ORDER BY (p.name_lower LIKE ? ESCAPE '\\') DESC, p.name_lower, p.author LIMIT ?"
        )
        args = (f"%{_like_escape(needle)}%", f"{_like_escape(needle)}%", limit)

        def q(c: sqlite3.Connection) -> list[ProfileRow]:
            return [
                ProfileRow(author=r[0], name=r[1], bio=r[2], event=_row(r[3:]))
                for r in c.execute(sql, args).fetchall()
            ]

        return await self._read(q)

    async def search(self, query: SearchQuery) -> SearchPage:
        def q(c: sqlite3.Connection) -> SearchPage:
            c.execute("BEGIN")  # the keys and the events they name agree
            try:
                if query.tag is not None:
                    keys = tag_keys(c, query.tag, query.before, query.limit)
                else:
                    keys = search_keys(c, query.words, query.before, query.limit)
                rows = c.execute(
                    f"SELECT search_key, {_COLS} FROM events "  # noqa: S608 - constant SQL + placeholders
                    f"WHERE search_key IN ({_in(keys)})",
                    keys,
                ).fetchall()
            finally:
                c.execute("COMMIT")
            rows.sort(key=lambda r: -int(r[0]))
            nxt = keys[-1] if len(keys) == query.limit else None
            return SearchPage(events=[_row(r[1:]) for r in rows], next=nxt)

        return await self._read(q)

    async def events_after(
        self,
        cursor: int,
        *,
        limit: int,
        kinds: tuple[str, ...] | None = None,
        authors: tuple[str, ...] | None = None,
    ) -> list[StoredEvent]:
        where = ["cursor > ?"]
        args: list[Any] = [cursor]
        if kinds is not None:
            where.append(f"kind IN ({_in(kinds)})")
            args.extend(kinds)
        if authors is not None:
            where.append(f"author IN ({_in(authors)})")
            args.extend(authors)
        sql = f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)} ORDER BY cursor LIMIT ?"  # noqa: S608 - constant SQL + placeholders
        args.append(limit)
        return await self._read(lambda c: [_row(r) for r in c.execute(sql, args).fetchall()])


    async def key_history(
        self, author: str, *, after: tuple[int, bytes] | None = None, limit: int
    ) -> KeyHistory | None:
        def q(c: sqlite3.Connection) -> KeyHistory | None:
            c.execute("BEGIN")  # the page, its statuses and the contenders agree
            try:
                return _key_page(c, author, after, limit)
            finally:
                c.execute("COMMIT")

        return await self._read(q)

    async def key_histories(
        self, authors: Sequence[str], *, max_events: int
    ) -> tuple[dict[str, KeyHistory], list[str]]:
        def q(c: sqlite3.Connection) -> tuple[dict[str, KeyHistory], list[str]]:
            out: dict[str, KeyHistory] = {}
            deferred: list[str] = []
            budget = max_events
            c.execute("BEGIN")
            try:
                for author in authors:
                    # An index-only count of at most budget + 1 entries: an author with
                    # a huge history is deferred without being read.
                    (n,) = c.execute(
                        "SELECT count(*) FROM "
                        "(SELECT 1 FROM key_events WHERE author = ? LIMIT ?)",
                        (author, budget + 1),
                    ).fetchone()
                    if n == 0:
                        continue
                    if n > budget:
                        deferred.append(author)
                        continue
                    history = _key_page(c, author, None, n)
                    if history is None:
                        continue
                    budget -= len(history.events)
                    out[author] = history
            finally:
                c.execute("COMMIT")
            return out, deferred

        return await self._read(q)

    async def key_tips(self, authors: Sequence[str]) -> dict[str, list[bytes]]:
        def q(c: sqlite3.Connection) -> dict[str, list[bytes]]:
            out: dict[str, list[bytes]] = {}
            wanted = list(dict.fromkeys(authors))
            for at in range(0, len(wanted), _IDS_PER_QUERY):
                part = wanted[at : at + _IDS_PER_QUERY]
                marks = ",".join("?" * len(part))
                for author, path, contenders in c.execute(
                    "SELECT author, substr(path, -32), contenders FROM key_paths "  # noqa: S608 - constant SQL + placeholders
                    f"WHERE author IN ({marks})",
                    part,
                ):
                    blob = bytes(path or b"") + bytes(contenders)
                    out[author] = [blob[i : i + 32] for i in range(0, len(blob), 32)]
            return out

        return await self._read(q)

    async def get_events(self, ids: Sequence[bytes]) -> list[StoredEvent]:
        rows = await self._read(lambda c: _rows_by_id(c, _COLS, ids))
        return [_row(r) for r in rows]

    async def events_by_id_prefix(self, prefix: str, *, limit: int) -> list[StoredEvent]:
        low, high = id_prefix_range(prefix)
        upper = "" if high is None else "AND id < ?"
        args: list[Any] = [low, *([] if high is None else [high]), limit]
        rows = await self._read(
            lambda c: c.execute(
                # A range of the UNIQUE index on id (ids are BLOBs, compared bytewise).
                f"SELECT {_COLS} FROM events WHERE id >= ? {upper} "  # noqa: S608 - constant SQL + placeholders
                "ORDER BY id LIMIT ?",
                args,
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def held_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        if not ids:
            return set()
        return await self._read(lambda c: {bytes(r[0]) for r in _rows_by_id(c, "id", ids)})

    async def _settled_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        if not ids:
            return set()

        def q(c: sqlite3.Connection) -> set[bytes]:
            # Two index-only lookups: the id index, and the (normally empty) index of
            # events missing their body.
            held = {r[0] for r in _rows_by_id(c, "id", ids)}
            if not held:
                return held
            return held - {r[0] for r in _rows_by_id(c, "id", list(held), missing_body=True)}

        return await self._read(q)

    async def missing_bodies(self, *, after: int, limit: int) -> list[tuple[int, bytes]]:
        def q(c: sqlite3.Connection) -> list[tuple[int, bytes]]:
            rows = c.execute(
                # The index is by id and its rowid is the cursor: normally empty, at
                # worst one index scan per repair step.
                "SELECT cursor, id FROM events INDEXED BY events_missing_body "
                "WHERE body IS NULL AND deleted = 0 AND cursor > ? ORDER BY cursor LIMIT ?",
                (after, limit),
            ).fetchall()
            return [(int(r[0]), bytes(r[1])) for r in rows]

        return await self._read(q)

    async def sync_storage(self) -> NegentropyStorage:
        def q(c: sqlite3.Connection) -> NegentropyStorage:
            cursor = c.execute("SELECT ts, id FROM events ORDER BY ts, id")

            def rows() -> Iterator[tuple[int, bytes]]:
                while batch := cursor.fetchmany(4096):
                    yield from batch

            return NegentropyStorage.from_sorted(rows())

        return await self._read(q)

    async def node_id(self) -> str:
        def q(c: sqlite3.Connection) -> str:
            row = c.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
            if row is not None:
                return str(row[0])
            c.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('node_id', ?)",
                (secrets.token_hex(16),),
            )
            return str(c.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0])

        return await self._write(q)

    async def load_peers(self) -> list[PeerRecord]:
        def q(c: sqlite3.Connection) -> list[PeerRecord]:
            rows = c.execute(f"SELECT {_PEER_COLS} FROM peers ORDER BY added_ms, url").fetchall()  # noqa: S608 - constant SQL
            return [
                PeerRecord(
                    url=r[0], source=r[1], node_id=r[2], cursor=r[3], score=r[4],
                    failures=r[5], last_ok_ms=r[6], added_ms=r[7],
                )
                for r in rows
            ]

        return await self._read(q)

    async def save_peer(self, peer: PeerRecord) -> None:
        args = (
            peer.url, peer.source, peer.node_id, peer.cursor, peer.score,
            peer.failures, peer.last_ok_ms, peer.added_ms,
        )
        await self._write(
            lambda c: c.execute(
                f"INSERT OR REPLACE INTO peers ({_PEER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant SQL + placeholders
                args,
            )
        )

    async def delete_peer(self, url: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM peers WHERE url = ?", (url,)))

    # -- social indexes (node/store/sqlite_social_read.py) ----------------------------

    async def notifications(
        self,
        recipient: str,
        *,
        reasons: Sequence[str],
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Notification]:
        return await self._read(
            lambda c: social.notifications_page(
                c, _COLS, _row, recipient, reasons, before, limit
            )
        )

    async def followers(
        self, subject: str, *, before: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        return await self._read(
            lambda c: social.followers_page(c, _COLS, _row, subject, before, limit)
        )

    async def reactions(
        self, target: bytes, kind: str, *, before: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        return await self._read(
            lambda c: social.reactions_page(c, _COLS, _row, target, kind, before, limit)
        )

    async def event_counts(self, ids: Sequence[bytes]) -> dict[bytes, EventCounts]:
        return await self._read(lambda c: social.event_counts(c, ids))

    async def author_stats(self, authors: Sequence[str]) -> dict[str, AuthorStats]:
        return await self._read(lambda c: social.author_stats(c, authors))

    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int) -> list[Reacted]:
        return await self._read(lambda c: social.top_reacted(c, since_ts, until_ts, limit))
