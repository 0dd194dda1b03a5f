"""Blob bytes and references on SQLite (spec 0004 #blobs, #blob-keep).

The write path calls :func:`add_blob_refs` when a post's body takes effect and
:func:`drop_blob_refs` when it loses its body (a delete, a revocation), inside the
batch's transaction: references and bytes change together. Uploads, fetched blobs
and the grace sweep run their own ``BEGIN IMMEDIATE`` transaction on the store's
writer thread, so they are ordered with the batches. The rules shared with PostgreSQL
are :mod:`node.store.blobplan`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from node.store.base import BlobTotals, HeldBlob
from node.store.blobplan import (
    AUTHOR_QUOTA,
    DELETED,
    GRACE,
    Facts,
    claim_image,
    claims_of,
    facts_of,
    matching_authors,
)
from protocol.blobs import BlobInfo
from protocol.embeds import EmbedImage
from protocol.errors import UnavailableError

if TYPE_CHECKING:
    from node.store.sqlite_effects import BatchStats

__all__ = [
    "SCHEMA",
    "add_blob_refs",
    "drop_blob_refs",
    "get_blob",
    "load_totals",
    "missing_blobs",
    "put_fetched",
    "put_upload",
    "sweep",
]

_T = TypeVar("_T")

SCHEMA: Final = [
    # The bytes: held (a stored post references them and they matched its claim) or
    # pending (an upload in its grace period). A rowid table: rows are large.
    """CREATE TABLE blobs (
        hash BLOB NOT NULL UNIQUE,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        held INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    "CREATE INDEX blobs_pending ON blobs (received_ms) WHERE held = 0",
    # One row per image a stored post names, with the post's claim.
    """CREATE TABLE blob_refs (
        hash BLOB NOT NULL,
        event BLOB NOT NULL,
        author TEXT NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        PRIMARY KEY (hash, event)
    ) WITHOUT ROWID""",
    "CREATE INDEX blob_refs_event ON blob_refs (event)",
    "CREATE INDEX blob_refs_author ON blob_refs (author, hash)",
    """CREATE TABLE blob_totals (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        held INTEGER NOT NULL,
        held_bytes INTEGER NOT NULL,
        pending_bytes INTEGER NOT NULL
    )""",
    "INSERT INTO blob_totals (one, held, held_bytes, pending_bytes) VALUES (1, 0, 0, 0)",
]

_CLAIMS = "SELECT author, mime, size, width, height FROM blob_refs WHERE hash = ?"


def load_totals(conn: sqlite3.Connection) -> BlobTotals:
    held, held_bytes, pending = conn.execute(
        "SELECT held, held_bytes, pending_bytes FROM blob_totals"
    ).fetchone()
    return BlobTotals(held=held, held_bytes=held_bytes, pending_bytes=pending)


def _bump(
    conn: sqlite3.Connection, stats: BatchStats, held: int = 0, held_bytes: int = 0,
    pending: int = 0,
) -> None:  # fmt: skip
    row = conn.execute(
        "UPDATE blob_totals SET held = held + ?, held_bytes = held_bytes + ?, "
        "pending_bytes = pending_bytes + ? RETURNING held, held_bytes, pending_bytes",
        (held, held_bytes, pending),
    ).fetchone()
    stats.blob_totals = BlobTotals(held=row[0], held_bytes=row[1], pending_bytes=row[2])


def _dropped(stats: BatchStats, reason: str, n: int = 1) -> None:
    stats.blob_drops[reason] = stats.blob_drops.get(reason, 0) + n


def _fits(conn: sqlite3.Connection, authors: list[str], size: int, quota: int) -> bool:
    """Whether one of ``authors`` may keep ``size`` more held bytes (#blob-keep)."""
    for author in authors:
        (used,) = conn.execute(
            "SELECT coalesce(sum(size), 0) FROM blobs WHERE held = 1 AND hash IN "
            "(SELECT hash FROM blob_refs WHERE author = ?)",
            (author,),
        ).fetchone()
        if used + size <= quota:
            return True
    return False


def add_blob_refs(
    conn: sqlite3.Connection, eid: bytes, author: str, body: dict[str, Any], stats: BatchStats
) -> None:
    """A post's body took effect: reference each image it names, and keep a pending
    upload that matches its claim, within the author's quota."""
    for image in claims_of(body):
        conn.execute(
            "INSERT OR IGNORE INTO blob_refs (hash, event, author, mime, size, width, height) "
            "VALUES (?,?,?,?,?,?,?)",
            (image.hash, eid, author, image.mime, image.size, image.width, image.height),
        )
        row = conn.execute(
            "SELECT held, mime, size, width, height FROM blobs WHERE hash = ?", (image.hash,)
        ).fetchone()
        if row is None or row[0]:
            continue  # not uploaded yet (the federation fetches it), or already held
        size = row[2]
        claim = (author, image.mime, image.size, image.width, image.height)
        if not matching_authors(tuple(row[1:]), [claim]):
            continue  # not kept for this claim: the sweep drops it after the grace
        if _fits(conn, [author], size, stats.blob_quota):
            conn.execute("UPDATE blobs SET held = 1 WHERE hash = ?", (image.hash,))
            _bump(conn, stats, 1, size, -size)
        else:
            conn.execute("DELETE FROM blobs WHERE hash = ?", (image.hash,))
            _bump(conn, stats, pending=-size)
            _dropped(stats, AUTHOR_QUOTA)


