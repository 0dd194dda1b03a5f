"""``murmur node migrate-store --from DATA_DIR --to postgresql://...`` (issue #18 point 4).

Moves a SQLite node into an empty PostgreSQL database (spec 0004 #store-migrate):

1. The target takes the node's id (``meta``), so peers see the same node.
2. Events are applied in the source's cursor order through the PostgreSQL store's own
   write path (every index is built as on ingest), in runs of consecutive cursors with
   ``stream_head.top`` set just below each run, so each event keeps its cursor and
   stream subscribers resume where they were. Body-less (deleted) events wait until the
   end: the target stores one only once it holds the delete that explains it (#bodyless);
   they get new cursors above the rest. A held event missing its body because the
   delete that dropped it was revoked since (spec 0008 #revoked-delete) is replayed the
   way it came to be: with that delete, before the key event that revokes it.
3. Peers are copied (their cursors included), and the bytes of every held image blob
   (#blob-keep), through the target's :meth:`~node.store.base.Store.put_fetched_blob`:
   checked against the claims the copied posts recorded, as a peer's copy would be.
   Pending uploads (in their grace period) are not copied: the client uploads again.
4. The check: event, author, deleted and forked-author counts, and the negentropy
   fingerprint of both whole sets (spec 0005), must be equal; only then is it done.

It is resumable: the highest source cursor applied is saved in the target's ``meta``
after each chunk, and a rerun continues after it (a chunk applied but not yet recorded
is answered ``duplicate`` the second time: nothing is stored twice). The target must be
empty or an unfinished migration of the same node. Nothing may write to either store
meanwhile (stop the node first).
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from node.config import redact_url, system_now_ms
from node.store.base import StoredEvent
from node.store.postgres import PostgresStore
from node.store.sqlite import DB_FILENAME, SqliteStore
from protocol import kinds
from protocol.events import Event, decode_unverified

__all__ = ["CHUNK", "MigrationError", "MigrationReport", "migrate_store"]

#: Source events read and applied per chunk (one target transaction per run in it).
CHUNK = 2000
#: Blobs read from the source per query (each up to ``MAX_BLOB_BYTES``).
_BLOBS_PER_READ = 16
#: Ids per by-id read of the source.
_BY_ID = 100


class MigrationError(RuntimeError):
    """The migration cannot start or its check failed; the message says which."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationReport:
    events: int
    #: Events applied by this run (not counting those a resumed run had done).
    applied: int
    #: Events held under another cursor than in the source (see :func:`_renumbered`).
    renumbered: int
    peers: int
    #: Held image blobs copied (or already held by a resumed run).
    blobs: int
    fingerprint: str
    seconds: float


def _event(ev: StoredEvent) -> Event:
    # Verified when the source node stored it; the target re-checks everything else.
    return decode_unverified(ev.wire, allow_v2=True)


def _runs(events: Sequence[StoredEvent], breaks: Set[int] = frozenset()) -> list[list[StoredEvent]]:
    """Consecutive-cursor runs of ``events`` (in cursor order); a run also starts at
    each cursor of ``breaks``."""
    runs: list[list[StoredEvent]] = []
    for ev in events:
        if runs and runs[-1][-1].cursor + 1 == ev.cursor and ev.cursor not in breaks:
            runs[-1].append(ev)
        else:
            runs.append([ev])
    return runs


@dataclass(slots=True)
class _Replay:
    """A held event missing its body (no deletion explains it), and the revoked
    deletes that once dropped it: applied together at source cursor ``at`` (before the
    key event that revokes them), the target stores it the way the source came to."""

    at: int
    missing: StoredEvent
    deletes: list[StoredEvent]


def _bodyless(data_dir: Path) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Cursor -> id of the source's body-less events: those a deletion explains, and
    those missing their body (a read-only look at its file)."""
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute(
            "SELECT cursor, id, deleted FROM events WHERE body IS NULL ORDER BY cursor"
        ).fetchall()
    finally:
        conn.close()
    deleted = {int(c): bytes(i) for c, i, d in rows if d}
    return deleted, {int(c): bytes(i) for c, i, d in rows if not d}


def _revoked_deletes(data_dir: Path, author: str) -> list[bytes]:
    """Ids of ``author``'s revoked deletes in the source (a read-only look)."""
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute(
            "SELECT id FROM events WHERE author = ? AND kind = 'delete' AND status = 'revoked'",
            (author,),
        ).fetchall()
    finally:
        conn.close()
    return [bytes(r[0]) for r in rows]


