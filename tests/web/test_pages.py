"""The read pages of ``murmur web`` over fake nodes (issue #17 point 2; spec 0007
#web-client): the verified timeline, moderation rows that say why and "show anyway",
threads as trees, author pages, people search, following, and other people's text
rendered inert (spec 0007 #web-inert)."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape
from pathlib import Path

from aiohttp import StreamReader

from client.web.render import safe_href
from tests.client.conftest import Net, broken_signature
from tests.web.inproc import StreamingNode, new_author, serve


def _posts(html: str) -> list[str]:
    return re.findall(r'data-testid="post" data-id="([0-9a-f]{64})"', html)


async def test_timeline_shows_verified_posts_of_follows_with_why_hidden(tmp_path: Path) -> None:
    """Home: posts of the people followed, from every node, verified; a muted word
    hides a post behind a row naming the filter and the word, and ``show=`` reveals it
    (spec 0007 #web-client, #web-why)."""
    net = Net()
    a, b = net.node("a"), net.node("b")
    bob = new_author()
    filters = '[[filters]]\nname = "quiet"\ntype = "mute-words"\nparams = { words = ["spoiler"] }\n'
    async with serve(tmp_path / "home", net, [a, b], filters=filters) as w:
        follow = w.me.sign("follow", {"subject": bob.did})
        hello = bob.post("hello from bob")
        secret = bob.post("the ending: spoiler inside")
        forged = bob.post("forged on node b")
        a.add(follow, hello, secret)
        b.add(follow, hello, forged)
        b.serve(broken_signature(forged))
        await w.login()
        html = await w.page("/")
        shown = _posts(html)
        assert hello.id_hex in shown
        assert forged.id_hex not in shown and "forged on node b" not in html
        assert "http://b.test served 1 invalid event(s)" in html
        # The hidden post: a row that says why, never its text.
        assert secret.id_hex not in shown and "the ending" not in html
        row = re.search(r'data-testid="hidden-item".*?</div>', html, re.S)
        assert row is not None
        assert 'muted word "spoiler"' in unescape(row.group(0))
        assert '<code data-testid="why-filter">quiet</code>' in row.group(0)
        href = re.search(r'href="([^"]+)" data-testid="show-anyway"', row.group(0))
        assert href is not None and f"show={secret.id_hex}" in href.group(1)
        revealed = await w.page(href.group(1).replace("&amp;", "&").split("#")[0])
        assert secret.id_hex in _posts(revealed) and "the ending: spoiler inside" in revealed
        assert 'data-testid="revealed"' in revealed


async def test_thread_is_a_tree_and_author_page_has_profile_and_chain(tmp_path: Path) -> None:
    """Thread: replies drawn under their parents (depth classes); author page: profile,
    chain status and posts (spec 0007 §views)."""
    net = Net()
    a = net.node("a")
    bob, cat = new_author(), new_author()
    async with serve(tmp_path / "home", net, [a]) as w:
        root = bob.post("root post")
        r1 = cat.post("first reply", reply={"root": root.id, "parent": root.id})
        r2 = bob.post("reply to reply", reply={"root": root.id, "parent": r1.id})
        profile = bob.sign("profile", {"name": "Bob Builder", "bio": "builds things"})
        a.add(root, r1, r2, profile, w.me.sign("follow", {"subject": bob.did}))
        await w.login()
        html = await w.page(f"/thread/{r2.id_hex}")
        assert html.index("root post") < html.index("first reply") < html.index("reply to reply")
        assert re.search(rf'class="post depth-1"[^>]*data-id="{r1.id_hex}"', html)
        assert re.search(rf'class="post depth-2 focus"[^>]*data-id="{r2.id_hex}"', html)
        page = await w.page(f"/author/{bob.did}")
        assert "~Bob Builder" in page and "builds things" in page
        assert "3 event(s) read, verified chain up to seq 3" in page
        assert root.id_hex in _posts(page) and r2.id_hex in _posts(page)
        assert "you follow them" in page


async def test_people_search_and_following(tmp_path: Path) -> None:
    net = Net()
    a = net.node("a")
    bob, cat = new_author(), new_author()
    async with serve(tmp_path / "home", net, [a]) as w:
        a.add(
            bob.sign("profile", {"name": "Bobby Tables"}),
            cat.sign("profile", {"name": "Cat"}),
            w.me.sign("follow", {"subject": cat.did}),
        )
        await w.login()
        found = await w.page("/search?q=bobby")
        assert "~Bobby Tables" in found and f"/author/{bob.did}" in found
        assert "~Cat" not in found
        following = await w.page("/following")
        assert "~Cat" in following and "Bobby" not in following


async def test_xss_payloads_in_posts_names_and_links_are_inert(tmp_path: Path) -> None:
    """spec 0007 #web-inert: post text, display names and links from peers cannot run
    script or become live links to anything but http(s)."""
    net = Net()
    a = net.node("a")
    evil = new_author()
    payload_text = '<script>alert(1)</script> <img src=x onerror="alert(2)"> click me'
    lying = "https://bank.example"
    async with serve(tmp_path / "home", net, [a]) as w:
        a.add(
            w.me.sign("follow", {"subject": evil.did}),
            evil.sign("profile", {"name": "<img src=x onerror=alert(4)>\u202eevil"}),
            evil.post(payload_text),
            evil.post(
                "see javascript:alert(3) and " + lying,
                facets=[
                    {
                        "type": "link",
                        "start": 28,
                        "end": 28 + len(lying),
                        "uri": "https://evil.example/",
                    }
                ],
            ),
            evil.post(
                "good link",
                facets=[{"type": "link", "start": 0, "end": 4, "uri": "https://example.org/x"}],
            ),
        )
        await w.login()
        html = await w.page("/")
        author_page = await w.page(f"/author/{evil.did}")
    for page in (html, author_page):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert 'onerror="alert' not in page
        assert 'href="javascript:' not in page.lower()
        assert "\u202e" not in page and "\\u202e" in page  # the bidi override is shown, inert
    # Plain text that looks like a link stays text; a link whose text names another
    # site is followed by where it really goes.
    assert "see javascript:alert(3) and" in html
    assert (
        '<a href="https://evil.example/" rel="noopener noreferrer nofollow" class="ext">'
        'https://bank.example</a> <span class="link-target">[→ https://evil.example/]</span>'
    ) in html
    assert (
        '<a href="https://example.org/x" rel="noopener noreferrer nofollow" class="ext">good</a>'
        in html
    )
    # Every script on the page is the server's own file.
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/vendor/htmx.min.js" defer>',
        '<script src="/static/app.js" defer>',
    ]


