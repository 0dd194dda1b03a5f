"""Local feeds: a user's feed file run by the client over the reader's nodes, under a
deadline, its page checked like a served one (spec 0007 #feeds, #feed-bounds,
#feeds-config); ``feeds.toml``; ``NodeClient.feed_skeleton``'s strict parsing.

The reader's node is a real node app on an aiohttp ``TestServer`` (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from client.api import NodeClient, skeleton_cap
from client.errors import BadResponseError
from client.feeds.config import FeedsConfig, LocalFeed, SubscribedFeed, non_public_nodes
from client.feeds.run import run_page
from client.feeds.source import ReaderSource
from client.feeds.view import feed_view
from client.reader import Reader
from protocol.errors import BadCursorError, FeedError, FeedLoadError, FeedNotFoundError
from protocol.errors import FeedTimeoutError as Timeout
from protocol.feeds import FeedContext, Page
from tests.client.conftest import Author
from tests.client.test_moderation_apply import StartNode, publish, start_node

__all__ = ["start_node"]

LONG_POSTS = """
from protocol.feeds import FeedContext, Page, Source, time_cursor, read_time_cursor

class LongPosts:
    name = "long-posts"

    def __init__(self, min_chars=20):
        self.min_chars = min_chars

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        before = read_time_cursor(ctx.cursor)
        posts = await src.events(kinds=["post"], before=before, limit=200)
        long = [e for e in posts if len(e.body["text"]) > self.min_chars][: ctx.limit]
        return Page.of(long, cursor=time_cursor(long[-1]) if long else None)

class Likes:
    name = "likes"

    async def page(self, ctx, src):
        return Page.of(await src.events(kinds=["like"], limit=ctx.limit))
"""

STUCK = """
class Spin:
    name = "spin"

    async def page(self, ctx, src):
        while True:  # a sync loop: the event loop never gets control back
            try:
                pass
            except Exception:
                pass

class Sleepy:
    name = "sleepy"

    async def page(self, ctx, src):
        import asyncio
        await asyncio.sleep(3600)

class Broken:
    name = "broken"

    async def page(self, ctx, src):
        raise ValueError("oops")

class Greedy:
    name = "greedy"

    async def page(self, ctx, src):
        from protocol.feeds import Page
        return Page.of([bytes([n]) * 32 for n in range(ctx.limit + 1)])
