"""Blob bytes and references on PostgreSQL (spec 0004 #blobs, #blob-keep).

The twin of :mod:`node.store.sqlite_blobs` (whose docstring says what each step is),
with the bytes in ``bytea``. The write path adds and drops references inside the
batch's transaction. Uploads, fetched blobs and the grace sweep run their own
transaction, and take the writers' lock (the ``stream_head`` row, spec 0004
#store-cursor) first: a batch referencing a blob and an upload of it, committed by two
processes at once, would otherwise each miss the other, leaving matching bytes pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from node.store.base import BlobTotals, HeldBlob
from node.store.blobplan import (
    AUTHOR_QUOTA,
    DELETED,
    GRACE,
    Claim,
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
    from node.store.pg_write import Conn
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

SCHEMA: Final = [
    """CREATE TABLE blobs (
        hash BYTEA PRIMARY KEY,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        held BOOLEAN NOT NULL,
        received_ms BIGINT NOT NULL,
        data BYTEA NOT NULL
    )""",
    # Image bytes are compressed already: stored out of line as they are.
    "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE INDEX blobs_pending ON blobs (received_ms) WHERE NOT held",
    """CREATE TABLE blob_refs (
        hash BYTEA NOT NULL,
        event BYTEA NOT NULL,
        author TEXT COLLATE "C" NOT NULL,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        PRIMARY KEY (hash, event)
    )""",
    "CREATE INDEX blob_refs_event ON blob_refs (event)",
    "CREATE INDEX blob_refs_author ON blob_refs (author, hash)",
    """CREATE TABLE blob_totals (
        one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
        held BIGINT NOT NULL,
        held_bytes BIGINT NOT NULL,
        pending_bytes BIGINT NOT NULL
    )""",
    "INSERT INTO blob_totals (one, held, held_bytes, pending_bytes) VALUES (true, 0, 0, 0)",
]

_CLAIMS: Final = "SELECT author, mime, size, width, height FROM blob_refs WHERE hash = $1"


async def load_totals(c: Conn) -> BlobTotals:
    row = await c.fetchrow("SELECT held, held_bytes, pending_bytes FROM blob_totals")
    assert row is not None  # noqa: S101 - the migration inserts the one row
    return BlobTotals(held=row[0], held_bytes=row[1], pending_bytes=row[2])


async def _bump(
    c: Conn, stats: BatchStats, held: int = 0, held_bytes: int = 0, pending: int = 0
) -> None:
    row = await c.fetchrow(
        "UPDATE blob_totals SET held = held + $1, held_bytes = held_bytes + $2, "
        "pending_bytes = pending_bytes + $3 RETURNING held, held_bytes, pending_bytes",
        held, held_bytes, pending,
    )  # fmt: skip
    assert row is not None  # noqa: S101 - the migration inserts the one row
    stats.blob_totals = BlobTotals(held=row[0], held_bytes=row[1], pending_bytes=row[2])


def _dropped(stats: BatchStats, reason: str, n: int = 1) -> None:
    stats.blob_drops[reason] = stats.blob_drops.get(reason, 0) + n


async def _fits(c: Conn, authors: list[str], size: int, quota: int) -> bool:
    for author in authors:
        used = await c.fetchval(
            "SELECT coalesce(sum(size), 0) FROM blobs WHERE held AND hash IN "
            "(SELECT hash FROM blob_refs WHERE author = $1)",
            author,
        )
        if int(used) + size <= quota:
            return True
    return False


def _claims(rows: list[Any]) -> list[Claim]:
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def add_blob_refs(
    c: Conn, eid: bytes, author: str, body: dict[str, Any], stats: BatchStats
) -> None:
    """A post's body took effect: reference each image it names, and keep a pending
    upload that matches its claim, within the author's quota."""
    for image in claims_of(body):
        await c.execute(
            "INSERT INTO blob_refs (hash, event, author, mime, size, width, height) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
            image.hash, eid, author, image.mime, image.size, image.width, image.height,
        )  # fmt: skip
        row = await c.fetchrow(
            "SELECT held, mime, size, width, height FROM blobs WHERE hash = $1", image.hash
        )
        if row is None or row["held"]:
            continue
        size = row["size"]
        claim = (author, image.mime, image.size, image.width, image.height)
        if not matching_authors((row[1], row[2], row[3], row[4]), [claim]):
            continue
        if await _fits(c, [author], size, stats.blob_quota):
            await c.execute("UPDATE blobs SET held = true WHERE hash = $1", image.hash)
            await _bump(c, stats, 1, size, -size)
        else:
            await c.execute("DELETE FROM blobs WHERE hash = $1", image.hash)
            await _bump(c, stats, pending=-size)
            _dropped(stats, AUTHOR_QUOTA)


