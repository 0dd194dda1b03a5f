"""``murmur node migrate-store --from DATA_DIR --to postgresql://...`` (issue #18 point 4).

Moves a SQLite node into an empty PostgreSQL database (spec 0004 #store-migrate):

1. The target takes the node's id (``meta``), so peers see the same node.
2. Events are applied in the source's cursor order through the PostgreSQL store's own
   write path (every index is built as on ingest), in runs of consecutive cursors with
   ``stream_head.top`` set just below each run, so each event keeps its cursor and
   stream subscribers resume where they were. Body-less (deleted) events wait until the
   end: the target stores one only once it holds the delete that explains it (#bodyless);
   they get new cursors above the rest.
3. Peers are copied (their cursors included).
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from node.config import redact_url, system_now_ms
from node.store.base import StoredEvent
from node.store.postgres import PostgresStore
from node.store.sqlite import DB_FILENAME, SqliteStore
from protocol.events import Event, decode_unverified

__all__ = ["CHUNK", "MigrationError", "MigrationReport", "migrate_store"]

#: Source events read and applied per chunk (one target transaction per run in it).
CHUNK = 2000
#: Ids per by-id read of the source.
_BY_ID = 100


class MigrationError(RuntimeError):
    """The migration cannot start or its check failed; the message says which."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationReport:
    events: int
    #: Events applied by this run (not counting those a resumed run had done).
    applied: int
    #: Events stored under another cursor than in the source (body-less ones).
    renumbered: int
    peers: int
    fingerprint: str
    seconds: float


def _event(ev: StoredEvent) -> Event:
    # Verified when the source node stored it; the target re-checks everything else.
    return decode_unverified(ev.wire, allow_v2=True)


def _runs(events: Sequence[StoredEvent]) -> list[list[StoredEvent]]:
    """Consecutive-cursor runs of ``events`` (in cursor order)."""
    runs: list[list[StoredEvent]] = []
    for ev in events:
        if runs and runs[-1][-1].cursor + 1 == ev.cursor:
            runs[-1].append(ev)
        else:
            runs.append([ev])
    return runs


def _bodyless(data_dir: Path) -> dict[int, bytes]:
    """Cursor -> id of the source's body-less events (a read-only look at its file)."""
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute("SELECT cursor, id FROM events WHERE body IS NULL ORDER BY cursor")
        return {int(r[0]): bytes(r[1]) for r in rows}
    finally:
        conn.close()


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
    bodyless = _bodyless(data_dir)
    print(f"migrating {total} events from {data_dir} to {redact_url(url)}"
          + (f" (resuming after cursor {after})" if after else ""), file=out)  # fmt: skip
    applied = renumbered = 0
    done_before = await dst.pool.fetchval("SELECT count(*) FROM events")
    while True:
        page = await src.events_after(after, limit=chunk)
        if not page:
            break
        for run in _runs([ev for ev in page if ev.cursor not in bodyless]):
            await dst.pool.execute(
                "UPDATE stream_head SET top = $1 WHERE top < $1", run[0].cursor - 1
            )
            written = await dst.apply_batch([_event(ev) for ev in run])
            for ev, w in zip(run, written, strict=True):
                if w.status == "accepted":
                    applied += 1
                    renumbered += w.cursor != ev.cursor
                elif w.status != "duplicate":
                    raise MigrationError(f"event {ev.id.hex()} refused: {w.error}")
        after = page[-1].cursor
        await _set_meta(dst, "migrated_cursor", str(after))
        done = done_before + applied
        rate = applied / max(time.monotonic() - started, 1e-3)
        print(f"  {done}/{total} events, cursor {after}, {rate:.0f} ev/s", file=out)
    # Body-less events last: every delete is in by now (spec 0004 #bodyless).
    ordered = [bodyless[c] for c in sorted(bodyless)]
    for start in range(0, len(ordered), _BY_ID):
        events = sorted(
            await src.get_events(ordered[start : start + _BY_ID]), key=lambda ev: ev.cursor
        )
        written = await dst.apply_batch([_event(ev) for ev in events])
        for ev, w in zip(events, written, strict=True):
            if w.status == "accepted":
                applied += 1
                renumbered += 1
            elif w.status != "duplicate":
                raise MigrationError(f"body-less event {ev.id.hex()} refused: {w.error}")
    peers = await src.load_peers()
    for rec in peers:
        await dst.save_peer(rec)
    fingerprint = await _check(src, url)
    await dst.pool.execute("DELETE FROM meta WHERE key IN ('migrated_from', 'migrated_cursor')")
    report = MigrationReport(
        events=total, applied=applied, renumbered=renumbered, peers=len(peers),
        fingerprint=fingerprint, seconds=time.monotonic() - started,
    )  # fmt: skip
    print(
        f"done: {total} events ({renumbered} under new cursors: body-less ones), "
        f"{len(peers)} peers, fingerprint {fingerprint}, {report.seconds:.1f} s",
        file=out,
    )
    return report


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