"""


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


async def test_a_local_feed_file_pages_over_the_readers_nodes(
    start_node: StartNode, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """spec 0007 #feeds: a feed in a file runs here; its page is checked like a served
    one (a feed naming likes gets them dropped as not posts) and its cursor pages on."""
    node = NodeClient(await start_node(), http)
    alice = Author.new()
    posts = [alice.post(f"a post long enough to count, number {n}") for n in range(5)]
    short = alice.post("short")
    like = alice.sign("like", {"target": posts[0].id})
    await publish(node, *posts, short, like)
    path = write(tmp_path, "long_posts.py", LONG_POSTS)
    entry = LocalFeed(name="long", type=f"{path}:LongPosts", params={"min_chars": 20})

    first = await feed_view(Reader([node]), entry, viewer=None, limit=3)
    assert [e.id for e in first.view.items] == [p.id for p in reversed(posts[2:])]
    assert first.report.kind == "local" and first.report.cursor is not None
    second = await feed_view(
        Reader([node]), entry, viewer=None, limit=3, cursor=first.report.cursor
    )
    assert [e.id for e in second.view.items] == [posts[1].id, posts[0].id]

    likes = LocalFeed(name="likes", type=f"{path}:Likes")
    dropped = await feed_view(Reader([node]), likes, viewer=None, limit=3)
    assert dropped.view.items == [] and dropped.report.dropped == {"unrelated": 1}


async def test_a_stuck_or_failing_local_feed_is_a_feed_error(
    start_node: StartNode, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """spec 0007 #feed-bounds: a feed stuck in a synchronous loop is interrupted at its
    deadline (SIGALRM on the main thread), one awaiting forever is cancelled, one that
    raises or returns more than asked is a feed error naming it."""
    node = NodeClient(await start_node(), http)
    path = write(tmp_path, "stuck.py", STUCK)

    async def page_of(cls: str) -> object:
        return await feed_view(
            Reader([node]), LocalFeed(name="x", type=f"{path}:{cls}"), viewer=None, limit=3,
            local_deadline_s=0.3,
        )  # fmt: skip

    with pytest.raises(Timeout, match=r"spin did not make its page within 0\.3 s"):
        await page_of("Spin")
    with pytest.raises(Timeout, match="sleepy"):
        await page_of("Sleepy")
    with pytest.raises(FeedError, match="broken raised ValueError"):
        await page_of("Broken")
    with pytest.raises(FeedError, match="greedy returned 4 items, more than 3"):
        await page_of("Greedy")
    # The loop still runs: the interruption ended the feed, not the event loop.
    await asyncio.sleep(0)
    with pytest.raises(BadCursorError):
        await feed_view(
            Reader([node]), LocalFeed(name="x", type=f"{path}:Spin"), viewer=None, limit=3,
            cursor="no spaces allowed",
        )  # fmt: skip


async def test_run_page_passes_the_context(start_node: StartNode, http: httpx.AsyncClient) -> None:
    seen: list[FeedContext] = []

    class Echo:
        name = "echo"

        async def page(self, ctx: FeedContext, src: object) -> Page:
            seen.append(ctx)
            return Page(cursor="next")

    node = NodeClient(await start_node(), http)
    ctx = FeedContext(viewer="did:key:zx", now_ms=5, limit=2, cursor="c")
    assert await run_page(Echo(), ctx, ReaderSource(Reader([node]))) == Page(cursor="next")
    assert seen == [ctx]


def test_feeds_toml_round_trip_and_errors(tmp_path: Path) -> None:
    """spec 0007 #feeds-config: local and subscribed entries, names checked, clear codes."""
    config = FeedsConfig.load(tmp_path)
    config.add(LocalFeed(name="py", type="tag", params={"tag": "python"}))
    author = Author.new().did
    config.add(
        SubscribedFeed(
            name="hot", author=author, feed="whats-hot", nodes=["http://127.0.0.1:1/"],
            description="hot today", event="ab" * 32,
        )
    )  # fmt: skip
    config.save()
    loaded = FeedsConfig.load(tmp_path)
    assert [f.to_json() for f in loaded.feeds] == [
        {"name": "py", "kind": "local", "type": "tag", "params": {"tag": "python"}},
        {
            "kind": "subscribed",
            "name": "hot",
            "author": author,
            "feed": "whats-hot",
            "nodes": ["http://127.0.0.1:1"],
            "description": "hot today",
            "event": "ab" * 32,
        },
    ]
    assert (tmp_path / "feeds.toml").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FeedLoadError, match="exists"):
        loaded.add(LocalFeed(name="py", type="tag"))
    with pytest.raises(FeedLoadError, match="use 1-64"):
        loaded.add(LocalFeed(name="Bad Name", type="tag"))
    with pytest.raises(FeedNotFoundError) as caught:
        loaded.find("nope")
    assert caught.value.code == "feed-not-found"
    assert loaded.remove("py").name == "py"

    for bad, message in [
        ('[[feeds]]\nname = "x"\n', "a 'type' \\(local\\) or an 'author'"),
        ('[[feeds]]\nname = "x"\ntype = "tag"\nextra = 1\n', "unknown key"),
        (f'[[feeds]]\nname = "x"\nauthor = "{author}"\nfeed = "f"\nnodes = ["ftp://x"]\n', "URL"),
        (f'[[feeds]]\nname = "x"\nauthor = "{author}"\nfeed = "f"\nnodes = []\n', "1-8"),
        ('[[feeds]]\nname = "x"\nauthor = "bob"\nfeed = "f"\nnodes = ["http://a"]\n', "author"),
        ('[[feeds]]\nname = "x"\ntype = "tag"\n[[feeds]]\nname = "x"\ntype = "tag"\n', "same"),
    ]:
        (tmp_path / "feeds.toml").write_text(bad)
        with pytest.raises(FeedLoadError, match=message):
            FeedsConfig.load(tmp_path)


def _skeleton_client(body: bytes, status: int = 200) -> NodeClient:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    return NodeClient("http://feeds.test", httpx.AsyncClient(transport=httpx.MockTransport(handle)))


