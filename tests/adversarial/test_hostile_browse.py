"""Counts, who reacted, post search and the live timeline against real node processes
and a hostile one (spec 0007 #counts, #who, #post-search, #watch).

The hostile node is a proxy in front of a real node: it passes every request through
(so it is a healthy node for everything else) but lies where the new reads ask it —
``POST /v1/counts`` claims a million times what the real node counts, the reactions
list of a post carries likes of another post and a like with a broken signature, and
its search answers carry a post that matches nothing. The reader's ``murmur`` reads
the real node and the liar together.

``murmur timeline --watch`` runs as a real process: a post made after the watch
started appears in its output (read with a deadline), a stranger's post does not, and
Ctrl-C (SIGINT) ends it with the CLI's interrupted status.
"""

from __future__ import annotations

import base64
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from client.cli.main import EXIT_INTERRUPTED
from client.counts import MAX_COUNT
from protocol.encoding import encode
from protocol.events import Event, sign_event
from protocol.identity import Identity
from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess
from tests.node_json import event_json

pytestmark = pytest.mark.e2e

#: Seeds of this module's own identities (far from other suites').
_SEED = 7_160_000


class LyingProxy:
    """Forwards to ``upstream``; lies on counts, reactions and search."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.reactions: list[bytes] = []  # wires served as every reactions answer
        self.search: list[bytes] = []  # wires served as every search answer
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str) -> httpx.Response:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type",)}
                return httpx.request(
                    method, outer.upstream + self.path, content=body, headers=headers, timeout=10
                )

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path.endswith("/reactions"):
                    events = [event_json(w) for w in outer.reactions]
                    self._send(200, json.dumps({"events": events, "next": None}).encode())
                    return
                if path == "/v1/search":
                    events = [event_json(w) for w in outer.search]
                    self._send(200, json.dumps({"events": events, "next": None}).encode())
                    return
                r = self._forward("GET")
                self._send(r.status_code, r.content, r.headers.get("Content-Type", ""))

            def do_POST(self) -> None:
                r = self._forward("POST")
                if urlsplit(self.path).path == "/v1/counts" and r.status_code == 200:
                    doc = r.json()
                    for figures in doc["counts"].values():
                        for k in figures:
                            figures[k] = figures[k] * 1_000_000 + 10**12
                    self._send(200, json.dumps(doc).encode())
                    return
                self._send(r.status_code, r.content, r.headers.get("Content-Type", ""))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("browse-adv") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def liar(node: NodeProcess) -> Iterator[LyingProxy]:
    proxy = LyingProxy(node.url)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "home", capsys)


def _stranger(n: int) -> Identity:
    return Identity.from_seed((_SEED + n).to_bytes(32, "big"))


def _broken(e: Event) -> bytes:
    sig = bytearray(e.sig)
    sig[0] ^= 1
    return encode([e.header_bytes, bytes(sig), e.body_bytes])


def test_a_lying_node_cannot_inflate_counts_or_forge_likes(
    cli: Cli, node: NodeProcess, liar: LyingProxy
) -> None:
    """spec 0007 #counts, #who: counts from a liar are capped and marked as nodes
    that differ; forged likes are not listed (reported as invalid or unexpected); a
    search result that matches nothing is dropped; hostile text is escaped."""
    dids = {n: cli.json("id", "new", n, "--no-encrypt")["did"] for n in ("amy", "bob", "cat")}
    cli.json("nodes", "add", node.url)
    cli.json("follow", dids["bob"], "--alias", "bob")
    post = cli.post("bob", "zebra \x1b]0;pwned\x07 stripes \x1b[2J")
    other = cli.post("bob", "another post")
    cli.json("like", post, as_name="cat")
    cli.json("nodes", "add", liar.url)

    mallory = _stranger(1)
    now = int(time.time() * 1000)
    wrong = sign_event(
        mallory, kind="like", body={"target": bytes.fromhex(other)}, seq=1, prev=None, ts=now
    )
    forged = sign_event(
        _stranger(2), kind="like", body={"target": bytes.fromhex(post)}, seq=1, prev=None, ts=now
    )
    liar.reactions = [wrong.wire, _broken(forged)]
    spam = sign_event(
        mallory, kind="post", body={"text": "buy pills"}, seq=2, prev=wrong.id, ts=now
    )
    liar.search = [spam.wire]

    tl = cli.json("timeline")
    counts = {p["id"]: p["counts"] for p in tl["posts"]}[post]
    assert counts["likes"] == MAX_COUNT and counts["capped"] and counts["differ"]
    text = cli.ok("timeline")
    assert f"♡ {MAX_COUNT}+ likes" in text and "nodes differ" in text

    likes = cli.json("likes", post)
    assert [p["author"] for p in likes["posts"]] == [dids["cat"]]
    by_node = {n["url"]: n for n in likes["nodes"]}
    codes = {i["code"] for i in by_node[liar.url]["invalid"]}
    assert codes == {"unexpected-event", "invalid-signature"}
    assert by_node[node.url]["invalid"] == []

    found = cli.json("search", "posts", "zebra", "stripes")
    assert [p["id"] for p in found["posts"]] == [post]
    liar_report = {n["url"]: n for n in found["nodes"]}[liar.url]
    assert spam.id_hex in {i["id"] for i in liar_report["invalid"]}
    shown = cli.ok("search", "posts", "zebra")
    assert "\x1b" not in shown and "\x07" not in shown and "zebra" in shown


def _reader_thread(stream: Any, lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", "replace"))


def _wait_for(lines: queue.Queue[str], seen: list[str], needle: str, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if any(needle in line for line in seen):
            return True
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
    return any(needle in line for line in seen)


def _follows_bob(cli: Cli, url: str) -> None:
    dids = {n: cli.json("id", "new", n, "--no-encrypt")["did"] for n in ("amy", "bob")}
    cli.json("nodes", "add", url)
    cli.json("follow", dids["bob"], "--alias", "bob")


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _watch(cli: Cli, *extra: str) -> tuple[subprocess.Popen[bytes], queue.Queue[str]]:
    """A real `murmur timeline --watch` process and a queue of its stdout lines. Its
    stderr goes to a file beside the home: a pipe nobody reads would fill up and block
    the process in a write, so that it could not exit on SIGINT."""
    errors = (cli.home.parent / "watch-stderr.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "client.cli.main", "--home", str(cli.home), "timeline",
         "--watch", *extra],
        stdout=subprocess.PIPE,
        stderr=errors,
        # Ctrl-C at a terminal: SIGINT is not ignored there, whereas a parent run as a
        # background job (a CI runner, `cmd &`) passes SIGINT on ignored, and Python
        # then keeps ignoring it.
        preexec_fn=_sigint_as_at_a_terminal,
    )  # fmt: skip
    errors.close()  # the child holds its own copy
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader_thread, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


def test_watch_shows_new_posts_live(cli: Cli, node: NodeProcess, tmp_path: Path) -> None:
    """spec 0007 #watch: `murmur timeline --watch` prints the page, then a post of a
    followed author made after it started (verified), not a stranger's; SIGINT ends
    it with the interrupted status and no traceback."""
    _follows_bob(cli, node.url)
    cli.post("bob", "before the watch")
    proc, lines = _watch(cli)
    try:
        seen: list[str] = []
        assert _wait_for(lines, seen, "before the watch", 30), "".join(seen)
        # A stranger's post first: streamed in order, it would show before bob's.
        stranger = _stranger(3)
        spam = sign_event(
            stranger, kind="post", body={"text": "stranger danger"}, seq=1, prev=None,
            ts=int(time.time() * 1000),
        )  # fmt: skip
        body = {"events": [base64.b64encode(spam.wire).decode()]}
        assert httpx.post(node.url + "/v1/events", json=body, timeout=10).json()["results"][0][
            "status"
        ] == "accepted"
        cli.post("bob", "made while watching")
        assert _wait_for(lines, seen, "made while watching", 30), "".join(seen)
        assert not any("stranger danger" in line for line in seen)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = (cli.home.parent / "watch-stderr.log").read_text("utf-8", "replace")
    assert code in (0, EXIT_INTERRUPTED), err
    assert "Traceback" not in err


def test_watch_reconnects_after_the_node_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #watch: a node that goes away and comes back on the same port is
    followed again (bounded backoff), from the cursor it had."""
    data = tmp_path / "node" / "data"
    first = NodeProcess(data)
    port = urlsplit(first.url).port
    cli = Cli(tmp_path / "home", capsys)
    _follows_bob(cli, first.url)
    proc, lines = _watch(cli)
    second: NodeProcess | None = None
    try:
        seen: list[str] = []
        assert _wait_for(lines, seen, "timeline is empty", 30), "".join(seen)
        first.stop()
        second = NodeProcess(data, "--port", str(port))
        cli.post("bob", "after the restart")
        assert _wait_for(lines, seen, "after the restart", 60), "".join(seen)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        first.stop()
        if second is not None:
            second.stop()


def test_watch_exits_after_n_new_items_with_json_lines(cli: Cli, node: NodeProcess) -> None:
    """spec 0007 #watch, #watch-reconnect: `murmur timeline --watch --exit-after 1
    --json` prints the page as one JSON line, then one line for the first new post of
    a followed author, and exits 0 (as `notifications --watch --exit-after` does)."""
    _follows_bob(cli, node.url)
    cli.post("bob", "before the watch")
    proc, lines = _watch(cli, "--exit-after", "1", "--json")
    try:
        seen: list[str] = []
        # The page is printed after the stream cursors were read: what follows is new.
        assert _wait_for(lines, seen, "before the watch", 30), "".join(seen)
        new = cli.post("bob", "made while watching")
        code = proc.wait(timeout=60)
        assert _wait_for(lines, seen, "made while watching", 5), "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (cli.home.parent / "watch-stderr.log").read_text("utf-8", "replace")
    assert code == 0, err
    page, *items = [json.loads(line) for line in seen if line.strip()]
    assert [p["text"] for p in page["posts"]] == ["before the watch"]
    assert [i["id"] for i in items] == [new]
