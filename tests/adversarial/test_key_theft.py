"""A stolen signing key on a real 3-node network (spec 0008 #nodes, #status).

The thief holds alice's signing key S0: he posts forged events (a post, a reply, a
follow, a label, a profile, a delete of her post) to node 3 and tries to rotate; alice
rotates with her pre-committed next key on node 1. Whatever order each node receives
them in (stream, reconciliation, with events arriving before the key event they rely
on: ``unknown-key-event``, retried once the fetch run is in), all three nodes end with
the same statuses: the forged events revoked by her rotation, kept as evidence, out of
feeds and profiles; her deleted post a live row again, without a body until a full
copy completes it.

The issue's two done-when tests play the same through the ``murmur`` CLI: alice and the
thief are client homes, the thief copies her key files, ``murmur id rotate`` and
``murmur id recover`` answer, and a fresh client home reading all three nodes decides;
the thief's delete of her post, revoked by her rotation, is undone by her client, which
gives the nodes the post's body back from its own copy (spec 0008 #revoked-delete).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.keystore import Keystore
from client.ownchain import OwnChain
from protocol.events import decode_event, sign_event_v2
from protocol.identity import Identity, next_key_commitment
from tests.e2e.client_fixtures import Cli
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
    # Her post's body: a node that applied the forged delete before it learnt K1 holds
    # it without one (a node that learnt K1 first never dropped it, and body repair may
    # spread that copy). Where every node dropped it, only the owner's own copy gives it
    # back, which her client does: test_theft_through_the_cli_..., below.


# -- the same theft through the murmur CLI (issue #15 "Done when") ---------------------
#
# Alice and the thief are real client homes driven by ``murmur`` (tests.e2e.client_fixtures.Cli);
# every verdict is read back from the three nodes and from a fresh client home.


def _home(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, urls: list[str]) -> Cli:
    cli = Cli(tmp_path / name, capsys)
    for url in urls:
        cli.json("nodes", "add", url)
    return cli


def _steal(alice: Cli, thief: Cli, did: str, *, with_next: bool) -> None:
    """The thief copies alice's signing key file (and, ``with_next``, her next-key file)
    into his home, and starts his copy of her chain from her genesis, which any node
    serves (/keys): a copied key, not a copied device."""
    src, dst = alice.home / "identities", thief.home / "identities"
    dst.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = ["alice.toml"] + (["alice.next.toml"] if with_next else [])
    for f in files:
        shutil.copyfile(src / f, dst / f)
        (dst / f).chmod(0o600)
    url = thief.json("nodes", "list")[0]["url"]
    served = httpx.get(f"{url}/v1/authors/{did}/keys", timeout=10).json()["events"]
    genesis = decode_event(base64.b64decode(served[0]["wire"]), net="murmur", allow_v2=True)
    assert genesis.kind == "genesis" and genesis.author == did
    OwnChain(thief.home, did).create(genesis)


def _stored_by(doc: Any) -> list[str]:
    """Each configured node's answer to the key event an ``id rotate|recover`` signed."""
    (mine,) = [p for p in doc["published"] if p["id"] == doc["id"]]
    return [n["status"] for n in mine["nodes"]]


def _statuses(urls: Iterable[str], ids: Iterable[str]) -> set[tuple[str, str, str | None]]:
    """(id, status, revoked_by) of each id on each node; 'missing' where not held."""
    out = set()
    for url in urls:
        for eid in ids:
            doc = _event(url, bytes.fromhex(eid))
            out.add(
                (eid, "missing", None) if doc is None else (eid, doc["status"], doc["revoked_by"])
            )
    return out


def _fresh_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], urls: list[str], did: str
) -> tuple[Any, str]:
    """``murmur author DID`` (--json, then human --explain) on a home that never saw
    alice: no identity, no outbox, only the three nodes."""
    reader = _home(tmp_path, capsys, "fresh-" + os.urandom(4).hex(), urls)
    doc = reader.json("author", did, "--limit", "50")
    text = reader.ok("author", did, "--limit", "50", "--explain")
    return doc, text


def _assert_fresh_reader_sees(
    doc: Any, text: str, *, hers: set[str], forged: set[str], by: str, what: str
) -> None:
    shown = {p["id"] for p in doc["posts"]}
    assert hers <= shown, "her own posts verify and show"
    assert not shown & forged, "no forged event shown as hers"
    excluded = {x["id"]: x for x in doc["excluded"]}
    for eid in forged:
        assert excluded[eid]["status"] == "revoked", excluded.get(eid)
        assert excluded[eid]["revoked_by"] == by
    assert f"revoked by the author's {what} {by[:12]}" in text
    for eid in forged:
        assert eid in text  # --explain lists every excluded event with its full id


