"""The reader asks a node for key histories in the node's own sizes: ``POST /v1/keys``
split at the ``max_feed_authors`` its ``/v1/info`` advertises (spec 0004 #keys-batch),
and ``GET /v1/authors/{did}/keys`` read page by page, following ``next`` (spec 0004
#author-keys), so that every key event counts however long the history.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from client.api import NodeClient
from client.errors import BadResponseError
from client.reader import Reader
from client.views import timeline
from protocol.keystate import Status
from tests.client.conftest import FakeNode, Net
from tests.client.test_keys_batch import AUTHORS, _key_requests, _outcome, _world
from tests.rotatable import Rotatable

Clients = Callable[..., list[NodeClient]]


async def test_the_batch_is_split_at_the_nodes_advertised_limit(
    net: tuple[Net, Clients],
) -> None:
    """spec 0004 #keys-batch: a node advertising max_feed_authors = 7 gets requests of
    at most 7 dids (it refuses more with a 400), its /v1/info read once; the view is
    the same as from nodes taking all 40 at once."""
    fake, clients = net
    me, nodes, mine, forged = _world(fake, "lim")
    for node in nodes:
        node.max_feed_authors = 7
    view = await timeline(Reader(clients(*nodes)), me.did, limit=200)
    assert all(n.ok for n in view.report.nodes), [n.to_json() for n in view.report.nodes]
    for node in nodes:
        assert _key_requests(node) == (-(-AUTHORS // 7), 0)
        assert node.requests.count("GET /v1/info") == 1
    shown, excluded = _outcome(view)
    assert mine <= shown and not forged & shown
    assert all(excluded[i] is Status.REVOKED for i in forged)

    me2, default_nodes, _, _ = _world(fake, "nolim")  # no /v1/info: the spec default
    default_view = await timeline(Reader(clients(*default_nodes)), me2.did, limit=200)
    for node in default_nodes:
        assert _key_requests(node) == (1, 0)
    assert _outcome(default_view) == (shown, excluded)


async def test_a_long_key_history_is_read_page_by_page(net: tuple[Net, Clients]) -> None:
    """spec 0004 #author-keys: a node serving one key event a page (then ``next``)
    still gives the reader the whole history: the rotation on the second page revokes
    the thief's post, and the post signed after it is the author's."""
    fake, clients = net
    me, nodes, mine, forged = _world(fake, "pg")
    paged = Rotatable("batch0").did  # rotated (2 key events); a thief's post on node b
    for node in nodes:
        node.keys_deferred.add(paged)
        node.keys_page = 1
    view = await timeline(Reader(clients(*nodes)), me.did, limit=200)
    for node in nodes:
        assert _key_requests(node) == (1, 2)  # the batch, then G and the rotation
    shown, excluded = _outcome(view)
    assert mine <= shown and not forged & shown
    assert all(excluded[i] is Status.REVOKED for i in forged)


async def test_a_node_whose_next_does_not_move_is_a_bad_response(
    net: tuple[Net, Clients],
) -> None:
    """spec 0004 #author-keys: ``next`` must move on; a node repeating it is not
    followed forever."""
    fake, clients = net
    node: FakeNode = fake.node("loop")
    r = Rotatable("loop")
    rotation = r.rotate("N0", "S1", "N1", after=r.genesis, kev=r.genesis)
    node.add(r.genesis, rotation)
    node.keys_page = 1
    (client,) = clients(node)
    items = await client.author_keys(r.did)
    assert len(items) == 2
    # A node whose ``next`` stays put: the read stops with a bad-response error.
    node.keys_page = 0
    with pytest.raises(BadResponseError):
        await client.author_keys(r.did)
