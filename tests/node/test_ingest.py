"""Ingest: every kind, duplicates, every rejection code, JSON form, gaps and forks
(spec 0004 §ingest)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from protocol import kinds
from protocol.encoding import encode
from protocol.identity import Identity
from tests.node.backends import both_backends
from tests.node.conftest import MSGPACK, T0, Author, Node, b64, forge, new_author

# The node API over each store backend (spec 0004 §store: one contract).
pytestmark = both_backends()

OTHER = Identity.from_seed(b"\x77" * 32)

BODIES: dict[str, dict[str, Any]] = {
    kinds.PROFILE: {"name": "Ada", "bio": "hi"},
    kinds.POST: {"text": "hello", "tags": ["x"], "langs": ["en"]},
    kinds.REPOST: {"target": b"\x01" * 32},
    kinds.LIKE: {"target": b"\x01" * 32},
    kinds.FOLLOW: {"subject": OTHER.did},
    kinds.UNFOLLOW: {"subject": OTHER.did},
    kinds.DELETE: {"target": b"\x02" * 32},
    kinds.LABEL: {"subject": OTHER.did, "val": "spam"},
    kinds.LIST: {"name": "friends", "purpose": "curate", "members": [OTHER.did]},
    "x-poll": {"question": "tea?", "options": ["yes", "no"]},
}


def test_every_v1_kind_has_a_body_here() -> None:
    assert set(kinds.V1_KINDS) <= set(BODIES)


@pytest.mark.parametrize("kind", sorted(BODIES))
async def test_ingest_accepts_every_kind_and_serves_it_back(
    node: Node, author: Author, kind: str
) -> None:
    ev = author.sign(kind, BODIES[kind])
    doc = await node.ingest(ev)
    assert doc["results"] == [{"id": ev.id.hex(), "status": "accepted"}]
    assert (doc["accepted"], doc["duplicate"], doc["rejected"]) == (1, 0, 0)
    got = (await node.http.get(f"/v1/events/{ev.id.hex()}")).json()["event"]
    assert base64.b64decode(got["wire"]) == ev.wire
    assert got["kind"] == kind and got["author"] == author.did and got["seq"] == 1


async def test_duplicate_in_later_batch_and_within_one_batch(node: Node, author: Author) -> None:
    a, b = author.post("a"), author.post("b")
    assert await node.statuses(a, a) == ["accepted", "duplicate"]
    assert await node.statuses(b, a) == ["accepted", "duplicate"]
    info = (await node.http.get("/v1/info")).json()
    assert info["counts"]["events"] == 2


def _rebin16(wire: bytes, header_len: int) -> bytes:
    """Re-encode the header bin with a 2-byte length: same value, non-canonical bytes."""
    assert wire[0] == 0x93 and wire[1] == 0xC4 and wire[2] == header_len
    return b"\x93\xc5" + header_len.to_bytes(2, "big") + wire[3:]


def _cases(a: Author) -> dict[str, bytes]:
    ident = a.identity
    good = a.sign("post", {"text": "ok"})
    deep: Any = 1
    for _ in range(10):
        deep = [deep]
    return {
        "malformed": b"\xc1",
        "non-canonical": _rebin16(good.wire, len(good.header_bytes)),
        "too-large": forge(ident, body={"text": "a", "pad": b"x" * 70_000}),
        "too-deep": forge(ident, body={"text": "a", "x": deep}),
        "bad-field": forge(ident, body={"no_text": "a"}),
        "invalid-did": forge(ident, author="did:key:zNotAKey"),
        "unsupported-version": forge(ident, v=3),  # v2 is spec 0008: accepted
        "wrong-network": forge(ident, net="elsewhere"),
        "future-timestamp": forge(ident, ts=T0 + 11 * 60 * 1000),
        "bad-prev": forge(ident, seq=2, prev=None),
        "body-mismatch": forge(ident, header={"body": hashlib.sha256(b"other").digest()}),
        "invalid-signature": forge(ident, sig=OTHER.sign(b"murmur-event-v1:" + b"\x00" * 32)),
    }


@pytest.mark.parametrize(
    "code",
    [
        "malformed",
        "non-canonical",
        "too-large",
        "too-deep",
        "bad-field",
        "invalid-did",
        "unsupported-version",
        "wrong-network",
        "future-timestamp",
        "bad-prev",
        "body-mismatch",
        "invalid-signature",
    ],
)
async def test_each_rejection_code(node: Node, author: Author, code: str) -> None:
    wire = _cases(author)[code]
    doc = await node.ingest(wire)
    (result,) = doc["results"]
    assert result["status"] == "rejected"
    assert result["error"] == code, result
    assert result["message"]
    assert doc["rejected"] == 1
    assert (await node.http.get("/v1/info")).json()["counts"]["events"] == 0


async def test_not_author_delete_is_stored_with_no_effect(
    node: Node, author: Author, clock: Any
) -> None:
    """Spec 0004 #not-author: stored like any valid event, whatever the order, never
    acting on the target."""
    post = author.post("mine")
    mallory = new_author(clock)
    attack = mallory.sign("delete", {"target": post.id})
    assert await node.statuses(post, attack) == ["accepted", "accepted"]
    got = (await node.http.get(f"/v1/events/{post.id.hex()}")).json()["event"]
    assert got["body"] == {"text": "mine"} and got["deleted"] is False


async def test_one_bad_event_does_not_sink_the_batch(node: Node, author: Author) -> None:
    a, b = author.post("a"), author.post("b")
    assert await node.statuses(a, b"\xc1", b) == ["accepted", "malformed", "accepted"]


async def test_json_batch_form(node: Node, author: Author) -> None:
    a = author.post("json")
    r = await node.http.post("/v1/events", json={"events": [b64(a), "!!", 7, b64(a)]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "rejected", "rejected", "duplicate"]
    assert results[1]["error"] == results[2]["error"] == "malformed"


async def test_msgpack_response_on_request(node: Node, author: Author) -> None:
    from protocol.encoding import decode

    a = author.post("m")
    r = await node.http.post(
        "/v1/events",
        content=encode([a.wire]),
        headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
    )
    assert r.headers["content-type"].startswith(MSGPACK)
    doc = decode(r.content)
    assert doc["results"] == [{"id": a.id.hex(), "status": "accepted"}]


async def test_out_of_order_and_gapped_events_are_accepted(node: Node, author: Author) -> None:
    e1, e2, e3, e4 = (author.post(str(i)) for i in range(4))
    assert await node.statuses(e4, e2) == ["accepted", "accepted"]
    head = (await node.http.get(f"/v1/authors/{author.did}/head")).json()
    assert head["max_seq"] == 4 and head["head_seq"] == 0
    assert head["gaps"] == [[1, 1], [3, 3]]
    assert await node.statuses(e3, e1) == ["accepted", "accepted"]
    head = (await node.http.get(f"/v1/authors/{author.did}/head")).json()
    assert (head["head_seq"], head["head_id"], head["gaps"]) == (4, e4.id.hex(), [])


async def test_forks_are_stored_and_flagged(node: Node, author: Author) -> None:
    e1 = author.post("one")
    e2 = author.post("two")
    twin = author.sign("post", {"text": "other two"}, seq=2, prev=e1.id)
    assert await node.statuses(e1, e2, twin) == ["accepted"] * 3
    head = (await node.http.get(f"/v1/authors/{author.did}/head")).json()
    assert head["forked"] is True
    assert head["forks"] == [{"seq": 2, "ids": sorted([e2.id.hex(), twin.id.hex()])}]
    assert head["head_seq"] == 1
    log = (await node.http.get(f"/v1/authors/{author.did}/events")).json()["events"]
    assert {e["id"] for e in log} == {e1.id.hex(), e2.id.hex(), twin.id.hex()}
    info = (await node.http.get("/v1/info")).json()
    assert info["counts"]["forked_authors"] == 1


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"\xc1\xc1", MSGPACK),  # not msgpack
        (b"\x92\xc4\x01a", MSGPACK),  # truncated array
        (encode({"events": []}), MSGPACK),  # a map, not an array
        (b"\x91\x81\xa1a\xa1b", MSGPACK),  # nested map: deeper than a batch may be
        (b'{"events": [', "application/json"),
        (b"[" * 100_000, "application/json"),  # hostile nesting
        (b'{"nope": 1}', "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
    ids=["garbage", "truncated", "map", "deep", "json-eof", "json-deep", "json-shape", "json-utf"],
)
async def test_malformed_batches_are_400(node: Node, body: bytes, ctype: str) -> None:
    r = await node.http.post("/v1/events", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, r.text
    doc = r.json()
    assert doc["error"] in ("bad-request", "too-deep") and doc["message"]
    assert "Traceback" not in r.text


async def test_unsupported_media_type_is_415(node: Node, author: Author) -> None:
    r = await node.http.post(
        "/v1/events", content=author.post().wire, headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["error"] == "unsupported-media-type"


async def test_empty_batch_is_fine(node: Node) -> None:
    doc = await node.ingest()
    assert doc == {"results": [], "accepted": 0, "duplicate": 0, "rejected": 0}


async def test_copies_of_held_events_are_duplicates_before_any_check(
    node: Node, author: Author
) -> None:
    """Spec 0004 #dup-first: a held id is answered `duplicate` unverified, and the
    stored event is untouched; an unheld id with the same defect is still rejected."""
    held = author.post("kept")
    await node.ingest(held)
    sig_forged = encode([held.header_bytes, b"\x00" * 64, held.body_bytes])
    body_swapped = encode([held.header_bytes, held.sig, encode({"text": "other"})])
    doc = await node.ingest(sig_forged, body_swapped)
    assert [r["status"] for r in doc["results"]] == ["duplicate", "duplicate"]
    assert {r["id"] for r in doc["results"]} == {held.id.hex()}
    r = await node.http.get(f"/v1/events/{held.id.hex()}")
    assert base64.b64decode(r.json()["event"]["wire"]) == held.wire
    fresh = author.post("new")
    doc = await node.ingest(encode([fresh.header_bytes, b"\x00" * 64, fresh.body_bytes]))
    assert (doc["results"][0]["status"], doc["results"][0]["error"]) == (
        "rejected", "invalid-signature"
    )