def test_theft_through_the_cli_the_owners_rotation_revokes_the_forgeries(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #15 done-when, first test; spec 0008 #status, #clients, 0007 #own-chain,
    #excluded. Alice (rotatable, made by ``murmur id new``) posts; the thief copies her
    signing key file only, posts a forged post, reply and follow to node 3 and tries to
    rotate: his client cannot (no next key), and a rotation signed with the stolen key
    is refused by every node (``unauthorized-key``). Alice runs ``murmur id rotate``
    against node 1; all three nodes then serve her chain with the forgeries revoked by
    her rotation, and a fresh client shows none of them as hers, says why, and shows
    her posts from before and after."""
    for name in NODES:
        cluster.start(name, peers=[cluster.url(n) for n in NODES if n != name])
    urls = [cluster.url(n) for n in NODES]
    alice = _home(tmp_path, capsys, "alice", urls[:1])  # alice works with node 1
    made = alice.json(
        "id", "new", "alice", "--no-encrypt", "--recovery-out", str(tmp_path / "offline")
    )
    did = made["did"]
    assert did.startswith("did:murmur:")
    bob = _home(tmp_path, capsys, "bob", urls[1:2])
    bob.json("id", "new", "bob", "--no-encrypt", "--recovery-out", str(tmp_path / "offline"))
    bobs = bob.post("bob", "bob here")
    hello = alice.post("alice", "hello from alice")
    cluster.wait_until(
        lambda: all(_event(u, bytes.fromhex(i)) for u in urls for i in (hello, bobs)),
        "alice's and bob's posts on every node",
        DEADLINE_S,
    )

    # The thief, with alice's signing key only, on node 3.
    thief = _home(tmp_path, capsys, "thief", urls[2:])
    mallory = thief.json("id", "new", "mallory", "--did-key", "--no-encrypt")["did"]
    _steal(alice, thief, did, with_next=False)
    forged = {
        thief.post("alice", "I am selling my account, DM me"),
        thief.json("post", "bob, send me your keys", "--reply-to", bobs, as_name="alice")["id"],
        thief.json("follow", mallory, as_name="alice")["id"],
        thief.json("delete", hello, as_name="alice")["id"],
    }

    def hello_body(url: str) -> tuple[bool, Any] | None:
        doc = _event(url, bytes.fromhex(hello))
        return None if doc is None else (doc["deleted"], doc["body"])

    cluster.wait_until(
        lambda: all(hello_body(u) == (True, None) for u in urls),
        "the thief's delete of alice's post counted on every node (body dropped)",
        DEADLINE_S,
    )
    code, _, err = thief.run("id", "rotate", "alice")
    assert code == 1 and "next key" in err  # his client has no next key to sign with
    stolen = Keystore(thief.home).load("alice")
    head = max(
        (_event(urls[2], bytes.fromhex(i)) or {} for i in forged), key=lambda d: d.get("seq", 0)
    )
    rotation_by_s = sign_event_v2(
        stolen,
        author=did,
        kind="rotate",
        body={
            "signing": Identity.generate().public.raw,  # a key of his own
            "next": next_key_commitment(Identity.generate().public.raw),
        },
        seq=head["seq"] + 1,
        prev=bytes.fromhex(head["id"]),
        kev=bytes.fromhex(made["genesis"]),
        ts=head["ts"] + 1,
    )
    for url in urls:
        result = httpx.post(
            f"{url}/v1/events",
            json={"events": [base64.b64encode(rotation_by_s.wire).decode()]},
            timeout=10,
        ).json()["results"][0]
        assert result["error"] == "unauthorized-key", (url, result)

    # Alice notices and rotates, from node 1; then posts with her new key.
    rotated = alice.json("id", "rotate")
    assert rotated["kind"] == "rotate" and rotated["resent"] is False
    assert _stored_by(rotated) == ["accepted"]  # node 1
    after = alice.post("alice", "new key, same me")
    k1 = rotated["id"]

    want = {(i, "revoked", k1) for i in forged}
    want |= {(i, "canonical", None) for i in (made["genesis"], hello, k1, after)}
    cluster.wait_until(
        lambda: _statuses(urls, [i for i, _, _ in want]) == want,
        "every node serving alice's chain with the forgeries revoked by her rotation",
        DEADLINE_S,
    )
    for url in urls:
        keys = httpx.get(f"{url}/v1/authors/{did}/keys", timeout=10).json()
        assert keys["path"] == [made["genesis"], k1] and keys["disputed"] is None
        assert _event(url, rotation_by_s.id) is None  # refused, never stored
        assert not _feed(url, did) & forged

    # Her post's body, dropped by the thief's delete while it counted: no one re-posts
    # it by hand; her client gave node 1 its copy right after the rotation, and body
    # repair spreads it (spec 0008 #revoked-delete, 0004 #body-fill).
    cluster.wait_until(
        lambda: all(hello_body(u) == (False, {"text": "hello from alice"}) for u in urls),
        "alice's post back, with its body, on every node",
        DEADLINE_S,
    )

    doc, text = _fresh_read(tmp_path, capsys, urls, did)
    _assert_fresh_reader_sees(doc, text, hers={hello, after}, forged=forged, by=k1, what="rotation")


def test_recovery_through_the_cli_after_the_thief_took_the_next_key_too(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #15 done-when, second test; spec 0008 #recovery, #status, 0007
    #rotatable-keys. The thief copies alice's signing and next key files, posts, and
    rotates with the next key (every node accepts it: that key is entitled), then posts
    with his new key. Alice runs ``murmur id recover`` with her offline recovery key
    file; every node and a fresh client end with her branch canonical and the thief's
    rotation and events revoked by her recovery."""
    for name in NODES:
        cluster.start(name, peers=[cluster.url(n) for n in NODES if n != name])
    urls = [cluster.url(n) for n in NODES]
    offline = tmp_path / "offline"
    alice = _home(tmp_path, capsys, "alice", urls[:1])
    made = alice.json("id", "new", "alice", "--no-encrypt", "--recovery-out", str(offline))
    did = made["did"]
    (recovery_file,) = made["recovery_files"]
    hello = alice.post("alice", "hello from alice")
    cluster.wait_until(
        lambda: all(_event(u, bytes.fromhex(hello)) for u in urls),
        "alice's post on every node",
        DEADLINE_S,
    )

    thief = _home(tmp_path, capsys, "thief", urls[2:])
    _steal(alice, thief, did, with_next=True)
    before = thief.post("alice", "forged with her signing key")
    taken = thief.json("id", "rotate", "alice")
    assert _stored_by(taken) == ["accepted"]  # node 3: N0 is entitled to rotate
    t_rot = taken["id"]
    later = thief.post("alice", "forged with my own key now")
    cluster.wait_until(
        lambda: _statuses(urls, [t_rot]) == {(t_rot, "canonical", None)},
        "the thief's rotation accepted and canonical on every node",
        DEADLINE_S,
    )

    recovered = alice.json("id", "recover", "alice", "--recovery-key", recovery_file)
    assert recovered["kind"] == "recover" and recovered["seq"] == 3  # after her own post
    r1 = recovered["id"]
    after = alice.post("alice", "recovered")

    forged = {before, t_rot, later}
    want = {(i, "revoked", r1) for i in forged}
    want |= {(i, "canonical", None) for i in (made["genesis"], hello, r1, after)}
    cluster.wait_until(
        lambda: _statuses(urls, [i for i, _, _ in want]) == want,
        "every node with alice's branch canonical and the thief's revoked by her recovery",
        DEADLINE_S,
    )
    for url in urls:
        keys = httpx.get(f"{url}/v1/authors/{did}/keys", timeout=10).json()
        assert keys["path"] == [made["genesis"], r1] and keys["disputed"] is None
        feed = _feed(url, did)
        assert {hello, after} <= feed and not feed & forged

    doc, text = _fresh_read(tmp_path, capsys, urls, did)
    _assert_fresh_reader_sees(
        doc, text, hers={hello, after}, forged={before, later}, by=r1, what="recovery"
    )
    assert {x["id"]: x["status"] for x in doc["excluded"]}[t_rot] == "revoked"
    history = _home(tmp_path, capsys, "keys-reader", urls).json("id", "keys", did)
    assert history["path"] == [made["genesis"], r1] and history["withheld"] == {}
    status = {k["id"]: (k["status"], k["revoked_by"]) for k in history["key_events"]}
    assert status[t_rot] == ("revoked", r1) and status[r1] == ("canonical", None)
