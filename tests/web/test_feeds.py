"""Feeds as tabs in ``murmur web`` (issue #21 point 2; spec 0007 #web-feeds, #feeds,
#feed-verify, #feed-fallback, #feed-bounds, #web-inert).

The reader's node is a real node app on loopback (``start_node``); a served feed comes
from a small aiohttp feed server the test scripts (``feed_servers`` of
``tests/client/test_feed_view.py``); ``murmur web`` runs in-process over a real HTTP
client (:func:`tests.web.inproc.serve_nodes`). ``feeds.toml`` is written while the app
runs: each page reads it afresh, as ``murmur feeds add`` would change it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from html import unescape
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from client.api import NodeClient
from client.feeds.config import FeedsConfig, LocalFeed, SubscribedFeed
from client.web.pages import feeds as feeds_page
from tests.client.conftest import Author
from tests.client.test_feed_view import Answer, FeedServer, feed_servers
from tests.client.test_moderation_apply import StartNode, publish, start_node
from tests.e2e.nodeproc import ROOT
from tests.web.inproc import serve_nodes

__all__ = ["feed_servers", "start_node"]  # fixtures shared with the client's feed tests

LONG_POSTS = f"{ROOT / 'examples' / 'feeds' / 'long_posts.py'}:LongPosts"
#: A port nothing listens on: the connection is refused at once.
DEAD = "http://127.0.0.1:9"
SCRIPT = "<script>alert(1)</script>"


def _posts(html: str) -> list[str]:
    return re.findall(r'data-testid="post" data-id="([0-9a-f]{64})"', html)


def _tabs(html: str) -> list[tuple[str, str]]:
    """(href, data-name) of each feed tab, in order."""
    return re.findall(
        r'<a href="([^"]+)" data-testid="feed-tab" data-kind="\w+" data-name="([^"]*)"', html
    )


def _next(html: str) -> str | None:
    m = re.search(r'<a href="([^"]+)" rel="next" data-testid="next-page">', html)
    return None if m is None else unescape(m.group(1))


def add_feeds(home: Path, *entries: LocalFeed | SubscribedFeed) -> None:
    config = FeedsConfig.load(home)
    for e in entries:
        config.add(e)
    config.save()


async def test_tabs_are_home_then_each_feed_in_order(start_node: StartNode, tmp_path: Path) -> None:
    """spec 0007 #web-feeds: no feed, Home and a hint linking to how to add one; then
    Home and one tab per feed of feeds.toml in its order (local and subscribed); an
    unreadable feeds.toml leaves Home working, with the error said."""
    url = await start_node()
    async with serve_nodes(tmp_path / "home", [url]) as w:
        await w.login()
        html = await w.page("/")
        assert 'data-testid="tab-home" data-kind="home" aria-current="page"' in html
        assert _tabs(html) == []
        assert 'data-testid="feeds-hint"' in html and 'href="/feeds"' in html
        how = await w.page("/feeds")
        assert "murmur feeds add" in how and 'data-testid="empty"' in how

        add_feeds(
            tmp_path / "home",
            LocalFeed(name="long", type=LONG_POSTS, params={"min_chars": 20}),
            SubscribedFeed(name="hot", author=Author.new().did, feed="whats-hot", nodes=[url]),
            LocalFeed(name="py.tag", type="tag", params={"tag": "python"}),
        )
        html = await w.page("/")
        assert _tabs(html) == [
            ("/feeds/long", "long"),
            ("/feeds/hot", "hot"),
            ("/feeds/py.tag", "py.tag"),
        ]
        assert 'data-testid="feeds-hint"' not in html
        listed = await w.page("/feeds")
        assert re.findall(r'data-testid="feed-entry" data-name="([^"]+)"', listed) == [
            "long",
            "hot",
            "py.tag",
        ]

        (w_home := tmp_path / "home" / "feeds.toml").write_text("[[feeds]]\nname = 3\n")
        html = await w.page("/")
        assert _tabs(html) == [] and 'data-testid="feeds-error"' in html
        assert "feed-load" in html and w_home.exists()


async def test_a_local_feed_pages_with_its_cursor_drawn_as_the_timeline(
    start_node: StartNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec 0007 #web-feeds: examples/feeds/long_posts.py run here over a real node, its
    items drawn with the timeline's rows (post actions included), paged by the feed's
    own cursor until the last page, which has no "Older posts"; a mute filter hides the
    muted author's item the feed chose (#feed-verify: filters after the feed)."""
    monkeypatch.setattr(feeds_page, "PAGE_ITEMS", 2)
    url = await start_node()
    alice, muted = Author.new(), Author.new()
    posts = [alice.post(f"a post long enough to count, number {n}") for n in range(5)]
    muted.ts = posts[1].ts - 500  # between posts[1] and posts[2]
    noisy = muted.post("a long post by someone the reader muted")
    short = alice.post("short")
    filters = (
        '[[filters]]\nname = "mute"\ntype = "mute-authors"\n'
        f'params = {{ dids = ["{muted.did}"] }}\n'
    )
    async with httpx.AsyncClient() as http:
        await publish(NodeClient(url, http), *posts, noisy, short)
    async with serve_nodes(tmp_path / "home", [url], filters=filters) as w:
        add_feeds(
            tmp_path / "home", LocalFeed(name="long", type=LONG_POSTS, params={"min_chars": 20})
        )
        await w.login()
        first = await w.page("/feeds/long")
        assert _tabs(first) == [("/feeds/long", "long")]
        assert 'data-name="long" aria-current="page"' in first
        assert _posts(first) == [posts[4].id_hex, posts[3].id_hex]
        assert f'data-testid="post-actions" data-id="{posts[4].id_hex}"' in first
        assert short.id_hex not in first
        second_href = _next(first)
        assert second_href is not None and second_href.startswith("/feeds/long?cursor=t")
        second = await w.page(second_href)
        # The muted post was chosen: hidden in place, saying why; the page filled on.
        assert _posts(second) == [posts[2].id_hex, posts[1].id_hex]
        hidden = second.index(f'data-testid="hidden-item" data-id="{noisy.id_hex}"')
        assert second.index(posts[2].id_hex) < hidden < second.index(posts[1].id_hex)
        assert "a long post by someone the reader muted" not in second
        third_href = _next(second)
        assert third_href is not None
        third = await w.page(third_href)
        assert _posts(third) == [posts[0].id_hex] and _next(third) is None


