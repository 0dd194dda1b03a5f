"""Nodes and rotatable identities (spec 0008 #nodes, #validity, #status).

In-process nodes take v2 events through ``POST /v1/events``: every §8.5 rejection,
key events applied first in a batch, statuses recomputed when a rotation or recovery
arrives (the thief's forged post, reply, follow, label, profile and delete revoked and
out of every view; the owner's deleted post back as a missing body), the same outcome
in every order of arrival, and ``GET /v1/authors/{did}/keys``.
"""

from __future__ import annotations

import random
from typing import Any

import node.store.keyplan as keys_mod
from protocol.events import Event
from protocol.keystate import input_of, resolve
from tests.node.backends import both_backends
from tests.node.conftest import Author, Node
from tests.rotatable import Rotatable

OTHER = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


pytestmark = both_backends()


def theft(name: str = "alice") -> tuple[Rotatable, dict[str, Event]]:
    """Alice posts and sets her profile; a thief with her signing key S0 forges a post,
    a reply, a follow, a label, a profile and a delete of her post after that, and
    tries to rotate; alice rotates with N0 from her own last event, then posts with S1.
    """
    a = Rotatable(name)
    ev: dict[str, Event] = {"G": a.genesis}
    g = a.genesis
    ev["p1"] = a.sign("S0", "post", {"text": "hello from alice"}, after=g, kev=g)
    ev["prof"] = a.sign("S0", "profile", {"name": "alice"}, after=ev["p1"], kev=g)
    # The thief, from the head he sees.
    ev["t_post"] = a.sign("S0", "post", {"text": "send me coins"}, after=ev["prof"], kev=g)
    ev["t_reply"] = a.sign(
        "S0",
        "post",
        {"text": "it was me", "reply": {"root": ev["p1"].id, "parent": ev["p1"].id}},
        after=ev["t_post"],
        kev=g,
    )
    ev["t_follow"] = a.sign("S0", "follow", {"subject": OTHER}, after=ev["t_reply"], kev=g)
    ev["t_label"] = a.sign(
        "S0", "label", {"subject": ev["p1"].id, "val": "spam"}, after=ev["t_follow"], kev=g
    )
    ev["t_prof"] = a.sign("S0", "profile", {"name": "mallory"}, after=ev["t_label"], kev=g)
    ev["t_del"] = a.sign("S0", "delete", {"target": ev["p1"].id}, after=ev["t_prof"], kev=g)
    # The owner's rotation names her own last event; then she posts with S1.
    ev["K1"] = a.rotate("N0", "S1", "N1", after=ev["prof"], kev=g)
    ev["p2"] = a.sign("S1", "post", {"text": "rotated"}, after=ev["K1"], kev=ev["K1"])
    return a, ev


FORGED = ("t_post", "t_reply", "t_follow", "t_label", "t_prof", "t_del")


async def post_one_by_one(node: Node, events: list[Event]) -> None:
    """One event per request, in the given order; events refused as retryable
    (``unknown-key-event``: their key event is not there yet) are sent again after the
    others, as a peer's next sync would, until every one is stored."""
    waiting = list(events)
    for _ in range(len(events) + 1):
        retry: list[Event] = []
        for ev in waiting:
            (status,) = await node.statuses(ev)
            if status == "unknown-key-event":
                retry.append(ev)
            else:
                assert status in ("accepted", "duplicate"), (ev.kind, status)
        if not retry:
            return
        assert len(retry) < len(waiting), "no progress"
        waiting = retry
    raise AssertionError("did not converge")


async def event_doc(node: Node, ev: Event) -> dict[str, Any]:
    r = await node.http.get(f"/v1/events/{ev.id.hex()}")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()["event"]
    return doc


async def feed_ids(node: Node, did: str, kinds: str | None = None) -> set[str]:
    params = {"authors": did, "limit": "200"}
    if kinds:
        params["kinds"] = kinds
    r = await node.http.get("/v1/feed", params=params)
    assert r.status_code == 200, r.text
    return {e["id"] for e in r.json()["events"]}


async def profile_names(node: Node, q: str) -> list[str]:
    r = await node.http.get("/v1/profiles", params={"q": q})
    assert r.status_code == 200, r.text
    return [p["name"] for p in r.json()["profiles"]]


