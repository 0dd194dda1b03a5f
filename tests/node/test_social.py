"""The social indexes and their reads (spec 0004 #social): notifications, followers,
counts and reactions, kept true under deletions, status changes, duplicates and any
order of arrival; the upgrade of a populated v4 database; bounded query plans."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from node.store import SCHEMA_VERSION, SqliteStore
from node.store import sqlite_social_read as social
from node.store.migrations import MIGRATIONS, migrate
from node.store.sqlite import _COLS, DB_FILENAME, _row
from protocol.events import Event, decode_event
from tests.node.backends import both_backends
from tests.node.conftest import T0, Author, Clock, Node, new_author
from tests.rotatable import Rotatable


def mention(did: str, text: str = "hi ") -> dict[str, Any]:
    """A post body mentioning ``did`` with one facet (spec 0003 #facets)."""
    start = len(text.encode())
    full = f"{text}@someone"
    return {
        "text": full,
        "facets": [{"type": "mention", "start": start, "end": len(full.encode()), "did": did}],
    }


async def notes(node: Node, did: str, **params: str) -> list[tuple[str, str]]:
    r = await node.http.get("/v1/notifications", params={"did": did, **params})
    assert r.status_code == 200, r.text
    return [(n["reason"], n["event"]["id"]) for n in r.json()["notifications"]]


async def counts(node: Node, *events: Event) -> list[dict[str, int]]:
    r = await node.http.post("/v1/counts", json={"ids": [e.id.hex() for e in events]})
    assert r.status_code == 200, r.text
    doc = r.json()["counts"]
    return [doc[e.id.hex()] for e in events]


async def followers(node: Node, did: str, **params: str) -> dict[str, Any]:
    r = await node.http.get(f"/v1/followers/{did}", params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def zero(**kw: int) -> dict[str, int]:
    return {"likes": 0, "reposts": 0, "replies": 0, "quotes": 0, **kw}


@both_backends()
async def test_each_reason_notifies_once_newest_first(node: Node, make_author: Any) -> None:
    """spec 0004 #notifications, #notification-reasons: a reply (parent and root
    authors), quote, mention, like, repost and follow of alice each notify her once,
    newest first, as wire events; her own like does not; a reply that also mentions
    her notifies once, as a reply; kinds= filters; counts follow (#counts)."""
    alice, bob, carol = make_author(), make_author(), make_author()
    root = alice.post("root")
    mid = carol.post("mid", reply={"root": root.id, "parent": root.id})
    await node.ingest(root, mid)
    thread = {"root": root.id, "parent": mid.id}
    reply = bob.sign("post", {**mention(alice.did, "re "), "reply": thread})
    quote = bob.post("look", quote=root.id)
    ment = bob.sign("post", mention(alice.did))
    like = bob.sign("like", {"target": root.id})
    repost = bob.sign("repost", {"target": root.id})
    follow = bob.sign("follow", {"subject": alice.did})
    own_like = alice.sign("like", {"target": root.id})
    await node.ingest(reply, quote, ment, like, repost, follow, own_like)
    expected = [
        ("follow", follow), ("repost", repost), ("like", like), ("mention", ment),
        ("quote", quote), ("reply", reply), ("reply", mid),
    ]
    assert await notes(node, alice.did) == [(r, e.id.hex()) for r, e in expected]
    # carol is notified of bob's reply to her post (the parent), not of the rest.
    assert await notes(node, carol.did) == [("reply", reply.id.hex())]
    assert await notes(node, alice.did, kinds="mention,like") == [
        ("like", like.id.hex()), ("mention", ment.id.hex())
    ]
    # The events are served with their wire: a client verifies them.
    r = await node.http.get("/v1/notifications", params={"did": alice.did, "limit": "1"})
    doc = r.json()
    (first,) = doc["notifications"]
    import base64

    assert decode_event(base64.b64decode(first["event"]["wire"]), now_ms=T0 + 10**6).id == follow.id
    # Paging: the cursor of a full page gives the rest, with no repeat.
    seen: list[str] = []
    before = ""
    for _ in range(10):
        params = {"did": alice.did, "limit": "3", **({"before": before} if before else {})}
        page = (await node.http.get("/v1/notifications", params=params)).json()
        seen += [n["event"]["id"] for n in page["notifications"]]
        if page["next"] is None:
            break
        before = page["next"]
    assert seen == [e.id.hex() for _, e in expected]
    assert await counts(node, root, mid) == [
        zero(likes=2, reposts=1, replies=1, quotes=1), zero(replies=1)
    ]


@both_backends()
async def test_target_arriving_later_notifies_once(node: Node, make_author: Any) -> None:
    """spec 0004 #notifications: a like, reply and quote whose target is not held yet
    count at once and notify the target's author when it arrives; re-delivery changes
    nothing."""
    alice, bob = make_author(), make_author()
    post = alice.post("later")
    like = bob.sign("like", {"target": post.id})
    reply = bob.post("re", reply={"root": post.id, "parent": post.id})
    quote = bob.post("q", quote=post.id)
    await node.ingest(like, reply, quote)
    assert await notes(node, alice.did) == []
    assert await counts(node, post) == [zero(likes=1, replies=1, quotes=1)]
    await node.ingest(post)
    want = [("quote", quote.id.hex()), ("reply", reply.id.hex()), ("like", like.id.hex())]
    assert await notes(node, alice.did) == want
    assert await node.statuses(post, like, reply, quote) == ["duplicate"] * 4
    assert await notes(node, alice.did) == want
    assert await counts(node, post) == [zero(likes=1, replies=1, quotes=1)]


@both_backends()
async def test_deleted_likes_are_withdrawn_once_per_author(
    node: Node, make_author: Any
) -> None:
    """spec 0003 §3.5, spec 0004 #counts: two likes by one author count once; deleting
    one keeps the count, deleting both withdraws it and its notifications; a deleted
    reply leaves the reply count and the notifications."""
    alice, bob = make_author(), make_author()
    post = alice.post()
    like1 = bob.sign("like", {"target": post.id})
    like2 = bob.sign("like", {"target": post.id})
    reply = bob.post("re", reply={"root": post.id, "parent": post.id})
    await node.ingest(post, like1, like2, reply)
    assert await counts(node, post) == [zero(likes=1, replies=1)]
    await node.ingest(bob.sign("delete", {"target": like1.id}))
    assert await counts(node, post) == [zero(likes=1, replies=1)]
    assert ("like", like2.id.hex()) in await notes(node, alice.did)
    await node.ingest(
        bob.sign("delete", {"target": like2.id}), bob.sign("delete", {"target": reply.id})
    )
    assert await counts(node, post) == [zero()]
    assert await notes(node, alice.did) == []
    r = await node.http.get(f"/v1/events/{post.id.hex()}/reactions", params={"kind": "like"})
    assert r.json()["events"] == []


@both_backends()
async def test_reactions_list_the_events_newest_first(node: Node, make_author: Any) -> None:
    """spec 0004 #reactions: who liked, reposted, replied, quoted: the events, paged."""
    alice = make_author()
    post = alice.post()
    likers = [make_author() for _ in range(5)]
    likes = [a.sign("like", {"target": post.id}) for a in likers]
    await node.ingest(post, *likes)
    got: list[str] = []
    before: str | None = None
    for _ in range(5):
        params = {"kind": "like", "limit": "2", **({"before": before} if before else {})}
        r = await node.http.get(f"/v1/events/{post.id.hex()}/reactions", params=params)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["counts"] == zero(likes=5)
        got += [e["author"] for e in doc["events"]]
        before = doc["next"]
        if before is None:
            break
    assert got == [a.did for a in reversed(likers)]


@both_backends()
async def test_followers_latest_event_wins_in_any_order(
    node: Node, make_author: Any, clock: Clock
) -> None:
    """spec 0003 §3.6, spec 0004 #followers: per follower the latest follow/unfollow
    wins, whatever the order of arrival; a deleted unfollow brings the follow back;
    counts on the followers answer and on profiles (#author-stats)."""
    alice, bob, carol = make_author(), make_author(), make_author()
    prof = alice.sign("profile", {"name": "alice"})
    f1 = bob.sign("follow", {"subject": alice.did})
    un = bob.sign("unfollow", {"subject": alice.did})
    cf = carol.sign("follow", {"subject": alice.did})
    # The unfollow first: the older follow arriving later does not win.
    await node.ingest(prof, un)
    await node.ingest(f1, cf)
    doc = await followers(node, alice.did)
    assert [e["id"] for e in doc["events"]] == [cf.id.hex()]
    assert doc["stats"]["followers"] == 1 and doc["stats"]["following"] == 0
    assert await notes(node, alice.did) == [("follow", cf.id.hex())]
    await node.ingest(bob.sign("delete", {"target": un.id}))
    doc = await followers(node, alice.did)
    assert [e["id"] for e in doc["events"]] == [cf.id.hex(), f1.id.hex()]
    assert doc["stats"]["followers"] == 2
    assert (await followers(node, bob.did))["stats"]["following"] == 1
    assert ("follow", f1.id.hex()) in await notes(node, alice.did)
    r = await node.http.get("/v1/profiles", params={"q": "alice"})
    (p,) = r.json()["profiles"]
    assert p["stats"] == {
        "followers": 2, "following": 0, "first_ts": prof.ts, "first_seen_ms": clock.now
    }
    # Paging followers.
    page = await followers(node, alice.did, limit="1")
    assert page["next"] is not None
    rest = await followers(node, alice.did, limit="1", before=page["next"])
    assert [e["id"] for e in rest["events"]] == [f1.id.hex()]


@both_backends()
async def test_revoked_thiefs_like_and_follow_stop_counting(
    node: Node, make_author: Any
) -> None:
    """spec 0008 #node-effects, spec 0004 #social: a thief's like, follow and mention
    with carol's stolen key count until carol's rotation revokes them; then they are
    withdrawn from counts, followers and notifications."""
    alice = make_author()
    post = alice.post()
    carol = Rotatable("carol-social")
    g = carol.genesis
    p1 = carol.sign("S0", "post", {"text": "hello"}, after=g, kev=g)
    t_like = carol.sign("S0", "like", {"target": post.id}, after=p1, kev=g)
    t_follow = carol.sign("S0", "follow", {"subject": alice.did}, after=t_like, kev=g)
    t_ment = carol.sign("S0", "post", mention(alice.did), after=t_follow, kev=g)
    await node.ingest(post, g, p1, t_like, t_follow, t_ment)
    assert await counts(node, post) == [zero(likes=1)]
    assert {r for r, _ in await notes(node, alice.did)} == {"like", "follow", "mention"}
    assert (await followers(node, alice.did))["stats"]["followers"] == 1
    k1 = carol.rotate("N0", "S1", "N1", after=p1, kev=g)
    await node.ingest(k1)
    revoked = await node.http.get(f"/v1/events/{t_like.id.hex()}")
    assert revoked.json()["event"]["status"] == "revoked"
    assert await counts(node, post) == [zero()]
    assert await notes(node, alice.did) == []
    doc = await followers(node, alice.did)
    assert doc["events"] == [] and doc["stats"]["followers"] == 0
    assert (await followers(node, carol.did))["stats"]["following"] == 0


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/notifications", {}),
        ("/v1/notifications", {"did": "alice"}),
        ("/v1/notifications", {"did": "did:key:z6Mk", "kinds": "like"}),
        ("/v1/notifications", {"did": "VALID", "kinds": "likes"}),
        ("/v1/notifications", {"did": "VALID", "before": "12"}),
        ("/v1/notifications", {"did": "VALID", "before": "1.99999999999999999999"}),
        ("/v1/notifications", {"did": "VALID", "limit": "-1"}),
        ("/v1/notifications", {"did": "VALID", "kinds": ",".join(["like"] * 3 + list("abcdefg"))}),
        ("/v1/followers/nope", {}),
        ("/v1/followers/VALID", {"before": "x.y"}),
        ("/v1/events/zz/reactions", {"kind": "like"}),
        ("/v1/events/ID/reactions", {}),
        ("/v1/events/ID/reactions", {"kind": "follow"}),
        ("/v1/events/ID/reactions", {"kind": "like", "limit": "1e3"}),
    ],
)
@both_backends()
async def test_bad_parameters_are_400s(
    node: Node, author: Author, path: str, params: dict[str, str]
) -> None:
    """spec 0004 #errors: every bad parameter of the social reads is a 4xx with a
    stable code, never a 500."""
    path = path.replace("VALID", author.did).replace("ID", "ab" * 32)
    params = {k: v.replace("VALID", author.did) for k, v in params.items()}
    r = await node.http.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("bad-request", "invalid-did")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"ids": "ab"}',
        b'{"ids": []}',
        b'{"ids": ["zz"]}',
        b'{"ids": [1]}',
        b'{"ids": [], "more": 1}',
        json.dumps({"ids": [f"{i:064x}" for i in range(501)]}).encode(),
    ],
)
@both_backends()
async def test_bad_counts_bodies_are_400s(node: Node, body: bytes) -> None:
    """spec 0004 #counts: a bounded list of hex ids, else 400 bad-request."""
    r = await node.http.post(
        "/v1/counts", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad-request"


# -- the store directly ------------------------------------------------------------


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0 + 10**6)


