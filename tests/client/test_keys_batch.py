"""The reader asks each node once per read for the key events of every did:murmur
author of the view (spec 0004 #keys-batch, spec 0008 #clients), and falls back to the
single-author ``GET /v1/authors/{did}/keys`` on an older node and for deferred
authors, with the same verification and union as before.
"""

from __future__ import annotations

from collections.abc import Callable

from client import api
from client.api import NodeClient
from client.reader import Reader
from client.views import View, timeline
from protocol.events import Event
from protocol.keystate import Status
from tests.client.conftest import Author, FakeNode, Net
from tests.rotatable import Rotatable

Clients = Callable[..., list[NodeClient]]
AUTHORS = 40


def _world(fake: Net, prefix: str) -> tuple[Author, list[FakeNode], set[bytes], set[bytes]]:
    """``me`` follows AUTHORS rotatable authors; every fifth rotated after its first
    post, and a thief holding its S0 forged a post on node b: revoked."""
    a, b = fake.node(f"{prefix}a"), fake.node(f"{prefix}b")
    me = Author.new()
    mine: set[bytes] = set()
    forged: set[bytes] = set()
    for n in range(AUTHORS):
        r = Rotatable(f"batch{n}")
        post = r.sign("S0", "post", {"text": f"hello {n}"}, after=r.genesis, kev=r.genesis)
        events: list[Event] = [r.genesis, post]
        mine.add(post.id)
        if n % 5 == 0:
            rotation = r.rotate("N0", "S1", "N1", after=post, kev=r.genesis)
            later = r.sign("S1", "post", {"text": f"after {n}"}, after=rotation, kev=rotation)
            thief = r.sign("S0", "post", {"text": "forged"}, after=post, kev=r.genesis)
            events += [rotation, later]
            mine.add(later.id)
            forged.add(thief.id)
            b.add(thief)
        a.add(*events)
        b.add(*events)
        a.add(me.sign("follow", {"subject": r.did}))
    b.add(*me.events)
    return me, [a, b], mine, forged


def _outcome(view: View) -> tuple[set[bytes], dict[bytes, Status]]:
    return (
        {e.id for e in view.items},
        {i: x.status for i, x in view.report.excluded.items()},
    )


def _key_requests(node: FakeNode) -> tuple[int, int]:
    posts = sum(r == "POST /v1/keys" for r in node.requests)
    gets = sum(r.startswith("GET /v1/authors/") and r.endswith("/keys") for r in node.requests)
    return posts, gets


async def test_one_keys_request_per_node_for_many_authors_same_result_as_per_author(
    net: tuple[Net, Clients],
) -> None:
    """spec 0004 #keys-batch: a timeline of 40 rotatable authors costs one POST /v1/keys
    per node and no single-author GET; an older node (404) is asked author by author,
    and both reads show and exclude exactly the same events (0008 #clients)."""
    fake, clients = net
    me, new_nodes, mine, forged = _world(fake, "new")
    batched = await timeline(Reader(clients(*new_nodes)), me.did, limit=200)
    for node in new_nodes:
        assert _key_requests(node) == (1, 0)

    me_old, old_nodes, _, _ = _world(fake, "old")
    for node in old_nodes:
        node.keys_batch = False
    single = await timeline(Reader(clients(*old_nodes)), me_old.did, limit=200)
    for node in old_nodes:
        assert _key_requests(node) == (1, AUTHORS)  # the 404, then one GET per author

    shown, excluded = _outcome(batched)
    assert mine <= shown and not forged & shown
    assert {i: s for i, s in excluded.items() if i in forged} == dict.fromkeys(
        forged, Status.REVOKED
    )
    assert (shown, excluded) == _outcome(single)


async def test_deferred_authors_are_asked_one_by_one(net: tuple[Net, Clients]) -> None:
    """spec 0004 #keys-batch: an author the node defers (its history does not fit the
    answer) is asked with GET /v1/authors/{did}/keys; its rotation still counts."""
    fake, clients = net
    me, nodes, mine, forged = _world(fake, "d")
    deferred = Rotatable("batch0").did  # rotated; its thief's post is on node b
    for node in nodes:
        node.keys_deferred.add(deferred)
    view = await timeline(Reader(clients(*nodes)), me.did, limit=200)
    for node in nodes:
        assert _key_requests(node) == (1, 1)
    shown, excluded = _outcome(view)
    assert mine <= shown and not forged & shown
    assert all(excluded[i] is Status.REVOKED for i in forged)


async def test_a_nodes_limits_are_read_once_a_session(net: tuple[Net, Clients]) -> None:
    """spec 0007 #key-status: a node's max_feed_authors (/v1/info) is read once for
    every read over the same HTTP client (a session; the CLI's reads and the web's
    each make new node clients), and again once INFO_TTL_S has passed."""
    fake, clients = net
    me, nodes, _, _ = _world(fake, "info")
    for node in nodes:
        node.max_feed_authors = 15  # 40 authors: three POST /v1/keys a read
    for _ in range(2):
        await timeline(Reader(clients(*nodes)), me.did, limit=200)
    for node in nodes:
        assert node.requests.count("GET /v1/info") == 1
        assert _key_requests(node) == (6, 0)
    for kept in api._INFO_KEPT.values():  # as if INFO_TTL_S had passed
        for url, (read_at, value) in list(kept.items()):
            kept[url] = (read_at - api.INFO_TTL_S - 1, value)
    await timeline(Reader(clients(*nodes)), me.did, limit=200)
    for node in nodes:
        assert node.requests.count("GET /v1/info") == 2
