"""Notifications and followers through the ``murmur`` CLI on a real 3-node network
(issue #16 "Done when", first test; spec 0007 #notifications, #followers,
#notifications-seen).

Bob mentions, replies to, likes, quotes and follows alice, each through a different
one of three federating nodes; alice's client, reading all three, lists the five once
each, verified, newest first, and marks them seen; once she mutes bob, none of them
notify (all five counted as hidden). ``murmur followers`` and ``profile show`` count
bob, and his unfollow takes him out of both.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.api import NodeClient
from client.notifications import Notification, NotificationPage, Notifier
from client.reader import Reader
from client.watch import NotificationWatch, start_cursors
from tests.client.conftest import Author
from tests.e2e.client_fixtures import Cli
from tests.e2e.fedproc import Cluster, post_events

#: Hang guard only: the nodes sync every second (FAST_FEDERATION); nothing is timed.
DEADLINE_S = 60
NODES = ("n1", "n2", "n3")


def _home(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, urls: list[str]) -> Cli:
    cli = Cli(tmp_path / name, capsys)
    for url in urls:
        cli.json("nodes", "add", url)
    cli.json("id", "new", name, "--no-encrypt", "--recovery-out", str(tmp_path / "offline"))
    return cli


def _holds(url: str, ids: list[str]) -> bool:
    r = httpx.get(f"{url}/v1/events", params={"ids": ",".join(ids)}, timeout=10)
    r.raise_for_status()
    return {e["id"] for e in r.json()["events"]} >= set(ids)


def _node_notified(url: str, did: str) -> set[str]:
    r = httpx.get(f"{url}/v1/notifications", params={"did": did}, timeout=10)
    r.raise_for_status()
    return {n["event"]["id"] for n in r.json()["notifications"]}


def test_five_notifications_from_three_nodes_once_each_then_muted(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #16 done-when; spec 0007 #notifications, #merged-pages,
    #notifications-seen, 0006 (a muted author does not notify)."""
    for name in NODES:
        cluster.start(name, peers=[cluster.url(n) for n in NODES if n != name])
    urls = [cluster.url(n) for n in NODES]
    alice = _home(tmp_path, capsys, "alice", urls)
    bob = _home(tmp_path, capsys, "bob", urls)
    alice_did = alice.json("id", "show")["did"]
    bob_did = bob.json("id", "show")["did"]
    bob.json("profile", "set", "--name", "bob")
    hello = alice.post("alice", "hello, I am alice")

    def by(node: int, *argv: str) -> str:
        doc = bob.json("--node", urls[node], *argv)
        eid: str = doc["id"]
        return eid

    cluster.wait_until(lambda: all(_holds(u, [hello]) for u in urls), "alice's post everywhere")
    acts = {
        "mention": by(0, "post", f"hey @{alice_did}, welcome"),
        "reply": by(1, "post", "nice to meet you", "--reply-to", hello),
        "like": by(2, "like", hello),
        "quote": by(0, "post", "look who is here", "--quote", hello),
        "follow": by(1, "follow", alice_did),
    }
    ids = list(acts.values())
    cluster.wait_until(
        lambda: all(_node_notified(u, alice_did) >= set(ids) for u in urls),
        "every node notifying alice of all five",
        DEADLINE_S,
    )

    doc = alice.json("notifications")
    got = [(n["reason"], n["id"]) for n in doc["notifications"]]
    assert got == [(r, acts[r]) for r in ("follow", "quote", "like", "reply", "mention")]
    assert all(n["event"]["author"] == bob_did and n["unread"] for n in doc["notifications"])
    assert [n["event"]["ts"] for n in doc["notifications"]] == sorted(
        (n["event"]["ts"] for n in doc["notifications"]), reverse=True
    )
    subjects = {n["reason"]: (n["subject"] or {}).get("id") for n in doc["notifications"]}
    assert subjects == {r: hello for r in ("reply", "like", "quote")} | {
        "mention": None,
        "follow": None,
    }
    assert doc["cursor"] is None and doc["moderation"]["hidden"] == []
    assert all(n["ok"] and not n["invalid"] for n in doc["nodes"])

    # Seen: a second read shows them again, none unread; --unread shows nothing.
    again = alice.json("notifications")
    assert [n["id"] for n in again["notifications"]] == [i for _, i in got]
    assert not any(n["unread"] for n in again["notifications"])
    assert alice.json("notifications", "--unread")["notifications"] == []
    text = alice.ok("notifications", "--limit", "2")
    assert "~bob followed you" in text and "~bob quoted you" in text
    assert "more: murmur notifications --limit 2 --cursor " in text
    cursor = text.split("--cursor ", 1)[1].split()[0]
    rest = alice.json("notifications", "--cursor", cursor)
    assert [n["id"] for n in rest["notifications"]] == [i for _, i in got[2:]]

    # Followers and the profile's counts.
    followers = alice.json("followers")
    assert [f["did"] for f in followers["followers"]] == [bob_did]
    assert followers["followers"][0]["id"] == acts["follow"]
    profile = bob.json("profile", "show", alice_did)
    assert profile["stats"]["followers"] == 1 and profile["stats"]["followers_complete"]
    assert bob.json("profile", "show")["stats"]["following"] == 1

    # Alice mutes bob: none of the five notifies; they are counted as hidden.
    alice.json("filters", "add", "mute-authors", "--param", f"dids={bob_did}")
    muted = alice.json("notifications")
    assert muted["notifications"] == []
    assert sorted(h["id"] for h in muted["moderation"]["hidden"]) == sorted(ids)
    assert "5 notification(s) hidden by your filters" in alice.ok("notifications")

    # Bob unfollows (on node 3): his follow is stale everywhere, even unmuted.
    bob.json("--node", urls[2], "unfollow", alice_did)
    cluster.wait_until(
        lambda: all(acts["follow"] not in _node_notified(u, alice_did) for u in urls),
        "the unfollow on every node",
        DEADLINE_S,
    )
    unmuted: Any = alice.json("notifications", "--no-filters")
    assert [n["reason"] for n in unmuted["notifications"]] == ["quote", "like", "reply", "mention"]
    assert alice.json("followers")["followers"] == []