def test_only_http_links_are_live() -> None:
    """spec 0007 #web-inert: a link facet is a live link only for http(s) with a host
    and printable ASCII (the protocol refuses other schemes at signing; the renderer
    does not rely on it)."""
    assert safe_href("https://example.org/a?b=c") == "https://example.org/a?b=c"
    assert safe_href("http://127.0.0.1:8701/") == "http://127.0.0.1:8701/"
    for bad in (
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "https://",
        "//evil.example/",
        "https://exa\u202emple.org/",
        "https://example.org/\nx",
        "https://example.org/ x",
    ):
        assert safe_href(bad.encode().decode("unicode_escape")) is None, bad


async def _next_event(stream: StreamReader, name: str) -> dict[str, object]:
    """The next SSE message called ``name`` (comments and others skipped)."""
    while True:
        frame = (await stream.readuntil(b"\n\n")).decode()
        lines = dict(line.split(": ", 1) for line in frame.strip().splitlines() if ": " in line)
        if lines.get("event") == name:
            doc: dict[str, object] = json.loads(lines["data"])
            return doc


async def test_new_posts_are_announced_live_after_moderation(tmp_path: Path) -> None:
    """spec 0007 #web-live, #watch: the page's live stream announces new posts of the people
    followed, from the stream cursors read with the page, verified and filtered: a
    post the reader's filters hide is never announced."""
    net = Net()
    node = StreamingNode("http://live.test")
    net.nodes[node.url] = node
    bob = new_author()
    filters = '[[filters]]\nname = "quiet"\ntype = "mute-words"\nparams = { words = ["spoiler"] }\n'
    async with serve(tmp_path / "home", net, [node], filters=filters) as w:
        old = bob.post("an old post")
        await node.publish(w.me.sign("follow", {"subject": bob.did}), old)
        await w.login()
        html = await w.page("/")
        live = re.search(r'data-testid="live" data-from="([^"]*)" data-seen="([^"]*)"', html)
        assert live is not None and old.id_hex in live.group(2)
        from_, seen = unescape(live.group(1)), live.group(2)
        assert json.loads(from_) == {node.url: 2}
        r = await w.client.get("/live/timeline", params={"from": from_, "seen": seen})
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        async with asyncio.timeout(30):  # a hang guard: nothing here is timed
            await _next_event(r.content, "ready")
            hidden, fresh = bob.post("a spoiler!"), bob.post("a new post")
            await node.publish(hidden)
            await node.publish(fresh)
            doc = await _next_event(r.content, "posts")
        assert doc == {"ids": [fresh.id_hex]}
        r.close()