async def _replays(src: SqliteStore, data_dir: Path, missing: Sequence[bytes]) -> list[_Replay]:
    """What replays each of the ``missing`` events (spec 0008 #revoked-delete): the
    author's revoked deletes of it, at the cursor of the first key event revoking one
    (or the event's own, if lower). Raises :class:`MigrationError` for an event no
    held delete ever dropped (the target's write path cannot store it)."""
    replays: list[_Replay] = []
    for start in range(0, len(missing), _BY_ID):
        for ev in await src.get_events(missing[start : start + _BY_ID]):
            deletes: list[StoredEvent] = []
            at = ev.cursor
            for d in await src.get_events(_revoked_deletes(data_dir, ev.author)):
                if d.body is None or (_event(d).body or {}).get("target") != ev.id:
                    continue
                deletes.append(d)
                revoker = await src.get_event(d.revoked_by) if d.revoked_by else None
                if revoker is not None:
                    at = min(at, revoker.cursor)
            if not deletes:
                raise MigrationError(
                    f"event {ev.id.hex()} is held without its body and no held delete "
                    "explains it: fetch its body (a peer's sync repairs it) and migrate again"
                )
            replays.append(_Replay(at=at, missing=ev, deletes=deletes))
    return sorted(replays, key=lambda r: r.at)


async def _replay(dst: PostgresStore, replay: _Replay) -> tuple[bool, int]:
    """Apply ``replay``'s deletes and body-less event: is the event held now, and how
    many events were stored (under cursors of their own)."""
    await dst.pool.execute("UPDATE stream_head SET top = $1 WHERE top < $1", replay.at - 1)
    events = [*replay.deletes, replay.missing]
    written = await dst.apply_batch([_event(ev) for ev in events])
    stored = sum(w.status == "accepted" for w in written)
    return written[-1].status in ("accepted", "duplicate"), stored


async def _apply(dst: PostgresStore, events: Sequence[StoredEvent], what: str) -> int:
    """Apply ``events`` in one batch: how many were stored (a duplicate is one a run
    before this one stored); any refusal ends the migration."""
    written = await dst.apply_batch([_event(ev) for ev in events])
    for ev, w in zip(events, written, strict=True):
        if w.status not in ("accepted", "duplicate"):
            raise MigrationError(f"{what} {ev.id.hex()} refused: {w.error}")
    return sum(w.status == "accepted" for w in written)


async def _meta(dst: PostgresStore, key: str) -> str | None:
    value = await dst.pool.fetchval("SELECT value FROM meta WHERE key = $1", key)
    return None if value is None else str(value)


async def _set_meta(dst: PostgresStore, key: str, value: str) -> None:
    await dst.pool.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        key, value,
    )  # fmt: skip


async def _claim(src: SqliteStore, dst: PostgresStore) -> int:
    """Make ``dst`` this node's (or check it already is); the source cursor to resume
    after."""
    node_id = await src.node_id()
    started = await _meta(dst, "migrated_from")
    if started is None:
        held = await dst.pool.fetchval("SELECT count(*) FROM events")
        if held and await _meta(dst, "node_id") == node_id:
            raise MigrationError(f"the target already holds this node ({held} events): "
                                 "it was migrated before")  # fmt: skip
        if held:
            raise MigrationError(f"the target already holds {held} events of another node")
        await dst.pool.execute("DELETE FROM meta WHERE key = 'node_id'")
        await _set_meta(dst, "node_id", node_id)
        await _set_meta(dst, "migrated_from", node_id)
        await _set_meta(dst, "migrated_cursor", "0")
    elif started != node_id:
        raise MigrationError(f"the target is a migration of node {started}, not {node_id}")
    return int(await _meta(dst, "migrated_cursor") or 0)


async def migrate_store(
    data_dir: Path, url: str, *, chunk: int = CHUNK, out: TextIO = sys.stderr
) -> MigrationReport:
    """Copy the SQLite node in ``data_dir`` into the PostgreSQL database ``url``."""
    if not (data_dir / DB_FILENAME).is_file():
        raise MigrationError(f"no node store in {data_dir} ({DB_FILENAME} is missing)")
    started = time.monotonic()
    src = SqliteStore(data_dir, now_ms=system_now_ms)
    dst = PostgresStore(url, now_ms=system_now_ms)
    await src.open()
    try:
        await dst.open()
        try:
            return await _migrate(src, dst, data_dir, url, chunk, out, started)
        finally:
            await dst.close()
    finally:
        await src.close()