async def view(node: Node, a: Rotatable, ev: dict[str, Event]) -> dict[str, Any]:
    """Everything a reader sees of alice on ``node``."""
    statuses: dict[str, tuple[str, str | None, bool] | None] = {}
    for name, e in ev.items():
        r = await node.http.get(f"/v1/events/{e.id.hex()}")
        doc = r.json()["event"] if r.status_code == 200 else None
        statuses[name] = None if doc is None else (doc["status"], doc["revoked_by"], doc["deleted"])
    thread = (await node.http.get(f"/v1/threads/{ev['p1'].id.hex()}")).json()
    labels = (await node.http.get("/v1/labels", params={"labeler": a.did})).json()
    return {
        "statuses": statuses,
        "feed": await feed_ids(node, a.did),
        "follows": await feed_ids(node, a.did, "follow,unfollow"),
        "alice": await profile_names(node, "alice"),
        "mallory": await profile_names(node, "mallory"),
        "replies": [r["id"] for r in thread["replies"]],
        "labels": [x["event"]["id"] for x in labels["labels"]],
    }


# -- §8.5 rejections ------------------------------------------------------------------


async def test_each_key_state_rejection_through_post(node: Node) -> None:
    """spec 0008 #validity steps 1-4, each with its stable code, nothing refused stored;
    unknown-key-event is retryable: the same bytes are accepted once the key event is
    held."""
    a, ev = theft()
    g = a.genesis
    assert await node.statuses(g, ev["p1"]) == ["accepted", "accepted"]
    random_kev = bytes(range(32))
    cases = {
        # step 2: kev not held (retryable)
        "unknown-key-event": a.sign("S0", "post", {"text": "x"}, after=ev["p1"], kev=random_kev),
        # step 2: kev held but not a key event; step 3: seq not above kev's
        "bad-kev": a.sign("S0", "post", {"text": "x"}, after=ev["p1"], kev=ev["p1"]),
        # step 4: a rotate signed by S; a post signed by the next key
        "unauthorized-key": a.rotate("S0", "S1", "N1", after=ev["p1"], kev=g),
        # step 4: #new-keys — the new signing key is the replaced one
        "bad-field": a.rotate("N0", "S0", "N1", after=ev["p1"], kev=g),
    }
    for code, wire in cases.items():
        doc = await node.ingest(wire)
        (result,) = doc["results"]
        assert (result["status"], result["error"]) == ("rejected", code), (code, result)
    post_by_n = a.sign("N0", "post", {"text": "x"}, after=ev["p1"], kev=g)
    assert await node.statuses(post_by_n) == ["unauthorized-key"]
    # Step 1 (a genesis at another seq, signer or did) is the decoder's: the v2
    # event vectors (tests/protocol/test_v2_vectors.py) pin it.
    other = Rotatable("other")
    # Step 2: kev names another author's key event — unknown until it is held, then
    # bad-kev for good.
    wrong = a.sign("S0", "post", {"text": "x"}, after=ev["p1"], kev=other.genesis)
    assert await node.statuses(wrong) == ["unknown-key-event"]
    assert await node.statuses(other.genesis) == ["accepted"]
    assert await node.statuses(wrong) == ["bad-kev"]
    # Step 3: seq not above the seq of the key event at kev.
    assert await node.statuses(ev["prof"], ev["K1"]) == ["accepted", "accepted"]
    low = a.sign("S1", "post", {"text": "x"}, after=ev["prof"], kev=ev["K1"])
    assert low.seq == ev["K1"].seq
    assert await node.statuses(low) == ["bad-kev"]
    # Nothing refused was stored.
    for wire in [*cases.values(), post_by_n, low, wrong]:
        r = await node.http.get(f"/v1/events/{wire.id.hex()}")
        assert r.status_code == 404
    # The retryable one becomes valid when its key event arrives: here the real K1.
    k2 = a.rotate("N1", "S2", "N2", after=ev["p2"], kev=ev["K1"])
    later = a.sign("S2", "post", {"text": "after K2"}, after=k2, kev=k2)
    assert await node.statuses(later) == ["unknown-key-event"]
    assert await node.statuses(ev["p2"], k2) == ["accepted", "accepted"]
    assert await node.statuses(later) == ["accepted"]


async def test_key_events_are_applied_first_in_a_batch(node: Node) -> None:
    """spec 0008 #nodes: an ordinary event before its key event in one batch is
    accepted, as are key events listed child first."""
    a, ev = theft()
    doc = await node.ingest(ev["p2"], ev["K1"], ev["prof"], ev["p1"], a.genesis)
    assert [r["status"] for r in doc["results"]] == ["accepted"] * 5
    assert (await event_doc(node, ev["p2"]))["status"] == "canonical"


# -- statuses after a rotation --------------------------------------------------------


