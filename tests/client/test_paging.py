"""Merged lists paged across nodes that hold different sets, counts merged from
several nodes, who reacted and post search, over fake nodes (spec 0007 #paging,
#counts, #who, #post-search).

:class:`SocialNode` is the fake node of ``conftest`` plus ``POST /v1/counts`` (honest
from what it holds, or ``claims`` put in by the test), ``GET
/v1/events/{id}/reactions`` and ``GET /v1/search`` (whatever ``search_serves`` holds,
or posts whose text holds the words), each paged by offset like its feed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from client.api import NodeClient, WireItem
from client.browse import reaction_list, reactions_view, search_list, search_view_posts
from client.counts import MAX_COUNT, fetch_counts
from client.paging import Boundary, MergedCursor, MergedList, key_of, parse_before
from client.reader import Reader
from client.views import follow_set, timeline, timeline_feed
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.events import Event
from protocol.identity import Identity
from tests.client.conftest import Author, FakeNode, Net, broken_signature

Clients = Callable[..., list[NodeClient]]


class SocialNode(FakeNode):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        #: Counts to claim, by hex id (instead of counting what is held).
        self.claims: dict[str, Any] = {}
        #: Events served by the search, whatever the query (None: a real search).
        self.search_serves: list[Event] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, request.url.params
        parts = path.strip("/").split("/")
        if path == "/v1/counts" and request.method == "POST":
            self.requests.append("POST /v1/counts")
            if self.delay:
                import asyncio

                await asyncio.sleep(self.delay)
            ids = json.loads(request.content)["ids"]
            return httpx.Response(200, json={"counts": {i: self._count(i) for i in ids}})
        if parts[:2] == ["v1", "events"] and len(parts) == 4 and parts[3] == "reactions":
            self.requests.append("GET reactions")
            target = bytes.fromhex(parts[2])
            kind = q["kind"]
            evs = [e for e in self._events() if _reacts(e, kind) == target]
            return self._paged(evs, q)
        if path == "/v1/search":
            self.requests.append("GET search")
            if self.search_serves is not None:
                evs = list(self.search_serves)
            elif "q" in q:
                words = q["q"].lower().split()
                evs = [
                    e for e in self._events()
                    if e.kind == "post" and e.body
                    and all(w in str(e.body["text"]).lower() for w in words)
                ]  # fmt: skip
            else:
                tag = q["tag"].lower().lstrip("#")
                evs = [
                    e for e in self._events()
                    if e.kind == "post" and e.body
                    and tag in [t.lower() for t in e.body.get("tags", [])]
                ]  # fmt: skip
            return self._paged(evs, q)
        return await super().handle(request)

    def _paged(self, evs: list[Event], q: httpx.QueryParams) -> httpx.Response:
        evs.sort(key=lambda e: e.ts, reverse=True)
        start = int(q.get("before") or 0)
        limit = int(q.get("limit", 50))
        page = evs[start : start + limit]
        nxt = str(start + limit) if len(evs) > start + limit else None
        return httpx.Response(200, json={"events": self._doc(page), "next": nxt})

    def _count(self, hexid: str) -> Any:
        if hexid in self.claims:
            return self.claims[hexid]
        target = bytes.fromhex(hexid)
        evs = self._events()
        return {
            "likes": len({e.author for e in evs if _reacts(e, "like") == target}),
            "reposts": len({e.author for e in evs if _reacts(e, "repost") == target}),
            "replies": sum(1 for e in evs if _reacts(e, "reply") == target),
            "quotes": sum(1 for e in evs if _reacts(e, "quote") == target),
        }


def _reacts(e: Event, kind: str) -> bytes | None:
    body = e.body or {}
    if kind in ("like", "repost"):
        return body.get("target") if e.kind == kind else None
    if e.kind != "post":
        return None
    if kind == "reply":
        return body["reply"]["parent"] if isinstance(body.get("reply"), dict) else None
    return body.get("quote")


def _node(net: Net, name: str) -> SocialNode:
    node = SocialNode(f"http://{name}.test")
    net.nodes[node.url] = node
    return node


async def _feed(
    node: NodeClient, before: str | None, limit: int
) -> tuple[list[WireItem], str | None]:
    return await node.feed(kinds=["post"], limit=limit, before=before)


def _is_post(e: Event) -> bool:
    return e.kind == kinds.POST


async def _walk(
    clients: list[NodeClient], limit: int, page: int, *, max_pages: int = 3
) -> list[Event]:
    """Every page of the merged post feed, ``limit`` items a page, through encoded
    cursors and a fresh reader each page (as the CLI does)."""
    out: list[Event] = []
    cursor: MergedCursor | None = None
    for _ in range(200):
        reader = Reader(clients)
        lst = MergedList(
            reader, "posts", _feed, _is_post, cursor=cursor, page=page, max_pages=max_pages
        )
        await lst.fill(limit)
        taken = lst.events()[:limit]
        out += taken
        cursor = lst.next_cursor(taken)
        if cursor is None:
            return out
        cursor = MergedCursor.decode(cursor.encode(), "posts")
    raise AssertionError("the pages did not end")


# -- paging ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
async def test_merged_pages_skip_and_repeat_nothing(net: tuple[Net, Clients], seed: int) -> None:
    """spec 0007 #paging: three nodes each hold a random part of three authors' posts
    (equal timestamps across authors, so ties straddle pages); walking the merged
    list page by page, with small node pages, yields every post once, newest first."""
    fake, clients = net
    rng = random.Random(seed)
    nodes = [_node(fake, f"n{seed}x{i}") for i in range(3)]
    authors = [Author.new() for _ in range(3)]
    everything: list[Event] = []
    for _ in range(rng.randint(5, 14)):
        for a in authors:
            if rng.random() < 0.8:
                e = a.post(f"p{len(everything)}")
                everything.append(e)
                holders = [n for n in nodes if rng.random() < 0.5] or [rng.choice(nodes)]
                for n in holders:
                    n.add(e)
    limit, page = rng.randint(1, 5), rng.randint(1, 4)
    got = await _walk(clients(*nodes), limit, page)
    assert [e.id for e in got] == [e.id for e in sorted(everything, key=key_of, reverse=True)]


def _fixed_author(n: int, ts: int) -> Author:
    """An author whose keys (so ids) do not depend on which tests ran before, whose
    next post is at ``ts``."""
    return Author(identity=Identity.from_seed(bytes([n]) * 32), ts=ts - 1000)


async def test_a_tie_cut_by_the_page_budget_waits_for_its_other_items(
    net: tuple[Net, Clients],
) -> None:
    """spec 0007 #merged-pages: node Y is out of page budget in the middle of a run of
    equal timestamps; what the page offers at that ``ts`` could be passed by an item
    at that ``ts`` Y has not served yet (``f2``, the highest ``seq``), so the page
    ends with the complete items above it, and ``f2`` still comes before the others
    at its ``ts`` (before: ``e`` and ``f1`` were offered, ``f2`` came a page later)."""
    fake, clients = net
    t = 1_700_000_004_000
    c = _fixed_author(1, t - 3000)
    c1, c2 = c.post("c1"), c.post("c2")
    c.ts = t - 1000
    f2 = c.post("f2")  # seq 3 at t: first of the tie
    e = _fixed_author(2, t).post("e")  # seq 1 at t
    f1 = _fixed_author(3, t).post("f1")  # seq 1 at t
    g = _fixed_author(4, t + 1000).post("g")
    x, y = _node(fake, "tie-x"), _node(fake, "tie-y")
    x.add(e, c2, c1)
    y.add(g, f1, f2)  # served g, f1, f2: the budget ends after f1
    everything = [c1, c2, f2, e, f1, g]
    expected = [ev.id for ev in sorted(everything, key=key_of, reverse=True)]
    assert expected[:2] == [g.id, f2.id]

    lst = MergedList(Reader(clients(x, y)), "posts", _feed, _is_post, page=1, max_pages=2)
    await lst.fill(3)
    assert [ev.id for ev in lst.events()] == [g.id]  # nothing at t while f2 may come
    got = await _walk(clients(x, y), limit=3, page=1, max_pages=2)
    assert [ev.id for ev in got] == expected


async def test_a_run_of_equal_timestamps_longer_than_the_budget_moves_on(
    net: tuple[Net, Clients],
) -> None:
    """spec 0007 #merged-pages: with nothing above a run of equal timestamps longer
    than a node's page budget, the items at that ``ts`` are offered anyway, and the
    boundary's ids keep the rest for later pages: each item once, none older first."""
    fake, clients = net
    t = 1_700_000_004_000
    run = [_fixed_author(10 + i, t).post(f"r{i}") for i in range(7)]
    older = _fixed_author(30, t - 1000).post("older")
    y = _node(fake, "run-y")
    y.add(*run, older)
    got = await _walk(clients(y), limit=2, page=1, max_pages=2)
    assert sorted(ev.id for ev in got[:-1]) == sorted(ev.id for ev in run)
    assert got[-1].id == older.id