async def test_feed_skeleton_is_parsed_strictly() -> None:
    """spec 0007 #feed-bounds: ids 64 hex, a cursor of 1-512 printable ASCII, the feed
    named; items past the limit counted, a why made one short line."""
    eid = "ab" * 32
    why = "line one\nline\x1b[31mtwo " + "y" * 300
    items = [{"id": eid, "why": why}, {"id": eid}, {"id": eid}]
    ok = _skeleton_client(json.dumps({"feed": "hot", "items": items, "cursor": "c2"}).encode())
    sk = await ok.feed_skeleton("hot", limit=2, cursor="c1")
    assert [i.id.hex() for i in sk.items] == [eid, eid]
    assert sk.items[0].why.startswith("line one line [31mtwo yyy") and len(sk.items[0].why) == 200
    assert sk.extra == 1 and sk.cursor == "c2" and not sk.endless
    for body in (
        b'{"feed": "hot", "items": [{"id": "AB"}], "cursor": null}',
        b'{"feed": "hot", "items": [{"id": "' + b"ab" * 32 + b'", "why": 5}], "cursor": null}',
        b'{"feed": "hot", "items": [], "cursor": "has space"}',
        b'{"feed": "hot", "items": [], "cursor": "' + b"c" * 513 + b'"}',
        b'{"feed": "other", "items": [], "cursor": null}',
        b'{"feed": "hot", "items": {}}',
        b"[]",
    ):
        with pytest.raises(BadResponseError):
            await _skeleton_client(body).feed_skeleton("hot", limit=5)
    with pytest.raises(BadResponseError, match="too large"):
        await _skeleton_client(b" " * (skeleton_cap(1) + 1)).feed_skeleton("hot", limit=1)
    with pytest.raises(BadResponseError, match="not a feed name"):
        await ok.feed_skeleton("../admin", limit=1)


async def test_the_whats_hot_builtin_runs_locally_over_real_nodes(
    start_node: StartNode, http: httpx.AsyncClient
) -> None:
    """spec 0007 #feed-source: the built-in what's hot over the reader's node: the
    reader's Source counts reactions (GET /v1/reacted) and gets the posts, verified."""
    node = NodeClient(await start_node(), http)
    alice, bob, carol, dave = Author.new(), Author.new(), Author.new(), Author.new()
    hot, warm, cold = alice.post("hot"), alice.post("warm"), alice.post("cold")
    likes = [
        bob.sign("like", {"target": hot.id}),
        carol.sign("like", {"target": hot.id}),
        dave.sign("like", {"target": hot.id}),
        carol.sign("repost", {"target": warm.id}),
        bob.sign("like", {"target": bob.post("bob's own, never published").id}),
    ]
    await publish(node, hot, warm, cold, *likes)
    now = max(e.ts for e in likes) + 1000
    entry = LocalFeed(name="hot", type="whats-hot", params={"anchor_ms": now})
    fv = await feed_view(Reader([node]), entry, viewer=None, limit=10, now_ms=now)
    assert [e.id for e in fv.view.items] == [hot.id, warm.id]
    assert fv.report.why[hot.id] == "3 likes, 0 reposts in the last day"
    assert fv.report.dropped == {}


def test_non_public_serving_nodes_are_found_unless_they_are_the_readers() -> None:
    """spec 0007 #feed-private: loopback, private, link-local, unspecified, CGNAT and
    IPv4-in-IPv6 (mapped, 6to4) loopback literals and localhost names are caught (the
    node's own rule, protocol.addresses); public addresses,
    host names and the reader's own nodes are not."""
    urls = [
        "http://127.0.0.1:9", "http://10.1.2.3", "http://192.168.0.1:8701",
        "http://169.254.169.254", "http://[::1]:80", "http://[::ffff:127.0.0.1]",
        "http://0.0.0.0", "http://LOCALHOST:1", "http://a.localhost",
        "http://100.64.0.1", "http://[2002:7f00:1::1]",  # CGNAT; 6to4 of 127.0.0.1
        "http://93.184.216.34", "https://feeds.example.org", "http://127.0.0.1:8701",
    ]  # fmt: skip
    assert non_public_nodes(urls, ["http://127.0.0.1:8701/"]) == urls[:11]
