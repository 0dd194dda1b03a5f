"""Deletion semantics (spec 0004 §deletion): the author's delete drops the target body
and keeps its header; a later re-delivery never restores it, whatever the order."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from protocol.events import decode_event
from tests.node.backends import Backend, both_backends
from tests.node.conftest import T0, Author, Clock, Node, new_author

# The node API over each store backend (spec 0004 §store: one contract).
pytestmark = both_backends()


async def _event(node: Node, eid: bytes) -> dict[str, Any]:
    r = await node.http.get(f"/v1/events/{eid.hex()}")
    assert r.status_code == 200, r.text
    ev: dict[str, Any] = r.json()["event"]
    return ev


async def test_delete_drops_body_keeps_verifiable_header(node: Node, author: Author) -> None:
    post = author.post("regret")
    delete = author.sign("delete", {"target": post.id})
    assert await node.statuses(post, delete) == ["accepted", "accepted"]
    got = await _event(node, post.id)
    assert got["body"] is None and got["deleted"] is True
    wire = base64.b64decode(got["wire"])
    assert wire == post.without_body().wire
    verified = decode_event(wire, now_ms=T0)  # the header still proves itself
    assert verified.id == post.id and verified.body is None


async def test_redelivery_after_delete_never_restores(node: Node, author: Author) -> None:
    post = author.post("gone")
    await node.ingest(post, author.sign("delete", {"target": post.id}))
    assert await node.statuses(post) == ["duplicate"]
    assert (await _event(node, post.id))["body"] is None


async def test_delete_before_target_means_body_never_stored(node: Node, author: Author) -> None:
    post = author.post("early")
    delete = author.sign("delete", {"target": post.id})
    assert await node.statuses(delete) == ["accepted"]
    assert (await node.http.get(f"/v1/events/{post.id.hex()}")).status_code == 404
    assert await node.statuses(post) == ["accepted"]
    got = await _event(node, post.id)
    assert got["body"] is None and got["deleted"] is True
    assert base64.b64decode(got["wire"]) == post.without_body().wire


async def test_delete_and_target_in_one_batch_either_order(node: Node, author: Author) -> None:
    post = author.post("same batch")
    delete = author.sign("delete", {"target": post.id})
    assert await node.statuses(delete, post) == ["accepted", "accepted"]
    assert (await _event(node, post.id))["body"] is None


async def test_foreign_delete_before_target_has_no_effect(
    node: Node, author: Author, clock: Clock
) -> None:
    post = author.post("mine")
    mallory = new_author(clock)
    assert await node.statuses(mallory.sign("delete", {"target": post.id})) == ["accepted"]
    assert await node.statuses(post) == ["accepted"]
    assert (await _event(node, post.id))["body"] == {"text": "mine"}


async def test_deleted_post_leaves_feed_thread_labels_profiles(
    node: Node, author: Author, clock: Clock
) -> None:
    root = author.post("root")
    reply = author.post("reply", reply={"root": root.id, "parent": root.id})
    old_profile = author.sign("profile", {"name": "Old Name"})
    new_profile = author.sign("profile", {"name": "New Name"})
    label = author.sign("label", {"subject": root.id, "val": "nice"})
    await node.ingest(root, reply, old_profile, new_profile, label)
    thread = (await node.http.get(f"/v1/threads/{root.id.hex()}")).json()
    assert [r["id"] for r in thread["replies"]] == [reply.id.hex()]
    assert (await node.http.get("/v1/profiles?q=new")).json()["profiles"]

    deletes = [author.sign("delete", {"target": e.id}) for e in (reply, new_profile, label)]
    assert await node.statuses(*deletes) == ["accepted"] * 3

    thread = (await node.http.get(f"/v1/threads/{root.id.hex()}")).json()
    assert thread["replies"] == []
    feed = (await node.http.get("/v1/feed", params={"kinds": "post"})).json()["events"]
    assert [e["id"] for e in feed] == [root.id.hex()]
    assert (await node.http.get("/v1/profiles?q=new")).json()["profiles"] == []
    profiles = (await node.http.get("/v1/profiles?q=old")).json()["profiles"]
    assert [p["name"] for p in profiles] == ["Old Name"]  # latest remaining profile
    labels = (await node.http.get("/v1/labels", params={"subject": root.id.hex()})).json()
    assert labels["labels"] == []
    assert (await node.http.get("/v1/info")).json()["counts"]["deleted"] == 3


async def test_deletion_survives_restart(tmp_path: Path, clock: Clock, backend: Backend) -> None:
    author = new_author(clock)
    post = author.post("x")
    delete = author.sign("delete", {"target": post.id})
    store = await backend.open(tmp_path)
    await store.apply_batch([decode_event(delete.wire, now_ms=T0)])
    await store.close()
    store = await backend.open(tmp_path)
    try:
        results = await store.apply_batch([decode_event(post.wire, now_ms=T0)])
        assert results[0].status == "accepted"
        got = await store.get_event(post.id)
        assert got is not None and got.body is None and got.deleted
        assert store.counts().events == 2 and store.counts().deleted == 1
    finally:
        await store.close()