async def _migrate(
    src: SqliteStore,
    dst: PostgresStore,
    data_dir: Path,
    url: str,
    chunk: int,
    out: TextIO,
    started: float,
) -> MigrationReport:
    total = src.counts().events
    after = await _claim(src, dst)
    bodyless, missing = _bodyless(data_dir)
    replays = await _replays(src, data_dir, [missing[c] for c in sorted(missing)])
    breaks = {r.at for r in replays}
    skip = bodyless.keys() | missing.keys()
    print(f"migrating {total} events from {data_dir} to {redact_url(url)}"
          + (f" (resuming after cursor {after})" if after else ""), file=out)  # fmt: skip
    applied = 0
    done_before = await dst.pool.fetchval("SELECT count(*) FROM events")
    while True:
        page = await src.events_after(after, limit=chunk)
        if not page:
            break
        # The write path applies a batch's key events first (keyplan.batch_phases): each
        # starts a run of its own, so nothing before it in the run takes a later cursor.
        keyed = {ev.cursor for ev in page if ev.kind in kinds.KEY_EVENT_KINDS}
        for run in _runs([ev for ev in page if ev.cursor not in skip], breaks | keyed):
            # Replays due here (retried at each run until the target takes them).
            for replay in [r for r in replays if r.at <= run[0].cursor]:
                held, stored = await _replay(dst, replay)
                applied += stored
                if held:
                    replays.remove(replay)
            await dst.pool.execute(
                "UPDATE stream_head SET top = $1 WHERE top < $1", run[0].cursor - 1
            )
            applied += await _apply(dst, run, "event")
        after = page[-1].cursor
        await _set_meta(dst, "migrated_cursor", str(after))
        done = done_before + applied
        rate = applied / max(time.monotonic() - started, 1e-3)
        print(f"  {done}/{total} events, cursor {after}, {rate:.0f} ev/s", file=out)
    for replay in replays:
        held, stored = await _replay(dst, replay)
        applied += stored
        if not held:
            raise MigrationError(
                f"event {replay.missing.id.hex()} (held without its body) was refused "
                "with the revoked deletes that dropped it"
            )
    # Body-less events last: every delete is in by now (spec 0004 #bodyless).
    ordered = [bodyless[c] for c in sorted(bodyless)]
    for start in range(0, len(ordered), _BY_ID):
        events = sorted(
            await src.get_events(ordered[start : start + _BY_ID]), key=lambda ev: ev.cursor
        )
        applied += await _apply(dst, events, "body-less event")
    peers = await src.load_peers()
    for rec in peers:
        await dst.save_peer(rec)
    blobs = await _copy_blobs(data_dir, dst)
    fingerprint = await _check(src, url)
    renumbered = await _renumbered(data_dir, dst)
    await dst.pool.execute("DELETE FROM meta WHERE key IN ('migrated_from', 'migrated_cursor')")
    report = MigrationReport(
        events=total, applied=applied, renumbered=renumbered, peers=len(peers), blobs=blobs,
        fingerprint=fingerprint, seconds=time.monotonic() - started,
    )  # fmt: skip
    print(
        f"done: {total} events ({renumbered} under new cursors), "
        f"{len(peers)} peers, {blobs} images, fingerprint {fingerprint}, "
        f"{report.seconds:.1f} s",
        file=out,
    )
    return report


async def _copy_blobs(data_dir: Path, dst: PostgresStore) -> int:
    """Copy the source's held blobs (a read-only look, a few at a time); every one
    must be kept by the target, whose posts are the source's."""
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    copied, after = 0, 0
    try:
        while rows := conn.execute(
            "SELECT rowid, hash, data FROM blobs WHERE held = 1 AND rowid > ? "
            "ORDER BY rowid LIMIT ?",
            (after, _BLOBS_PER_READ),
        ).fetchall():
            for rowid, digest, data in rows:
                after = int(rowid)
                if not await dst.put_fetched_blob(bytes(digest), bytes(data)):
                    raise MigrationError(
                        f"the target did not keep image {bytes(digest).hex()} "
                        "(its posts' claims or an author's quota, limits.blob_author_bytes)"
                    )
                copied += 1
    finally:
        conn.close()
    return copied


async def _renumbered(data_dir: Path, dst: PostgresStore) -> int:
    """How many events the target holds under another cursor than the source: the
    source's (id, cursor) pairs go to a temporary table with COPY, then one join.

    Body-less events go last, and an event whose status the copy resolves again moves
    up as it did on the source; after a move, later events follow above it. None is
    held below its source cursor but a revoked delete replayed before the key event
    that revokes it (spec 0004 #store-migrate)."""
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        async with dst.pool.acquire() as c, c.transaction():
            await c.execute(
                "CREATE TEMPORARY TABLE source_cursors (id BYTEA, cursor BIGINT) ON COMMIT DROP"
            )
            rows = conn.execute("SELECT id, cursor FROM events")
            while page := rows.fetchmany(50_000):
                await c.copy_records_to_table(
                    "source_cursors", records=[(bytes(i), int(n)) for i, n in page]
                )
            found = await c.fetchval(
                "SELECT count(*) FROM events e JOIN source_cursors s ON e.id = s.id "
                "WHERE e.cursor <> s.cursor"
            )
    finally:
        conn.close()
    return int(found)


async def _check(src: SqliteStore, url: str) -> str:
    """Counts and the negentropy fingerprint of both sets must agree."""
    fresh = PostgresStore(url, now_ms=system_now_ms)
    await fresh.open()
    try:
        theirs = fresh.counts()
        storage = await fresh.sync_storage()
    finally:
        await fresh.close()
    mine = src.counts()
    pairs = {
        "events": (mine.events, theirs.events),
        "authors": (mine.authors, theirs.authors),
        "deleted": (mine.deleted, theirs.deleted),
        "forked authors": (mine.forked_authors, theirs.forked_authors),
    }
    wrong = [f"{k} {a} != {b}" for k, (a, b) in pairs.items() if a != b]
    ours = await src.sync_storage()
    fp_src = ours.fingerprint(0, len(ours)).hex()
    fp_dst = storage.fingerprint(0, len(storage)).hex()
    if fp_src != fp_dst:
        wrong.append(f"negentropy fingerprint {fp_src} != {fp_dst}")
    if wrong:
        raise MigrationError("the check failed: " + "; ".join(wrong))
    return fp_src
