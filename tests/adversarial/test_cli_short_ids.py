"""Short ids, undo, no duplicate events, empty posts and the reader's own name (issue
#16 item 7, first points), through ``murmur`` against real node processes (the CLI
in-process, :class:`tests.e2e.client_fixtures.Cli`).

- spec 0007 #short-ids, 0004 #events-by-prefix: every id argument takes the prefix the
  views print, resolved on the union of the reader's nodes; ``ambiguous-id`` and
  ``unknown-id`` otherwise. Two posts whose ids share 8 hex characters are made by
  varying their timestamp (a birthday search over 32 bits).
- spec 0007 #no-duplicates: ``unlike``/``unrepost``; a second like, repost, follow,
  unfollow or delete signs nothing (exit 0, ``"changed": false``), also from a second
  home of the same key; following yourself is refused.
- spec 0007 #empty-post: an empty or blank post is refused; a quote may be empty.
- spec 0007 #own-name: the reader's own name (``~Alice``) in ``post --json``, a
  follow's and unfollow's line, and a deleted post's thread.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.encoding import encode
from protocol.events import EVENT_VERSION, Event, Header, sign_event
from protocol.identity import Identity
from tests.adversarial.conftest import start_node
from tests.e2e.client_fixtures import Cli
from tests.e2e.fedproc import post_events
from tests.e2e.nodeproc import NodeProcess

#: A fixed past time, so the twin search below finds the same pair on every run.
TWIN_TS = 1_790_000_000_000
BOB_SEED = f"{0xB0B_E5E5:064x}"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, ...]]:
    started: list[NodeProcess] = []
    try:
        for name in ("a", "b"):
            started.append(start_node(tmp_path_factory.mktemp(f"short-ids-{name}")))
        yield tuple(started)
    finally:
        for node in started:
            node.stop()


def _home(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, *urls: str) -> Cli:
    cli = Cli(tmp_path / name, capsys)
    for url in urls:
        cli.json("nodes", "add", url)
    return cli


def _new(cli: Cli, name: str, *extra: str) -> str:
    did: str = cli.json("id", "new", name, "--no-encrypt", *extra)["did"]
    return did


def _max_seq(url: str, did: str) -> int:
    head = httpx.get(f"{url}/v1/authors/{did}/head", timeout=10).json()
    return int(head["max_seq"])


def _feed(url: str, did: str, kind: str) -> list[dict[str, Any]]:
    params = {"authors": did, "kinds": kind, "limit": "100"}
    events: list[dict[str, Any]] = httpx.get(f"{url}/v1/feed", params=params, timeout=10).json()[
        "events"
    ]
    return events


def twin_posts() -> tuple[Event, Event]:
    """Two posts by two authors (seq 1) whose ids share their first 8 hex characters.

    The id is SHA-256 of the header bytes, which hold ``ts`` as a fixed-width integer:
    patch it in place and hash, about 100,000 tries before two of the two authors'
    ids meet in 32 bits; only the pair found is signed."""
    authors = [Identity.from_seed(bytes([i]) * 32) for i in (1, 2)]
    body = {"text": "twin"}
    templates = []
    for who in authors:
        probe = sign_event(who, kind="post", body=body, seq=1, prev=None, ts=TWIN_TS)
        header: Header = probe.header
        assert header.v == EVENT_VERSION
        raw = encode(header.to_map())
        packed = struct.pack(">Q", TWIN_TS)
        at = raw.index(packed)
        templates.append((who, bytearray(raw), at))
    seen: dict[bytes, tuple[int, int]] = {}
    for k in range(2_000_000):
        for n, (_, raw, at) in enumerate(templates):
            raw[at : at + 8] = struct.pack(">Q", TWIN_TS + k)
            short = hashlib.sha256(raw).digest()[:4]
            other = seen.get(short)
            if other is not None and other[0] != n:
                pair = [(n, k), other]
                made = [
                    sign_event(templates[i][0], kind="post", body=body, seq=1, prev=None,
                               ts=TWIN_TS + j)
                    for i, j in pair
                ]  # fmt: skip
                assert made[0].id_hex[:8] == made[1].id_hex[:8] != ""
                assert made[0].id != made[1].id
                return made[0], made[1]
            seen[short] = (n, k)
    raise AssertionError("no twin ids found")  # pragma: no cover


def test_short_ids_resolve_on_the_union_of_the_readers_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_nodes: tuple[NodeProcess, ...]
) -> None:
    """spec 0007 #short-ids, 0004 #events-by-prefix."""
    a, b = two_nodes
    x, y = twin_posts()
    assert post_events(a.url, [x]) == [x.id_hex]
    assert post_events(b.url, [y]) == [y.id_hex]
    prefix = x.id_hex[:8]

    # The node's lookup: bounded, strict.
    got = httpx.get(f"{a.url}/v1/events", params={"id_prefix": prefix.upper()}, timeout=10)
    assert got.status_code == 200, got.text
    assert [e["id"] for e in got.json()["events"]] == [x.id_hex]
    for bad in ("abc", prefix[:7], "g" * 8, "0" * 65):
        r = httpx.get(f"{a.url}/v1/events", params={"id_prefix": bad}, timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "bad-request", bad
    both = httpx.get(f"{a.url}/v1/events?ids={x.id_hex}&id_prefix={prefix}", timeout=10)
    assert both.status_code == 400

    cli = _home(tmp_path, capsys, "reader", a.url, b.url)
    _new(cli, "reader")
    code, err = cli.error("thread", prefix)
    assert code == "ambiguous-id"
    assert x.id_hex in err and y.id_hex in err
    # Each node alone knows one of them: the union is what is ambiguous.
    code_a, out_a, err_a = cli.run("--node", a.url, "thread", prefix, "--json")
    assert code_a == 0, err_a
    assert json.loads(out_a)["root"]["id"] == x.id_hex
    # One more character than the twins share settles it on both nodes.
    longer = x.id_hex[:9] if x.id_hex[8] != y.id_hex[8] else x.id_hex[:12]
    liked = cli.json("like", longer)
    assert liked["target"] == x.id_hex and liked["changed"] is True
    assert cli.json("thread", y.id_hex[:12])["root"]["id"] == y.id_hex
    # Unknown, too short, not hex.
    assert cli.error("like", "0000000000ff")[0] == "unknown-id"
    assert cli.error("thread", "abc")[0] == "bad-request"
    assert cli.error("post", "re", "--reply-to", "zzzzzzzzzzzz")[0] == "bad-request"
    reply = cli.json("post", "a reply by short id", "--reply-to", y.id_hex[:12])
    assert reply["reply"] == {"root": y.id_hex, "parent": y.id_hex}
    quote = cli.json("post", "a quote by short id", "--quote", x.id_hex[:12])
    assert quote["quote"] == x.id_hex


def test_unlike_and_unrepost_withdraw_the_readers_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_nodes: tuple[NodeProcess, ...]
) -> None:
    """spec 0007 #no-duplicates: ``unlike``/``unrepost`` delete the reader's own like
    or repost of a post (given by its short id); with none, they say so and sign
    nothing."""
    a, b = two_nodes
    bob = _home(tmp_path, capsys, "bob", a.url, b.url)
    _new(bob, "bob")
    post = bob.post("bob", "like me, then don't")
    alice = _home(tmp_path, capsys, "alice", a.url, b.url)
    me = _new(alice, "alice")
    short = post[:12]
    like = alice.json("like", post)
    repost = alice.json("repost", post)
    assert [e["id"] for e in _feed(a.url, me, "like")] == [like["id"]]

    undone = alice.json("unlike", short)
    assert undone["changed"] is True and undone["kind"] == "delete"
    assert undone["target"] == like["id"] and undone["undone"] == [like["id"]]
    assert _feed(a.url, me, "like") == [] and _feed(b.url, me, "like") == []
    seq = _max_seq(a.url, me)
    again = alice.json("unlike", short)
    assert again == {
        "changed": False,
        "reason": "not-liked",
        "message": f"You do not like {short}; nothing was signed.",
        "target": post,
        "not_consulted": [],  # both nodes answered (spec 0007 #slow-lookups)
    }
    code, out, _ = alice.run("unlike", short)
    assert code == 0 and "nothing was signed" in out

    gone = alice.json("unrepost", short)
    assert gone["target"] == repost["id"]
    assert _feed(a.url, me, "repost") == []
    assert alice.json("unrepost", short)["reason"] == "not-reposted"
    assert _max_seq(a.url, me) == seq + 1  # the unrepost only


