"""Everyday fixes a newcomer found (issue #16 item 7), through the real ``murmur``
command against real node processes, and against a node that never answers.

- spec 0007 #limit-after-moderation: ``--limit N`` shows N items after moderation;
  hidden items do not eat the page (timeline and author), and are counted.
- spec 0006 #failure-summary: a filter failing on some items is one line in the
  view's summary (which filter, how many items, the first error), not a line per item
  and not a log line per item.
- spec 0007 #post-quorum: a node that accepts the connection and never answers does
  not hold a post: the command returns once the quorum stored it, and names the node.
- spec 0007 #slow-lookups: nor does it hold what a command reads before it signs (a
  short id, the target, the duplicate check): ``like``, ``unlike``, ``repost``,
  ``post --reply-to``, ``delete`` and ``follow`` finish and name it as not consulted.
- spec 0007 #node-url: ``--node notaurl`` is a usage error, not ``http://notaurl``.
- ``murmur node run`` on a busy port says so in one line and exits non-zero.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import start_node
from tests.adversarial.test_cli_failures import MURMUR
from tests.e2e.fedproc import Author
from tests.e2e.nodeproc import ROOT, NodeProcess

#: A hang detector only: a command that waited for the silent node would take the
#: timeout the test gives it (300 s); one that did not is done in seconds.
GUARD_S = 90.0
MUTE = textwrap.dedent(
    """
    [[filters]]
    name = "mute"
    type = "mute-words"
    params = { words = ["spoiler"] }
    """
)


def murmur(
    home: Path, *argv: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``murmur --home HOME ...`` as a separate process (stdin not a terminal)."""
    if not MURMUR.exists():
        pytest.skip("murmur console script not installed in this environment")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MURMUR_")}
    try:
        return subprocess.run(
            [str(MURMUR), "--home", str(home), *argv],
            input=stdin,
            env={**base, **(env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=GUARD_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"murmur {' '.join(argv)} hung: no result within the {GUARD_S:g} s guard")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory.mktemp("everyday-node"))
    try:
        yield proc
    finally:
        proc.stop()


# -- --limit after moderation, and a failing filter's summary ----------------------------


@pytest.fixture(scope="module")
def muted_reader(tmp_path_factory: pytest.TempPathFactory, node: NodeProcess) -> tuple[Path, str]:
    """A reader who follows bob and mutes "spoiler"; bob's 3 oldest posts are clean,
    his 30 newest say "spoiler" (so every item of a naive first page is hidden)."""
    home = tmp_path_factory.mktemp("muted-reader")
    assert murmur(home, "id", "new", "me", "--did-key", "--no-encrypt").returncode == 0
    bob = Author(0x16_0007_01)
    posts = [bob.post(f"clean {i}") for i in (1, 2, 3)]
    posts += [bob.post(f"spoiler {i}") for i in range(30)]
    assert all(r["status"] == "accepted" for r in node.ingest(*(e.wire for e in posts)))
    followed = murmur(home, "--node", node.url, "follow", bob.identity.did, "--alias", "bob")
    assert followed.returncode == 0, followed.stderr
    (home / "filters.toml").write_text(MUTE)
    return home, bob.identity.did


@pytest.mark.parametrize("view", ["timeline", "author"])
def test_limit_counts_shown_items_not_hidden_ones(
    muted_reader: tuple[Path, str], node: NodeProcess, view: str
) -> None:
    """spec 0007 #limit-after-moderation: before, ``--limit 3`` read bob's 3 (or 26)
    newest items, all muted, and showed nothing; now it reads further, bounded, and
    shows the 3 clean posts, saying how many it hid on the way."""
    home, bob = muted_reader
    argv = ["timeline"] if view == "timeline" else ["author", bob]
    done = murmur(home, "--node", node.url, *argv, "--limit", "3", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [p["text"] for p in doc["posts"]] == ["clean 3", "clean 2", "clean 1"]
    hidden = [h["text"] for h in doc["moderation"]["hidden"]]
    assert sorted(hidden) == sorted(f"spoiler {i}" for i in range(30))
    text = murmur(home, "--node", node.url, *argv, "--limit", "3")
    assert text.returncode == 0 and "(30 item(s) hidden by your filters" in text.stdout
    # A page that ends inside the hidden run stops at the limit: the rest is not shown.
    two = json.loads(murmur(home, "--node", node.url, *argv, "--limit", "2", "--json").stdout)
    assert [p["text"] for p in two["posts"]] == ["clean 3", "clean 2"]


def test_a_failing_filter_is_one_summary_line(
    muted_reader: tuple[Path, str], node: NodeProcess, tmp_path: Path
) -> None:
    """spec 0006 #failure-summary: a custom filter that fails on two items (with a
    different error each) is one ``! moderation`` line naming it, the item count and
    the first error; nothing about it on stderr (before: a line per item on stdout and
    a log line per item on stderr)."""
    home, _ = muted_reader
    picky = tmp_path / "picky.py"
    picky.write_text(
        textwrap.dedent(
            """
            class Picky:
                name = "picky"

                def check(self, item):
                    if item.text in ("clean 1", "clean 2"):
                        raise ValueError("cannot judge " + item.text)
                    return None
            """
        )
    )
    filters = home / "filters.toml"
    try:
        filters.write_text(MUTE + f'\n[[filters]]\nname = "picky"\ntype = "{picky}:Picky"\n')
        # Every item fits the page: what is checked is the summary, not the page.
        done = murmur(home, "--node", node.url, "timeline", "--limit", "40")
    finally:
        filters.write_text(MUTE)
    assert done.returncode == 0, done.stderr
    assert "clean 1" in done.stdout  # shown, without the failed filter's decision
    about = [line for line in done.stdout.splitlines() if "picky" in line]
    assert len(about) == 1, about
    assert about[0].startswith("! moderation: filter picky") and "2 item(s)" in about[0]
    assert "cannot judge clean 2" in about[0]
    assert "picky" not in done.stderr


# -- account age ---------------------------------------------------------------------------


def test_filters_see_the_account_age_the_nodes_know(
    muted_reader: tuple[Path, str], node: NodeProcess, tmp_path: Path
) -> None:
    """spec 0006 #account-age, 0004 #author-stats: a custom filter (in its worker
    process) sees ``author_first_seen_ms`` and ``author_first_ts`` as the node states
    them, and the example "hide new accounts" filter hides a stranger's posts that the
    node first saw moments ago (before: ``Item`` had no such field, and the filter
    failed on every item)."""
    home, _ = muted_reader
    carol = Author(0x16_0007_02)
    posts = [carol.post("carol's first"), carol.post("carol's second")]
    assert all(r["status"] == "accepted" for r in node.ingest(*(e.wire for e in posts)))
    did = carol.identity.did
    stats = httpx.get(f"{node.url}/v1/followers/{did}", params={"limit": 1}, timeout=10)
    stats.raise_for_status()
    seen, first_ts = stats.json()["stats"]["first_seen_ms"], stats.json()["stats"]["first_ts"]
    assert isinstance(seen, int) and first_ts == posts[0].ts
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            from client.moderation import Action, Decision

            class AgeProbe:
                name = "probe"

                def check(self, item):
                    reason = f"seen={item.author_first_seen_ms} ts={item.author_first_ts}"
                    return Decision(action=Action.BADGE, reason=reason, source="probe")
            """
        )
    )
    example = ROOT / "examples" / "filters" / "new_accounts.py"
    filters = home / "filters.toml"
    try:
        filters.write_text(f'[[filters]]\nname = "probe"\ntype = "{probe}:AgeProbe"\n')
        probed = murmur(home, "--node", node.url, "author", did, "--json")
        filters.write_text(
            f'[[filters]]\nname = "new"\ntype = "{example}:NewAccounts"\nparams = {{ days = 1 }}\n'
        )
        hidden = murmur(home, "--node", node.url, "author", did, "--json")
    finally:
        filters.write_text(MUTE)
    assert probed.returncode == 0, probed.stderr
    reasons = {p["moderation"]["final"]["reason"] for p in json.loads(probed.stdout)["posts"]}
    assert reasons == {f"seen={seen} ts={first_ts}"}
    assert hidden.returncode == 0, hidden.stderr
    doc = json.loads(hidden.stdout)
    assert doc["posts"] == []
    assert sorted(h["text"] for h in doc["moderation"]["hidden"]) == [
        "carol's first",
        "carol's second",
    ]
    why = {h["moderation"]["final"]["reason"] for h in doc["moderation"]["hidden"]}
    assert len(why) == 1 and why.pop().startswith("new account (known for ")


# -- a slow node does not hold a post ------------------------------------------------------


class SilentNode:
    """A TCP server on 127.0.0.1 that accepts connections, reads what it is sent and
    never answers: a node hung behind a live socket."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)  # so close() ends the accept loop
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._lock = threading.Condition()
        self._received = bytearray()
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    def saw(self, data: bytes, within_s: float = 10.0) -> bool:
        """Whether ``data`` reaches the server within ``within_s`` (it may still be in
        flight when the command that sent it has exited)."""
        with self._lock:
            return self._lock.wait_for(lambda: data in self._received, timeout=within_s)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                with self._lock:
                    self._received += data
                    self._lock.notify_all()
        except OSError:
            return

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        self._server.close()
        with self._lock:
            for conn in self._conns:
                conn.close()


@pytest.fixture
def silent() -> Iterator[SilentNode]:
    server = SilentNode()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["did-key", "did-murmur"])
def test_a_silent_node_does_not_hold_a_post(
    tmp_path: Path, node: NodeProcess, silent: SilentNode, kind: str
) -> None:
    """spec 0007 #post-quorum: with a 300 s timeout, a post to a real node and a node
    that never answers returns once the real node stored it (default quorum: 1), and
    reports the silent one as unconfirmed; the silent node was sent the event too (in
    parallel). Before: the post waited the whole timeout for it, twice for a did:key
    (the head, then the event)."""
    home = tmp_path / "home"
    made = murmur(home, "id", "new", "me", "--no-encrypt", *(["--did-key"] * (kind == "did-key")))
    assert made.returncode == 0, made.stderr
    env = {"MURMUR_TIMEOUT": "300"}
    done = murmur(
        home, "--node", node.url, "--node", silent.url, "post", "not held", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    statuses = {n["url"]: n["status"] for n in doc["nodes"]}
    assert statuses == {node.url: "accepted", silent.url: "unconfirmed"}
    assert b"POST /v1/events" in silent.received  # it was asked, not skipped
    text = murmur(home, "--node", node.url, "--node", silent.url, "post", "again", env=env)
    assert text.returncode == 0, text.stderr
    assert "stored on 1 of 2 node(s)" in text.stdout
    assert f"! {silent.url}: unconfirmed" in text.stdout


def test_a_quorum_the_nodes_cannot_meet_is_reported(
    tmp_path: Path, node: NodeProcess, silent: SilentNode
) -> None:
    """spec 0007 #post-quorum: ``--quorum 2`` waits for two nodes up to the deadline;
    with one of them silent, the post is stored on the other and says the quorum was
    not met, naming the silent node's timeout."""
    home = tmp_path / "home"
    assert murmur(home, "id", "new", "me", "--did-key", "--no-encrypt").returncode == 0
    done = murmur(
        home, "--quorum", "2", "--node", node.url, "--node", silent.url, "post", "two?",
        env={"MURMUR_TIMEOUT": "2"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stored on 1 of 2 node(s)" in done.stdout
    assert "fewer nodes stored it than the 2 asked for" in done.stdout
    assert f"! {silent.url}: error: node-timeout" in done.stdout


# -- nor what a command reads before it signs ------------------------------------------

#: A per-node timeout no command may wait out within GUARD_S.
SLOW = {"MURMUR_TIMEOUT": "300"}


def _home_with_post(tmp_path: Path, node: NodeProcess) -> tuple[Path, str]:
    """A home (a rotatable identity) whose post is on the real node only: its id."""
    home = tmp_path / "home"
    made = murmur(home, "id", "new", "me", "--no-encrypt")
    assert made.returncode == 0, made.stderr
    done = murmur(home, "--node", node.url, "post", "the target", "--json")
    assert done.returncode == 0, done.stderr
    return home, str(json.loads(done.stdout)["id"])


def _both(node: NodeProcess, silent: SilentNode) -> list[str]:
    return ["--node", node.url, "--node", silent.url]


def _published(doc: dict[str, Any], node: NodeProcess, silent: SilentNode) -> None:
    """Signed and stored on the real node, the silent one left unconfirmed, and named
    as not consulted by the checks before signing."""
    assert doc["changed"] is True
    statuses = {n["url"]: n["status"] for n in doc["nodes"]}
    assert statuses == {node.url: "accepted", silent.url: "unconfirmed"}
    assert [n["url"] for n in doc["not_consulted"]] == [silent.url]


def test_a_silent_node_does_not_hold_a_like(
    tmp_path: Path, node: NodeProcess, silent: SilentNode
) -> None:
    """spec 0007 #slow-lookups: with a 300 s timeout, ``like``, a second ``like`` and
    ``unlike`` finish while the silent node still holds the connections it was opened:
    the target is taken from the real node's verified copy, the duplicate check from
    the real node alone, and the silent node is named as not consulted. Before: the
    lookup of the target and the duplicate check each waited out the timeout for it."""
    home, target = _home_with_post(tmp_path, node)
    liked = murmur(home, *_both(node, silent), "like", target, "--json", env=SLOW)
    assert liked.returncode == 0, liked.stderr
    doc = json.loads(liked.stdout)
    _published(doc, node, silent)
    assert doc["kind"] == "like" and doc["target"] == target
    # It was asked, in parallel with the real node, not skipped.
    assert silent.saw(f"GET /v1/events/{target}".encode())
    again = murmur(home, *_both(node, silent), "like", target, env=SLOW)
    assert again.returncode == 0, again.stderr
    assert "You already like" in again.stdout and "nothing was signed" in again.stdout
    assert f"! {silent.url}: not consulted before signing: node-timeout" in again.stdout
    undone = murmur(home, *_both(node, silent), "unlike", target, "--json", env=SLOW)
    assert undone.returncode == 0, undone.stderr
    doc = json.loads(undone.stdout)
    _published(doc, node, silent)
    assert doc["kind"] == "delete" and doc["of"] == target and len(doc["undone"]) == 1


def test_a_silent_node_does_not_hold_a_repost_by_short_id(
    tmp_path: Path, node: NodeProcess, silent: SilentNode
) -> None:
    """spec 0007 #slow-lookups, #short-ids: a 12-character id is resolved on the node
    that answered (the silent one is named, not waited for), then reposted. Before:
    the prefix query waited out the timeout for the silent node."""
    home, target = _home_with_post(tmp_path, node)
    done = murmur(home, *_both(node, silent), "repost", target[:12], "--json", env=SLOW)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    _published(doc, node, silent)
    assert doc["kind"] == "repost" and doc["target"] == target
    assert silent.saw(f"id_prefix={target[:12]}".encode())
    assert next(n for n in doc["not_consulted"])["code"] == "node-timeout"


def test_a_silent_node_does_not_hold_a_reply(
    tmp_path: Path, node: NodeProcess, silent: SilentNode
) -> None:
    """spec 0007 #slow-lookups: ``post --reply-to`` takes the parent from the first
    node serving it verified (the silent node's request is cancelled: it was not
    needed), by a short id or a full one. Before: the parent lookup waited out the
    timeout for the silent node."""
    home, target = _home_with_post(tmp_path, node)
    short = murmur(
        home, *_both(node, silent), "post", "a reply", "--reply-to", target[:12], "--json",
        env=SLOW,
    )  # fmt: skip
    assert short.returncode == 0, short.stderr
    doc = json.loads(short.stdout)
    _published(doc, node, silent)  # the prefix query went on without it
    assert doc["reply"] == {"root": target, "parent": target}
    full = murmur(home, *_both(node, silent), "post", "again", "--reply-to", target, env=SLOW)
    assert full.returncode == 0, full.stderr
    assert full.stdout.startswith("Replied ")
    assert f"! {silent.url}: unconfirmed" in full.stdout
    assert silent.saw(f"GET /v1/events/{target}".encode())


def test_a_silent_node_does_not_hold_a_delete(
    tmp_path: Path, node: NodeProcess, silent: SilentNode
) -> None:
    """spec 0007 #slow-lookups, #no-duplicates: ``delete`` checks the author on the
    real node's verified copy and the earlier deletes on the real node alone; deleting
    twice says so without waiting for the silent node either. Before: both lookups
    waited out the timeout for it."""
    home, target = _home_with_post(tmp_path, node)
    done = murmur(home, *_both(node, silent), "delete", target, "--json", env=SLOW)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    _published(doc, node, silent)
    assert doc["kind"] == "delete" and doc["target"] == target
    again = murmur(home, *_both(node, silent), "delete", target, "--json", env=SLOW)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["changed"] is False and doc["reason"] == "already-deleted"
    assert [n["url"] for n in doc["not_consulted"]] == [silent.url]


def test_a_silent_node_does_not_hold_a_follow(
    tmp_path: Path, node: NodeProcess, silent: SilentNode
) -> None:
    """spec 0007 #slow-lookups: ``follow`` reads the own follows and the profiles from
    the real node alone, following twice says so, and the silent node is named.
    Before: the follow check waited out the timeout for it."""
    home, _ = _home_with_post(tmp_path, node)
    made = murmur(home, "id", "new", "friend", "--did-key", "--no-encrypt", "--json")
    assert made.returncode == 0, made.stderr
    done = murmur(home, *_both(node, silent), "follow", "friend", "--json", env=SLOW)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    _published(doc, node, silent)
    assert doc["kind"] == "follow"
    again = murmur(home, *_both(node, silent), "follow", "friend", env=SLOW)
    assert again.returncode == 0, again.stderr
    assert "already" in again.stdout and "nothing was signed" in again.stdout
    assert f"! {silent.url}: not consulted before signing: node-timeout" in again.stdout


# -- command-line and process errors -----------------------------------------------------


def test_node_that_is_not_a_url_is_a_usage_error(tmp_path: Path) -> None:
    """spec 0007 #node-url: before, ``--node notaurl`` became ``http://notaurl`` and
    the command failed later with no-node-answered (exit 1)."""
    assert murmur(tmp_path, "id", "new", "me", "--did-key", "--no-encrypt").returncode == 0
    for bad in ("notaurl", "node.example", "http://h:0", "ftp://x:1", "http://no host"):
        done = murmur(tmp_path, "--node", bad, "timeline")
        assert done.returncode == 2, (bad, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert "murmur: error: argument --node:" in done.stderr and repr(bad) in done.stderr
        assert "http://notaurl" not in done.stderr
        added = murmur(tmp_path, "nodes", "add", bad, "--json")
        assert added.returncode == 1 and json.loads(added.stdout)["error"] == "bad-request"
    assert json.loads(murmur(tmp_path, "nodes", "list", "--json").stdout) == []


def test_node_run_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    """Before: the store and federation started, three log lines, then the bind error;
    now one line on stderr naming the port, a non-zero exit, nothing started."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        for argv in (
            [str(MURMUR), "node", "run"],
            [sys.executable, "-m", "node", "run"],
        ):
            done = subprocess.run(
                [*argv, "--port", str(port), "--data", str(tmp_path / "data")],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=GUARD_S,
                check=False,
            )
            assert done.returncode == 1
            lines = done.stderr.splitlines()
            assert len(lines) == 1, done.stderr
            assert f"127.0.0.1:{port}" in lines[0] and "already in use" in lines[0]
            assert not (tmp_path / "data").exists()
