"""``murmur node migrate-store``: a SQLite node moved into PostgreSQL (spec 0004
#store-migrate): same node id, events under their cursors (body-less ones after their
delete), peers, a check of counts and the negentropy fingerprint; resumable."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest

import node.migrate
from node.migrate import MigrationError, migrate_store
from node.store.base import PeerRecord, StoredEvent
from node.store.postgres import PostgresStore
from node.store.sqlite import SqliteStore
from protocol.blobs import blob_hash, sniff
from protocol.embeds import EmbedImage
from protocol.events import Event, decode_event
from scripts.blob_vectors import PNG_RGB_3X2
from tests.node.conftest import T0, Clock, new_author
from tests.node.test_key_rotation import theft
from tests.rotatable import Rotatable


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0)


async def _source(data_dir: Path, clock: Clock) -> tuple[str, list[tuple[int, bytes]]]:
    """A SQLite node with two authors' posts in two batches, a deleted post, a peer;
    its node id and ``(cursor, id)`` of everything it holds."""
    src = SqliteStore(data_dir, now_ms=clock)
    await src.open()
    try:
        a, b = new_author(clock), new_author(clock)
        posts = [_verified(a.post(f"a{i}")) for i in range(20)]
        posts += [_verified(b.post(f"b{i}")) for i in range(15)]
        await src.apply_batch(posts[:12])
        await src.apply_batch(posts[12:])
        await src.apply_batch([_verified(a.sign("delete", {"target": posts[3].id}))])
        await src.save_peer(
            PeerRecord(url="https://peer.example", source="static", node_id="ab" * 16, cursor=41)
        )
        held = [(e.cursor, e.id) for e in await src.events_after(0, limit=1000)]
        return await src.node_id(), held
    finally:
        await src.close()


async def _target(url: str, clock: Clock) -> tuple[str, list[tuple[int, bytes]], Any]:
    dst = PostgresStore(url, now_ms=clock)
    await dst.open()
    try:
        held = [(e.cursor, e.id) for e in await dst.events_after(0, limit=1000)]
        return await dst.node_id(), held, await dst.load_peers()
    finally:
        await dst.close()


async def test_a_sqlite_node_moves_with_its_id_cursors_and_peers(
    tmp_path: Path, pg_url: str, clock: Clock
) -> None:
    node_id, held = await _source(tmp_path, clock)
    out = io.StringIO()
    report = await migrate_store(tmp_path, pg_url, chunk=7, out=out)
    assert report.events == len(held) == 36 and report.renumbered == 1
    their_id, their_held, peers = await _target(pg_url, clock)
    assert their_id == node_id
    # Every event but the deleted post keeps its cursor; that one follows its delete.
    deleted = held[3]
    assert sorted(set(their_held) - set(held)) == [(held[-1][0] + 1, deleted[1])]
    assert set(held) - set(their_held) == {deleted}
    assert [(p.url, p.cursor, p.node_id) for p in peers] == [
        ("https://peer.example", 41, "ab" * 16)
    ]
    assert "done: 36 events" in out.getvalue() and "fingerprint" in out.getvalue()


async def test_an_interrupted_migration_resumes(
    tmp_path: Path, pg_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, held = await _source(tmp_path, clock)
    real = PostgresStore.apply_batch
    calls = 0

    async def failing(self: PostgresStore, events: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionResetError("the server went away")
        return await real(self, events)

    monkeypatch.setattr(PostgresStore, "apply_batch", failing)
    with pytest.raises(ConnectionResetError):
        await migrate_store(tmp_path, pg_url, chunk=7, out=io.StringIO())
    monkeypatch.setattr(PostgresStore, "apply_batch", real)
    out = io.StringIO()
    report = await migrate_store(tmp_path, pg_url, chunk=7, out=out)
    assert "resuming after cursor" in out.getvalue()
    assert 0 < report.applied < len(held)
    _, their_held, _ = await _target(pg_url, clock)
    assert len(their_held) == len(held)


async def test_a_target_of_another_node_is_refused(
    tmp_path: Path, pg_url: str, clock: Clock
) -> None:
    await _source(tmp_path, clock)
    other = PostgresStore(pg_url, now_ms=clock)
    await other.open()
    try:
        await other.apply_batch([_verified(new_author(clock).post("someone else's"))])
    finally:
        await other.close()
    with pytest.raises(MigrationError, match="already holds 1 events of another node"):
        await migrate_store(tmp_path, pg_url, out=io.StringIO())


async def test_the_check_catches_a_missing_event(
    tmp_path: Path, pg_url: str, clock: Clock
) -> None:
    await _source(tmp_path, clock)
    await migrate_store(tmp_path, pg_url, out=io.StringIO())
    dst = PostgresStore(pg_url, now_ms=clock)
    await dst.open()
    try:
        await dst.pool.execute("DELETE FROM events WHERE cursor = 5")
    finally:
        await dst.close()
    src = SqliteStore(tmp_path, now_ms=clock)
    await src.open()
    try:
        with pytest.raises(MigrationError, match=r"events 36 != 35.*negentropy fingerprint"):
            await node.migrate._check(src, pg_url)
    finally:
        await src.close()


async def _v2_source(data_dir: Path, clock: Clock) -> dict[str, Any]:
    """A SQLite node holding did:murmur authors, one event a batch as peers would send
    them: alice's theft settled by her rotation (the forged events revoked, her post a
    missing body again), bob's theft left as a tie (disputed), carol's rotation above a
    gap (pending), and a did:key author's posts and delete."""
    alice, ev = theft("migrate-alice")
    bob, bv = theft("migrate-bob")
    t_rot = bob.rotate("N0", "T1", "T2", after=bv["t_post"], kev=bob.genesis)
    t_rot_post = bob.sign("T1", "post", {"text": "mine now"}, after=t_rot, kev=t_rot)
    carol = Rotatable("migrate-carol")
    c1 = carol.sign("S0", "post", {"text": "c1"}, after=carol.genesis, kev=carol.genesis)
    c2 = carol.sign("S0", "post", {"text": "c2"}, after=c1, kev=carol.genesis)
    c_rot = carol.rotate("N0", "S1", "N1", after=c2, kev=carol.genesis)
    dk = new_author(clock)
    dk_posts = [dk.post(f"k{i}") for i in range(3)]
    events = [
        *ev.values(),
        *(bv[n] for n in ("G", "p1", "prof", "t_post")), t_rot, t_rot_post, bv["K1"], bv["p2"],
        carol.genesis, c1, c_rot,  # c2 is never held
        *dk_posts, dk.sign("delete", {"target": dk_posts[1].id}),
    ]  # fmt: skip
    src = SqliteStore(data_dir, now_ms=clock)
    await src.open()
    try:
        for e in events:
            (w,) = await src.apply_batch([decode_event(e.wire, now_ms=T0, allow_v2=True)])
            assert w.status == "accepted", (e.kind, w)
        return await _store_view(src, [alice.did, bob.did, carol.did, dk.did])
    finally:
        await src.close()


