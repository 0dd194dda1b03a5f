"""Rotatable identities on a real node, the costly corners (issue #15 leftovers):
a long key history is served a bounded page at a time (spec 0004 #author-keys), and
events under a key event nobody holds are refused before any signature check
(0004 #ingest-v2), and an event whose status a later event changes is streamed again
with its new status (0004 #stream-status).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx

from protocol.encoding import encode
from protocol.events import Event
from tests.adversarial.conftest import Probe
from tests.node.test_key_rotation import FORGED, theft
from tests.rotatable import Rotatable

#: Key events a node serves in one /keys page (node.api.events.MAX_KEYS_PAGE).
PAGE = 1000


def _rotations(r: Rotatable, n: int) -> list[Event]:
    """The genesis and ``n`` rotations by the owner, each with the next key it committed
    to: a history only the owner could sign, as long as she likes."""
    chain = [r.genesis]
    for i in range(n):
        chain.append(r.rotate(f"N{i}", f"S{i + 1}", f"N{i + 1}", after=chain[-1], kev=chain[-1]))
    return chain


def _ingest_all(probe: Probe, events: list[Event], batch: int = 250) -> None:
    for at in range(0, len(events), batch):
        results = probe.ingest(*(e.wire for e in events[at : at + batch]))
        assert all(r["status"] == "accepted" for r in results), results[:3]


def _keys(probe: Probe, did: str, **params: Any) -> dict[str, Any]:
    r = probe.http.get(f"/v1/authors/{did}/keys", params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_a_long_key_history_is_served_in_bounded_pages(adv_probe: Probe) -> None:
    """spec 0004 #author-keys: 1101 key events are never one answer: pages of at most
    1000 (or ``limit``), by (seq, id), each with the path among its events, linked by
    ``next`` until ``null``; together they are exactly every key event and the path.
    The batch form answers the same history whole (it fits 2000)."""
    r = Rotatable("odds-long")
    chain = _rotations(r, PAGE + 100)
    _ingest_all(adv_probe, chain)
    every = [e.id.hex() for e in chain]

    first = _keys(adv_probe, r.did)
    assert len(first["events"]) == PAGE and first["next"]
    assert first["path"] == every[:PAGE] and first["disputed"] is None
    second = _keys(adv_probe, r.did, after=first["next"])
    assert [e["id"] for e in second["events"]] == every[PAGE:] and second["next"] is None
    assert second["path"] == every[PAGE:]

    seen: list[str] = []
    path: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        doc = _keys(adv_probe, r.did, limit=300, **({} if after is None else {"after": after}))
        pages += 1
        assert len(doc["events"]) <= 300
        seen += [e["id"] for e in doc["events"]]
        path += doc["path"]
        after = doc["next"]
        if after is None:
            break
    assert (seen, path, pages) == (every, every, 4)

    batch = adv_probe.http.post("/v1/keys", json={"authors": [r.did]})
    assert batch.status_code == 200, batch.text
    [group] = batch.json()["keys"]
    assert [e["id"] for e in group["events"]] == every and group["next"] is None


def test_bad_key_cursors_are_400(adv_probe: Probe) -> None:
    """spec 0004 #author-keys: ``after`` is a cursor this node returned, else 400."""
    r = Rotatable("odds-cursor")
    _ingest_all(adv_probe, [r.genesis])
    for bad in ("x", "1", "1.zz", "-1." + "00" * 32, "99999999999999999999." + "00" * 32):
        resp = adv_probe.http.get(f"/v1/authors/{r.did}/keys", params={"after": bad})
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"] == "bad-request"
    past = _keys(adv_probe, r.did, after="9." + "ff" * 32)
    assert past["events"] == [] and past["next"] is None
    assert httpx.codes.NOT_FOUND == adv_probe.http.get(
        f"/v1/authors/{Rotatable('odds-nobody').did}/keys", params={"after": "1." + "00" * 32}
    ).status_code


def _verified(probe: Probe) -> int:
    """``murmur_events_verified_total``: events the node's verifier checked."""
    text = probe.http.get("/metrics").text
    m = re.search(r"^murmur_events_verified_total (\d+)$", text, re.MULTILINE)
    assert m is not None, "no murmur_events_verified_total"
    return int(m.group(1))