def test_no_second_like_repost_follow_unfollow_or_delete_is_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_nodes: tuple[NodeProcess, ...]
) -> None:
    """spec 0007 #no-duplicates, 0003 §3.6: what already holds is not signed again
    (exit 0, ``"changed": false``), also from a second home of the same did:key that
    never signed any of it; following yourself is refused."""
    a, b = two_nodes
    bob = _home(tmp_path, capsys, "bob", a.url, b.url)
    bob_did = _new(bob, "bob")
    post = bob.post("bob", "popular")
    alice = _home(tmp_path, capsys, "alice", a.url, b.url)
    seed = f"{0xA11CE_0D0:064x}"
    me = _new(alice, "alice", "--seed", seed)
    mine = alice.post("alice", "mine, soon gone")

    first = {
        "like": alice.json("like", post)["id"],
        "repost": alice.json("repost", post)["id"],
        "follow": alice.json("follow", bob_did)["id"],
        "delete": alice.json("delete", mine)["id"],
    }
    seq = _max_seq(a.url, me)
    second = _home(tmp_path, capsys, "alice-laptop", b.url, a.url)
    assert _new(second, "alice", "--seed", seed) == me
    for home in (alice, second):
        liked = home.json("like", post)
        assert liked["changed"] is False and liked["reason"] == "already-liked"
        assert liked["existing"] == first["like"]
        reposted = home.json("repost", post)
        assert reposted["reason"] == "already-reposted"
        assert reposted["existing"] == first["repost"]
        followed = home.json("follow", bob_did)
        assert followed["reason"] == "already-following" and followed["changed"] is False
        deleted = home.json("delete", mine)
        assert deleted["reason"] == "already-deleted"
        code, out, err = home.run("like", post)
        assert code == 0 and out.startswith("You already like") and err == ""
        assert home.error("follow", me)[0] == "bad-request"  # yourself
        assert home.error("follow", "alice")[0] == "bad-request"  # by identity name
    assert _max_seq(a.url, me) == seq and _max_seq(b.url, me) == seq

    # The latest follow or unfollow of a subject decides (spec 0003 §3.6).
    assert second.json("unfollow", bob_did)["changed"] is True
    assert alice.json("unfollow", bob_did)["reason"] == "not-following"
    assert alice.json("follow", bob_did)["changed"] is True
    assert second.json("follow", bob_did)["reason"] == "already-following"
    assert _max_seq(a.url, me) == seq + 2