def _social_events(clock: Clock) -> tuple[Author, list[Event]]:
    alice, bob = new_author(clock), new_author(clock)
    post = alice.post()
    evs = [
        post,
        bob.sign("like", {"target": post.id}),
        bob.post("re", reply={"root": post.id, "parent": post.id}),
        bob.sign("post", mention(alice.did)),
        bob.sign("follow", {"subject": alice.did}),
        bob.sign("like", {"target": b"\x07" * 32}),
    ]
    return alice, evs


def _plans(conn: sqlite3.Connection, fn: Any) -> list[str]:
    """Run ``fn(conn)`` and return the query plan of every SELECT it ran."""
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    try:
        fn(conn)
    finally:
        conn.set_trace_callback(None)
    plans = []
    for sql in ran:
        if sql.lstrip().upper().startswith("SELECT"):
            detail = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            plans.append(detail)
    assert plans
    return plans


async def test_reads_are_index_searches_not_scans(tmp_path: Path, clock: Clock) -> None:
    """spec 0004 #social: every read of the social indexes is an index search with a
    LIMIT: EXPLAIN QUERY PLAN shows no table scan."""
    alice, evs = _social_events(clock)
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    try:
        await store.apply_batch([_verified(e) for e in evs])
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    try:
        post = evs[0].id
        reads = [
            lambda c: social.notifications_page(
                c, _COLS, _row, alice.did, ("reply", "like", "mention", "follow"), None, 50
            ),
            lambda c: social.notifications_page(
                c, _COLS, _row, alice.did, ("like",), (T0 + 10**6, 99), 50
            ),
            lambda c: social.followers_page(c, _COLS, _row, alice.did, None, 50),
            lambda c: social.reactions_page(c, _COLS, _row, post, "like", (T0 + 10**6, 99), 50),
            lambda c: social.event_counts(c, [post, b"\x07" * 32]),
            lambda c: social.author_stats(c, [alice.did]),
        ]
        for read in reads:
            for plan in _plans(conn, read):
                assert "SCAN" not in plan, plan
                assert "SEARCH" in plan, plan
    finally:
        conn.close()


