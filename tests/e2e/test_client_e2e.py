"""End-to-end: the ``murmur`` client against real node processes (spec 0007, issue #5).

Two real nodes (A and B, no peers, so nothing federates) serve the module. Every
client command runs through ``client.cli.main`` in-process (one test runs the installed
console script as a subprocess) with a fresh ``--home``. Covered: every post, social
and read command with its ``--json`` shape; the withholding scenario (an author's seq 1
and 3 on B, seq 2 only on A: a client configured with B then A shows all three and
reports that B withheld seq 2); a node serving a broken signature; the error paths
(no node, unreachable node, missing identity, rejected event) with exit status 1.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.encoding import encode
from protocol.events import Event, sign_event
from protocol.identity import Identity
from tests.e2e.client_fixtures import Cli, ForgingNode, RealNode
from tests.e2e.nodeproc import ROOT

pytestmark = pytest.mark.e2e

_seeds = itertools.count(7000)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealNode, RealNode]]:
    base = tmp_path_factory.mktemp("client-e2e-nodes")
    started: list[RealNode] = []
    try:
        started.append(RealNode(base / "a"))
        started.append(RealNode(base / "b"))
        yield started[0], started[1]
    finally:
        for n in started:
            n.stop()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "home", capsys)


def new_identity(cli: Cli, name: str) -> str:
    did: str = cli.json("id", "new", name, "--no-encrypt")["did"]
    return did


def chain(n: int) -> tuple[Identity, list[Event]]:
    ident = Identity.from_seed(next(_seeds).to_bytes(32, "big"))
    events, prev = [], None
    now = int(time.time() * 1000)
    for seq in range(1, n + 1):
        ts = now - (n - seq) * 1000
        ev = sign_event(ident, kind="post", body={"text": f"post {seq}"}, seq=seq, prev=prev, ts=ts)
        events.append(ev)
        prev = ev.id
    return ident, events


POST_KEYS = {"id", "author", "seq", "ts", "kind", "text"}
NODE_KEYS = {"url", "ok", "error", "served", "withheld", "invalid"}


def test_b_withholds_seq_2(nodes: tuple[RealNode, RealNode], cli: Cli) -> None:
    """The issue's scenario, through `author` and `timeline`."""
    a, b = nodes
    ident, (e1, e2, e3) = chain(3)
    assert [r["status"] for r in b.ingest(e1.wire, e3.wire)] == ["accepted"] * 2
    assert [r["status"] for r in a.ingest(e2.wire)] == ["accepted"]
    cli.json("nodes", "add", b.url)
    cli.json("nodes", "add", a.url)
    new_identity(cli, "reader")

    doc = cli.json("author", ident.did)
    assert sorted(p["seq"] for p in doc["posts"]) == [1, 2, 3]
    assert all(POST_KEYS <= set(p) for p in doc["posts"])
    assert [n["url"] for n in doc["nodes"]] == [b.url, a.url]
    assert all(NODE_KEYS <= set(n) for n in doc["nodes"])
    b_report = doc["nodes"][0]
    assert [(w["author"], w["seq"], w["id"]) for w in b_report["withheld"]] == [
        (ident.did, 2, e2.id_hex)
    ]
    assert doc["chain"] == {"head_seq": 3, "max_seq": 3, "events": 3}

    cli.json("follow", ident.did, "--alias", "carol")
    tl = cli.json("timeline")
    assert [p["seq"] for p in tl["posts"] if p["author"] == ident.did] == [3, 2, 1]
    assert {p["author_name"] for p in tl["posts"]} == {"@carol"}
    assert [w["seq"] for w in tl["nodes"][0]["withheld"]] == [2]

    code, out, _ = cli.run("author", "carol")
    assert code == 0 and "post 2" in out
    assert f"{b.url} withheld 1 event(s): @carol seq 2" in out


