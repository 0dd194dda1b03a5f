"""Notifications and followers in the client library, against fake nodes (spec 0007
#notifications, #merged-pages, #notifications-seen, #followers).

The fake nodes list whatever the test says under ``GET /v1/notifications`` and
``GET /v1/followers/{did}`` (newest first, ``page`` items a page), so a test can make a
node lie: list a like of someone else's post, a follow its author took back, a forged
event, a "mention" that names someone else. The client must show only what its own
checks of verified events say concerns the reader, each event once, newest first,
and page through the merged lists without losing or repeating an item.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.api import NodeClient
from client.cli.notify_cmds import _notification_text
from client.cli.render import Names
from client.config import ClientConfig
from client.followers import followers_page
from client.notifications import Notification, Notifier
from client.notify_state import SeenState
from client.paging import MergedCursor
from client.reader import Reader
from client.textsafety import safe_text
from protocol.errors import BadRequestError
from protocol.events import Event, decode_unverified
from tests.client.conftest import Author, FakeNode, Net, broken_signature, event_json

Clients = Callable[..., list[NodeClient]]


class SocialNode(FakeNode):
    """A fake node that also answers the social reads from lists the test sets."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.listed: list[bytes] = []  # ids listed as notifications (of anyone asked)
        self.follower_events: list[bytes] = []
        self.page = 2

    def _page(self, ids: list[bytes], q: httpx.QueryParams) -> tuple[list[Event], str | None]:
        evs = sorted(
            (decode_unverified(self.wires[i], allow_v2=True) for i in ids),
            key=lambda e: (e.ts, e.id),
            reverse=True,
        )
        start = int(q.get("before") or 0)
        size = min(int(q.get("limit", 50)), self.page)
        nxt = str(start + size) if len(evs) > start + size else None
        return evs[start : start + size], nxt

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, request.url.params
        if path == "/v1/notifications":
            self.requests.append(f"GET {path}")
            page, nxt = self._page(self.listed, q)
            rows = [{"reason": "like", "event": event_json(self.wires[e.id])} for e in page]
            return httpx.Response(200, json={"did": q["did"], "notifications": rows, "next": nxt})
        if path.startswith("/v1/followers/"):
            page, nxt = self._page(self.follower_events, q)
            return httpx.Response(
                200,
                json={
                    "did": path.rsplit("/", 1)[1],
                    "stats": {"followers": len(self.follower_events), "following": 0},
                    "events": [event_json(self.wires[e.id]) for e in page],
                    "next": nxt,
                },
            )
        return await super().handle(request)


def _social(net: Net, name: str) -> SocialNode:
    node = SocialNode(f"http://{name}.test")
    net.nodes[node.url] = node
    return node


@pytest.fixture
def world(net: tuple[Net, Clients]) -> dict[str, Any]:
    fake, clients = net
    alice, bob, carol = Author.new(), Author.new(), Author.new()
    hello = alice.post("hello")
    other = carol.post("carol's own post")
    nodes = [_social(fake, f"n{i}") for i in (1, 2, 3)]
    for node in nodes:
        node.add(hello, other)
    return {"net": fake, "clients": clients, "alice": alice, "bob": bob, "carol": carol,
            "hello": hello, "other": other, "nodes": nodes}  # fmt: skip


def _everywhere(nodes: list[SocialNode], *events: Event) -> None:
    for node in nodes:
        node.add(*events)


async def _all_pages(
    reader_of: Callable[[], Reader], me: str, limit: int, *, max_pages: int = 20
) -> list[list[Notification]]:
    pages: list[list[Notification]] = []
    cursor: MergedCursor | None = None
    for _ in range(max_pages):
        page = await Notifier(reader_of(), me).page(limit=limit, cursor=cursor)
        pages.append(page.shown)
        if page.next is None:
            return pages
        cursor = MergedCursor.decode(page.next.encode(), "notifications")
    raise AssertionError("the pages never end")


