"""``Store.key_tips`` (spec 0004 #feed-key-tips) on both backends: the same answer, one
indexed read of the fork-choice rows, whatever the length of the authors' key
histories; and the PostgreSQL store module's exports."""

from __future__ import annotations

from pathlib import Path

from protocol.events import Event, decode_event
from tests.node.backends import Backend, both_backends
from tests.node.conftest import T0, Clock, new_author
from tests.node.test_key_rotation import theft
from tests.rotatable import Rotatable

#: More key events than the generic form of ``key_tips`` reads (its history budget).
_MANY = 2001


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0, allow_v2=True)


@both_backends()
async def test_key_tips_name_every_author_whatever_their_histories(
    tmp_path: Path, clock: Clock, backend: Backend
) -> None:
    """spec 0004 #feed-key-tips: the path's last key event, then the contenders of a
    dispute; every did:murmur author holding key events is named, however many key
    events the authors asked about hold together; other authors are not."""
    a, ev = theft("tips-store-alice")
    g = a.genesis
    t_rot = a.rotate("N0", "T1", "T2", after=ev["t_post"], kev=g)
    b = Rotatable("tips-store-bob")
    b_rot = b.rotate("N0", "S1", "N1", after=b.genesis, kev=b.genesis)
    crowd = [Rotatable(f"tips-store-{i}") for i in range(_MANY)]
    plain = new_author(clock)
    events = [g, ev["p1"], ev["prof"], ev["t_post"], t_rot, ev["K1"], b.genesis, b_rot]
    events += [r.genesis for r in crowd]
    events.append(plain.post("hi"))
    store = await backend.open(tmp_path)
    try:
        written = await store.apply_batch([_verified(e) for e in events])
        assert {w.status for w in written} == {"accepted"}
        asked = [a.did, b.did, plain.did, Rotatable("tips-store-unheld").did]
        tips = await store.key_tips([*asked, *(r.did for r in crowd)])
    finally:
        await store.close()
    assert tips[a.did] == [g.id, *sorted([t_rot.id, ev["K1"].id])]
    assert tips[b.did] == [b_rot.id]
    assert set(tips) == {a.did, b.did, *(r.did for r in crowd)}
    assert all(tips[r.did] == [r.genesis.id] for r in crowd)


def test_the_postgresql_store_module_exports_its_store_only() -> None:
    """The store's public name; write-path details stay in node.store.pg_write."""
    import node.store.postgres as postgres

    assert postgres.__all__ == ["PostgresStore"]