def test_an_empty_or_blank_post_is_refused_a_quote_may_be_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_nodes: tuple[NodeProcess, ...]
) -> None:
    """spec 0007 #empty-post: a usage error before anything is signed or asked."""
    a, _ = two_nodes
    alice = _home(tmp_path, capsys, "alice", a.url)
    me = _new(alice, "alice")
    quoted = alice.post("alice", "something to quote")
    seq = _max_seq(a.url, me)
    for text in ("", "   ", "\n\t \u3000", "\u200b\u2060 "):
        code, message = alice.error("post", text)
        assert code == "bad-request" and "needs text" in message, repr(text)
        code, _ = alice.error("post", text, "--reply-to", quoted)
        assert code == "bad-request"
    assert _max_seq(a.url, me) == seq
    quote = alice.json("post", "", "--quote", quoted[:12])
    assert quote["text"] == "" and quote["quote"] == quoted


def test_the_readers_own_name_is_the_same_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_nodes: tuple[NodeProcess, ...]
) -> None:
    """spec 0007 #own-name: ``~Alice`` in ``post --json``, in follow and unfollow lines
    (``~Bob`` for the subject, who has no petname), in a deleted post's thread; a
    second home of the key learns it from the first read that carries it."""
    a, b = two_nodes
    bob = _home(tmp_path, capsys, "bob", a.url, b.url)
    bob_did = _new(bob, "bob")
    bob.ok("profile", "set", "--name", "Bob")
    alice = _home(tmp_path, capsys, "alice", a.url, b.url)
    seed = f"{0xA11CE_0D1:064x}"
    me = _new(alice, "alice", "--seed", seed)
    alice.ok("profile", "set", "--name", "Alice")

    posted = alice.json("post", "who am I")
    assert posted["author_name"] == "~Alice"
    assert alice.ok("follow", bob_did).startswith("Followed ~Bob:")
    assert alice.ok("unfollow", bob_did).startswith("Unfollowed ~Bob:")
    assert alice.json("follow", bob_did)["author_name"] == "~Alice"
    alice.ok("delete", posted["id"])
    thread = alice.ok("thread", posted["id"][:12])
    assert thread.startswith("~Alice · ") and "(deleted" in thread
    assert me[8:16] not in thread

    second = _home(tmp_path, capsys, "alice-laptop", a.url)
    assert _new(second, "alice", "--seed", seed) == me
    mine = bob.post("bob", "for alice to like")
    assert second.json("like", mine[:12])["author_name"] == "~Alice"  # read with the like
    assert second.json("post", "from the laptop")["author_name"] == "~Alice"  # kept
