"""A stolen signing key on a real 3-node network (spec 0008 #nodes, #status).

The thief holds alice's signing key S0: he posts forged events (a post, a reply, a
follow, a label, a profile, a delete of her post) to node 3 and tries to rotate; alice
rotates with her pre-committed next key on node 1. Whatever order each node receives
them in (stream, reconciliation, with events arriving before the key event they rely
on: ``unknown-key-event``, retried once the fetch run is in), all three nodes end with
the same statuses: the forged events revoked by her rotation, kept as evidence, out of
feeds and profiles; her deleted post a live row again, whose body a copy completes.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.e2e.fedproc import Cluster, post_events
from tests.node.test_key_rotation import FORGED, theft

#: Hang guard only: the nodes sync every second (FAST_FEDERATION); nothing is timed.
DEADLINE_S = 60
NODES = ("n1", "n2", "n3")


def _event(url: str, eid: bytes) -> dict[str, Any] | None:
    r = httpx.get(f"{url}/v1/events/{eid.hex()}", timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    doc: dict[str, Any] = r.json()["event"]
    return doc


def _feed(url: str, did: str) -> set[str]:
    r = httpx.get(f"{url}/v1/feed", params={"authors": did, "limit": "200"}, timeout=10)
    r.raise_for_status()
    return {e["id"] for e in r.json()["events"]}


def _profiles(url: str, q: str) -> list[str]:
    r = httpx.get(f"{url}/v1/profiles", params={"q": q}, timeout=10)
    r.raise_for_status()
    return [p["name"] for p in r.json()["profiles"]]


def test_forged_events_and_the_owners_rotation_converge_on_every_node(
    cluster: Cluster,
) -> None:
    """spec 0008 #nodes, #status, #revoked-delete; 0005 #anti-entropy (unknown-key-event
    retried in a fetch run, never a penalty)."""
    for name in NODES:
        cluster.start(name, peers=[cluster.url(n) for n in NODES if n != name])
    urls = {n: cluster.url(n) for n in NODES}
    a, ev = theft("alice-e2e")
    owner_first = [ev["G"], ev["p1"], ev["prof"]]
    assert len(post_events(urls["n1"], owner_first)) == 3
    cluster.wait_until(
        lambda: all(_event(u, ev["prof"].id) for u in urls.values()), "alice's events everywhere"
    )

    # The thief, on node 3: forged events, and a rotation every node refuses.
    forged = [ev[n] for n in FORGED]
    assert len(post_events(urls["n3"], forged)) == len(forged)
    thief_rotate = a.rotate("S0", "T1", "T2", after=ev["t_del"], kev=a.genesis)
    for url in urls.values():
        r = httpx.post(
            f"{url}/v1/events",
            json={"events": [base64.b64encode(thief_rotate.wire).decode()]},
            timeout=10,
        )
        assert r.json()["results"][0]["error"] == "unauthorized-key"
    # Alice, on node 1, right away: some nodes get the forged events first, some not.
    assert len(post_events(urls["n1"], [ev["K1"], ev["p2"]])) == 2

    k1 = ev["K1"].id.hex()
    want = {n: ("revoked", k1) for n in FORGED}
    want |= {n: ("canonical", None) for n in ("G", "p1", "prof", "K1", "p2")}
    visible = {ev[n].id.hex() for n in ("G", "p1", "prof", "K1", "p2")}

    def converged() -> bool:
        for url in urls.values():
            for name, expected in want.items():
                doc = _event(url, ev[name].id)
                if doc is None or (doc["status"], doc["revoked_by"]) != expected:
                    return False
            if _feed(url, a.did) != visible or _profiles(url, "mallory"):
                return False
        return True

    cluster.wait_until(converged, "the same statuses on all three nodes", DEADLINE_S)
    for url in urls.values():
        assert _profiles(url, "alice") == ["alice"]
        p1 = _event(url, ev["p1"].id)
        assert p1 is not None and p1["deleted"] is False
        assert _event(url, thief_rotate.id) is None
        keys = httpx.get(f"{url}/v1/authors/{a.did}/keys", timeout=10).json()
        assert keys["path"] == [ev["G"].id.hex(), k1]
    # Her post's body, dropped everywhere by the forged delete while it counted, comes
    # back from her own copy (the outbox) on one node and spreads by body repair.
    post_events(urls["n1"], [ev["p1"]])
    cluster.wait_until(
        lambda: all(
            (d := _event(u, ev["p1"].id)) is not None and d["body"] == {"text": "hello from alice"}
            for u in urls.values()
        ),
        "alice's post restored on every node",
        DEADLINE_S,
    )
