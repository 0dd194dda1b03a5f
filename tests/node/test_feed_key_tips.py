"""The feed answer names the key-event tips of its page's did:murmur authors (spec
0004 #feed-key-tips): the last key event of the node's canonical path, then the
contenders of a dispute; nothing for did:key authors or authors not on the page."""

from __future__ import annotations

from typing import Any

from tests.node.backends import both_backends
from tests.node.conftest import Author, Node
from tests.node.test_key_rotation import theft
from tests.rotatable import Rotatable

pytestmark = both_backends()


async def feed_doc(node: Node, *authors: str, post: bool = False) -> dict[str, Any]:
    query = {"authors": list(authors), "kinds": ["post"], "limit": 50}
    if post:
        r = await node.http.post("/v1/feed", json=query)
    else:
        r = await node.http.get("/v1/feed", params={"authors": ",".join(authors), "kinds": "post"})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def test_the_feed_names_each_rotatable_authors_tips(node: Node, author: Author) -> None:
    """spec 0004 #feed-key-tips: tips follow the node's path through a dispute (the
    path's last key event and the contenders) and its settling by a recovery; a did:key
    author and a did:murmur author with nothing on the page are not named."""
    a, ev = theft("tips-alice")
    g = a.genesis
    quiet = Rotatable("tips-quiet")
    t_rot = a.rotate("N0", "T1", "T2", after=ev["t_post"], kev=g)
    events = [g, ev["p1"], ev["prof"], ev["t_post"], t_rot, ev["K1"], ev["p2"], quiet.genesis]
    assert await node.statuses(*events) == ["accepted"] * len(events)
    assert await node.statuses(author.post("hi")) == ["accepted"]

    for post in (False, True):
        doc = await feed_doc(node, a.did, author.did, quiet.did, post=post)
        assert {e["id"] for e in doc["events"]} >= {ev["p1"].id.hex()}
        tied = sorted([t_rot.id.hex(), ev["K1"].id.hex()])
        assert doc["key_tips"] == {a.did: [g.id.hex(), *tied]}

    rec = a.recover("R0", "S2", "N2", after=ev["p2"], kev=ev["K1"])
    assert await node.statuses(rec) == ["accepted"]
    doc = await feed_doc(node, a.did, author.did, post=True)
    assert doc["key_tips"] == {a.did: [rec.id.hex()]}
    assert (await feed_doc(node, author.did))["key_tips"] == {}