async def test_a_node_added_between_pages_is_read_from_its_top(net: tuple[Net, Clients]) -> None:
    """spec 0007 #paging: a node the cursor does not name is read from its top, and
    what it holds above the cursor is not repeated."""
    fake, clients = net
    one, two = _node(fake, "one"), _node(fake, "two")
    a = Author.new()
    posts = [a.post(f"p{i}") for i in range(6)]
    one.add(*posts)
    reader = Reader(clients(one))
    lst = MergedList(reader, "posts", _feed, _is_post, page=2)
    await lst.fill(3)
    first = lst.events()[:3]
    cursor = lst.next_cursor(first)
    assert cursor is not None
    two.add(*posts[:5])  # holds every post, one below the cursor only on it... and more
    reader = Reader(clients(one, two))
    lst = MergedList(reader, "posts", _feed, _is_post, cursor=cursor, page=2)
    await lst.fill(10)
    assert [e.id for e in first + lst.events()] == [e.id for e in posts[::-1]]


async def test_timeline_pages_across_nodes(net: tuple[Net, Clients]) -> None:
    """spec 0007 #paging: the timeline view with its cursor, over nodes that hold
    different posts: every followed post once, newest first."""
    fake, clients = net
    one, two = _node(fake, "t1"), _node(fake, "t2")
    me, bob, cat = Author.new(), Author.new(), Author.new()
    one.add(me.sign("follow", {"subject": bob.did}), me.sign("follow", {"subject": cat.did}))
    two.add(*me.events)
    posts = []
    for i in range(9):
        e = (bob if i % 2 else cat).post(f"item {i}")
        posts.append(e)
        (one if i % 3 else two).add(e)
    seen: list[bytes] = []
    cursor: MergedCursor | None = None
    for _ in range(10):
        reader = Reader(clients(one, two))
        follows = await follow_set(reader, me.did, mark=False)
        feed = timeline_feed(reader, me.did, follows, cursor=cursor)
        view = await timeline(reader, me.did, limit=2, follows=follows, feed=feed)
        seen += [e.id for e in view.items]
        cursor = feed.next_cursor(view.items)
        if cursor is None:
            break
    assert seen == [e.id for e in sorted(posts, key=key_of, reverse=True)]