async def test_merged_once_each_newest_first_with_the_clients_own_reasons(
    world: dict[str, Any],
) -> None:
    """spec 0007 #notifications, #merged-pages: three nodes listing overlapping sets."""
    alice, bob, hello = world["alice"], world["bob"], world["hello"]
    nodes: list[SocialNode] = world["nodes"]
    acts = [
        bob.post(f"hi @{alice.did}", facets=[_mention(alice.did, 3, 3 + 1 + len(alice.did))]),
        bob.post("reply", reply={"root": hello.id, "parent": hello.id}),
        bob.sign("like", {"target": hello.id}),
        bob.post("quote", quote=hello.id),
        bob.sign("repost", {"target": hello.id}),
        bob.sign("follow", {"subject": alice.did}),
    ]
    _everywhere(nodes, *acts)
    nodes[0].listed = [a.id for a in acts[:4]]
    nodes[1].listed = [a.id for a in acts[2:]]
    nodes[2].listed = [acts[0].id, acts[5].id]
    page = await Notifier(Reader(world["clients"](*nodes)), alice.did).page(limit=50)
    assert [(n.reason, n.event.id) for n in page.shown] == [
        (r, a.id)
        for r, a in zip(
            ["follow", "repost", "quote", "like", "reply", "mention"], reversed(acts), strict=True
        )
    ]
    assert page.next is None
    assert {n.reason: n.subject for n in page.shown}["like"] == hello


