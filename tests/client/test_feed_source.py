"""A local feed's Source over the reader's nodes (spec 0007 #feed-source).

Two real node apps (``node.create_app`` on aiohttp ``TestServer``s, 127.0.0.1) hold
overlapping sets of events; :class:`client.feeds.source.ReaderSource` must merge them,
verify every event (a node serving a forged copy is reported, the copy never given),
honour ``(ts, id)`` positions even when many events share one millisecond, and merge
``/v1/reacted`` counts by the largest per kind (nodes overlap: never a sum).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from client.api import NodeClient
from client.feeds.source import ReaderSource
from client.reader import Reader
from protocol.events import Event, sign_event
from protocol.feeds import Reacted, TimeMark
from tests.client.conftest import Author, broken_signature
from tests.client.test_moderation_apply import StartNode, publish, start_node

__all__ = ["start_node"]

TS = 1_700_000_500_000


def at(author: Author, ts: int, kind: str, body: dict[str, object]) -> Event:
    """``author``'s next event with this exact ``ts``."""
    author.seq += 1
    ev = sign_event(author.identity, kind=kind, body=body, seq=author.seq, prev=author.prev, ts=ts)
    author.prev = ev.id
    return ev


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_events_merge_nodes_and_cut_ties_at_one_millisecond_by_id(
    start_node: StartNode, http: httpx.AsyncClient
) -> None:
    """spec 0007 #feed-source: ``before`` is a (ts, id) position; ten posts of one
    millisecond, spread over two nodes, are cut exactly there, newest first."""
    a, b = NodeClient(await start_node(), http), NodeClient(await start_node(), http)
    authors = [Author.new() for _ in range(10)]
    tied = [at(x, TS, "post", {"text": f"tied {n}"}) for n, x in enumerate(authors)]
    older = at(authors[0], TS - 5, "post", {"text": "older"})
    newer = at(authors[1], TS + 5, "post", {"text": "newer"})
    like = at(authors[2], TS + 6, "like", {"target": newer.id})
    await publish(a, *tied[:6], older, like)
    await publish(b, *tied[4:], newer)
    src = ReaderSource(Reader([a, b]))

    everything = await src.events(kinds=["post"], limit=100)
    assert [e.id for e in everything] == [
        newer.id,
        *sorted((e.id for e in tied), reverse=True),
        older.id,
    ]
    by_id = sorted(tied, key=lambda e: e.id, reverse=True)
    mark = TimeMark.of(by_id[3])
    page = await src.events(kinds=["post"], before=mark, limit=4)
    assert [e.id for e in page] == [e.id for e in by_id[4:8]]
    rest = await src.events(kinds=["post"], before=TimeMark.of(page[-1]), limit=100)
    assert [e.id for e in rest] == [*(e.id for e in by_id[8:]), older.id]
    assert await src.events(kinds=["post"], since_ts=TS + 1) == [newer]
    assert await src.events(authors=[authors[2].did], limit=10) == [like, tied[2]]
    assert await src.events(authors=[]) == []


async def test_a_forged_copy_is_never_given_and_its_node_reported(
    start_node: StartNode, http: httpx.AsyncClient
) -> None:
    """spec 0007 #feed-source: every event a feed sees was verified by the reader."""
    honest = NodeClient(await start_node(), http)
    alice = Author.new()
    real = alice.post("real")
    forged = alice.post("forged")
    await publish(honest, real)

    async def feed(request: web.Request) -> web.StreamResponse:
        from tests.client.conftest import event_json

        return web.json_response({"events": [event_json(broken_signature(forged))], "next": None})

    app = web.Application()
    app.router.add_get("/v1/feed", feed)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        liar = NodeClient(str(server.make_url("")).rstrip("/"), http)
        reader = Reader([honest, liar])
        src = ReaderSource(reader)
        assert await src.events(kinds=["post"]) == [real]
        [bad] = reader.report.node(liar.url).invalid
        assert bad["code"] == "invalid-signature"
    finally:
        await server.close()


