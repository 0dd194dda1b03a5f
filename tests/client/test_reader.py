"""Multi-node verified reading (spec 0007 §read): merge, verify, repair, report."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from client.api import NodeClient, WireItem
from client.errors import NoNodesError
from client.fanout import Cut
from client.reader import Reader
from client.views import author_view, follow_set, thread_view, timeline
from protocol.events import Event
from tests.client.conftest import Author, FakeNode, Net, broken_signature

Clients = Callable[..., list[NodeClient]]


def seqs(events: list[Event]) -> list[int]:
    return sorted(e.seq for e in events)


async def test_withholding_is_detected_and_repaired(net: tuple[Net, Clients]) -> None:
    """0007 §withheld: seq 1 and 3 on B, seq 2 only on A: all three shown, B reported."""
    fake, clients = net
    a, b = fake.node("a"), fake.node("b")
    carol = Author.new()
    e1, e2, e3 = carol.post("one"), carol.post("two"), carol.post("three")
    b.add(e1, e3)
    a.add(e2)
    reader = Reader(clients(b, a))
    view = await author_view(reader, carol.did, limit=10)
    assert seqs(view.items) == [1, 2, 3]
    b_report = reader.report.node(b.url).to_json()
    assert b_report["ok"] and [(w["author"], w["seq"]) for w in b_report["withheld"]] == [
        (carol.did, 2)
    ]
    assert [w["seq"] for w in reader.report.node(a.url).to_json()["withheld"]] == [1, 3]
    assert reader.report.gaps == [] and reader.report.forks == []


async def test_unrepairable_gap_is_reported(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    b = fake.node("b")
    carol = Author.new()
    e1, _, e3 = carol.post("one"), carol.post("two"), carol.post("three")
    b.add(e1, e3)
    reader = Reader(clients(b))
    view = await author_view(reader, carol.did, limit=10)
    assert seqs(view.items) == [1, 3]
    assert reader.report.gaps == [{"author": carol.did, "first": 2, "last": 2}]


async def test_broken_signature_is_reported_and_dropped(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    good, evil = fake.node("good"), fake.node("evil")
    carol = Author.new()
    e1, e2 = carol.post("one"), carol.post("two")
    good.add(e1)
    evil.add(e1)
    evil.serve(broken_signature(e2))
    reader = Reader(clients(good, evil))
    view = await author_view(reader, carol.did, limit=10)
    assert [e.id for e in view.items] == [e1.id]
    invalid = reader.report.node(evil.url).to_json()["invalid"]
    assert invalid == [
        {"id": e2.id_hex, "code": "invalid-signature", "message": invalid[0]["message"]}
    ]
    assert reader.report.node(good.url).invalid == []


async def test_node_down_is_reported_not_blocking(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    up, down, slow = fake.node("up"), fake.node("down"), fake.node("slow")
    down.down = True
    slow.delay = 30
    carol = Author.new()
    ev = carol.post("hello")
    up.add(ev)
    slow.add(ev)
    reader = Reader(clients(up, down, slow, timeout=0.3), timeout=0.3)
    view = await author_view(reader, carol.did, limit=10)
    assert [e.id for e in view.items] == [ev.id]
    assert reader.report.node(down.url).to_json()["error"]["code"] == "node-unreachable"
    assert reader.report.node(slow.url).to_json()["error"]["code"] == "node-timeout"
    # The slow node costs one timeout for the whole read, not one per phase: its
    # request was cut (node-timeout, above) and it was never asked again.
    assert len(slow.requests) == 1


async def test_event_of_another_author_in_a_log_is_rejected(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    node = fake.node("n")
    carol, mallory = Author.new(), Author.new()
    ev = carol.post("mine")
    node.add(ev)
    reader = Reader(clients(node))
    await reader.fetch_log(carol.did)
    # The fake node filters by author, so slip the foreign event into a page directly.
    reader.add(
        node.url,
        WireItem(wire=mallory.post("x").wire, claimed_id=None),
        lambda e: e.author == carol.did,
    )
    assert reader.report.node(node.url).invalid[0]["code"] == "unexpected-event"
    assert mallory.did not in {e.author for e in reader.events.values()}


async def test_timeline_repairs_gaps_through_the_log(net: tuple[Net, Clients]) -> None:
    """A post that no node's feed carries is found through the author log (gap repair)."""
    fake, clients = net
    a, b = fake.node("a"), fake.node("b")
    me, carol = Author.new(), Author.new()
    follow = me.sign("follow", {"subject": carol.did})
    e1, e2, e3 = carol.post("one"), carol.post("two"), carol.post("three")
    for n in (a, b):
        n.add(follow, e1, e2, e3)
        n.feed_hidden.add(e2.id)
    reader = Reader(clients(a, b))
    view = await timeline(reader, me.did, limit=10)
    assert [e.seq for e in view.items if e.author == carol.did] == [3, 2, 1]
    withheld = [w["seq"] for w in reader.report.node(a.url).to_json()["withheld"]]
    assert withheld == []  # a served seq 2 through its log when asked