async def drop_blob_refs(c: Conn, eid: bytes, stats: BatchStats) -> None:
    """An event lost its body: its references go, and the held bytes of every blob
    left without a reference."""
    hashes = [
        r[0] for r in await c.fetch("DELETE FROM blob_refs WHERE event = $1 RETURNING hash", eid)
    ]
    for digest in hashes:
        if await c.fetchval("SELECT 1 FROM blob_refs WHERE hash = $1 LIMIT 1", digest):
            continue
        size = await c.fetchval("DELETE FROM blobs WHERE hash = $1 AND held RETURNING size", digest)
        if size is not None:
            await _bump(c, stats, -1, -int(size))
            _dropped(stats, DELETED)


async def _lock_writers(c: Conn) -> None:
    await c.execute("SELECT top FROM stream_head FOR UPDATE")


async def _insert(
    c: Conn, digest: bytes, info: BlobInfo, data: bytes, *, held: bool, now_ms: int
) -> None:
    await c.execute(
        "INSERT INTO blobs (hash, mime, size, width, height, held, received_ms, data) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        digest, info.mime, len(data), info.width, info.height, held, now_ms, data,
    )  # fmt: skip


async def put_upload(
    c: Conn, digest: bytes, info: BlobInfo, data: bytes, *, now_ms: int, max_pending: int,
    stats: BatchStats,
) -> bool:  # fmt: skip
    """:meth:`node.store.base.Store.put_upload` in one transaction."""
    async with c.transaction():
        await _lock_writers(c)
        held = await c.fetchval("SELECT held FROM blobs WHERE hash = $1", digest)
        if held is not None:
            if not held:
                await c.execute("UPDATE blobs SET received_ms = $2 WHERE hash = $1", digest, now_ms)
            return bool(held)
        size = len(data)
        claims = _claims(await c.fetch(_CLAIMS, digest))
        authors = matching_authors(facts_of(info, size), claims)
        if authors:
            if not await _fits(c, authors, size, stats.blob_quota):
                _dropped(stats, AUTHOR_QUOTA)
                return False
            await _insert(c, digest, info, data, held=True, now_ms=now_ms)
            await _bump(c, stats, 1, size)
            return True
        pending = await c.fetchval("SELECT pending_bytes FROM blob_totals")
        if int(pending) + size > max_pending:
            raise UnavailableError(
                "this node holds too many images not yet used by a post; try again later"
            )
        await _insert(c, digest, info, data, held=False, now_ms=now_ms)
        await _bump(c, stats, pending=size)
        return False


async def put_fetched(
    c: Conn, digest: bytes, data: bytes, facts: Facts, *, now_ms: int, stats: BatchStats
) -> bool:
    """:meth:`node.store.base.Store.put_fetched_blob` in one transaction; ``facts``
    are those of ``data``, checked to hash to ``digest`` (:func:`fetched_facts`)."""
    async with c.transaction():
        await _lock_writers(c)
        held = await c.fetchval("SELECT held FROM blobs WHERE hash = $1", digest)
        if held:
            return True
        authors = matching_authors(facts, _claims(await c.fetch(_CLAIMS, digest)))
        if not authors:
            return False
        size = len(data)
        if not await _fits(c, authors, size, stats.blob_quota):
            _dropped(stats, AUTHOR_QUOTA)
            return False
        if held is not None:
            await c.execute("UPDATE blobs SET held = true WHERE hash = $1", digest)
            await _bump(c, stats, 1, size, -size)
            return True
        mime, _, width, height = facts
        info = BlobInfo(mime=mime, width=width, height=height)
        await _insert(c, digest, info, data, held=True, now_ms=now_ms)
        await _bump(c, stats, 1, size)
        return True


async def sweep(c: Conn, *, received_before_ms: int, limit: int, stats: BatchStats) -> int:
    """Drop at most ``limit`` pending uploads whose grace period is over."""
    async with c.transaction():
        await _lock_writers(c)
        rows = await c.fetch(
            "DELETE FROM blobs WHERE hash IN (SELECT hash FROM blobs WHERE NOT held "
            "AND received_ms < $1 LIMIT $2) RETURNING size",
            received_before_ms, limit,
        )  # fmt: skip
        if rows:
            await _bump(c, stats, pending=-sum(int(r[0]) for r in rows))
            _dropped(stats, GRACE, len(rows))
        return len(rows)


async def get_blob(c: Conn, digest: bytes) -> HeldBlob | None:
    row = await c.fetchrow(
        "SELECT mime, data FROM blobs WHERE hash = $1 AND held "
        "AND EXISTS (SELECT 1 FROM blob_refs WHERE hash = $1)",
        digest,
    )
    return None if row is None else HeldBlob(mime=row[0], data=bytes(row[1]))


async def missing_blobs(
    c: Conn, limit: int, *, after: bytes = b""
) -> list[tuple[bytes, EmbedImage]]:
    rows = await c.fetch(
        "SELECT DISTINCT ON (r.hash) r.hash, r.mime, r.size, r.width, r.height "
        "FROM blob_refs r WHERE r.hash > $2 AND NOT EXISTS "
        "(SELECT 1 FROM blobs b WHERE b.hash = r.hash AND b.held) ORDER BY r.hash LIMIT $1",
        limit,
        after,
    )
    return [(bytes(r[0]), claim_image(bytes(r[0]), r[1], r[2], r[3], r[4])) for r in rows]