def _as_v4(current: Path, old: Path) -> None:
    """Write ``old``: a v4 database (the first four migrations) holding what the
    populated current database ``current`` holds in every v4 table and column,
    whatever later migrations added."""
    conn = sqlite3.connect(old, isolation_level=None)
    try:
        for steps in MIGRATIONS[:4]:
            for step in steps:
                assert isinstance(step, str)
                conn.execute(step)
        conn.execute("PRAGMA user_version = 4")
        conn.execute("ATTACH DATABASE ? AS cur", (str(current),))
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            cols = ", ".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
            conn.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM cur.{table}")  # noqa: S608 - names from the schema
        conn.execute("DETACH DATABASE cur")
    finally:
        conn.close()


async def test_upgrade_from_a_populated_v4_database(tmp_path: Path, clock: Clock) -> None:
    """spec 0004 #social: opening a v4 database that holds events fills the social
    indexes from them (likes, replies, mentions, follows, a like of an unheld event),
    exactly as ingesting them would have."""
    alice, evs = _social_events(clock)
    fresh_dir, old_dir = tmp_path / "fresh", tmp_path / "old"
    answers = []
    for d in (fresh_dir, old_dir):
        store = SqliteStore(d, synchronous="normal", now_ms=clock)
        await store.open()
        await store.apply_batch([_verified(e) for e in evs])
        await store.close()
    (old_dir / DB_FILENAME).rename(tmp_path / "current.sqlite3")
    _as_v4(tmp_path / "current.sqlite3", old_dir / DB_FILENAME)
    conn = sqlite3.connect(old_dir / DB_FILENAME, isolation_level=None)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(evs)
    assert migrate(conn) == 4
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    for d in (fresh_dir, old_dir):
        store = SqliteStore(d, synchronous="normal", now_ms=clock)
        await store.open()
        try:
            got = await store.notifications(
                alice.did, reasons=("reply", "mention", "like", "follow"), before=None, limit=50
            )
            counted = await store.event_counts([evs[0].id, b"\x07" * 32])
            stats = await store.author_stats([alice.did])
            answers.append(([(n.reason, n.event.id) for n in got], counted, stats))
        finally:
            await store.close()
    assert answers[0] == answers[1]
    reasons = [r for r, _ in answers[1][0]]
    assert reasons == ["follow", "mention", "reply", "like"]
    assert answers[1][1][b"\x07" * 32].likes == 1
    assert answers[1][2][alice.did].followers == 1
