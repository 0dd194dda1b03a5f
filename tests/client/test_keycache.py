"""The home's cache of verified key events (spec 0007 #key-status, client/keycache.py).

A second read verifies no key event's signature again; bytes that differ by one byte
from a cached wire are verified (and rejected); a cache file that does not parse, or
that others may write, is never trusted and is rebuilt; an unwritable cache costs only
time.
"""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from client.api import NodeClient
from client.keycache import EVENTS_FILE, MAGIC, KeyCache, known_key_event, wire_digest
from client.reader import Reader
from client.views import author_view
from protocol.events import Event, sign_event_v2, sign_genesis
from protocol.identity import Identity, next_key_commitment
from protocol.keystate import KEY_EVENT_KINDS
from tests.client.conftest import Net, broken_signature

Clients = Callable[..., list[NodeClient]]


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Kinds of the events whose signature was checked (the verifier, counted)."""
    seen: Counter[str] = Counter()
    real = Event.verify_signature

    def counting(self: Event) -> None:
        seen[self.kind] += 1
        real(self)

    monkeypatch.setattr(Event, "verify_signature", counting)
    return seen


def key_checks(seen: Counter[str]) -> int:
    return sum(n for kind, n in seen.items() if kind in KEY_EVENT_KINDS)


def rotated_author() -> tuple[str, Event, Event, Event]:
    """A did:murmur author: genesis, rotation to a new key, a post with it."""
    s0, n0, r0, s1, n1 = (Identity.generate() for _ in range(5))
    g = sign_genesis(s0, next_key=n0.public.raw, recovery=[r0.public.raw])
    rot = sign_event_v2(
        n0, author=g.author, kind="rotate", seq=2, prev=g.id, kev=g.id,
        body={"signing": s1.public.raw, "next": next_key_commitment(n1.public.raw)},
    )  # fmt: skip
    post = sign_event_v2(
        s1, author=g.author, kind="post", body={"text": "hi"}, seq=3, prev=rot.id, kev=rot.id
    )
    return g.author, g, rot, post


async def read(clients: list[NodeClient], did: str, cache: KeyCache | None) -> Reader:
    reader = Reader(clients, keycache=cache)
    await author_view(reader, did, limit=20)
    return reader


async def test_a_second_read_verifies_no_key_event_again(
    net: tuple[Net, Clients], tmp_path: Path, verified: Counter[str]
) -> None:
    """spec 0007 #key-status: key events verified by an earlier read of this home are
    decoded from the cache without their signature check; the result is the same."""
    fake, clients = net
    a = fake.node("a")
    did, g, rot, post = rotated_author()
    a.add(g, rot, post)
    where = tmp_path / "state" / "keycache"

    first = await read(clients(a), did, KeyCache(where))
    assert key_checks(verified) >= 2
    assert {e.id for e in first.events.values()} == {g.id, rot.id, post.id}
    assert stat.S_IMODE((where / "verified").stat().st_mode) == 0o600

    verified.clear()
    second = await read(clients(a), did, KeyCache(where))  # a new process: from the file
    assert key_checks(verified) == 0
    assert verified["post"] >= 1  # only key events are cached
    assert {e.id for e in second.events.values()} == {g.id, rot.id, post.id}
    assert not second.report.excluded and not second.report.node(a.url).invalid


async def test_a_wire_altered_by_one_byte_is_verified_and_rejected(
    net: tuple[Net, Clients], tmp_path: Path, verified: Counter[str]
) -> None:
    """The cache is keyed by the hash of the exact bytes: the same event id with one
    signature bit flipped is another wire, so it is verified, and rejected."""
    fake, clients = net
    a, b = fake.node("a"), fake.node("b")
    did, g, rot, post = rotated_author()
    a.add(g, rot, post)
    cache = KeyCache(tmp_path / "keycache")
    await read(clients(a), did, cache)
    assert cache.holds(rot.wire)

    b.add(g, post)
    b.serve(broken_signature(rot))  # same header, same id, one byte off
    verified.clear()
    reader = await read(clients(a, b), did, KeyCache(tmp_path / "keycache"))
    assert verified["rotate"] == 1  # the altered copy; the cached one was not re-checked
    invalid = reader.report.node(b.url).invalid
    assert {(x["id"], x["code"]) for x in invalid} == {(rot.id_hex, "invalid-signature")}
    assert rot.id in reader.events and post.id in reader.events


@pytest.mark.parametrize("damage", ["torn", "magic", "shared"])
async def test_a_corrupt_cache_file_is_ignored_and_rebuilt(
    net: tuple[Net, Clients], tmp_path: Path, verified: Counter[str], damage: str
) -> None:
    """A file that does not parse (a torn append, another format) or that others may
    write is trusted for nothing, even a digest it holds, and is rewritten."""
    fake, clients = net
    a = fake.node("a")
    did, g, rot, post = rotated_author()
    bad = broken_signature(rot)
    a.add(g, post)
    a.serve(bad)
    where = tmp_path / "keycache"
    where.mkdir()
    path = where / "verified"
    poisoned = wire_digest(bad)
    data = {
        "torn": MAGIC + poisoned + b"\x00" * 7,
        "magic": b"murmur-keycache-0\n" + poisoned,
        "shared": MAGIC + poisoned,
    }[damage]
    path.write_bytes(data)
    path.chmod(0o666 if damage == "shared" else 0o600)

    reader = await read(clients(a), did, KeyCache(where))
    assert verified["rotate"] == 1
    assert {x["code"] for x in reader.report.node(a.url).invalid} == {"invalid-signature"}
    assert rot.id not in reader.events and post.id not in reader.events
    rebuilt = path.read_bytes()
    assert rebuilt == MAGIC + wire_digest(g.wire)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_an_unwritable_cache_leaves_reads_working(
    net: tuple[Net, Clients], tmp_path: Path, verified: Counter[str]
) -> None:
    fake, clients = net
    a = fake.node("a")
    did, g, rot, post = rotated_author()
    a.add(g, rot, post)
    blocked = tmp_path / "not-a-dir"
    blocked.write_bytes(b"")  # the cache directory cannot be created
    for _ in range(2):
        verified.clear()
        reader = await read(clients(a), did, KeyCache(blocked / "keycache"))
        assert key_checks(verified) >= 2
        assert {e.id for e in reader.events.values()} == {g.id, rot.id, post.id}


def test_the_cache_keeps_its_newest_entries(tmp_path: Path) -> None:
    """Bounded: past max_entries the oldest digests go first, on disk too."""
    cache = KeyCache(tmp_path, max_entries=3)
    wires = [bytes([n]) * 10 for n in range(5)]
    for w in wires[:2]:
        cache.add(w)
    cache.flush()
    for w in wires[2:]:
        cache.add(w)
    cache.flush()
    again = KeyCache(tmp_path, max_entries=3)
    assert [again.holds(w) for w in wires] == [False, False, True, True, True]
    assert len((tmp_path / "verified").read_bytes()) == len(MAGIC) + 3 * 32


def test_kept_key_event_wires_add_bytes_never_trust(tmp_path: Path) -> None:
    """spec 0007 #key-status: the home keeps verified key events' wires by author
    (0600); one is decoded only while its digest is in
    ``verified``; a file others may write, or that is not a database, is not read,
    and is replaced at the next flush."""
    did, g, rot, _ = rotated_author()
    cache = KeyCache(tmp_path, max_entries=2)
    for e in (g, rot):
        cache.add(e.wire)
        cache.keep(e, e.wire)
    cache.flush()
    events = tmp_path / EVENTS_FILE
    assert stat.S_IMODE(events.stat().st_mode) == 0o600
    again = KeyCache(tmp_path)
    assert sorted(again.key_event_wires([did, "did:key:other"])[did]) == sorted([g.wire, rot.wire])
    decoded = known_key_event(again, rot.wire, "murmur")
    assert decoded is not None and decoded.id == rot.id
    (tmp_path / "verified").unlink()
    assert known_key_event(KeyCache(tmp_path), rot.wire, "murmur") is None

    events.chmod(0o666)
    assert KeyCache(tmp_path).key_event_wires([did]) == {}
    events.chmod(0o600)
    events.write_bytes(b"not a database" * 100)
    assert KeyCache(tmp_path).key_event_wires([did]) == {}
    cache = KeyCache(tmp_path, max_entries=2)
    cache.keep(g, g.wire)
    cache.flush()  # the damaged file goes
    cache.keep(g, g.wire)
    cache.flush()
    assert KeyCache(tmp_path).key_event_wires([did]) == {did: [g.wire]}