async def _cursor_pairs(
    data_dir: Path, pg_url: str, clock: Clock
) -> list[tuple[StoredEvent, int, int]]:
    """Each source event with its cursor on the source and on the target."""
    src, dst = SqliteStore(data_dir, now_ms=clock), PostgresStore(pg_url, now_ms=clock)
    await src.open()
    await dst.open()
    try:
        theirs = {e.id: e.cursor for e in await dst.events_after(0, limit=1000)}
        return [(e, e.cursor, theirs[e.id]) for e in await src.events_after(0, limit=1000)]
    finally:
        await src.close()
        await dst.close()


async def _store_view(store: Any, authors: list[str]) -> dict[str, Any]:
    """What readers see of ``authors`` in ``store``: every event's status, revocation,
    deletion and body, the key histories and the feed key tips."""
    held = await store.events_after(0, limit=1000)
    histories: dict[str, Any] = {}
    for did in authors:
        h = await store.key_history(did, limit=100)
        histories[did] = (
            None
            if h is None
            else ([e.id for e in h.events], h.path, h.contenders, h.disputed, h.point)
        )
    return {
        "events": {e.id: (e.status, e.revoked_by, e.deleted, e.body is None) for e in held},
        "histories": histories,
        "tips": await store.key_tips(authors),
        "counts": dataclasses.replace(store.counts(), cursor=0),  # the deleted renumbered
    }