async def test_owner_rotation_revokes_the_thiefs_events(node: Node) -> None:
    """spec 0008 #status, #revoked-by, #revoked-delete: before the rotation the forged
    events count (the node cannot tell); after it they are revoked by K1, out of the
    feed, thread, label index, profile and follows, and kept as evidence; the deleted
    post is a missing body again, completed by a copy."""
    a, ev = theft()
    before = [ev[n] for n in ("G", "p1", "prof", *FORGED)]
    assert await node.statuses(*before) == ["accepted"] * len(before)
    seen = await view(node, a, ev)
    assert seen["mallory"] == ["mallory"] and seen["alice"] == []
    assert (await event_doc(node, ev["p1"]))["deleted"] is True
    # The thief cannot rotate: S0 is not the next key.
    thief_rotate = a.rotate("S0", "T1", "T2", after=ev["t_del"], kev=a.genesis)
    assert await node.statuses(thief_rotate) == ["unauthorized-key"]

    assert await node.statuses(ev["K1"], ev["p2"]) == ["accepted", "accepted"]
    seen = await view(node, a, ev)
    k1 = ev["K1"].id.hex()
    for name in FORGED:
        assert seen["statuses"][name] == ("revoked", k1, False), name
    for name in ("G", "prof", "K1", "p2"):
        assert seen["statuses"][name] == ("canonical", None, False), name
    assert seen["statuses"]["p1"] == ("canonical", None, False)  # no longer deleted
    assert seen["feed"] == {ev[n].id.hex() for n in ("G", "p1", "prof", "K1", "p2")}
    assert seen["follows"] == set()
    assert seen["alice"] == ["alice"] and seen["mallory"] == []
    assert seen["replies"] == [] and seen["labels"] == []
    # The forged events are still served (evidence) and stay in the sync set.
    assert (await event_doc(node, ev["t_post"]))["body"] == {"text": "send me coins"}
    # p1 is a missing body: a full copy (the owner's outbox, a peer) completes it.
    doc = await event_doc(node, ev["p1"])
    assert doc["body"] is None and doc["deleted"] is False
    assert await node.statuses(ev["p1"]) == ["accepted"]
    assert (await event_doc(node, ev["p1"]))["body"] == {"text": "hello from alice"}


async def test_recovery_beats_a_tie(node: Node) -> None:
    """spec 0008 #fork-choice: a thief holding S0 and N0 rotates too: two rotations at
    the genesis tie (disputed, reported by /keys); the owner's recovery with R0 wins and
    revokes the thief's branch."""
    a, ev = theft()
    g = a.genesis
    t_rot = a.rotate("N0", "T1", "T2", after=ev["t_post"], kev=g)
    t_post = a.sign("T1", "post", {"text": "mine now"}, after=t_rot, kev=t_rot)
    events = [g, ev["p1"], ev["prof"], ev["t_post"], t_rot, t_post, ev["K1"], ev["p2"]]
    assert await node.statuses(*events) == ["accepted"] * len(events)
    keys = (await node.http.get(f"/v1/authors/{a.did}/keys")).json()
    assert keys["path"] == [g.id.hex()]
    assert keys["disputed"] == {
        "point": g.id.hex(),
        "contenders": sorted([t_rot.id.hex(), ev["K1"].id.hex()]),
    }
    assert (await event_doc(node, t_post))["status"] == "disputed"
    assert (await event_doc(node, ev["p2"]))["status"] == "disputed"
    assert t_post.id.hex() not in await feed_ids(node, a.did)

    rec = a.recover("R0", "S2", "N2", after=ev["p2"], kev=ev["K1"])
    assert await node.statuses(rec) == ["accepted"]
    keys = (await node.http.get(f"/v1/authors/{a.did}/keys")).json()
    assert keys["path"] == [g.id.hex(), ev["K1"].id.hex(), rec.id.hex()]
    assert keys["disputed"] is None
    for e in (t_rot, t_post, ev["t_post"]):
        doc = await event_doc(node, e)
        assert (doc["status"], doc["revoked_by"]) == ("revoked", ev["K1"].id.hex())
    assert (await event_doc(node, ev["p2"]))["status"] == "canonical"


async def test_theft_in_any_order_gives_the_same_node(start_node: Any) -> None:
    """spec 0008 #validity, #status ("whatever the order"): the theft set posted one
    event per request in several orders gives identical statuses, feeds, profiles,
    follows, threads and labels (bodies compared after a repair pass)."""
    a, ev = theft()
    names = list(ev)
    orders = [names, names[::-1]]
    rng = random.Random(15)
    for _ in range(3):
        shuffled = names[:]
        rng.shuffle(shuffled)
        orders.append(shuffled)
    views = []
    for order in orders:
        node = await start_node()
        await post_one_by_one(node, [ev[n] for n in order])
        # Repair pass: what a revoked delete left body-less is completed by a copy.
        await post_one_by_one(node, [ev[n] for n in order])
        views.append(await view(node, a, ev))
    assert all(v == views[0] for v in views[1:])
    assert views[0]["statuses"]["t_del"] == ("revoked", ev["K1"].id.hex(), False)
    assert views[0]["alice"] == ["alice"]