def test_broken_signature_is_reported_and_not_shown(
    nodes: tuple[RealNode, RealNode], cli: Cli
) -> None:
    a, _ = nodes
    ident, (e1, e2) = chain(2)
    a.ingest(e1.wire, e2.wire)
    forged = sign_event(ident, kind="post", body={"text": "FORGED"}, seq=3, prev=e2.id)
    sig = bytearray(forged.sig)
    sig[5] ^= 0xFF
    fake = ForgingNode()
    try:
        fake.wires = [e1.wire, encode([forged.header_bytes, bytes(sig), forged.body_bytes])]
        code, out, err = cli.run("--node", a.url, "--node", fake.url, "author", ident.did, "--json")
        assert code == 0, err
        doc = json.loads(out)
        code, human, _ = cli.run("--node", a.url, "--node", fake.url, "author", ident.did)
    finally:
        fake.stop()
    assert [p["text"] for p in doc["posts"]] == ["post 2", "post 1"]
    fake_report = doc["nodes"][1]
    assert fake_report["url"] == fake.url
    assert [(i["id"], i["code"]) for i in fake_report["invalid"]] == [
        (forged.id_hex, "invalid-signature")
    ]
    assert (
        "FORGED" not in human and "served 1 invalid event(s), dropped: invalid-signature" in human
    )


def test_posting_social_and_reading_commands(nodes: tuple[RealNode, RealNode], cli: Cli) -> None:
    a, b = nodes
    cli.json("nodes", "add", a.url)
    cli.json("nodes", "add", b.url)
    alice = new_identity(cli, "alice")
    bob = new_identity(cli, "bob")

    prof = cli.json("profile", "set", "--name", "Alice Liddell", "--bio", "down the hole")
    assert prof["kind"] == "profile" and prof["name"] == "Alice Liddell"
    assert [n["status"] for n in prof["nodes"]] == ["accepted", "accepted"]
    prof = cli.json("profile", "set", "--bio", "through the glass")
    assert (prof["name"], prof["bio"]) == ("Alice Liddell", "through the glass")
    shown = cli.json("profile", "show")
    assert shown["profile"]["name"] == "Alice Liddell" and shown["profile"]["did"] == alice
    found = cli.json("search", "liddell")
    assert [p["did"] for p in found["profiles"]] == [alice]

    post = cli.json("post", "hello murmur", "--lang", "en", "--warn", "spoiler")
    assert POST_KEYS <= set(post) and post["text"] == "hello murmur"
    # alice is a did:murmur (the default): her genesis, two profiles, then this post.
    assert post["author"] == alice and post["seq"] == 4 and post["kind"] == "post"
    assert post["langs"] == ["en"] and post["warn"] == ["spoiler"]
    reply = cli.json("post", "hi alice", "--reply-to", post["id"], as_name="bob")
    assert reply["reply"] == {"root": post["id"], "parent": post["id"]}
    deeper = cli.json("post", "hi bob", "--reply-to", reply["id"])
    assert deeper["reply"] == {"root": post["id"], "parent": reply["id"]}
    quote = cli.json("post", "look", "--quote", post["id"], as_name="bob")
    assert quote["quote"] == post["id"]
    repost = cli.json("repost", post["id"], as_name="bob")
    like = cli.json("like", post["id"], as_name="bob")
    assert (repost["kind"], repost["target"]) == ("repost", post["id"])
    assert (like["kind"], like["target"]) == ("like", post["id"])

    followed = cli.json("follow", bob, "--alias", "bob")
    assert followed["kind"] == "follow" and followed["subject"] == bob
    following = cli.json("following")
    assert [(f["did"], f["alias"]) for f in following["following"]] == [(bob, "bob")]

    tl = cli.json("timeline", "--limit", "10")
    kinds = [(p["kind"], p["author"]) for p in tl["posts"]]
    assert ("repost", bob) in kinds and ("post", alice) in kinds
    rp = next(p for p in tl["posts"] if p["kind"] == "repost")
    assert rp["reposted"]["id"] == post["id"] and rp["reposted"]["text"] == "hello murmur"
    rep = next(p for p in tl["posts"] if p["id"] == reply["id"])
    assert rep["parent"]["id"] == post["id"]
    q = next(p for p in tl["posts"] if p["id"] == quote["id"])
    assert q["quoted"]["id"] == post["id"]
    assert all(n["ok"] and n["withheld"] == [] for n in tl["nodes"])

    thread = cli.json("thread", deeper["id"])
    assert thread["root"]["id"] == post["id"]
    assert [(r["id"], r["depth"]) for r in thread["replies"]] == [
        (reply["id"], 1),
        (deeper["id"], 2),
    ]
    code, out, _ = cli.run("thread", post["id"])
    assert code == 0 and "hi alice" in out and "hi bob" in out and "~Alice Liddell" in out

    author = cli.json("author", "bob")
    assert author["author"] == bob and {p["kind"] for p in author["posts"]} == {"post", "repost"}

    deleted = cli.json("delete", reply["id"], as_name="bob")
    assert deleted["kind"] == "delete" and deleted["target"] == reply["id"]
    thread = cli.json("thread", post["id"])
    assert reply["id"] not in [r["id"] for r in thread["replies"]]

    unf = cli.json("unfollow", "bob")
    assert unf["kind"] == "unfollow"
    assert cli.json("following")["following"] == []
    # The post carries a self-label (--warn spoiler): the default filter collapses it.
    code, out, _ = cli.run("timeline")
    assert code == 0 and "hello murmur" not in out and "spoiler" in out
    code, out, _ = cli.run("timeline", "--no-filters")
    assert code == 0 and "hello murmur" in out and "hi alice" not in out


