"""Posting (spec 0007 §post): head discovery before signing, ≥1 node, per-node outcomes."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from client.api import NodeClient
from client.errors import NodeUnreachableError
from client.publish import Publisher
from client.state import Head, HeadStore
from protocol.errors import RemoteError
from protocol.events import decode_event
from tests.client.conftest import Author, Net

Clients = Callable[..., list[NodeClient]]


async def test_first_post_starts_the_chain(net: tuple[Net, Clients], tmp_path: Path) -> None:
    fake, clients = net
    node = fake.node("n")
    me = Author.new()
    pub = Publisher(me.identity, clients(node), HeadStore(tmp_path))
    result = await pub.publish("post", {"text": "hi"})
    assert result.event.seq == 1 and result.event.prev is None
    assert result.head_source == "none"
    assert [o.status for o in result.outcomes] == ["accepted"]
    heads = tmp_path / "state" / "heads.json"
    assert json.loads(heads.read_text())[me.did] == {"seq": 1, "id": result.event.id_hex}
    assert stat.S_IMODE(heads.stat().st_mode) == 0o600


async def test_new_machine_asks_nodes_for_the_head(
    net: tuple[Net, Clients], tmp_path: Path
) -> None:
    """Same key, empty home: the client continues the chain instead of forking it."""
    fake, clients = net
    node = fake.node("n")
    me = Author.new()
    node.add(me.post("1"), me.post("2"), me.post("3"))
    pub = Publisher(me.identity, clients(node), HeadStore(tmp_path))
    result = await pub.publish("post", {"text": "4"})
    assert result.event.seq == 4 and result.event.prev == me.events[-1].id
    assert result.head_source == "nodes"


async def test_stale_local_head_is_corrected(net: tuple[Net, Clients], tmp_path: Path) -> None:
    fake, clients = net
    node = fake.node("n")
    me = Author.new()
    node.add(me.post("1"), me.post("2"))
    heads = HeadStore(tmp_path)
    heads.advance(me.did, Head(seq=1, id=me.events[0].id))
    result = await Publisher(me.identity, clients(node), heads).publish("post", {"text": "3"})
    assert result.event.seq == 3


async def test_unproven_claim_is_ignored(net: tuple[Net, Clients], tmp_path: Path) -> None:
    """A node that claims a higher seq but serves no verified event cannot move the head."""
    fake, clients = net
    honest, liar = fake.node("honest"), fake.node("liar")
    me = Author.new()
    e1 = me.post("1")
    honest.add(e1)
    liar.add(e1, me.post("2"))
    liar.hidden.add(me.events[1].id)  # hidden from reads...
    original = liar.handle

    async def lying_head(request):  # type: ignore[no-untyped-def]
        if request.url.path.endswith("/head"):
            import httpx

            return httpx.Response(200, json={"max_seq": 99})
        return await original(request)

    liar.handle = lying_head  # type: ignore[method-assign]
    result = await Publisher(me.identity, clients(honest, liar), HeadStore(tmp_path)).publish(
        "post", {"text": "next"}
    )
    assert result.event.seq == 2 and result.event.prev == e1.id


async def test_one_node_down_still_publishes(net: tuple[Net, Clients], tmp_path: Path) -> None:
    fake, clients = net
    up, down = fake.node("up"), fake.node("down")
    down.down = True
    me = Author.new()
    result = await Publisher(me.identity, clients(down, up), HeadStore(tmp_path)).publish(
        "post", {"text": "hi"}
    )
    assert [(o.status, o.code) for o in result.outcomes] == [
        ("error", "node-unreachable"),
        ("accepted", None),
    ]
    assert decode_event(up.wires[result.event.id]).id == result.event.id


async def test_all_down_is_an_error(net: tuple[Net, Clients], tmp_path: Path) -> None:
    fake, clients = net
    down = fake.node("down")
    down.down = True
    with pytest.raises(NodeUnreachableError):
        await Publisher(Author.new().identity, clients(down), HeadStore(tmp_path)).publish(
            "post", {"text": "hi"}
        )
    assert not (tmp_path / "state" / "heads.json").exists()


async def test_rejection_carries_the_nodes_code(net: tuple[Net, Clients], tmp_path: Path) -> None:
    fake, clients = net
    other = fake.node("other", net="othernet")
    with pytest.raises(RemoteError) as info:
        await Publisher(Author.new().identity, clients(other), HeadStore(tmp_path)).publish(
            "post", {"text": "hi"}
        )
    assert info.value.code == "wrong-network"
    assert other.url in info.value.message
    assert HeadStore(tmp_path).get(Author.new().did) is None