# -- GET /v1/authors/{did}/keys, head and log -----------------------------------------


async def test_keys_endpoint_and_author_reads(node: Node, author: Author) -> None:
    """spec 0008 #nodes / 0004 #author-keys: every held key event (wire form, every
    branch), the canonical path, 404 when none; head and log work for a did:murmur."""
    a, ev = theft()
    r = await node.http.get(f"/v1/authors/{a.did}/keys")
    assert r.status_code == 404 and r.json()["error"] == "not-found"
    await node.ingest(*ev.values())
    thief_k = a.rotate("S0", "X", "Y", after=ev["t_del"], kev=a.genesis)
    await node.ingest(thief_k)  # refused: never listed
    r = await node.http.get(f"/v1/authors/{a.did}/keys")
    assert r.status_code == 200
    doc = r.json()
    assert [e["id"] for e in doc["events"]] == [a.genesis.id.hex(), ev["K1"].id.hex()]
    assert [e["kind"] for e in doc["events"]] == ["genesis", "rotate"]
    assert doc["path"] == [a.genesis.id.hex(), ev["K1"].id.hex()]
    assert doc["disputed"] is None
    import base64

    assert base64.b64decode(doc["events"][1]["wire"]) == ev["K1"].wire
    packed = await node.http.get(f"/v1/authors/{a.did}/keys?format=msgpack")
    from protocol.encoding import decode

    assert decode(packed.content)["events"][0]["wire"] == a.genesis.wire
    # A did:key author has no key events.
    await node.ingest(author.post())
    assert (await node.http.get(f"/v1/authors/{author.did}/keys")).status_code == 404
    # Head and log of a did:murmur author (the thief's fork shows as one).
    head = (await node.http.get(f"/v1/authors/{a.did}/head")).json()
    assert head["max_seq"] == ev["t_del"].seq and head["forked"] is True
    log = (await node.http.get(f"/v1/authors/{a.did}/events")).json()
    assert {e["id"] for e in log["events"]} == {e.id.hex() for e in ev.values()}
    assert {e["status"] for e in log["events"]} == {"canonical", "revoked"}
    # v1 events carry status canonical, revoked_by null.
    v1 = (await node.http.get(f"/v1/authors/{author.did}/events")).json()["events"][0]
    assert (v1["status"], v1["revoked_by"]) == ("canonical", None)


# -- cost: one event of a long chain is not a pass over the chain ------------------------


async def test_head_epoch_events_settle_alone_and_agree_with_a_full_resolve(
    node: Node, monkeypatch: Any
) -> None:
    """spec 0008 #nodes: an ordinary event at the head of an author's canonical path is
    settled without resolving the author again (a long chain posted one event a request
    must not cost a pass over the chain per event); anything else (a fork in an older
    epoch, a rotation) resolves in full, and the statuses are those of a full resolve."""
    calls: list[int] = []
    real = keys_mod.resolve

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(keys_mod, "resolve", counting)
    a = Rotatable("longchain")
    events = [a.genesis]
    for i in range(60):
        events.append(a.sign("S0", "post", {"text": f"post {i}"}, after=events[-1], kev=a.genesis))
    for ev in events:
        assert await node.statuses(ev) == ["accepted"]
    assert len(calls) <= 2, len(calls)  # the genesis batch (and nothing per post)
    # A thief's event forking at seq 10, then the owner's rotation: full resolves.
    thief = a.sign("S0", "post", {"text": "forged"}, after=events[9], kev=a.genesis)
    rotation = a.rotate("N0", "S1", "N1", after=events[-1], kev=a.genesis)
    later = a.sign("S1", "post", {"text": "after"}, after=rotation, kev=rotation)
    for ev in (thief, rotation, later):
        assert await node.statuses(ev) == ["accepted"]
    docs = {e.id: await event_doc(node, e) for e in [*events, thief, rotation, later]}
    # What a resolve over everything held says, event by event.
    keys: dict[bytes, Any] = {}
    links = []
    for ev in [a.genesis, rotation]:
        keys[ev.id] = input_of(ev, keys, not_key_events=())
    for ev in [*events[1:], thief, later]:
        links.append(input_of(ev, keys, not_key_events=()))
    expected = resolve(keys.values(), links)
    for eid, doc in docs.items():
        assert doc["status"] == expected.status[eid].value, doc
    assert docs[thief.id]["status"] == "revoked"
    assert docs[events[-1].id]["status"] == "canonical"
