"""End-to-end: a user's feed file (``examples/feeds/long_posts.py``, under 25 lines)
run locally by ``murmur feed`` and served by a real node process (``node.toml``
``[[feeds]]``), subscribed to through a signed ``feed`` event (spec 0007 #feeds,
spec 0009, issue #21).

One real node (a ``python -m node run`` process on 127.0.0.1) holds the posts and
serves the feed; the ``murmur`` command runs in-process with fresh homes. The feed
event names a dead node first, so the subscribed read also shows the fallback
(#feed-fallback). A small hostile feed server (a stdlib HTTP server in a thread)
names a forged id and a like: the human output says what was dropped
(#feed-verify). The reader's mute filter hides a muted author's long post in both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from protocol.events import sign_event
from protocol.identity import Identity
from tests.e2e.client_fixtures import Cli, RealNode
from tests.e2e.nodeproc import ROOT

pytestmark = pytest.mark.e2e

FEED_FILE = ROOT / "examples" / "feeds" / "long_posts.py"
#: A port nothing listens on: the first serving node of the announced feed.
DEAD = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    base = tmp_path_factory.mktemp("feeds-e2e")
    config = base / "node.toml"
    config.write_text(
        "[[feeds]]\n"
        'name = "long"\n'
        f'type = "{FEED_FILE}:LongPosts"\n'
        'description = "Posts of more than 40 characters"\n'
        "params = { min_chars = 40 }\n"
        "cache_s = 0\n"
    )
    started = RealNode(base / "data", "--config", str(config))
    try:
        yield started
    finally:
        started.stop()


class HostileFeeds:
    """``GET /v1/feeds/{name}`` answered with ``ids`` (whatever they name)."""

    def __init__(self, ids: list[str]) -> None:
        outer = self
        self.ids = ids

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = urlsplit(self.path).path.rpartition("/")[2]
                items = [{"id": i, "why": "trust me\x1b[2J"} for i in outer.ids]
                data = json.dumps({"feed": name, "items": items, "cursor": None}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_feed_file_runs_locally_and_from_a_node(
    node: RealNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(FEED_FILE.read_text().splitlines()) < 25
    cli = Cli(tmp_path / "home", capsys)
    cli.json("nodes", "add", node.url)
    dids = {
        name: cli.json("id", "new", name, "--no-encrypt")["did"]
        for name in ("reader", "writer", "muted", "operator", "rogue")
    }
    long_1 = cli.post("writer", "a long post: more than forty characters, surely")
    cli.post("writer", "short")
    muted = cli.post("muted", "a long post by someone the reader muted, it goes on")
    long_2 = cli.post("writer", "another long post of well over forty characters")
    like = cli.json("like", long_1, as_name="writer")["id"]
    cli.json(
        "filters", "add", "mute-authors", "--param", f'dids=["{dids["muted"]}"]',
        as_name="reader",
    )  # fmt: skip

    # Locally: the user's file over the reader's node.
    cli.json("feeds", "add", "mine", f"{FEED_FILE}:LongPosts", "--param", "min_chars=40")
    doc = cli.json("feed", "mine", as_name="reader")
    assert [p["id"] for p in doc["posts"]] == [long_2, long_1]
    assert [h["id"] for h in doc["moderation"]["hidden"]] == [muted]
    assert doc["feed"]["kind"] == "local" and doc["feed"]["dropped"] == {}

    # From the node: announced by its operator (the dead node first), discovered,
    # subscribed, read through the fallback. A name the node does not serve is
    # refused before anything is signed (a typo would strand every subscriber).
    code, err = cli.error("--as", "operator", "feeds", "announce", "lng", "--node", node.url)
    assert code == "feed-not-found" and "serves no feed 'lng' (it serves: long)" in err
    cli.json(
        "feeds", "announce", "long", "--node", DEAD, "--node", node.url,
        "--description", "Long posts", as_name="operator",
    )  # fmt: skip
    found = cli.json("feeds", "discover")["feeds"]
    assert [f["ref"] for f in found] == [f"{dids['operator']}/long"]
    assert found[0]["nodes"] == [DEAD, node.url]
    # The event names DEAD, a loopback address that is not the reader's node: refused
    # unless the reader says so (spec 0007 #feed-private).
    code, err = cli.error("feeds", "add", "served", "--from", f"{dids['operator']}/long")
    assert code == "bad-request" and f"private address that are not your nodes: {DEAD}" in err
    cli.json("feeds", "add", "served", "--from", f"{dids['operator']}/long", "--allow-private")
    listed = cli.json("feeds", "list")["feeds"]
    assert [(f["name"], f["kind"]) for f in listed] == [("mine", "local"), ("served", "subscribed")]
    doc = cli.json("feed", "served", as_name="reader")
    assert [p["id"] for p in doc["posts"]] == [long_2, long_1]
    assert [h["id"] for h in doc["moderation"]["hidden"]] == [muted]
    assert doc["feed"]["node"] == node.url
    assert [(s["url"], s["code"]) for s in doc["feed"]["servers"]] == [(DEAD, "node-unreachable")]
    text = cli.ok("feed", "served", "--limit", "1", as_name="reader")
    assert "another long post" in text and "! feed: " + DEAD + " failed (node-unreachable)" in text
    assert "more: murmur --as reader feed served --limit 1 --cursor " in text
    cursor = text.rsplit("--cursor ", 1)[1].strip().strip("'")
    nxt = cli.json("feed", "served", "--limit", "1", "--cursor", cursor, as_name="reader")
    assert [p["id"] for p in nxt["posts"]] == [long_1]

    # A hostile server's forged and unrelated ids are dropped, and said so.
    forged = sign_event(
        Identity.from_seed(b"\x07" * 32),
        kind="post",
        body={"text": "forged " * 10},
        seq=1,
        prev=None,
    )
    hostile = HostileFeeds([forged.id_hex, like, long_1, long_1])
    try:
        cli.json(
            "feeds", "announce", "bad", "--node", hostile.url, as_name="rogue"
        )  # fmt: skip
        cli.json("feeds", "add", "bad", "--from", f"{dids['rogue']}/bad", "--allow-private")
        text = cli.ok("feed", "bad", "--explain", as_name="reader")
        doc = cli.json("feed", "bad", as_name="reader")
    finally:
        hostile.stop()
    assert "! feed: 3 item(s) dropped: 1 not found on your nodes, 1 not a post, 1 repeated" in text
    assert "\x1b" not in text and "trust me" in text  # the why, escaped
    assert f"dropped, not found on your nodes: {forged.id_hex}" in text  # --explain
    assert f"served by {hostile.url}" in text
    assert [p["id"] for p in doc["posts"]] == [long_1]
    assert doc["feed"]["dropped"]["not-found"]["examples"] == [forged.id_hex]
