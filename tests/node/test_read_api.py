"""The read API (spec 0004 §read): event by id, author log and head, feed, thread,
labels, profiles, info, health, metrics, OpenAPI, content negotiation and 4xx errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from protocol.encoding import decode
from protocol.events import Event, decode_event
from tests.node.backends import both_backends
from tests.node.conftest import MSGPACK, T0, Author, Clock, Node, new_author

# The node API over each store backend (spec 0004 §store: one contract).
pytestmark = both_backends()

ROOT = Path(__file__).resolve().parents[2]


async def get(node: Node, path: str, status: int = 200, **params: Any) -> Any:
    r = await node.http.get(path, params=params) if params else await node.http.get(path)
    assert r.status_code == status, r.text
    return r.json()


async def test_event_by_id_json_and_msgpack(node: Node, author: Author) -> None:
    ev = author.post("x", reply={"root": b"\x05" * 32, "parent": b"\x05" * 32})
    await node.ingest(ev)
    doc = (await get(node, f"/v1/events/{ev.id.hex()}"))["event"]
    assert doc["body"]["reply"]["root"] == "05" * 32  # bytes as hex in JSON
    assert decode_event(base64.b64decode(doc["wire"]), now_ms=T0).id == ev.id
    for kwargs in ({"params": {"format": "msgpack"}}, {"headers": {"Accept": MSGPACK}}):
        r = await node.http.get(f"/v1/events/{ev.id.hex()}", **kwargs)  # type: ignore[arg-type]
        assert r.headers["content-type"].startswith(MSGPACK)
        packed = decode(r.content)["event"]
        assert packed["wire"] == ev.wire and packed["id"] == ev.id.hex()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/events/" + "ab" * 32, 404, "not-found"),
        ("/v1/events/xyz", 400, "bad-request"),
        ("/v1/events/" + "zz" * 32, 400, "bad-request"),
        ("/v1/authors/did:key:zNope/events", 400, "invalid-did"),
        ("/v1/authors/did:key:zNope/head", 400, "invalid-did"),
        ("/v1/threads/nothex", 400, "bad-request"),
        ("/v1/feed?limit=-1", 400, "bad-request"),
        ("/v1/feed?limit=abc", 400, "bad-request"),
        ("/v1/feed?before=garbage", 400, "bad-request"),
        ("/v1/feed?authors=not-a-did", 400, "invalid-did"),
        ("/v1/feed?format=xml", 400, "bad-request"),
        ("/v1/labels", 400, "bad-request"),
        ("/v1/labels?subject=123", 400, "bad-request"),
        ("/v1/profiles", 400, "bad-request"),
        ("/v1/stream?cursor=-4", 400, "bad-request"),
        ("/v1/nothing", 404, "not-found"),
        ("/v1/authors/" + "x" * 5000 + "/head", 400, "invalid-did"),
    ],
)
async def test_client_mistakes_are_json_4xx(node: Node, path: str, status: int, code: str) -> None:
    r = await node.http.get(path)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]


async def test_wrong_method_is_405_json(node: Node) -> None:
    r = await node.http.delete("/v1/events")
    assert r.status_code == 405 and r.json()["error"] == "method-not-allowed"
    assert "POST" in r.headers["Allow"]


async def test_author_log_paging_and_head(node: Node, author: Author) -> None:
    events = [author.post(str(i)) for i in range(7)]
    await node.ingest(*events)
    did = author.did
    page1 = await get(node, f"/v1/authors/{did}/events", limit=3)
    assert [e["seq"] for e in page1["events"]] == [1, 2, 3] and page1["next_from_seq"] == 4
    page2 = await get(node, f"/v1/authors/{did}/events", limit=3, from_seq=4)
    assert [e["seq"] for e in page2["events"]] == [4, 5, 6]
    page3 = await get(node, f"/v1/authors/{did}/events", limit=3, from_seq=7)
    assert [e["seq"] for e in page3["events"]] == [7] and page3["next_from_seq"] is None
    ranged = await get(node, f"/v1/authors/{did}/events", from_seq=2, to_seq=3)
    assert [e["id"] for e in ranged["events"]] == [events[1].id.hex(), events[2].id.hex()]
    head = await get(node, f"/v1/authors/{did}/head")
    assert head == {
        "author": did, "max_seq": 7, "head_seq": 7, "head_id": events[-1].id.hex(),
        "count": 7, "gaps": [], "forks": [], "broken_links": [], "forked": False,
        "truncated": False,
    }
    await get(node, f"/v1/authors/{new_author(author.clock).did}/head", status=404)


async def test_author_log_never_splits_a_fork_across_pages(node: Node, author: Author) -> None:
    e1, e2 = author.post("1"), author.post("2")
    twin = author.sign("post", {"text": "2b"}, seq=2, prev=e1.id)
    await node.ingest(e1, e2, twin)
    page = await get(node, f"/v1/authors/{author.did}/events", limit=2)
    assert [e["seq"] for e in page["events"]] == [1] and page["next_from_seq"] == 2
    page = await get(node, f"/v1/authors/{author.did}/events", limit=2, from_seq=2)
    assert sorted(e["id"] for e in page["events"]) == sorted([e2.id.hex(), twin.id.hex()])


async def test_feed_newest_first_with_cursor_paging(node: Node, clock: Clock) -> None:
    alice, bob, carol = new_author(clock), new_author(clock), new_author(clock)
    evs = []
    for i in range(5):
        evs.append(alice.sign("post", {"text": f"a{i}"}, ts=T0 + 10 * i))
        evs.append(bob.sign("post", {"text": f"b{i}"}, ts=T0 + 10 * i + 5))
    evs.append(bob.sign("like", {"target": evs[0].id}, ts=T0 + 100))
    evs.append(carol.sign("post", {"text": "c"}, ts=T0 + 200))
    await node.ingest(*evs)
    seen: list[str] = []
    before = None
    for _ in range(10):
        params: dict[str, Any] = {"authors": f"{alice.did},{bob.did}", "kinds": "post", "limit": 4}
        if before:
            params["before"] = before
        doc = await get(node, "/v1/feed", **params)
        seen += [e["body"]["text"] for e in doc["events"]]
        before = doc["next"]
        if before is None:
            break
    assert seen == ["b4", "a4", "b3", "a3", "b2", "a2", "b1", "a1", "b0", "a0"]
    repeated = await get(node, f"/v1/feed?authors={alice.did}&authors={carol.did}&limit=2")
    assert [e["body"]["text"] for e in repeated["events"]] == ["c", "a4"]
    everyone = await get(node, "/v1/feed", limit=1)
    assert everyone["events"][0]["author"] == carol.did


async def test_thread_root_and_replies_paged(node: Node, author: Author, clock: Clock) -> None:
    other = new_author(clock)
    root = author.post("root")
    replies: list[Event] = []
    for i in range(5):
        who = author if i % 2 else other
        parent = root.id if i == 0 else replies[-1].id
        replies.append(who.post(f"r{i}", reply={"root": root.id, "parent": parent}))
    unrelated = other.post("unrelated")
    await node.ingest(*replies, unrelated, root)
    page = await get(node, f"/v1/threads/{root.id.hex()}", limit=3)
    assert page["root"]["id"] == root.id.hex()
    texts = [r["body"]["text"] for r in page["replies"]]
    page2 = await get(node, f"/v1/threads/{root.id.hex()}", limit=3, after=page["next"])
    texts += [r["body"]["text"] for r in page2["replies"]]
    assert texts == ["r0", "r1", "r2", "r3", "r4"] and page2["next"] is None
    # replies known before their root: the thread is still served
    orphan_root = b"\x09" * 32
    await node.ingest(other.post("orphan", reply={"root": orphan_root, "parent": orphan_root}))
    orphan = await get(node, f"/v1/threads/{orphan_root.hex()}")
    assert orphan["root"] is None and len(orphan["replies"]) == 1
    await get(node, f"/v1/threads/{'0c' * 32}", status=404)


async def test_labels_by_subject_and_labeler(node: Node, author: Author, clock: Clock) -> None:
    labeler_a, labeler_b = new_author(clock), new_author(clock)
    post = author.post("spammy")
    evs = [
        post,
        labeler_a.sign("label", {"subject": post.id, "val": "spam"}),
        labeler_b.sign("label", {"subject": post.id, "val": "ok", "neg": True, "exp": T0 + 1}),
        labeler_a.sign("label", {"subject": author.did, "val": "bot"}),
    ]
    await node.ingest(*evs)
    by_subject = await get(node, "/v1/labels", subject=post.id.hex())
    assert [(x["labeler"], x["val"]) for x in by_subject["labels"]] == [
        (labeler_a.did, "spam"),
        (labeler_b.did, "ok"),
    ]
    assert by_subject["labels"][1]["neg"] is True and by_subject["labels"][1]["exp"] == T0 + 1
    only_b = await get(node, "/v1/labels", subject=post.id.hex(), labeler=labeler_b.did)
    assert [x["val"] for x in only_b["labels"]] == ["ok"]
    by_did = await get(node, "/v1/labels", subject=author.did)
    assert [x["val"] for x in by_did["labels"]] == ["bot"]
    by_labeler = await get(node, "/v1/labels", labeler=labeler_a.did, limit=1)
    assert [x["val"] for x in by_labeler["labels"]] == ["spam"] and by_labeler["next"]
    rest = await get(node, "/v1/labels", labeler=labeler_a.did, after=by_labeler["next"])
    assert [x["val"] for x in rest["labels"]] == ["bot"]
    wire = base64.b64decode(by_did["labels"][0]["event"]["wire"])
    assert wire == evs[3].wire


async def test_profile_search_uses_latest_profile(node: Node, clock: Clock) -> None:
    ada, bob = new_author(clock), new_author(clock)
    old = ada.sign("profile", {"name": "Ada L"})
    new = ada.sign("profile", {"name": "Countess Ada", "bio": "math"})
    await node.ingest(new, old, bob.sign("profile", {"name": "Bobby 100%_"}))
    found = await get(node, "/v1/profiles", q="ADA")
    assert [(p["author"], p["name"], p["bio"]) for p in found["profiles"]] == [
        (ada.did, "Countess Ada", "math")
    ]
    assert (await get(node, "/v1/profiles", q="Ada L"))["profiles"] == []
    assert [p["name"] for p in (await get(node, "/v1/profiles", q="100%_"))["profiles"]] == [
        "Bobby 100%_"
    ]
    assert (await get(node, "/v1/profiles", q="%"))["profiles"][0]["author"] == bob.did


async def test_info_health_metrics(node: Node, author: Author) -> None:
    await node.ingest(author.post(), b"\xc1")
    info = await get(node, "/v1/info")
    assert info["network"] == "murmur" and info["version"]
    assert info["counts"]["events"] == 1 and info["counts"]["authors"] == 1
    assert info["limits"]["max_batch"] == node.config.limits.max_batch
    assert await get(node, "/health") == {"status": "ok"}
    text = (await node.http.get("/metrics")).text
    assert 'murmur_events_ingested_total{result="accepted"} 1' in text
    assert 'murmur_events_ingested_total{result="rejected",code="malformed"} 1' in text
    assert "murmur_events_stored 1" in text
    assert 'route="/v1/info",method="GET",status="200"' in text


async def test_openapi_served_verbatim_and_matches_specs(node: Node) -> None:
    r = await node.http.get("/openapi.json")
    assert r.status_code == 200
    spec_text = (ROOT / "specs" / "openapi.json").read_text("utf-8")
    assert r.text == spec_text
    doc = json.loads(spec_text)
    assert doc["openapi"].startswith("3.1")
    routes = {
        "/v1/events", "/v1/events/{id}", "/v1/authors/{did}/events", "/v1/authors/{did}/head",
        "/v1/authors/{did}/keys", "/v1/keys",
        "/v1/feed", "/v1/threads/{id}", "/v1/labels", "/v1/profiles", "/v1/search",
        "/v1/stream",
        "/v1/info", "/health", "/metrics", "/openapi.json", "/v1/sync", "/v1/peers",
        "/v1/notifications", "/v1/followers/{did}", "/v1/events/{id}/reactions", "/v1/counts",
        "/v1/stats", "/v1/authors/events", "/v1/blobs", "/v1/blobs/{hash}",
        "/v1/feeds", "/v1/feeds/{name}", "/v1/reacted",
    }
    assert set(doc["paths"]) == routes
    served = {
        r.resource.canonical for r in node.app.router.routes() if r.resource is not None
    }
    assert served == routes


async def test_feed_by_post_matches_get_and_checks_its_body(
    node: Node, make_author: Any
) -> None:
    """POST /v1/feed (long author lists in a JSON body) answers exactly as GET does."""
    authors = [make_author() for _ in range(3)]
    events = [a.post(f"p{i}") for i, a in enumerate(authors) for _ in range(2)]
    await node.ingest(*events)
    dids = [a.did for a in authors[:2]]
    got = await node.http.get("/v1/feed", params={"authors": ",".join(dids), "limit": 3})
    posted = await node.http.post("/v1/feed", json={"authors": dids, "limit": 3})
    assert posted.status_code == 200 and posted.json() == got.json()
    nxt = posted.json()["next"]
    page2 = await node.http.post("/v1/feed", json={"authors": dids, "before": nxt})
    assert len(page2.json()["events"]) == 1
    bad: Any
    for bad in ({"authors": "x"}, {"authors": ["not-a-did"]}, {"limit": 0}, {"extra": 1},
                {"before": "9999999999999999999.1"}, [], {"kinds": [1]}):
        r = await node.http.post("/v1/feed", json=bad)
        assert r.status_code == 400 and r.json()["error"] in ("bad-request", "invalid-did"), bad
    r = await node.http.post(
        "/v1/feed", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    r = await node.http.post("/v1/feed", content=b"[" * 5000,
                               headers={"Content-Type": "application/json"})
    assert r.status_code == 400