def test_cursor_text_is_checked() -> None:
    c = MergedCursor(
        list="timeline", nodes={"abc": "7", "d": ""}, boundary=Boundary(ts=5, ids=frozenset())
    )
    assert MergedCursor.decode(c.encode(), "timeline") == c
    for bad in ("", "x" * 20000, "bm90IGpzb24", c.encode()[:-3]):
        with pytest.raises(BadRequestError, match="--cursor"):
            MergedCursor.decode(bad, "timeline")
    with pytest.raises(BadRequestError, match="this list"):
        MergedCursor.decode(c.encode(), "tag:cats")
    may = 1714521600000
    assert parse_before("2024-05-01", "t").boundary == Boundary(ts=may - 1, ids=frozenset())
    assert parse_before("1714521600", "t").boundary == Boundary(ts=may - 1, ids=frozenset())
    with pytest.raises(BadRequestError):
        parse_before("yesterday", "t")


# -- counts ---------------------------------------------------------------------------


async def test_counts_are_the_largest_claim_capped(net: tuple[Net, Clients]) -> None:
    """spec 0007 #counts: per figure the largest claim; a liar's huge claim is capped
    and marked, a malformed one ignored; a node that times out is named, not fatal,
    and not failed for the rest of the read."""
    fake, clients = net
    honest, liar, broken, slow = (_node(fake, n) for n in ("h", "liar", "broken", "slow"))
    bob, amy, cat = Author.new(), Author.new(), Author.new()
    post = bob.post("hello")
    likes = [amy.sign("like", {"target": post.id}), cat.sign("like", {"target": post.id})]
    for n in (honest, liar, broken, slow):
        n.add(post, *likes)
    liar.claims[post.id_hex] = {"likes": 10**15, "reposts": 3, "replies": 0, "quotes": 0}
    broken.claims[post.id_hex] = {"likes": "many", "reposts": -1, "replies": 0, "quotes": 0}
    slow.delay = 1.0
    reader = Reader(clients(honest, liar, broken, slow), timeout=0.2)
    got = (await fetch_counts(reader, [post.id]))[post.id]
    assert (got.likes, got.reposts, got.replies) == (MAX_COUNT, 3, 0)
    assert got.capped and got.differ and got.nodes == 2  # honest and liar
    from client.counts import counts_report

    assert counts_report(reader).failed == {slow.url: "node-timeout"}
    assert reader.report.node(slow.url).ok  # counts never fail a node for the read
    # Honest nodes alone: exact, not marked.
    reader = Reader(clients(honest))
    got = (await fetch_counts(reader, [post.id]))[post.id]
    assert (got.likes, got.differ, got.capped) == (2, False, False)


