"""A subscribed feed's page from a hostile feed server, checked by the client
(spec 0007 #feeds, #feed-verify, #feed-fallback, #feed-bounds).

The reader's node is a real node app (``node.create_app``) on an aiohttp
``TestServer``; the feed servers are small aiohttp apps on 127.0.0.1 that answer
``GET /v1/feeds/{name}`` however the test says: ids of forged and unrelated events,
a page of several MiB, the same cursor again, or nothing at all. Everything goes over
real HTTP through the client's own ``NodeClient``/``Reader``. Deadlines are injected
short; tests assert outcomes, never elapsed times.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from client.api import NodeClient
from client.errors import FeedUnavailableError
from client.feeds.config import SubscribedFeed
from client.feeds.view import feed_view
from client.moderation.apply import Moderation
from client.moderation.config import FilterSpec, ModerationConfig
from client.moderation.core import ViewContext
from client.reader import Reader
from protocol.events import Event
from tests.client.conftest import Author
from tests.client.test_moderation_apply import StartNode, publish, start_node

__all__ = ["start_node"]  # the real-node fixture, shared with the moderation tests

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FeedServer:
    """A feed server whose answer the test sets (``answer``); ``asked`` records each
    request's query."""

    answer: Answer
    asked: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
async def feed_servers() -> AsyncIterator[Callable[[Answer], Awaitable[FeedServer]]]:
    servers: list[TestServer] = []

    async def start(answer: Answer) -> FeedServer:
        fs = FeedServer(answer)

        async def handle(request: web.Request) -> web.StreamResponse:
            fs.asked.append(dict(request.query))
            return await fs.answer(request)

        app = web.Application()
        app.router.add_get("/v1/feeds/{name}", handle)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        fs.url = str(server.make_url("")).rstrip("/")
        return fs

    yield start
    for server in servers:
        await server.close()


def page(name: str, ids: list[bytes], cursor: str | None = None) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        items = [{"id": i.hex(), "why": f"chosen #{n}"} for n, i in enumerate(ids)]
        return web.json_response({"feed": name, "items": items, "cursor": cursor})

    return answer