def drop_blob_refs(conn: sqlite3.Connection, eid: bytes, stats: BatchStats) -> None:
    """An event lost its body: its references go, and the held bytes of every blob
    left without a reference."""
    hashes = [r[0] for r in conn.execute("SELECT hash FROM blob_refs WHERE event = ?", (eid,))]
    if not hashes:
        return
    conn.execute("DELETE FROM blob_refs WHERE event = ?", (eid,))
    for digest in hashes:
        if conn.execute("SELECT 1 FROM blob_refs WHERE hash = ? LIMIT 1", (digest,)).fetchone():
            continue
        row = conn.execute(
            "DELETE FROM blobs WHERE hash = ? AND held = 1 RETURNING size", (digest,)
        ).fetchone()
        if row is not None:
            _bump(conn, stats, -1, -row[0])
            _dropped(stats, DELETED)


def _transaction(conn: sqlite3.Connection, fn: Callable[[], _T]) -> _T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


def put_upload(
    conn: sqlite3.Connection, digest: bytes, info: BlobInfo, data: bytes, *, now_ms: int,
    max_pending: int, stats: BatchStats,
) -> bool:  # fmt: skip
    """:meth:`node.store.base.Store.put_upload` in one transaction."""

    def run() -> bool:
        row = conn.execute("SELECT held FROM blobs WHERE hash = ?", (digest,)).fetchone()
        if row is not None:
            if not row[0]:  # sent again: a new grace period
                conn.execute("UPDATE blobs SET received_ms = ? WHERE hash = ?", (now_ms, digest))
            return bool(row[0])
        size = len(data)
        claims = conn.execute(_CLAIMS, (digest,)).fetchall()
        authors = matching_authors(facts_of(info, size), claims)
        if authors:
            if not _fits(conn, authors, size, stats.blob_quota):
                _dropped(stats, AUTHOR_QUOTA)
                return False
            _insert(conn, digest, info, data, held=True, now_ms=now_ms)
            _bump(conn, stats, 1, size)
            return True
        (pending,) = conn.execute("SELECT pending_bytes FROM blob_totals").fetchone()
        if pending + size > max_pending:
            raise UnavailableError(
                "this node holds too many images not yet used by a post; try again later"
            )
        _insert(conn, digest, info, data, held=False, now_ms=now_ms)
        _bump(conn, stats, pending=size)
        return False

    return _transaction(conn, run)


def _insert(
    conn: sqlite3.Connection, digest: bytes, info: BlobInfo, data: bytes, *, held: bool,
    now_ms: int,
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO blobs (hash, mime, size, width, height, held, received_ms, data) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (digest, info.mime, len(data), info.width, info.height, int(held), now_ms, data),
    )


def put_fetched(
    conn: sqlite3.Connection, digest: bytes, data: bytes, facts: Facts, *, now_ms: int,
    stats: BatchStats,
) -> bool:  # fmt: skip
    """:meth:`node.store.base.Store.put_fetched_blob` in one transaction; ``facts``
    are those of ``data``, checked to hash to ``digest`` (:func:`fetched_facts`)."""

    def run() -> bool:
        row = conn.execute("SELECT held FROM blobs WHERE hash = ?", (digest,)).fetchone()
        if row is not None and row[0]:
            return True
        authors = matching_authors(facts, conn.execute(_CLAIMS, (digest,)).fetchall())
        if not authors:
            return False
        size = len(data)
        if not _fits(conn, authors, size, stats.blob_quota):
            _dropped(stats, AUTHOR_QUOTA)
            return False
        if row is not None:  # a pending upload of the same bytes (same hash)
            conn.execute("UPDATE blobs SET held = 1 WHERE hash = ?", (digest,))
            _bump(conn, stats, 1, size, -size)
            return True
        mime, _, width, height = facts
        _insert(
            conn, digest, BlobInfo(mime=mime, width=width, height=height), data, held=True,
            now_ms=now_ms,
        )  # fmt: skip
        _bump(conn, stats, 1, size)
        return True

    return _transaction(conn, run)


def sweep(
    conn: sqlite3.Connection, *, received_before_ms: int, limit: int, stats: BatchStats
) -> int:
    """Drop at most ``limit`` pending uploads whose grace period is over."""

    def run() -> int:
        rows = conn.execute(
            "DELETE FROM blobs WHERE rowid IN (SELECT rowid FROM blobs INDEXED BY "
            "blobs_pending WHERE held = 0 AND received_ms < ? LIMIT ?) RETURNING size",
            (received_before_ms, limit),
        ).fetchall()
        if rows:
            _bump(conn, stats, pending=-sum(r[0] for r in rows))
            _dropped(stats, GRACE, len(rows))
        return len(rows)

    return _transaction(conn, run)


def get_blob(conn: sqlite3.Connection, digest: bytes) -> HeldBlob | None:
    row = conn.execute(
        "SELECT mime, data FROM blobs WHERE hash = ?1 AND held = 1 "
        "AND EXISTS (SELECT 1 FROM blob_refs WHERE hash = ?1)",
        (digest,),
    ).fetchone()
    return None if row is None else HeldBlob(mime=row[0], data=bytes(row[1]))


def missing_blobs(
    conn: sqlite3.Connection, limit: int, *, after: bytes = b""
) -> list[tuple[bytes, EmbedImage]]:
    # A bare column with GROUP BY: SQLite takes them from one row of the group.
    rows = conn.execute(
        "SELECT r.hash, r.mime, r.size, r.width, r.height FROM blob_refs r "
        "WHERE r.hash > ? "
        "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = r.hash AND b.held = 1) "
        "GROUP BY r.hash ORDER BY r.hash LIMIT ?",
        (after, limit),
    ).fetchall()
    return [(bytes(r[0]), claim_image(bytes(r[0]), r[1], r[2], r[3], r[4])) for r in rows]