# -- who reacted ----------------------------------------------------------------------


async def test_who_liked_is_verified(net: tuple[Net, Clients]) -> None:
    """spec 0007 #who: forged likes (another target, a broken signature) are dropped
    and reported; a like deleted on another node is not listed; two likes of one
    author are listed once."""
    fake, clients = net
    one, two = _node(fake, "r1"), _node(fake, "r2")
    bob, amy, cat, eve = Author.new(), Author.new(), Author.new(), Author.new()
    post, other = bob.post("target"), bob.post("other")
    amy_like = amy.sign("like", {"target": post.id})
    cat_like = cat.sign("like", {"target": post.id})
    cat_again = cat.sign("like", {"target": post.id})
    eve_like = eve.sign("like", {"target": post.id})
    eve_delete = eve.sign("delete", {"target": eve_like.id})
    wrong = amy.sign("like", {"target": other.id})
    forged = Author.new().sign("like", {"target": post.id})
    one.add(post, other, amy_like, cat_like, cat_again, eve_like)
    one.serve(broken_signature(forged))
    two.add(post, eve_delete)

    class Liar(SocialNode):
        async def handle(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/reactions"):
                return httpx.Response(200, json={"events": self._doc([wrong]), "next": None})
            return await super().handle(request)

    liar = Liar("http://liar.test")
    fake.nodes[liar.url] = liar
    liar.add(wrong)
    reader = Reader(clients(one, two, liar))
    lst = reaction_list(reader, post.id, "like", cursor=None)
    view = await reactions_view(reader, lst, post.id, "like")(10)
    assert sorted(e.author for e in view.items) == sorted([amy.did, cat.did])
    assert view.related[post.id].id == post.id
    codes = {i["code"] for n in reader.report.nodes for i in n.invalid}
    assert codes == {"invalid-signature", "unexpected-event"}
    assert [i["id"] for i in reader.report.node(liar.url).invalid] == [wrong.id_hex]


# -- search ---------------------------------------------------------------------------


async def test_search_drops_what_does_not_match(net: tuple[Net, Clients]) -> None:
    """spec 0007 #post-search: a post a node puts in the results that does not hold
    the words (or the tag) is dropped and reported; matching is case-folded and
    ignores diacritics."""
    fake, clients = net
    honest, liar = _node(fake, "s1"), _node(fake, "s2")
    bob = Author.new()
    good = bob.post("Un Café au lait", tags=["Paris"])
    spam = bob.post("buy pills now")
    honest.add(good, spam)
    liar.add(good, spam)
    liar.search_serves = [spam, good]
    reader = Reader(clients(honest, liar))
    view = await search_view_posts(reader, search_list(reader, q="cafe LAIT", cursor=None))(10)
    assert [e.id for e in view.items] == [good.id]
    assert [i["id"] for i in reader.report.node(liar.url).invalid] == [spam.id_hex]
    assert reader.report.node(honest.url).invalid == []

    reader = Reader(clients(honest))
    view = await search_view_posts(reader, search_list(reader, tag="#PARIS", cursor=None))(10)
    assert [e.id for e in view.items] == [good.id]
    with pytest.raises(BadRequestError):
        search_list(reader, q="  ¿? ", cursor=None)