async def test_watch_shows_each_new_notification_once_as_it_arrives(cluster: Cluster) -> None:
    """spec 0007 #notifications-watch: a real node's stream, from the cursor read
    before the first page; only events that concern alice, each once, verified;
    what the first page showed is not shown again."""
    cluster.start("n1")
    url = cluster.url("n1")
    alice, bob = Author.new(), Author.new()
    hello = alice.post("hello")
    before = bob.sign("like", {"target": hello.id})
    assert len(await asyncio.to_thread(post_events, url, [hello, before])) == 2
    async with httpx.AsyncClient() as http:
        nodes = [NodeClient(url, http, timeout=10)]
        starts = await start_cursors(nodes)
        first = await Notifier(Reader(nodes), alice.did).page(limit=10)
        assert [n.event.id for n in first.shown] == [before.id]
        got: list[Notification] = []

        async def on_new(new: list[Notification], page: NotificationPage) -> None:
            got.extend(new)

        watcher = NotificationWatch(
            nodes,
            alice.did,
            lambda keep: Notifier(Reader(nodes), alice.did, keep=keep),
            on_new,
            net="murmur",
            shown={before.id},
            max_new=2,
        )
        task = asyncio.create_task(watcher.run(starts))
        await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
        own = bob.post("bob's own thoughts")
        liked_own = alice.sign("like", {"target": own.id})
        reply = bob.post("hi alice", reply={"root": hello.id, "parent": hello.id})
        follow = bob.sign("follow", {"subject": alice.did})
        await asyncio.to_thread(post_events, url, [own, liked_own, reply, follow])
        await asyncio.wait_for(task, DEADLINE_S)
    assert sorted((n.reason, n.event.id) for n in got) == sorted(
        [("reply", reply.id), ("follow", follow.id)]
    )


def test_cli_watch_prints_the_page_then_new_ones_as_json_lines(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #notifications-watch: ``murmur notifications --watch --json`` prints
    the page as one JSON line, then one line per new notification."""
    cluster.start("n1")
    urls = [cluster.url("n1")]
    alice = _home(tmp_path, capsys, "alice", urls)
    bob = _home(tmp_path, capsys, "bob", urls)
    alice_did = alice.json("id", "show")["did"]
    hello = alice.post("alice", "hello")
    argv = ["--home", str(alice.home), "notifications", "--watch", "--exit-after", "1", "--json"]
    watch = subprocess.Popen(  # a real murmur process: its stdout is its own
        [sys.executable, "-c", "import sys; from client.cli.main import main; sys.exit(main())",
         *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    replies = []
    try:
        for _ in range(DEADLINE_S):  # the watch starts at some point: reply until it sees one
            replies.append(bob.json("post", "hi", "--reply-to", hello)["id"])
            try:
                watch.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        out, err = watch.communicate(timeout=DEADLINE_S)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    first, *new = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert first["did"] == alice_did
    assert len(new) == 1 and new[0]["notification"]["reason"] == "reply"
    assert new[0]["notification"]["id"] in replies
    assert new[0]["notification"]["id"] not in {n["id"] for n in first["notifications"]}
