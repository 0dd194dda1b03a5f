"""``POST /v1/keys``: the key events of many authors in one answer (spec 0004
#keys-batch): the single-author ``/keys`` answer per author that has key events, the
author list bounded by ``max_feed_authors`` and strictly parsed, the answer bounded in
key events (the rest ``deferred``), 400 (never 500) on bad input.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

import node.api.events as events_api
from protocol.encoding import decode
from tests.node.backends import both_backends
from tests.node.conftest import Author, Node
from tests.node.test_key_rotation import theft
from tests.rotatable import Rotatable

pytestmark = both_backends()


async def keys(node: Node, body: Any) -> Any:
    return await node.http.post(
        "/v1/keys", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


async def test_keys_of_many_authors_in_one_answer(node: Node, author: Author) -> None:
    """spec 0004 #keys-batch: each listed did:murmur author's group is exactly its
    GET /v1/authors/{did}/keys answer (every branch, path, dispute), a did:key author
    or an unknown one has no group, duplicates count once, msgpack works."""
    a, ev = theft()
    b = Rotatable("bob")
    await node.ingest(*ev.values(), b.genesis, author.post())
    unknown = Rotatable("nobody").did
    r = await keys(node, {"authors": [author.did, a.did, unknown, b.did, a.did]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["deferred"] == []
    assert [g["author"] for g in doc["keys"]] == [a.did, b.did]
    for group in doc["keys"]:
        single = (await node.http.get(f"/v1/authors/{group['author']}/keys")).json()
        assert group == single
    (alice, bob) = doc["keys"]
    assert [e["id"] for e in alice["events"]] == [a.genesis.id.hex(), ev["K1"].id.hex()]
    assert base64.b64decode(alice["events"][1]["wire"]) == ev["K1"].wire
    assert alice["path"] == [a.genesis.id.hex(), ev["K1"].id.hex()]
    assert bob["path"] == [b.genesis.id.hex()] and bob["disputed"] is None
    only_key = (await keys(node, {"authors": [author.did]})).json()
    assert only_key == {"keys": [], "deferred": []}
    packed = await node.http.post(
        "/v1/keys?format=msgpack", json={"authors": [b.did]}
    )
    assert decode(packed.content)["keys"][0]["events"][0]["wire"] == b.genesis.wire


async def test_the_answer_is_bounded_in_key_events(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec 0004 #keys-batch: authors whose key events do not fit the answer's bound
    are listed in ``deferred``, in order, never cut in the middle."""
    a, ev = theft()  # two key events
    b, c = Rotatable("bob"), Rotatable("carol")  # one each
    await node.ingest(*ev.values(), b.genesis, c.genesis)
    monkeypatch.setattr(events_api, "MAX_KEYS_BATCH_EVENTS", 2)
    doc = (await keys(node, {"authors": [b.did, a.did, c.did]})).json()
    assert [g["author"] for g in doc["keys"]] == [b.did, c.did]
    assert doc["deferred"] == [a.did]
    assert sum(len(g["events"]) for g in doc["keys"]) <= 2


async def test_at_most_max_feed_authors(start_node: Callable[..., Any]) -> None:
    """spec 0004 #keys-batch: more than max_feed_authors distinct dids is a 400."""
    node: Node = await start_node(max_feed_authors=2)
    dids = [Rotatable(f"r{i}").did for i in range(3)]
    assert (await keys(node, {"authors": dids[:2] + dids[:2]})).status_code == 200
    r = await keys(node, {"authors": dids})
    assert r.status_code == 400 and r.json()["error"] == "bad-request"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "bad-request"),
        ({"authors": []}, "bad-request"),
        ({"authors": "did:key:z6Mk"}, "bad-request"),
        ({"authors": [1]}, "bad-request"),
        ({"authors": [None]}, "bad-request"),
        ({"authors": ["did:key:nope"]}, "invalid-did"),
        ({"authors": ["did:murmur:" + "A" * 52]}, "invalid-did"),
        ({"authors": ["not a did"]}, "invalid-did"),
        ({"authors": [], "kinds": ["post"]}, "bad-request"),
        ([], "bad-request"),
        ("authors", "bad-request"),
        (None, "bad-request"),
    ],
    ids=lambda v: repr(v)[:40],
)
async def test_bad_bodies_are_400(node: Node, body: Any, code: str) -> None:
    """spec 0004 #keys-batch: strictly parsed; every bad body is a 400, never a 500."""
    r = await keys(node, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == code


async def test_bad_transport_forms_are_refused(node: Node) -> None:
    """spec 0004 #keys-batch: not JSON (400), not application/json (415), over 64 KiB
    (413)."""
    r = await node.http.post(
        "/v1/keys", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = await node.http.post(
        "/v1/keys", content=b'{"authors": []}', headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    big = {"authors": ["did:key:z6Mk" + "a" * 100] * 700}
    r = await keys(node, big)
    assert r.status_code == 413