async def test_did_murmur_events_move_with_their_key_histories_and_statuses(
    tmp_path: Path, pg_url: str, clock: Clock
) -> None:
    """spec 0004 #store-migrate, spec 0008 #status, #revoked-delete: rotations, revoked
    events, a dispute, a pending event and a post missing its body since the delete
    that dropped it was revoked move with the same statuses, key histories and tips."""
    before = await _v2_source(tmp_path, clock)
    statuses = {s for s, *_ in before["events"].values()}
    assert statuses == {"canonical", "revoked", "disputed", "pending"}, statuses
    # alice's first post: held without its body, no longer deleted (#revoked-delete).
    assert ("canonical", None, False, True) in before["events"].values()
    report = await migrate_store(tmp_path, pg_url, chunk=5, out=io.StringIO())
    dst = PostgresStore(pg_url, now_ms=clock)
    await dst.open()
    try:
        after = await _store_view(dst, list(before["histories"]))
    finally:
        await dst.close()
    assert after == before
    assert report.events == len(before["events"])
    # Cursors (spec 0004 #store-migrate): no event lands below its source cursor (a
    # subscriber resuming misses none) but the revoked delete replayed before the
    # rotation that revokes it. The write path applies a batch's key events first, so
    # each key event starts a run of its own; otherwise the events before it in the
    # run would take later cursors and it a lower one.
    pairs = await _cursor_pairs(tmp_path, pg_url, clock)
    lower = {(e.kind, e.status) for e, old, new in pairs if new < old}
    assert lower == {("delete", "revoked")}, lower
    assert report.renumbered == sum(old != new for _, old, new in pairs)


async def test_held_image_bytes_move_too(tmp_path: Path, pg_url: str, clock: Clock) -> None:
    """spec 0004 #store-migrate, #blob-keep: the bytes of held images are copied and
    served by the target; a pending upload (no post uses it) is not."""
    used = PNG_RGB_3X2 + b"used"
    pending = PNG_RGB_3X2 + b"pending"
    info = sniff(used)
    image = EmbedImage(
        hash=blob_hash(used), mime=info.mime, size=len(used), width=info.width,
        height=info.height, alt="",
    )  # fmt: skip
    src = SqliteStore(tmp_path, now_ms=clock)
    await src.open()
    try:
        author = new_author(clock)
        await src.apply_batch([_verified(author.post("look", embed={"images": [image.to_map()]}))])
        assert await src.put_fetched_blob(image.hash, used)
        held = await src.put_upload(
            blob_hash(pending), sniff(pending), pending, now_ms=clock(), max_pending=1 << 20
        )
        assert not held
    finally:
        await src.close()
    out = io.StringIO()
    report = await migrate_store(tmp_path, pg_url, out=out)
    assert report.blobs == 1 and "1 images" in out.getvalue()
    dst = PostgresStore(pg_url, now_ms=clock)
    await dst.open()
    try:
        got = await dst.get_blob(image.hash)
        assert got is not None and got.data == used and got.mime == "image/png"
        assert not await dst.blob_bytes_stored(blob_hash(pending))
        assert await dst.missing_blobs(10) == []
    finally:
        await dst.close()
