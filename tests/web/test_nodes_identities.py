"""The nodes, identities and notifications pages of ``murmur web`` over fake nodes
(issue #17 point 2; spec 0007 #web-nodes, #web-identities, #web-passphrase,
#web-notifications), and every POST they take: refused without a same-origin
``Origin`` and the CSRF token, a bad input answered with a clear error that keeps what
was typed, nothing stored by a refused request."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
import urllib.parse
from html import unescape
from pathlib import Path
from typing import Any

import httpx
from aiohttp import FormData, StreamReader

from client.config import ClientConfig
from client.keyops import parse_recovery_key
from client.keystore import Keystore
from client.notify_state import SeenState
from client.ownchain import OwnChain
from protocol import kinds
from protocol.events import decode_unverified
from tests.client.conftest import Net, event_json
from tests.web.inproc import StreamingNode, Web, new_author, serve


async def _post(w: Web, path: str, data: dict[str, str] | FormData, **kw: Any) -> tuple[int, str]:
    token = await w.csrf()
    if isinstance(data, dict):
        data = {**data, "csrf": token}
    else:
        data.add_field("csrf", token)
    r = await w.client.post(
        path, data=data, headers={"Origin": w.origin}, allow_redirects=False, **kw
    )
    return r.status, await r.text()


def _error_code(html: str) -> str | None:
    m = re.search(r'data-testid="form-error" data-code="([^"]+)"', html)
    return None if m is None else m.group(1)


class HealthNode(StreamingNode):
    """A fake node with ``/health`` and a fuller ``/v1/info`` (spec 0004 #info)."""

    def __init__(self, url: str, node_id: str) -> None:
        super().__init__(url)
        self.node_id = node_id

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/v1/info":
            return httpx.Response(
                200,
                json={
                    "version": "9.9.9-test",
                    "node_id": self.node_id,
                    "network": "murmur",
                    "counts": {"events": len(self.wires)},
                    "cursor": len(self.log),
                },
            )
        return await super().handle(request)


# -- nodes ---------------------------------------------------------------------------------


async def test_nodes_page_names_the_node_that_withheld_an_event(tmp_path: Path) -> None:
    """spec 0007 #web-nodes: after a timeline read where node b did not serve a post
    node a served (verified), the nodes page names b, the post's author and seq; and
    each node's health: reachable, version, node id; a down node is unreachable."""
    net = Net()
    a, b = HealthNode("http://a.test", "node-a-id"), HealthNode("http://b.test", "node-b-id")
    net.nodes.update({a.url: a, b.url: b})
    down = net.node("down")
    down.down = True
    bob = new_author()
    async with serve(tmp_path / "home", net, [a, b, down]) as w:
        follow = w.me.sign("follow", {"subject": bob.did})
        first, kept = bob.post("first"), bob.post("the one b keeps back")
        a.add(follow, first, kept)
        b.add(follow, first, kept)
        b.feed_hidden.add(kept.id)
        b.hidden.add(kept.id)
        await w.login()
        html = await w.page("/nodes")
        assert 'data-testid="withheld-event"' not in html  # nothing read yet
        timeline = await w.page("/")
        assert kept.id_hex in timeline
        html = await w.page("/nodes")
    sections = dict(re.findall(r'data-testid="node" data-url="([^"]+)"(.*?)</section>', html, re.S))
    assert set(sections) == {a.url, b.url, down.url}
    withheld = re.findall(r'data-testid="withheld-event" data-id="([0-9a-f]{64})"', sections[b.url])
    assert withheld == [kept.id_hex]
    assert "Withheld 1 event(s)" in sections[b.url] and "seq 2" in sections[b.url]
    assert "seen reading <code>/</code>" in sections[b.url]
    assert 'data-testid="withheld-event"' not in sections[a.url]
    assert 'data-state="healthy"' in sections[a.url]
    assert "9.9.9-test" in sections[a.url] and "node-a-id" in sections[a.url]
    assert 'data-state="unreachable"' in sections[down.url]
    assert 'data-code="node-unreachable"' in sections[down.url]


async def test_nodes_add_and_remove_with_the_cli_rules(tmp_path: Path) -> None:
    """spec 0007 #node-url: the page adds and removes nodes in config.toml as ``murmur
    nodes add|remove`` does; a bare word is refused with the error and what was typed
    kept; nothing changes without the CSRF token and a same-origin Origin."""
    net = Net()
    a = net.node("a")
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        await w.login()
        status, html = await _post(w, "/nodes/add", {"url": "notaurl"})
        assert status == 400 and _error_code(html) == "bad-request"
        assert 'value="notaurl"' in html
        assert ClientConfig.load(home).nodes == [a.url]
        status, _ = await _post(w, "/nodes/add", {"url": "127.0.0.1:8799/"})
        assert status == 303
        assert ClientConfig.load(home).nodes == [a.url, "http://127.0.0.1:8799"]
        html = await w.page("/nodes?added=http://127.0.0.1:8799")
        assert 'data-url="http://127.0.0.1:8799"' in html
        # Refused: no CSRF token; a foreign Origin.
        r = await w.client.post("/nodes/remove", data={"url": a.url}, headers={"Origin": w.origin})
        assert r.status == 403
        token = await w.csrf()
        r = await w.client.post(
            "/nodes/remove",
            data={"url": a.url, "csrf": token},
            headers={"Origin": "http://evil.test"},
        )
        assert r.status == 403
        assert a.url in ClientConfig.load(home).nodes
        status, html = await _post(w, "/nodes/remove", {"url": "http://not-there.test"})
        assert status == 400 and _error_code(html) == "bad-request"
        status, _ = await _post(w, "/nodes/remove", {"url": a.url})
        assert status == 303
        assert ClientConfig.load(home).nodes == ["http://127.0.0.1:8799"]


# -- identities -----------------------------------------------------------------------------


def _recovery(html: str) -> tuple[str, str, str]:
    """The new did, the shown phrase and the ticket of a recovery page."""
    did = re.search(r'data-testid="new-did">([^<]+)<', html)
    phrase = re.search(r'data-testid="recovery-phrase">([0-9a-f ]+)<', html)
    ticket = re.search(r'name="ticket" value="([^"]+)"', html)
    assert did and phrase and ticket, html
    return did.group(1), phrase.group(1), ticket.group(1)


async def test_new_identity_shows_the_recovery_key_once_and_stores_only_after(
    tmp_path: Path,
) -> None:
    """spec 0007 #web-identities, #recovery-shown-first: the recovery key is shown
    once (phrase and download, no-store), nothing is stored until the owner confirms,
    the key works for a recovery, and it is in no file of the home."""
    net = Net()
    a = net.node("a")
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        await w.login()
        status, html = await _post(w, "/identities/new", {"name": "Bad Name!"})
        assert status == 400 and _error_code(html) == "keystore-error"
        assert 'value="Bad Name!"' in html
        status, html = await _post(w, "/identities/new", {"name": "me"})
        assert status == 400 and _error_code(html) == "identity-exists"

        r = await w.client.post(
            "/identities/new",
            data={"name": "rosa", "recovery_keys": "1", "csrf": await w.csrf()},
            headers={"Origin": w.origin},
        )
        html = await r.text()
        assert r.status == 200, html
        assert r.headers["Cache-Control"] == "no-store"
        did, phrase, ticket = _recovery(html)
        assert "Keep each recovery key OFFLINE" in html
        href = re.search(r'href="(data:text/plain[^"]+)" download="rosa-recovery-0.key"', html)
        assert href is not None
        file_text = urllib.parse.unquote(unescape(href.group(1)).split(",", 1)[1])
        assert tomllib.loads(file_text)["did"] == did
        assert not Keystore(home).exists("rosa")  # nothing stored before the confirmation

        # Confirming without "saved", or with passphrases that differ: refused, nothing
        # stored, and the key is not shown again.
        status, html = await _post(
            w, "/identities/new/confirm", {"ticket": ticket, "passphrase": "x", "passphrase2": "x"}
        )
        assert status == 400 and _error_code(html) == "bad-request"
        assert phrase not in html and 'data-testid="recovery-not-again"' in html
        status, html = await _post(
            w,
            "/identities/new/confirm",
            {"ticket": ticket, "saved": "1", "passphrase": "one", "passphrase2": "two"},
        )
        assert status == 400 and _error_code(html) == "bad-passphrase"
        assert not Keystore(home).exists("rosa")

        r = await w.client.post(
            "/identities/new/confirm",
            data={
                "ticket": ticket,
                "saved": "1",
                "passphrase": "correct horse",
                "passphrase2": "correct horse",
                "csrf": await w.csrf(),
            },
            headers={"Origin": w.origin},
        )
        html = await r.text()
        assert r.status == 200, html
        assert r.headers["Cache-Control"] == "no-store"
        assert phrase not in html and "Stored on 1 of 1 node(s)" in html
        stored = Keystore(home).get("rosa")
        assert stored.did == did and stored.rotatable and stored.sealed
        genesis = decode_unverified(next(iter(a.wires.values())), allow_v2=True)
        assert genesis.author == did and genesis.kind == kinds.GENESIS
        # The ticket is spent: a second confirmation stores nothing more.
        status, html = await _post(w, "/identities/new/confirm", {"ticket": ticket, "saved": "1"})
        assert status == 400
        # The key is the identity's recovery key, and it is stored nowhere in the home.
        parse_recovery_key(phrase, did)
        seed_hex = phrase.replace(" ", "")
        for path in home.rglob("*"):
            if path.is_file():
                assert seed_hex not in path.read_text(errors="replace")
        listing = await w.page("/identities")
        assert phrase not in listing
        assert re.search(r'data-testid="identity" data-name="rosa"', listing)


async def test_identity_rotation_and_recovery_from_the_page(tmp_path: Path) -> None:
    """spec 0007 #web-identities, #web-passphrase: rotate with the passphrase typed in
    the form (wrong: refused, nothing signed), then recover with the recovery key file
    uploaded; each signed event is sent to the node."""
    net = Net()
    a = net.node("a")
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        await w.login()
        _, html = await _post(w, "/identities/new", {"name": "rosa"})
        did, _, ticket = _recovery(html)
        href = re.search(r'href="(data:text/plain[^"]+)"', html)
        assert href is not None
        file_text = urllib.parse.unquote(unescape(href.group(1)).split(",", 1)[1])
        status, _ = await _post(
            w,
            "/identities/new/confirm",
            {"ticket": ticket, "saved": "1", "passphrase": "pw1", "passphrase2": "pw1"},
        )
        assert status == 200
        chain = OwnChain(home, did)
        head = chain.head().seq

        status, html = await _post(w, "/identities/rotate", {"name": "rosa", "passphrase": "no"})
        assert status == 400 and _error_code(html) == "bad-passphrase"
        assert chain.head().seq == head
        status, html = await _post(w, "/identities/rotate", {"name": "me", "passphrase": "x"})
        assert status == 400 and "did:key" in html

        status, html = await _post(w, "/identities/rotate", {"name": "rosa", "passphrase": "pw1"})
        assert status == 200, html
        m = re.search(r'data-kind="rotate" data-id="([0-9a-f]{64})"', html)
        assert m is not None and bytes.fromhex(m.group(1)) in a.wires
        assert "Stored on 1 of 1 node(s)" in html

        # Recovery: the file uploaded, a new passphrase; a wrong key is refused first.
        bad = FormData()
        wrong = {"name": "rosa", "phrase": "00" * 32, "passphrase": "p", "passphrase2": "p"}
        for k, v in wrong.items():
            bad.add_field(k, v)
        status, html = await _post(w, "/identities/recover", bad)
        assert status == 400 and _error_code(html) == "unauthorized-key"
        form = FormData()
        form.add_field("name", "rosa")
        form.add_field("recovery_file", file_text.encode(), filename="rosa.key")
        form.add_field("passphrase", "pw2")
        form.add_field("passphrase2", "pw2")
        status, html = await _post(w, "/identities/recover", form)
        assert status == 200, html
        m = re.search(r'data-kind="recover" data-id="([0-9a-f]{64})"', html)
        assert m is not None and bytes.fromhex(m.group(1)) in a.wires
        Keystore(home).load("rosa", passphrase="pw2")  # the new keys, sealed anew


async def test_switching_the_acting_identity_and_the_home_default(tmp_path: Path) -> None:
    """spec 0007 #web-identities: "act as" changes this server's identity only; "make
    default" also the home's (what the CLI uses without --as)."""
    net = Net()
    a = net.node("a")
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        other = Keystore(home).create("zed", passphrase=None)
        await w.login()
        status, _ = await _post(w, "/identities/use", {"name": "zed"})
        assert status == 303
        html = await w.page("/identities")
        assert re.search(r'data-name="zed" data-acting="true" data-default="false"', html)
        assert 'data-testid="me">zed</a>' in html  # the nav names who reads, by name
        assert Keystore(home).default().name == "me"
        assert other.did[:20] in (await w.page("/identities"))
        status, _ = await _post(w, "/identities/use", {"name": "me", "default": "1"})
        status, _ = await _post(w, "/identities/use", {"name": "zed", "default": "1"})
        assert Keystore(home).default().name == "zed"
        status, html = await _post(w, "/identities/use", {"name": "nobody"})
        assert status == 400 and _error_code(html) == "identity-not-found"


# -- notifications -----------------------------------------------------------------------


class NotifyNode(HealthNode):
    """A node that lists every held post, like, repost and follow not by ``did`` as its
    notifications (a hint: the client checks each one), newest first, paged."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/notifications":
            q = request.url.params
            evs = sorted(
                (decode_unverified(w, allow_v2=True) for w in self.wires.values()),
                key=lambda e: (e.ts, e.id),
                reverse=True,
            )
            evs = [
                e
                for e in evs
                if e.author != q["did"] and e.kind in ("post", "like", "repost", "follow")
            ]
            start, size = int(q.get("before") or 0), int(q.get("limit", 50))
            page = evs[start : start + size]
            nxt = str(start + size) if len(evs) > start + size else None
            rows = [{"reason": "reply", "event": event_json(self.wires[e.id])} for e in page]
            return httpx.Response(200, json={"did": q["did"], "notifications": rows, "next": nxt})
        return await super().handle(request)


async def test_notifications_page_lists_reasons_marks_unread_and_hides_with_why(
    tmp_path: Path,
) -> None:
    """spec 0007 #web-notifications, #notifications, #notifications-seen: a reply, a
    like and a follow of the reader, each with its reason and the reader's post it is
    about; a muted word hides a reply behind a row that says why; a post that does not
    concern the reader is not listed; what a page showed is unread there and read the
    next time (the CLI's state file). Shown and hidden rows come newest first by
    ``(ts, seq, id)`` (#merged-pages): a like and a follow with the same ``ts`` are
    ordered by ``seq``, never by id (ids follow from keys drawn from a counter shared by
    the whole test run, so an order by id changed with the tests run before)."""
    net = Net()
    node = NotifyNode("http://n.test", "n-id")
    net.nodes[node.url] = node
    bob = new_author()
    filters = '[[filters]]\nname = "quiet"\ntype = "mute-words"\nparams = { words = ["spoiler"] }\n'
    home = tmp_path / "home"
    async with serve(home, net, [node], filters=filters) as w:
        mine = w.me.post("my first post")
        reply = bob.post("nice post!", reply={"root": mine.id, "parent": mine.id})
        follow = bob.sign("follow", {"subject": w.me.did})  # seq 2 at ts T
        # carol's like: seq 1 at the follow's ts T, from a key whose like's id is
        # greater than the follow's, so an order by (ts, id) would put it first.
        for _ in range(64):
            carol = new_author()
            carol.ts = follow.ts - 1000
            like = carol.sign("like", {"target": mine.id})
            if like.id > follow.id:
                break
        assert (like.ts, like.seq, follow.seq) == (follow.ts, 1, 2) and like.id > follow.id
        muted = carol.post("spoiler: it ends", reply={"root": mine.id, "parent": mine.id})
        stranger = carol.post("nothing to do with you")
        node.add(mine, reply, muted, like, follow, stranger)
        await w.login()
        html = await w.page("/notifications")
        items = re.findall(
            r'data-testid="notification" data-id="([0-9a-f]{64})" data-reason="(\w+)" '
            r'data-unread="(\w+)"',
            html,
        )
        assert items == [
            (muted.id_hex, "reply", "true"),
            (follow.id_hex, "follow", "true"),
            (like.id_hex, "like", "true"),
            (reply.id_hex, "reply", "true"),
        ]
        assert "nice post!" in html and "replied to you" in html and "liked your post" in html
        assert "nothing to do with you" not in html
        assert "spoiler: it ends" not in html
        row = re.search(rf'data-testid="hidden-item" data-id="{muted.id_hex}".*?</div>', html, re.S)
        assert row is not None and 'muted word "spoiler"' in unescape(row.group(0))
        assert "my first post" in html  # the subject: the reader's own post
        seen = SeenState.load(home, w.me.did)
        assert not seen.unread(reply) and not seen.unread(muted)
        again = await w.page("/notifications")
        assert 'data-unread="true"' not in again
        assert 'data-testid="empty"' in await w.page("/notifications?unread=1")
        status = (await w.client.get("/notifications?cursor=not-a-cursor")).status
        assert status == 400


async def test_new_notifications_are_announced_live(tmp_path: Path) -> None:
    """spec 0007 #web-notifications, #notifications-watch: the page's live stream, from
    the cursors read with the page, announces a new reply (verified, concerning the
    reader, shown by the filters) and never one the filters hide."""
    net = Net()
    node = NotifyNode("http://n.test", "n-id")
    net.nodes[node.url] = node
    bob = new_author()
    filters = '[[filters]]\nname = "quiet"\ntype = "mute-words"\nparams = { words = ["spoiler"] }\n'
    async with serve(tmp_path / "home", net, [node], filters=filters) as w:
        mine = w.me.post("my post")
        await node.publish(mine)
        await w.login()
        html = await w.page("/notifications")
        live = re.search(r'data-testid="live" data-from="([^"]*)" data-seen="([^"]*)"', html)
        assert live is not None
        from_ = unescape(live.group(1))
        assert json.loads(from_) == {node.url: 1}
        r = await w.client.get("/live/notifications", params={"from": from_, "seen": ""})
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        async with asyncio.timeout(30):  # a hang guard: nothing here is timed
            await _next_event(r.content, "ready")
            hidden = bob.post("spoiler inside", reply={"root": mine.id, "parent": mine.id})
            fresh = bob.post("welcome!", reply={"root": mine.id, "parent": mine.id})
            await node.publish(hidden)
            await node.publish(fresh)
            doc = await _next_event(r.content, "notifications")
        assert doc == {"ids": [fresh.id_hex]}
        r.close()


async def _next_event(stream: StreamReader, name: str) -> dict[str, object]:
    """The next SSE message called ``name`` (comments and others skipped)."""
    while True:
        frame = (await stream.readuntil(b"\n\n")).decode()
        lines = dict(line.split(": ", 1) for line in frame.strip().splitlines() if ": " in line)
        if lines.get("event") == name:
            doc: dict[str, object] = json.loads(lines["data"])
            return doc