async def huge(request: web.Request) -> web.StreamResponse:
    """Several MiB of one well-formed-looking answer, streamed without a length."""
    resp = web.StreamResponse()
    await resp.prepare(request)
    item = b'{"id": "' + b"ab" * 32 + b'", "why": "' + b"x" * 4000 + b'"},'
    try:
        await resp.write(b'{"feed": "hot", "items": [')
        for _ in range(8 * 1024 * 1024 // len(item)):
            await resp.write(item)
    except (ConnectionResetError, RuntimeError):
        pass  # the client hung up: what it should do
    return resp


async def silent(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()  # never answers; cancelled when the client goes
    raise AssertionError("unreachable")


def subscribed(*urls: str, feed: str = "hot") -> SubscribedFeed:
    return SubscribedFeed(
        name="hot", author=Author.new().did, feed=feed, nodes=list(urls), description=""
    )


@dataclass
class World:
    node: NodeClient
    me: Author
    alice: Author
    muted: Author
    good: list[Event]
    muted_post: Event
    like: Event
    profile: Event
    forged: Event


@pytest.fixture
async def world(start_node: StartNode) -> AsyncIterator[World]:
    async with httpx.AsyncClient() as http:
        node = NodeClient(await start_node(), http)
        me, alice, muted = Author.new(), Author.new(), Author.new()
        good = [alice.post(f"good post {n}") for n in range(3)]
        muted_post = muted.post("a post by someone the reader muted")
        like = alice.sign("like", {"target": good[0].id})
        profile = alice.sign("profile", {"name": "Alice"})
        await publish(node, *good, muted_post, like, profile)
        forged = Author.new().post("never published on the reader's nodes")
        yield World(node, me, alice, muted, good, muted_post, like, profile, forged)


def mute_config(tmp_path: Path, did: str) -> ModerationConfig:
    spec = FilterSpec(name="mute", type="mute-authors", params={"dids": [did]})
    return ModerationConfig(path=tmp_path / "filters.toml", filters=[spec])


async def test_forged_and_unrelated_ids_are_dropped_and_the_mute_still_applies(
    world: World,
    feed_servers: Callable[[Answer], Awaitable[FeedServer]],
    tmp_path: Path,
) -> None:
    """spec 0007 #feed-verify: ids no node of the reader serves (forged), a like and a
    profile (unrelated) and a repeat are dropped and counted, the feed's order is kept,
    and the reader's mute filter hides the muted author's post the feed named."""
    w = world
    ids = [
        w.forged.id,
        w.good[2].id,
        w.like.id,
        w.muted_post.id,
        w.profile.id,
        w.good[0].id,
        w.good[2].id,
    ]
    server = await feed_servers(page("hot", ids))
    async with httpx.AsyncClient() as http:
        reader = Reader([NodeClient(w.node.url, http)])
        moderation = await Moderation.open(
            reader,
            viewer=w.me.did,
            context=ViewContext.FEED,
            config=mute_config(tmp_path, w.muted.did),
        )
        async with moderation:
            fv = await feed_view(
                reader,
                subscribed(server.url),
                viewer=w.me.did,
                limit=10,
                moderation=moderation,
                http=http,
            )
    assert [e.id for e in fv.view.items] == [w.good[2].id, w.muted_post.id, w.good[0].id]
    assert fv.mod is not None
    assert [e.id for e, _ in fv.mod.shown] == [w.good[2].id, w.good[0].id]
    [(hidden, verdict)] = fv.mod.hidden
    assert hidden.id == w.muted_post.id and verdict.final is not None
    assert verdict.final.reason == "muted author"
    report = fv.report
    assert report.dropped == {"not-found": 1, "unrelated": 2, "duplicate": 1}
    assert report.examples["not-found"] == [w.forged.id]
    assert set(report.examples["unrelated"]) == {w.like.id, w.profile.id}
    assert report.summary()[0] == (
        "feed: 4 item(s) dropped: 1 not found on your nodes, 2 not a post, 1 repeated"
    )
    assert report.node == server.url and report.servers == [] and report.cursor is None
    assert report.why[w.good[0].id] == "chosen #5"
    doc = report.to_json()
    assert doc["dropped"]["not-found"] == {"count": 1, "examples": [w.forged.id.hex()]}
    assert server.asked == [{"limit": "10", "viewer": w.me.did}]


async def test_hidden_items_are_filled_from_at_most_two_more_pages(
    world: World,
    feed_servers: Callable[[Answer], Awaitable[FeedServer]],
    tmp_path: Path,
) -> None:
    """spec 0007 #feed-bounds: a page whose items the filters hid is filled from the
    next pages, asking only for the missing number, at most 2 more pages."""
    w = world
    pages = {
        None: ([w.muted_post.id, w.good[2].id], "p2"),
        "p2": ([w.good[1].id], "p3"),
        "p3": ([w.forged.id], "p4"),
        "p4": ([w.good[0].id], None),
    }

    async def paged(request: web.Request) -> web.StreamResponse:
        ids, nxt = pages[request.query.get("cursor")]
        return await page("hot", ids, nxt)(request)

    server = await feed_servers(paged)
    async with httpx.AsyncClient() as http:
        reader = Reader([NodeClient(w.node.url, http)])
        config = mute_config(tmp_path, w.muted.did)
        async with await Moderation.open(
            reader, viewer=w.me.did, context=ViewContext.FEED, config=config
        ) as moderation:
            fv = await feed_view(
                reader,
                subscribed(server.url),
                viewer=w.me.did,
                limit=4,
                moderation=moderation,
                http=http,
            )
    assert fv.mod is not None
    assert [e.id for e, _ in fv.mod.shown] == [w.good[2].id, w.good[1].id]
    assert [q.get("limit") for q in server.asked] == ["4", "3", "2"]
    assert fv.report.pages == 3 and fv.report.cursor == "p4"
    assert fv.report.dropped == {"not-found": 1}


async def test_a_huge_answer_is_cut_reported_and_the_next_node_used(
    world: World, feed_servers: Callable[[Answer], Awaitable[FeedServer]]
) -> None:
    """spec 0007 #feed-bounds, #feed-fallback: a server answering several MiB is read
    to the cap only, reported (bad-response), and the next serving node answers."""
    w = world
    big = await feed_servers(huge)
    good = await feed_servers(page("hot", [w.good[1].id]))
    async with httpx.AsyncClient() as http:
        reader = Reader([NodeClient(w.node.url, http)])
        fv = await feed_view(
            reader, subscribed(big.url, good.url), viewer=None, limit=20, http=http
        )
    assert [e.id for e in fv.view.items] == [w.good[1].id]
    [failed] = fv.report.servers
    assert failed["url"] == big.url and failed["code"] == "bad-response"
    assert "too large" in failed["message"]
    assert fv.report.node == good.url
    assert any(big.url in line and "bad-response" in line for line in fv.report.summary())


async def test_an_endless_cursor_stops_the_paging(
    world: World, feed_servers: Callable[[Answer], Awaitable[FeedServer]]
) -> None:
    """spec 0007 #feed-bounds: a server that answers the cursor it was asked for again
    would be read forever; the page is kept, the paging ends, and it is reported."""
    w = world

    async def same(request: web.Request) -> web.StreamResponse:
        return await page("hot", [w.good[0].id], request.query.get("cursor"))(request)

    server = await feed_servers(same)
    async with httpx.AsyncClient() as http:
        reader = Reader([NodeClient(w.node.url, http)])
        fv = await feed_view(
            reader, subscribed(server.url), viewer=None, limit=5, cursor="c1", http=http
        )
    assert [e.id for e in fv.view.items] == [w.good[0].id]
    assert fv.report.cursor is None and fv.report.endless
    assert len(server.asked) == 1  # not asked again for the missing items
    assert "the server gave the same cursor again: paging stopped" in fv.report.summary()[-1]


async def test_a_silent_server_falls_back_and_alone_is_feed_unavailable(
    world: World, feed_servers: Callable[[Answer], Awaitable[FeedServer]]
) -> None:
    """spec 0007 #feed-fallback: a server that never answers costs its own short
    deadline, then the next serving node is used; with no other one the attempt ends
    within the feed's deadline with feed-unavailable naming what each server did."""
    w = world
    dead = await feed_servers(silent)
    good = await feed_servers(page("hot", [w.good[0].id]))
    async with httpx.AsyncClient() as http:
        reader = Reader([NodeClient(w.node.url, http)])
        fv = await feed_view(
            reader,
            subscribed(dead.url, good.url),
            viewer=None,
            limit=5,
            http=http,
            total_s=1.0,
            server_s=0.2,
        )
        assert [e.id for e in fv.view.items] == [w.good[0].id]
        assert [s["code"] for s in fv.report.servers] == ["node-timeout"]
        assert fv.report.node == good.url

        with pytest.raises(FeedUnavailableError) as caught:
            await feed_view(
                reader, subscribed(dead.url), viewer=None, limit=5, http=http,
                total_s=0.3, server_s=0.2,
            )  # fmt: skip
    assert caught.value.code == "feed-unavailable"
    assert dead.url in caught.value.message and "node-timeout" in caught.value.message


async def test_a_refusing_server_and_a_dead_one_are_each_named(
    world: World, feed_servers: Callable[[Answer], Awaitable[FeedServer]]
) -> None:
    """spec 0007 #feed-fallback: the message says what each serving node did."""

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "feed-not-found", "message": "no such feed"}, status=404)

    refusing = await feed_servers(refuse)
    async with httpx.AsyncClient() as http:
        reader = Reader([NodeClient(world.node.url, http)])
        with pytest.raises(FeedUnavailableError) as caught:
            await feed_view(
                reader,
                subscribed(refusing.url, "http://127.0.0.1:9"),
                viewer=None,
                limit=5,
                http=http,
            )
    message = caught.value.message
    assert f"{refusing.url}: feed-not-found" in message
    assert "http://127.0.0.1:9: node-unreachable" in message