def _mention(did: str, start: int, end: int) -> dict[str, Any]:
    return {"type": "mention", "start": start, "end": end, "did": did}


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_pages_lose_and_repeat_nothing_even_with_ties(
    world: dict[str, Any], limit: int
) -> None:
    """spec 0007 #merged-pages: per-node cursors and a boundary with its tied ids."""
    alice, bob, carol, hello = world["alice"], world["bob"], world["carol"], world["hello"]
    nodes: list[SocialNode] = world["nodes"]
    likes = []
    for i, who in enumerate([bob, carol] * 5):
        if i in (3, 4, 7, 8):  # two pairs of likes on the same millisecond
            who.ts = 1_700_100_000_000 + (i // 2) * 10_000 - 1000
        else:
            who.ts = 1_700_100_000_000 + i * 10_000 - 1000
        likes.append(who.sign("like", {"target": hello.id}) if i < 2 else who.post(
            "r", reply={"root": hello.id, "parent": hello.id}))  # fmt: skip
    _everywhere(nodes, *likes)
    nodes[0].listed = [e.id for e in likes[::2]]
    nodes[1].listed = [e.id for e in likes[1::2]]
    nodes[2].listed = [e.id for e in likes[2:7]]
    clients = world["clients"]
    pages = await _all_pages(lambda: Reader(clients(*nodes)), alice.did, limit)
    seen = [n.event.id for p in pages for n in p]
    assert sorted(seen) == sorted(e.id for e in likes), "every one once"
    assert all(len(p) <= limit for p in pages)
    ts = [n.event.ts for p in pages for n in p]
    assert ts == sorted(ts, reverse=True)


async def test_a_lying_node_notifies_nothing(world: dict[str, Any]) -> None:
    """spec 0007 #notifications: a like of someone else's post, a follow taken back,
    a forged like, a "mention" of someone else and the reader's own post are listed
    by a hostile node; none notifies, and the node is reported."""
    alice, bob, carol, hello, other = (
        world[k] for k in ("alice", "bob", "carol", "hello", "other")
    )
    honest, liar, _ = world["nodes"]
    not_hers = bob.sign("like", {"target": other.id})
    stale = bob.sign("follow", {"subject": alice.did})
    unfollow = bob.sign("unfollow", {"subject": alice.did})
    forged_like = carol.sign("like", {"target": hello.id})
    someone_else = bob.post(f"hi @{carol.did}", facets=[_mention(carol.did, 3, 4 + len(carol.did))])
    own = alice.post("me", reply={"root": hello.id, "parent": hello.id})
    real = bob.sign("like", {"target": hello.id})
    for node in (honest, liar):
        node.add(not_hers, stale, someone_else, own, real)
    honest.add(unfollow)  # the liar withholds the unfollow
    liar.serve(broken_signature(forged_like))
    liar.listed = [not_hers.id, stale.id, forged_like.id, someone_else.id, own.id, real.id]
    reader = Reader(world["clients"](honest, liar))
    page = await Notifier(reader, alice.did).page(limit=50)
    assert [n.event.id for n in page.shown] == [real.id]
    report = reader.report.node(liar.url)
    codes = {(i["id"], i["code"]) for i in report.invalid}
    assert {
        (not_hers.id_hex, "unexpected-event"),
        (stale.id_hex, "unexpected-event"),
        (someone_else.id_hex, "unexpected-event"),
        (forged_like.id_hex, "invalid-signature"),
    } <= codes
    assert own.id_hex not in {i["id"] for i in report.invalid}  # not a lie: just hers


async def test_followers_are_verified_current_follows(world: dict[str, Any]) -> None:
    """spec 0007 #followers: latest per follower wins, whatever a node lists."""
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    honest, liar, _ = world["nodes"]
    f_bob = bob.sign("follow", {"subject": alice.did})
    f_carol = carol.sign("follow", {"subject": alice.did})
    un_carol = carol.sign("unfollow", {"subject": alice.did})
    of_bob = carol.sign("follow", {"subject": bob.did})
    for node in (honest, liar):
        node.add(f_bob, f_carol, of_bob)
    honest.add(un_carol)
    liar.follower_events = [f_bob.id, f_carol.id, of_bob.id]
    honest.follower_events = [f_bob.id]
    reader = Reader(world["clients"](honest, liar))
    page = await followers_page(reader, alice.did, limit=10)
    assert [e.author for e in page.shown] == [bob.did]
    assert page.node_figure("followers") == 3
    assert {i["id"] for i in reader.report.node(liar.url).invalid} == {
        f_carol.id_hex,
        of_bob.id_hex,
    }


def test_seen_state_marks_prunes_and_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec 0007 #notifications-seen."""
    monkeypatch.setattr("client.notify_state.MAX_SEEN", 3)
    bob = Author.new()
    events = [bob.post(str(i)) for i in range(5)]
    state = SeenState.load(tmp_path, "did:key:zAlice")
    assert all(state.unread(e) for e in events)
    assert state.mark(events[:2]) == 2 and state.mark(events[:2]) == 0
    state.save()
    again = SeenState.load(tmp_path, "did:key:zAlice")
    assert [again.unread(e) for e in events] == [False, False, True, True, True]
    again.mark(events[2:])  # five seen, three kept: the two oldest fall below the floor
    assert again.floor == events[1].ts and len(again.seen) == 3
    assert not any(again.unread(e) for e in events)
    late = bob.post("late")
    assert again.unread(late)


def test_cursor_of_another_list_or_garbage_is_refused() -> None:
    cursor = MergedCursor(list="notifications", nodes={"ab": "1.2"}, boundary=None).encode()
    assert MergedCursor.decode(cursor, "notifications").nodes == {"ab": "1.2"}
    for text, name in [(cursor, "followers:x"), ("m1.!!", "notifications"), ("x", "notifications")]:
        with pytest.raises(BadRequestError):
            MergedCursor.decode(text, name)


def test_hostile_names_and_text_reach_no_terminal_raw() -> None:
    """spec 0007 #terminal-safety: a notification's name, text and subject escaped."""
    alice, mallory = Author.new(), Author.new()
    hello = alice.post("hello \x1b]8;;http://evil\x07link\x1b]8;;\x07")
    profile = mallory.sign("profile", {"name": "\x1b[2J\u202eecila"})
    reply = mallory.post("\x1b[31mred\u202e\n\x9bX", reply={"root": hello.id, "parent": hello.id})
    names = Names(ClientConfig.load(Path("/nonexistent-home")), {mallory.did: profile})
    text = _notification_text(
        Notification(reason="reply", event=reply, subject=hello), names, None, True
    )
    for raw in ("\x1b", "\x9b", "\u202e", "\x07"):
        assert raw not in text
    assert safe_text(text) == text
    assert "\\x1b" in text and "replied to you" in text


@pytest.mark.parametrize("seed", range(8))
async def test_long_runs_of_equal_timestamps_page_through(world: dict[str, Any], seed: int) -> None:
    """spec 0007 #merged-pages, #paging: many notifications on a few milliseconds
    (runs of ties longer than what a node serves within the page budget), each of
    three nodes listing a random part; walking the pages lists every one once,
    newest first, and the pages end."""
    alice, hello = world["alice"], world["hello"]
    nodes: list[SocialNode] = world["nodes"]
    rng = random.Random(seed)
    likers = [Author.new() for _ in range(rng.randint(25, 45))]
    stamps = [1_700_200_000_000 + k for k in range(rng.randint(1, 3))]
    likes = []
    for who in likers:
        who.ts = rng.choice(stamps) - 1000  # sign() adds 1000
        likes.append(who.sign("like", {"target": hello.id}))
    _everywhere(nodes, *likes)
    for node in nodes:
        node.page = rng.randint(1, 3)
        node.listed = [e.id for e in likes if rng.random() < 0.5]
    unlisted = {e.id for e in likes} - {i for n in nodes for i in n.listed}
    for eid in unlisted:
        rng.choice(nodes).listed.append(eid)
    clients = world["clients"]
    limit = rng.randint(1, 6)
    pages = await _all_pages(lambda: Reader(clients(*nodes)), alice.did, limit, max_pages=100)
    seen = [n.event.id for p in pages for n in p]
    assert sorted(seen) == sorted(e.id for e in likes), "every one once"
    ts = [n.event.ts for p in pages for n in p]
    assert ts == sorted(ts, reverse=True)
