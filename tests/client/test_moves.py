"""Moves from a did:key to a did:murmur (spec 0008 #move): readers follow a confirmed
move, report a contested or unconfirmed one and follow nothing for it; ``murmur id
move`` signs the genesis naming the did:key and the did:key's move."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from client.api import NodeClient
from client.cli.render import Names, format_report
from client.config import ClientConfig
from client.reader import Reader
from client.views import follow_set, timeline
from protocol.events import Event, decode_event, sign_event, sign_event_v2, sign_genesis
from protocol.identity import Identity
from tests.client.conftest import Author, FakeNode, Net
from tests.client.test_rotation import cli, cli_net, no_terminal  # noqa: F401 - fixtures

Clients = Callable[..., list[NodeClient]]


def new_identity(from_did: str | None) -> tuple[Event, Event]:
    """A did:murmur's genesis (naming ``from_did`` when given) and a first post."""
    signing = Identity.generate()
    genesis = sign_genesis(
        signing,
        next_key=Identity.generate().public.raw,
        recovery=[Identity.generate().public.raw],
        from_did=from_did,
    )
    post = sign_event_v2(
        signing,
        author=genesis.author,
        kind="post",
        body={"text": "from my new identity"},
        seq=2,
        prev=genesis.id,
        kev=genesis.id,
    )
    return genesis, post


def texts(view_items: list[Event]) -> set[str]:
    return {str((e.body or {}).get("text")) for e in view_items}


def setup(fake: Net) -> tuple[FakeNode, FakeNode, Author, Author]:
    """Two nodes, a reader ``me`` following the did:key ``bob``, who posted once."""
    a, b = fake.node("a"), fake.node("b")
    me, bob = Author.new(), Author.new()
    follow = me.sign("follow", {"subject": bob.did})
    old = bob.post("from my did:key")
    for n in (a, b):
        n.add(follow, old)
    return a, b, me, bob


async def test_a_confirmed_move_is_followed(net: tuple[Net, Clients]) -> None:
    """spec 0008 #move: one move target whose genesis names the did:key back: following
    the did:key follows the new did too (both authors' posts), even when the move is
    on one node only."""
    fake, clients = net
    a, b, me, bob = setup(fake)
    genesis, post = new_identity(from_did=bob.did)
    move = bob.sign("move", {"to": genesis.author})
    a.add(genesis, post)
    b.add(move)  # only b holds the move
    reader = Reader(clients(a, b), net="murmur")
    view = await timeline(reader, me.did, limit=20)
    assert texts(view.items) == {"from my did:key", "from my new identity"}
    assert view.follows is not None and genesis.author in view.follows
    moved = view.report.moves[bob.did]
    assert moved.status == "confirmed" and moved.targets == (genesis.author,)
    assert view.report.to_json()["moves"][0]["status"] == "confirmed"


async def test_a_thiefs_second_move_makes_it_contested(net: tuple[Net, Clients]) -> None:
    """spec 0008 #move: a thief with the did:key seed signs a move to its own identity
    on another branch, served only in one node's author log (not its feed): the move
    has two targets, so neither is followed, and the report says so."""
    fake, clients = net
    a, b, me, bob = setup(fake)
    genesis, post = new_identity(from_did=bob.did)
    move = bob.sign("move", {"to": genesis.author})
    t_genesis, t_post = new_identity(from_did=bob.did)  # the thief names bob too
    t_move = sign_event(
        bob.identity, kind="move", body={"to": t_genesis.author}, seq=move.seq, prev=move.prev
    )
    for n in (a, b):
        n.add(genesis, post, move, t_genesis, t_post)
    b.add(t_move)
    b.feed_hidden.add(t_move.id)  # only a log fetch finds it
    reader = Reader(clients(a, b), net="murmur")
    view = await timeline(reader, me.did, limit=20)
    assert texts(view.items) == {"from my did:key"}
    assert view.follows == frozenset({bob.did})
    moved = view.report.moves[bob.did]
    assert moved.status == "contested"
    assert set(moved.targets) == {genesis.author, t_genesis.author}
    text = format_report(view.report, Names(ClientConfig(path=Path("unused.toml"))))
    assert "move is contested" in text and "2 different identities" in text


async def test_a_move_whose_genesis_does_not_name_it_back_is_not_followed(
    net: tuple[Net, Clients],
) -> None:
    """spec 0008 #move: "both sides are required": a move to an identity whose genesis
    has no ``from`` is unconfirmed (anyone can name any did:murmur in a move)."""
    fake, clients = net
    a, b, me, bob = setup(fake)
    genesis, post = new_identity(from_did=None)
    move = bob.sign("move", {"to": genesis.author})
    for n in (a, b):
        n.add(genesis, post, move)
    reader = Reader(clients(a, b), net="murmur")
    follows = await follow_set(reader, me.did)
    assert set(follows) == {bob.did}
    moved = reader.report.moves[bob.did]
    assert moved.status == "unconfirmed" and "does not name it in 'from'" in moved.reason
    view = await timeline(Reader(clients(a, b), net="murmur"), me.did, limit=20)
    assert texts(view.items) == {"from my did:key"}


def test_id_move_signs_the_genesis_from_and_the_move(
    tmp_path: Path,
    cli_net: Net,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    """spec 0008 #move: ``murmur id move bob`` makes a rotatable identity whose genesis
    names bob's did:key in ``from`` (recovery keys to --recovery-out, S and N apart as
    ``id new``), then bob's did:key signs a v1 ``move`` to it; both are published, the
    new identity becomes the default, and a second run reuses it (no second target)."""
    a = cli_net.node("a")
    code, out, err = cli(capsys, tmp_path, "id", "new", "bob", "--did-key", "--no-encrypt")
    assert code == 0, err
    code, out, _ = cli(capsys, tmp_path, "id", "show", "bob", "--json")
    old_did = json.loads(out)["did"]
    node = ["--node", "http://a.test"]
    rec = tmp_path / "rec"
    argv = ["id", "move", "bob", "--no-encrypt", "--recovery-out", str(rec), "--json"]
    code, out, err = cli(capsys, tmp_path, *node, *argv)
    assert code == 0, err
    doc = json.loads(out)
    new_did = doc["to"]
    assert doc["from"] == old_did and doc["name"] == "bob-murmur" and doc["default"] is True
    events = [decode_event(w, net="murmur", allow_v2=True) for w in a.wires.values()]
    (genesis,) = [e for e in events if e.kind == "genesis"]
    (move,) = [e for e in events if e.kind == "move"]
    assert genesis.author == new_did and (genesis.body or {})["from"] == old_did
    assert move.author == old_did and move.key is None  # a v1 event of the did:key
    assert move.body == {"to": new_did}
    assert len(list(rec.iterdir())) == 1  # the recovery key, shown first, not stored
    assert (tmp_path / "identities" / "bob-murmur.next.toml").exists()
    code, out, _ = cli(capsys, tmp_path, "id", "list", "--json")
    first = json.loads(out)[0]
    assert (first["name"], first["default"]) == ("bob-murmur", True)
    # Again: the same target, a re-signed move to it, no new identity.
    code, out, err = cli(capsys, tmp_path, *node, "id", "move", "bob", "--json")
    assert code == 0, err
    assert json.loads(out)["to"] == new_did and json.loads(out)["created"] is None
    events = [decode_event(w, net="murmur", allow_v2=True) for w in a.wires.values()]
    assert {(e.body or {})["to"] for e in events if e.kind == "move"} == {new_did}
    assert len([e for e in events if e.kind == "genesis"]) == 1
