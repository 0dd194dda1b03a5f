"""A stranger against the social indexes of a real node process (spec 0004 #social).

The stranger floods alice with mentions, likes and likes of events nobody holds; the
node must answer her notifications one bounded page at a time (``kinds=follow`` finds
the one real follow under the flood), count a flood of one author's likes once, keep
no more than a row per event for likes of unheld events, and never answer a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.events import sign_event
from protocol.identity import Identity
from tests.adversarial.conftest import Probe, Tally, new_identity, start_node
from tests.e2e.nodeproc import NodeProcess

FLOOD = 1_500
BATCH = 500


@pytest.fixture(scope="module")
def social_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    node: NodeProcess = start_node(tmp_path_factory.mktemp("social-node"))
    try:
        with Probe(node) as probe:
            yield probe
    finally:
        node.stop()


class Chain:
    """One identity's chain of events, signed now."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.seq = 0
        self.prev: bytes | None = None
        self.t0 = int(time.time() * 1000) - 60_000

    @property
    def did(self) -> str:
        return self.identity.did

    def sign(self, kind: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
        self.seq += 1
        ev = sign_event(
            self.identity, kind=kind, body=body, seq=self.seq, prev=self.prev, ts=self.t0 + self.seq
        )
        self.prev = ev.id
        return ev.wire, ev.id


def _ingest(probe: Probe, wires: list[bytes]) -> None:
    for i in range(0, len(wires), BATCH):
        results = probe.ingest(*wires[i : i + BATCH])
        assert {r["status"] for r in results} == {"accepted"}, results[:3]


def _notes(probe: Probe, **params: str) -> dict[str, Any]:
    r = probe.http.get("/v1/notifications", params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_a_flood_of_mentions_and_likes_stays_one_page(
    social_node: Probe, adv_tally: Tally, tmp_path: Path
) -> None:
    """spec 0004 #social-bounds, #notifications, #counts: a stranger's flood is paged
    like anything else; the one real follow is found under it by kind; the stranger's
    many likes of one post count once; likes of events nobody holds are stored as
    events and counted, nothing else; no 5xx."""
    probe = social_node
    errors_before = probe.internal_errors()
    alice, bob, mallory = Chain(new_identity()), Chain(new_identity()), Chain(new_identity())
    post, post_id = alice.sign("post", {"text": "hello"})
    follow, follow_id = bob.sign("follow", {"subject": alice.did})
    _ingest(probe, [post, follow])
    text = "hey @alice"
    facet = [{"type": "mention", "start": 4, "end": len(text), "did": alice.did}]
    wires: list[bytes] = []
    ghosts: list[bytes] = []
    for i in range(FLOOD):
        if i % 3 == 0:
            wire, _ = mallory.sign("post", {"text": text, "facets": facet})
        elif i % 3 == 1:
            wire, _ = mallory.sign("like", {"target": post_id})
        else:
            ghost = i.to_bytes(32, "big")
            ghosts.append(ghost)
            wire, _ = mallory.sign("like", {"target": ghost})
        wires.append(wire)
    _ingest(probe, wires)
    adv_tally.add("social-flood", FLOOD)

    # Newest first, one bounded page at a time, whatever the flood.
    page = _notes(probe, did=alice.did, limit="50")
    assert len(page["notifications"]) == 50 and page["next"]
    ts = [n["event"]["ts"] for n in page["notifications"]]
    assert ts == sorted(ts, reverse=True)
    assert {n["event"]["author"] for n in page["notifications"]} == {mallory.did}
    # A page of at most max_page (500) even when asked for more.
    big = _notes(probe, did=alice.did, limit="100000")
    assert len(big["notifications"]) == 500
    # The flood sits in other reasons: the one follow is found at once.
    follows = _notes(probe, did=alice.did, kinds="follow")
    assert [n["event"]["id"] for n in follows["notifications"]] == [follow_id.hex()]
    assert follows["next"] is None
    # Walking every page: each mention and the like flood's events once, then the follow.
    seen: list[str] = []
    before: str | None = None
    for _ in range(FLOOD // 500 + 3):
        doc = _notes(probe, did=alice.did, limit="500", **({"before": before} if before else {}))
        seen += [n["event"]["id"] for n in doc["notifications"]]
        before = doc["next"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == FLOOD // 3 * 2 + 1  # mentions, likes, the follow
    # Counts: one per author for likes; a like of an event nobody holds is counted.
    r = probe.http.post(
        "/v1/counts", json={"ids": [post_id.hex(), ghosts[0].hex(), ghosts[-1].hex()]}
    )
    assert r.status_code == 200, r.text
    counts = r.json()["counts"]
    assert counts[post_id.hex()]["likes"] == 1
    assert counts[ghosts[0].hex()]["likes"] == counts[ghosts[-1].hex()]["likes"] == 1
    # Who liked: the stranger's likes, paged and bounded.
    r = probe.http.get(
        f"/v1/events/{post_id.hex()}/reactions", params={"kind": "like", "limit": "100000"}
    )
    assert r.status_code == 200 and len(r.json()["events"]) == 500
    assert probe.internal_errors() == errors_before
    assert probe.healthy()


def test_unfollow_and_deleted_likes_on_a_real_node(social_node: Probe) -> None:
    """spec 0004 #followers, #social-counting: an unfollow takes a follower (and the
    follow notification) away; a deleted like is withdrawn from counts."""
    probe = social_node
    carol, dave = Chain(new_identity()), Chain(new_identity())
    post, post_id = carol.sign("post", {"text": "hi"})
    follow, follow_id = dave.sign("follow", {"subject": carol.did})
    like, like_id = dave.sign("like", {"target": post_id})
    _ingest(probe, [post, follow, like])
    doc = probe.http.get(f"/v1/followers/{carol.did}").json()
    assert [e["id"] for e in doc["events"]] == [follow_id.hex()]
    assert doc["stats"]["followers"] == 1
    unfollow, _ = dave.sign("unfollow", {"subject": carol.did})
    delete, _ = dave.sign("delete", {"target": like_id})
    _ingest(probe, [unfollow, delete])
    doc = probe.http.get(f"/v1/followers/{carol.did}").json()
    assert doc["events"] == [] and doc["stats"]["followers"] == 0
    assert _notes(probe, did=carol.did)["notifications"] == []
    r = probe.http.post("/v1/counts", json={"ids": [post_id.hex()]})
    assert r.json()["counts"][post_id.hex()]["likes"] == 0