async def test_follow_set_latest_per_subject_wins(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    node = fake.node("n")
    me, x, y = Author.new(), Author.new(), Author.new()
    node.add(
        me.sign("follow", {"subject": x.did}),
        me.sign("follow", {"subject": y.did}),
        me.sign("unfollow", {"subject": x.did}),
    )
    follows = await follow_set(Reader(clients(node)), me.did)
    assert set(follows) == {y.did}


async def test_deleted_posts_are_not_shown(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    node = fake.node("n")
    carol = Author.new()
    keep, gone = carol.post("keep"), carol.post("gone")
    node.add(keep, gone, carol.sign("delete", {"target": gone.id}))
    view = await author_view(Reader(clients(node)), carol.did, limit=10)
    assert [e.id for e in view.items] == [keep.id]


async def test_thread_from_any_reply(net: tuple[Net, Clients]) -> None:
    fake, clients = net
    a, b = fake.node("a"), fake.node("b")
    x, y = Author.new(), Author.new()
    root = x.post("root")
    r1 = y.post("r1", reply={"root": root.id, "parent": root.id})
    r2 = x.post("r2", reply={"root": root.id, "parent": r1.id})
    a.add(root, r1)
    b.add(r2)
    reader = Reader(clients(a, b))
    view = await thread_view(reader, r2.id)
    assert view.root is not None and view.root.id == root.id
    assert [e.id for e in view.items] == [r1.id, r2.id]
    assert {w["seq"] for w in reader.report.node(b.url).to_json()["withheld"]} == {1}


def test_no_nodes() -> None:
    with pytest.raises(NoNodesError):
        Reader([])


async def test_verify_many_keeps_order_and_reports_each_failure() -> None:
    from client.verify import verify_many
    from protocol.errors import ProtocolError

    author = Author.new()
    events = [author.post(f"n{i}") for i in range(20)]
    wires = [e.wire for e in events]
    wires[3] = broken_signature(events[3])
    wires[11] = b"\x93garbage"
    checked = await verify_many(wires)
    assert len(checked) == 20
    for i, (ev, result) in enumerate(zip(events, checked, strict=True)):
        if i in (3, 11):
            assert isinstance(result, ProtocolError)
        else:
            assert not isinstance(result, ProtocolError) and result.id == ev.id
    assert isinstance(checked[3], ProtocolError) and checked[3].code == "invalid-signature"


async def test_a_body_stripped_without_a_deletion_is_withheld(net: tuple[Net, Clients]) -> None:
    """0007 #withheld-body: serving seq 2 body-less with no delete of it is withholding."""
    fake, clients = net
    good, evil = fake.node("good"), fake.node("evil")
    carol = Author.new()
    e1, e2 = carol.post("one"), carol.post("two")
    good.add(e1, e2)
    evil.add(e1, e2.without_body())
    reader = Reader(clients(evil, good))
    view = await author_view(reader, carol.did, limit=10)
    assert [e.body for e in sorted(view.items, key=lambda e: e.seq)] == [e1.body, e2.body]
    assert [w["seq"] for w in reader.report.node(evil.url).to_json()["withheld"]] == [2]
    assert reader.report.node(good.url).withheld == []


async def test_a_body_stripped_everywhere_is_not_shown_and_is_withheld(
    net: tuple[Net, Clients],
) -> None:
    fake, clients = net
    evil = fake.node("evil")
    carol = Author.new()
    e1, e2 = carol.post("one"), carol.post("two")
    evil.add(e1, e2.without_body())
    reader = Reader(clients(evil))
    view = await author_view(reader, carol.did, limit=10)
    assert [e.id for e in view.items] == [e1.id]  # never shown as an empty post
    assert [w["seq"] for w in reader.report.node(evil.url).to_json()["withheld"]] == [2]


async def test_a_body_dropped_by_its_authors_delete_is_not_withheld(
    net: tuple[Net, Clients],
) -> None:
    fake, clients = net
    node = fake.node("honest")
    carol = Author.new()
    e1 = carol.post("regret")
    d2 = carol.sign("delete", {"target": e1.id})
    node.add(e1.without_body(), d2)
    reader = Reader(clients(node))
    view = await author_view(reader, carol.did, limit=10)
    assert view.items == []
    assert reader.report.node(node.url).withheld == []


# -- reads before signing: a slow node is not waited for (spec 0007 #slow-lookups) -------


async def test_find_ends_at_the_first_verified_copy(net: tuple[Net, Clients]) -> None:
    """spec 0007 #slow-lookups: the first node serving the event whole and verified
    ends a lookup; the slow node's request is cancelled and not counted as a failure."""
    fake, clients = net
    up, slow = fake.node("up"), fake.node("slow")
    slow.delay = 600  # never answers within the test
    ev = Author.new().post("hello")
    up.add(ev)
    slow.add(ev)
    reader = Reader(clients(slow, up, timeout=900), timeout=900)
    found = await reader.find(ev.id)
    assert found is not None and found.id == ev.id
    assert reader.report.node(up.url).answered
    assert reader.report.node(slow.url).error is None  # not needed, so not failed
    assert slow.requests == [f"GET /v1/events/{ev.id_hex}"]


async def test_find_is_not_ended_by_not_found_or_a_forged_copy(
    net: tuple[Net, Clients],
) -> None:
    """spec 0007 #slow-lookups: a node that does not hold the event, or serves a copy
    that fails verification, does not end the lookup while another may hold it."""
    fake, clients = net
    empty, evil, good = fake.node("empty"), fake.node("evil"), fake.node("good")
    ev = Author.new().post("hello")
    evil.serve(broken_signature(ev))
    good.add(ev)
    good.delay = 0.2  # the other two answer first
    reader = Reader(clients(empty, evil, good))
    found = await reader.find(ev.id)
    assert found is not None and found.id == ev.id and found.body is not None
    assert [i["code"] for i in reader.report.node(evil.url).invalid] == ["invalid-signature"]
    assert all(reader.report.node(n.url).answered for n in (empty, evil, good))
    assert await Reader(clients(empty, evil)).find(ev.id) is None


async def test_a_cut_read_goes_on_without_a_silent_node(net: tuple[Net, Clients]) -> None:
    """spec 0007 #slow-lookups: under a cut, a fan-out ends ``grace`` after the quorum
    answered; the silent node is reported (not consulted) and not asked again."""
    fake, clients = net
    up, slow = fake.node("up"), fake.node("slow")
    slow.delay = 600
    carol = Author.new()
    ev = carol.post("hello")
    up.add(ev)
    slow.add(ev)
    reader = Reader(clients(up, slow, timeout=900), timeout=900, cut=Cut(quorum=1, grace=0.05))
    view = await author_view(reader, carol.did, limit=10)
    assert [e.id for e in view.items] == [ev.id]
    error = reader.report.node(slow.url).error
    assert error is not None and error.code == "node-timeout"
    assert "not consulted" in error.message
    asked = len(slow.requests)
    assert await reader.find(Author.new().post("other").id) is None
    await follow_set(reader, carol.did)
    assert len(slow.requests) == asked  # cut once, skipped for the rest of the read


def _gappy_network(
    fake: Net, names: tuple[str, ...], authors: int
) -> tuple[str, list[str], list[FakeNode]]:
    """Nodes holding ``me`` following ``authors`` people who each posted, liked, posted:
    the likes are gaps between the feed's posts that repair must fill."""
    me = Author.new()
    nodes = [fake.node(n) for n in names]
    dids: list[str] = []
    for _ in range(authors):
        who = Author.new()
        first = who.post("one")
        events = [me.sign("follow", {"subject": who.did}), first]
        events += [who.sign("like", {"target": first.id}), who.post("two")]
        for node in nodes:
            node.add(*events)
            node.first_seen[who.did] = 1_000
        dids.append(who.did)
    return me.did, dids, nodes


@pytest.mark.parametrize("batches", [True, False], ids=["batch", "older-node"])
async def test_a_cold_timeline_asks_each_node_a_bounded_number_of_times(
    net: tuple[Net, Clients], batches: bool
) -> None:
    """spec 0007 #repair-batch: the gaps of every author of a timeline are asked of a
    node in one batched request (0004 #author-ranges), not one author log request per
    author; a node without the batch is still asked range by range (and the gaps are
    filled either way: spec 0007 #repair)."""
    fake, clients = net
    me, dids, nodes = _gappy_network(fake, ("a", "b"), 30)
    for node in nodes:
        node.batches = batches
    reader = Reader(clients(*nodes))
    view = await timeline(reader, me, limit=100)
    assert len(view.items) == 60
    assert reader.report.gaps == []
    assert {r["author"] for r in reader.report.repaired} == set(dids)
    for node in nodes:
        asked = node.requests
        logs = [r for r in asked if r.startswith("GET /v1/authors/")]
        if batches:
            assert len(asked) <= 8, asked  # follows, feed, the repair batch, lookups…
            assert logs == []
        else:
            assert len(logs) == 30


@pytest.mark.parametrize("batches", [True, False], ids=["batch", "older-node"])
async def test_account_ages_are_one_request_per_node(
    net: tuple[Net, Clients], batches: bool
) -> None:
    """spec 0004 #stats-batch, 0006 #account-age: the ages of a view's authors are one
    ``POST /v1/stats`` per node (``followers`` per author only on an older node), the
    earliest first_seen_ms of the nodes."""
    from client.moderation.apply import _Ages  # the view's age fetcher

    fake, clients = net
    _, dids, nodes = _gappy_network(fake, ("a", "b"), 30)
    nodes[1].first_seen[dids[0]] = 500
    for node in nodes:
        node.batches = batches
    warnings: list[str] = []
    ages = _Ages(Reader(clients(*nodes)), warnings)
    await ages.fetch(dids)
    assert warnings == []
    assert ages.ages[dids[0]][0] == 500
    assert all(ages.ages[d][0] == 1_000 for d in dids[1:])
    for node in nodes:
        asked = [r for r in node.requests if r != "GET /v1/info"]
        assert asked == (
            ["POST /v1/stats"]
            if batches
            else ["POST /v1/stats"] + ["GET /v1/followers/" + d for d in dids]
        ), asked


async def test_lookup_asks_each_node_once_for_many_ids_and_an_older_node_id_by_id(
    net: tuple[Net, Clients],
) -> None:
    """spec 0004 #events-by-id: ``Reader.lookup`` of a page's ids is one ``GET
    /v1/events?ids=`` a node (100 ids a request); a node without that form is asked
    id by id once it refused it; a copy failing verification is dropped and reported."""
    fake, clients = net
    new, old = fake.node("new"), fake.node("old")
    old.ids_batch = False
    author = Author.new()
    posts = [author.post(f"post {i}") for i in range(150)]
    new.add(*posts)
    old.add(*posts[:3])
    forged = Author.new().post("forged")
    new.serve(broken_signature(forged))
    reader = Reader(clients(new, old))
    wanted = [p.id for p in posts] + [forged.id]
    found = await reader.lookup(wanted, limit=200)
    assert set(found) == {p.id for p in posts}
    assert [r for r in new.requests if r.startswith("GET")] == ["GET /v1/events"] * 2
    assert len([r for r in old.requests if r.startswith("GET /v1/events/")]) == 151
    assert old.requests.count("GET /v1/events") == 1  # refused once, then id by id
    assert forged.id not in reader.events
    assert reader.report.node(new.url).invalid