async def test_tagged_get_and_follows(start_node: StartNode, http: httpx.AsyncClient) -> None:
    """spec 0007 #feed-source: tagged posts by (ts, id); get only held posts with a
    body, verified; follows from the author's latest follow/unfollow."""
    node = NodeClient(await start_node(), http)
    x, y, z = Author.new(), Author.new(), Author.new()
    t1 = at(x, TS, "post", {"text": "one", "tags": ["Python"]})
    t2 = at(y, TS, "post", {"text": "two", "tags": ["python"]})
    t0 = at(z, TS - 1, "post", {"text": "zero", "tags": ["python"]})
    other = at(z, TS + 1, "post", {"text": "other", "tags": ["rust"]})
    gone = x.post("deleted soon")
    delete = x.sign("delete", {"target": gone.id})
    follow_y = x.sign("follow", {"subject": y.did})
    follow_z = x.sign("follow", {"subject": z.did})
    unfollow_z = x.sign("unfollow", {"subject": z.did})
    await publish(node, t1, t2, t0, other, gone, delete, follow_y, follow_z, unfollow_z)
    src = ReaderSource(Reader([node]))

    hi, lo = sorted([t1, t2], key=lambda e: e.id, reverse=True)
    assert [e.id for e in await src.tagged("#PYTHON")] == [hi.id, lo.id, t0.id]
    assert [e.id for e in await src.tagged("python", before=TimeMark.of(hi))] == [lo.id, t0.id]
    assert await src.tagged("python", limit=0) == []
    got = await src.get([t1.id, other.id, gone.id, b"\x01" * 32])
    assert set(got) == {t1.id, other.id}
    assert await src.follows(x.did) == frozenset({y.did})


async def test_top_reacted_takes_the_largest_count_per_kind_never_a_sum(
    http: httpx.AsyncClient,
) -> None:
    """spec 0007 #feed-source: nodes overlap, so a target's likes and reposts are the
    largest any one node counts; most first, then by id; at most ``limit``."""
    i1, i2, i3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    answers = [
        [{"id": i1.hex(), "likes": 5, "reposts": 1}, {"id": i2.hex(), "likes": 2, "reposts": 0}],
        [{"id": i1.hex(), "likes": 3, "reposts": 4}, {"id": i3.hex(), "likes": 3, "reposts": 0}],
    ]
    servers: list[TestServer] = []
    asked: list[dict[str, str]] = []
    for targets in answers:

        async def reacted(request: web.Request, targets: object = targets) -> web.Response:
            asked.append(dict(request.query))
            return web.json_response({"targets": targets})

        app = web.Application()
        app.router.add_get("/v1/reacted", reacted)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
    try:
        nodes = [NodeClient(str(s.make_url("")).rstrip("/"), http) for s in servers]
        src = ReaderSource(Reader(nodes))
        top = await src.top_reacted(since_ts=100, until_ts=200, limit=2)
        assert top == [Reacted(i1, 5, 4), Reacted(i3, 3, 0)]
        assert asked[0] == {"since": "100", "until": "200", "limit": "2"}
        assert await src.top_reacted(since_ts=200, until_ts=200) == []
    finally:
        for server in servers:
            await server.close()


async def test_top_reacted_from_real_nodes(start_node: StartNode, http: httpx.AsyncClient) -> None:
    """spec 0007 #feed-source over the real ``GET /v1/reacted`` (spec 0004 #reacted):
    two nodes holding the same likes count them once, not twice."""
    a, b = NodeClient(await start_node(), http), NodeClient(await start_node(), http)
    x, y, z = Author.new(), Author.new(), Author.new()
    hot, warm = at(x, TS, "post", {"text": "hot"}), at(x, TS + 1, "post", {"text": "warm"})
    reactions = [
        at(y, TS + 10, "like", {"target": hot.id}),
        at(z, TS + 11, "like", {"target": hot.id}),
        at(z, TS + 12, "repost", {"target": hot.id}),
        at(y, TS + 13, "like", {"target": warm.id}),
    ]
    for node in (a, b):
        await publish(node, hot, warm, *reactions)
    top = await ReaderSource(Reader([a, b])).top_reacted(since_ts=TS, until_ts=TS + 100)
    assert top == [Reacted(hot.id, 2, 1), Reacted(warm.id, 1, 0)]