def test_events_under_an_unknown_key_event_cost_no_signature_check(adv_probe: Probe) -> None:
    """spec 0004 #ingest-v2, 0008 §8.5 step 2: a stranger's flood of v2 events under
    made-up key events is refused ``unknown-key-event`` (retryable, named by id) from a
    lookup, without one verification; an event whose kev is in the same batch, or held
    but not a key event (``bad-kev``), still gets the full check, and a refused event is
    accepted once its key event arrives."""
    r = Rotatable("odds-spam")
    assert [x["status"] for x in adv_probe.ingest(r.genesis.wire)] == ["accepted"]
    made_up = [hashlib.sha256(f"no such key event {i}".encode()).digest() for i in range(50)]
    spam = [
        r.sign("S0", "post", {"text": f"spam {i}"}, after=r.genesis, kev=kev)
        for i, kev in enumerate(made_up)
    ]
    sig = bytearray(spam[0].sig)
    sig[0] ^= 1
    broken = encode([spam[0].header_bytes, bytes(sig), spam[0].body_bytes])
    before = _verified(adv_probe)
    results = adv_probe.ingest(*(e.wire for e in spam), broken)
    assert [(x["status"], x["error"], x["id"]) for x in results[:-1]] == [
        ("rejected", "unknown-key-event", e.id.hex()) for e in spam
    ]
    assert results[-1]["error"] == "unknown-key-event"  # its signature was never looked at
    assert _verified(adv_probe) == before
    assert not any(adv_probe.stored(e.id) for e in spam)

    k1 = r.rotate("N0", "S1", "N1", after=r.genesis, kev=r.genesis)
    p = r.sign("S1", "post", {"text": "after k1"}, after=k1, kev=k1)
    k2 = r.rotate("N1", "S2", "N2", after=p, kev=k1)
    q = r.sign("S2", "post", {"text": "after k2"}, after=k2, kev=k2)
    before = _verified(adv_probe)
    results = adv_probe.ingest(p.wire, k1.wire)  # the child first, its key event with it
    assert [x["status"] for x in results] == ["accepted", "accepted"]
    assert _verified(adv_probe) == before + 2
    [early] = adv_probe.ingest(q.wire)  # k2 not sent yet
    assert early["error"] == "unknown-key-event" and _verified(adv_probe) == before + 2
    bad = r.sign("S1", "post", {"text": "kev names a post"}, after=p, kev=p)
    [res] = adv_probe.ingest(bad.wire)
    assert res["error"] == "bad-kev" and _verified(adv_probe) == before + 3
    assert [x["status"] for x in adv_probe.ingest(k2.wire, q.wire)] == ["accepted"] * 2


def _stream(probe: Probe, did: str, after: int) -> list[dict[str, Any]]:
    """The frames ``GET /v1/stream?cursor=after&authors=did`` replays, read up to the
    node's current cursor (what is committed is replayed at once; no waiting on time)."""
    top = probe.http.get("/v1/info").json()["cursor"]
    frames: list[dict[str, Any]] = []
    params = {"cursor": str(after), "authors": did}
    with probe.http.stream("GET", "/v1/stream", params=params) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            frame = json.loads(line.removeprefix("data: "))
            frames.append(frame)
            if frame["cursor"] >= top:
                break
    assert frames and frames[-1]["cursor"] == top, "the stream did not reach the node's cursor"
    return frames


def _cursor(probe: Probe) -> int:
    cursor: int = probe.http.get("/v1/info").json()["cursor"]
    return cursor


def test_a_rotation_streams_the_events_it_revokes_again(adv_probe: Probe) -> None:
    """spec 0004 #stream-status, 0008 #status: a subscriber that saw the thief's
    events as canonical receives each of them again, after the rotation, with status
    ``revoked`` and ``revoked_by`` the rotation; the owner's events do not come again."""
    a, ev = theft("odds-stream")
    first = [ev["G"], ev["p1"], ev["prof"], *(ev[k] for k in FORGED)]
    assert all(x["status"] == "accepted" for x in adv_probe.ingest(*(e.wire for e in first)))
    seen = _stream(adv_probe, a.did, 0)
    assert {f["event"]["id"]: f["event"]["status"] for f in seen} == {
        e.id.hex(): "canonical" for e in first
    }
    before = _cursor(adv_probe)
    adv_probe.ingest(ev["K1"].wire, ev["p2"].wire)
    again = _stream(adv_probe, a.did, before)
    got = {f["event"]["id"]: (f["event"]["status"], f["event"]["revoked_by"]) for f in again}
    k1 = ev["K1"].id.hex()
    assert got == {
        k1: ("canonical", None),
        ev["p2"].id.hex(): ("canonical", None),
        **{ev[k].id.hex(): ("revoked", k1) for k in FORGED},
    }
    assert len(again) == len(got)  # each once
    assert sorted(f["cursor"] for f in again) == [f["cursor"] for f in again]


def test_a_settled_pending_event_is_streamed_again(adv_probe: Probe) -> None:
    """spec 0004 #stream-status, 0008 #status: an event pending because the chain back
    from the next key event has a gap is streamed again, canonical, when the gap is
    filled."""
    a, ev = theft("odds-pending")
    adv_probe.ingest(ev["G"].wire, ev["p1"].wire, ev["K1"].wire)  # K1's prev (prof) missing
    assert adv_probe.event(ev["p1"].id)["status"] == "pending"
    before = _cursor(adv_probe)
    adv_probe.ingest(ev["prof"].wire)
    again = _stream(adv_probe, a.did, before)
    assert [(f["event"]["id"], f["event"]["status"]) for f in again] == [
        (ev["prof"].id.hex(), "canonical"),
        (ev["p1"].id.hex(), "canonical"),
    ]