def test_new_machine_same_key_continues_the_chain(
    nodes: tuple[RealNode, RealNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = nodes
    seed = f"{next(_seeds):064x}"
    first, second = Cli(tmp_path / "laptop", capsys), Cli(tmp_path / "phone", capsys)
    for c in (first, second):
        c.json("nodes", "add", a.url)
        c.json("id", "new", "me", "--seed", seed, "--no-encrypt")
    assert first.json("post", "from the laptop")["seq"] == 1
    doc = second.json("post", "from the phone")
    assert doc["seq"] == 2 and doc["head_source"] == "nodes"
    assert first.json("post", "laptop again")["seq"] == 3  # stale local head corrected
    log = first.json("author", doc["author"])
    assert log["chain"]["head_seq"] == 3 and log["forks"] == []


def test_partial_publish_and_errors(nodes: tuple[RealNode, RealNode], cli: Cli) -> None:
    a, _ = nodes
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"

    code, out, err = cli.run("post", "x", "--json")
    assert code == 1 and json.loads(out)["error"] in ("identity-not-found", "no-nodes")
    new_identity(cli, "me")
    code, out, err = cli.run("post", "x", "--json")
    assert code == 1 and json.loads(out)["error"] == "no-nodes" and "Traceback" not in err

    code, out, err = cli.run("--node", dead, "post", "x", "--json")
    assert code == 1 and json.loads(out)["error"] == "node-unreachable"
    assert "Traceback" not in err and "murmur: error:" in err
    # A rotatable identity's post is part of its own chain once signed (spec 0007
    # #own-chain): kept, said so, and sent before the next post.
    assert "saved (seq " in json.loads(out)["message"]

    doc = cli.json("--node", dead, "--node", a.url, "post", "partial")
    assert [n["status"] for n in doc["nodes"]] == ["error", "accepted"]
    assert doc["nodes"][0]["code"] == "node-unreachable"
    tl = cli.json("--node", dead, "--node", a.url, "author", doc["author"])
    assert [p["text"] for p in tl["posts"]] == ["partial", "x"]
    assert tl["nodes"][0]["ok"] is False and tl["nodes"][0]["error"]["code"] == "node-unreachable"

    code, out, err = cli.run("--as", "ghost", "--node", a.url, "post", "x", "--json")
    assert code == 1 and json.loads(out)["error"] == "identity-not-found"

    # A client on another network signs events the node must reject: its code comes back.
    config = cli.home / "config.toml"
    config.write_text(f'network = "elsewhere"\nnodes = ["{a.url}"]\n')
    code, out, err = cli.run("post", "wrong net", "--json")
    assert code == 1 and json.loads(out)["error"] == "wrong-network"
    assert a.url in err and "Traceback" not in err

    code, out, err = cli.run("--node", a.url, "thread", "zz")
    assert code == 1 and "not an event id" in err


def test_console_script(nodes: tuple[RealNode, RealNode], tmp_path: Path) -> None:
    """The installed `murmur` entry point, as the README uses it."""
    a, _ = nodes
    murmur = Path(sys.executable).parent / "murmur"
    if not murmur.exists():
        pytest.skip("murmur console script not installed in this environment")
    env = {**os.environ, "MURMUR_HOME": str(tmp_path / "home")}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(murmur), *argv],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert run("nodes", "add", a.url).returncode == 0
    assert run("id", "new", "zed", "--no-encrypt").returncode == 0
    posted = run("post", "from a real process")
    assert posted.returncode == 0 and "stored on 1 of 1 node(s)" in posted.stdout
    tl = run("timeline", "--json")
    assert tl.returncode == 0 and json.loads(tl.stdout)["posts"][0]["text"] == "from a real process"