async def test_a_served_feed_reports_drops_and_failed_nodes_all_escaped(
    start_node: StartNode,
    feed_servers: Callable[[Answer], Awaitable[FeedServer]],
    tmp_path: Path,
) -> None:
    """spec 0007 #feed-verify and #feed-fallback on the page: a dead first serving node
    and the ids the server named that the client may not show (forged, a like) are a
    compact report as the CLI's ``! feed:`` lines, with the node that served; the
    feed's reasons and description (a stranger's text) are inert (#web-inert)."""
    url = await start_node()
    alice = Author.new()
    good = [alice.post(f"good post {n}") for n in range(2)]
    like = alice.sign("like", {"target": good[0].id})
    forged = Author.new().post("never published on the reader's nodes")
    async with httpx.AsyncClient() as http:
        await publish(NodeClient(url, http), *good, like)

    async def answer(request: web.Request) -> web.StreamResponse:
        items = [
            {"id": good[1].id_hex, "why": f"{SCRIPT} \x1b[31mred"},
            {"id": forged.id_hex},
            {"id": like.id_hex},
            {"id": good[0].id_hex, "why": "plain reason"},
        ]
        return web.json_response({"feed": "evil", "items": items, "cursor": None})

    server = await feed_servers(answer)
    entry = SubscribedFeed(
        name="evil",
        author=alice.did,
        feed="evil",
        nodes=[DEAD, server.url],
        description="<script>alert('d')</script>\x1b]0;pwned\x07 hot things",
    )
    async with serve_nodes(tmp_path / "home", [url]) as w:
        add_feeds(tmp_path / "home", entry)
        await w.login()
        html = await w.page("/feeds/evil")
        listed = await w.page("/feeds")
    assert "<script>" not in listed and "\x1b" not in listed and "\x07" not in listed
    assert "&lt;script&gt;alert(&#39;d&#39;)" in listed
    assert _posts(html) == [good[1].id_hex, good[0].id_hex]
    report = re.search(r'data-testid="feed-report">(.*?)</section>', html, re.S)
    assert report is not None
    lines = [unescape(li) for li in re.findall(r"<li>(.*?)</li>", report.group(1))]
    assert lines[0] == "2 item(s) dropped: 1 not found on your nodes, 1 not a post"
    assert lines[1].startswith(f"{DEAD} failed (node-unreachable)")
    assert lines[-1] == f"page served by {server.url}"
    assert f'data-testid="served-by">{server.url}<' in html
    # Stranger-controlled text: escaped for HTML and for the terminal rules.
    assert "<script>" not in html and "\x1b" not in html and "\x07" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    why = re.search(rf'data-testid="feed-why" data-id="{good[1].id_hex}">([^<]*)<', html)
    assert why is not None and "&lt;script&gt;" in why.group(1)
    description = re.search(r'data-testid="feed-description">([^<]*)<', html)
    assert description is not None
    assert "&lt;script&gt;alert(&#39;d&#39;)" in description.group(1)
    assert "hot things" in description.group(1)


async def test_unknown_feed_404_bad_cursor_400_unavailable_feed_502(
    start_node: StartNode, tmp_path: Path
) -> None:
    """spec 0007 #web-feeds: a name not in feeds.toml is the not-found page naming the
    feeds there are; a cursor that is not 1-512 printable ASCII, or one the local feed
    refuses, is a 400 page (bad-cursor), never a 500; a subscribed feed no serving node
    answers is the feed's page with feed-unavailable naming each node, tabs kept."""
    url = await start_node()
    async with serve_nodes(tmp_path / "home", [url]) as w:
        add_feeds(
            tmp_path / "home",
            LocalFeed(name="long", type=LONG_POSTS),
            SubscribedFeed(name="gone", author=Author.new().did, feed="hot", nodes=[DEAD]),
        )
        await w.login()
        for path in ("/feeds/nope", "/feeds/%3Cscript%3Ealert(1)%3C%2Fscript%3E"):
            r = await w.client.get(path)
            html = await r.text()
            assert r.status == 404, html
            assert 'data-testid="error" data-code="feed-not-found"' in html
            assert "long, gone; see: murmur feeds list" in html
            assert "<script>alert" not in html
        for cursor in ("%20bad", "x" * 513, "%1B%5B31m", "not-a-time-cursor"):
            r = await w.client.get(f"/feeds/long?cursor={cursor}")
            html = await r.text()
            assert r.status == 400, (cursor, html)
            assert 'data-code="bad-cursor"' in html and "\x1b" not in html
        r = await w.client.get("/feeds/gone")
        html = await r.text()
        assert r.status == 502, html
        assert 'data-testid="error" data-code="feed-unavailable"' in html
        assert f"{DEAD}: node-unreachable" in html
        assert 'data-name="gone" aria-current="page"' in html
