"""Compose in ``murmur web``, in-process over fake nodes (spec 0007 #web-compose,
#web-passphrase, #web-security): post, reply and quote with short ids, content
warnings and languages, like/unlike, repost/unrepost, delete your own after a
confirmation, a failing post that keeps its draft, a sealed key, CSRF refusals.
Every action goes through :mod:`client.actions`, as ``murmur post|like|...`` does."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from client.keystore import Keystore
from client.web.context import WEB
from protocol.events import Event, decode_unverified
from tests.client.conftest import FakeNode, Net, event_json
from tests.web.inproc import Web, new_author, serve

pytestmark = pytest.mark.asyncio


@pytest.fixture
def net() -> Net:
    return Net()


class PrefixNode(FakeNode):
    """A fake node that also resolves short ids (spec 0004 #events-by-prefix)."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        prefix = request.url.params.get("id_prefix")
        if request.url.path == "/v1/events" and prefix:
            found = [w for i, w in self.wires.items() if i.hex().startswith(prefix)]
            return httpx.Response(200, json={"events": [event_json(w) for w in found]})
        return await super().handle(request)


@pytest.fixture
def node(net: Net) -> FakeNode:
    net.nodes["http://a.test"] = PrefixNode("http://a.test")
    return net.nodes["http://a.test"]


@pytest.fixture
async def web(tmp_path: Path, net: Net, node: FakeNode) -> AsyncIterator[Web]:
    async with serve(tmp_path / "home", net, [node]) as w:
        await w.login()
        yield w


def signed(node: FakeNode, did: str, kind: str) -> list[Event]:
    """What ``did`` submitted to ``node`` of ``kind``, in order."""
    events = [decode_unverified(w, allow_v2=True) for w in node.submitted]
    return [e for e in events if e.author == did and e.kind == kind]


async def post(web: Web, path: str, form: dict[str, str]) -> tuple[int, str, str]:
    """A same-origin POST with the session's CSRF token; (status, Location, body)."""
    csrf = await web.csrf("/compose")
    r = await web.client.post(
        path, data={"csrf": csrf, **form}, headers={"Origin": web.origin}, allow_redirects=False
    )
    return r.status, r.headers.get("Location", ""), await r.text()


async def outcome(web: Web, location: str) -> str:
    assert location.startswith("/done/"), location
    return await web.page(location)


def textarea(page: str) -> str:
    m = re.search(r'<textarea id="compose-text"[^>]*>(.*?)</textarea>', page, re.S)
    assert m is not None, page
    return htmllib.unescape(m.group(1))


def error_code(page: str) -> str | None:
    m = re.search(r'data-testid="error" data-code="([^"]+)"', page)
    return None if m is None else m.group(1)


async def test_a_post_with_warning_and_language_is_signed_and_published(
    web: Web, node: FakeNode
) -> None:
    """spec 0007 #web-compose: the form's text, content warning and language become the
    post's body (facets too), signed by the acting identity; the done page says where
    it was stored and links to it."""
    page = await web.page("/compose")
    assert 'for="compose-text"' in page and 'data-testid="compose-submit"' in page
    assert 'data-testid="passphrase"' not in page  # an unencrypted key needs none
    status, location, _ = await post(
        web,
        "/compose",
        {"text": "Hello from the web #murmur", "warn": "spoiler, test", "lang": "en pt-BR"},
    )
    assert status == 303
    done = await outcome(web, location)
    (mine,) = signed(node, web.me.did, "post")
    assert mine.body is not None
    assert mine.body["text"] == "Hello from the web #murmur"
    assert mine.body["warn"] == ["spoiler", "test"] and mine.body["langs"] == ["en", "pt-BR"]
    assert mine.body["tags"] == ["murmur"]
    assert f'data-id="{mine.id_hex}"' in done and "stored on 1 of 1 node(s)" in done
    assert f'href="/thread/{mine.id_hex}"' in done
    assert (await web.client.get(location)).status == 200  # a reload signs nothing
    assert len(signed(node, web.me.did, "post")) == 1


async def test_reply_and_quote_take_short_ids(web: Web, node: FakeNode) -> None:
    """spec 0007 #short-ids, #empty-post: a reply names the thread's root and its
    parent, a quote may leave its text empty; ids as the pages print them (12 hex)."""
    bob = new_author()
    root = bob.post("root post")
    child = bob.post("a reply", reply={"root": root.id, "parent": root.id})
    node.add(root, child)
    page = await web.page(f"/compose?reply={child.id_hex[:12]}")
    assert 'name="reply_to" value="' + child.id_hex[:12] in page
    status, location, _ = await post(
        web, "/compose", {"text": "me too", "reply_to": child.id_hex[:12]}
    )
    assert status == 303, location
    status, location, _ = await post(web, "/compose", {"text": "", "quote": root.id_hex[:10]})
    assert status == 303
    reply, quote = signed(node, web.me.did, "post")
    assert reply.body is not None and quote.body is not None
    assert reply.body["reply"] == {"root": root.id, "parent": child.id}
    assert quote.body["quote"] == root.id and quote.body["text"] == ""


async def test_an_empty_post_is_refused_with_its_code(web: Web, node: FakeNode) -> None:
    """spec 0007 #empty-post: only a quote may be empty; the form comes back with the
    code, and nothing is signed."""
    status, _, page = await post(web, "/compose", {"text": "  \u200b ", "warn": "spoiler"})
    assert status == 400
    assert error_code(page) == "bad-request" and "empty-post" in page
    assert 'value="spoiler"' in page  # the rest of the form is kept too
    assert signed(node, web.me.did, "post") == []


async def test_a_failing_post_keeps_its_draft_until_it_goes_out(web: Web, node: FakeNode) -> None:
    """spec 0007 #web-compose: when no node takes the post, the form comes back with
    the text and the error's code; a reload of /compose gives the draft back; once
    the post goes out the draft is gone."""
    node.down = True
    text = "this must not be lost <b>&amp;</b>"
    status, _, page = await post(web, "/compose", {"text": text, "lang": "en"})
    assert status >= 400
    assert error_code(page) == "node-unreachable"
    assert textarea(page) == text
    again = await web.page("/compose")  # a reload, or another tab
    assert textarea(again) == text and 'value="en"' in again
    node.down = False
    status, location, _ = await post(web, "/compose", {"text": text, "lang": "en"})
    assert status == 303, location
    assert [e.body["text"] for e in signed(node, web.me.did, "post") if e.body] == [text]
    assert textarea(await web.page("/compose")) == ""


async def test_save_draft_keeps_it_per_reply_target(web: Web, node: FakeNode) -> None:
    """A draft is kept per reply target: the reply form of one post does not show the
    text saved for another, and nothing is signed by saving."""
    bob = new_author()
    one, two = bob.post("one"), bob.post("two")
    node.add(one, two)
    status, location, _ = await post(
        web, "/compose", {"text": "half a reply", "reply_to": one.id_hex, "save": "1"}
    )
    assert status == 303 and "saved=1" in location
    assert textarea(await web.page(f"/compose?reply={one.id_hex}")) == "half a reply"
    assert textarea(await web.page(f"/compose?reply={two.id_hex}")) == ""
    assert textarea(await web.page("/compose")) == ""
    assert node.submitted == []


async def test_like_unlike_repost_unrepost_once_each(web: Web, node: FakeNode) -> None:
    """spec 0007 #no-duplicates: like and repost are state: a second one signs nothing
    and says so; unlike/unrepost delete the reader's own like or repost."""
    bob = new_author()
    target = bob.post("like me")
    node.add(target)
    short = target.id_hex[:12]
    for kind in ("like", "repost", "unlike", "unrepost"):
        status, location, page = await post(web, "/act", {"kind": kind, "id": short, "next": "/"})
        assert status == 303, page
        done = await outcome(web, location)
        assert 'data-changed="true"' in done, (kind, done)
    likes = signed(node, web.me.did, "like")
    reposts = signed(node, web.me.did, "repost")
    deletes = signed(node, web.me.did, "delete")
    assert len(likes) == 1 and len(reposts) == 1
    assert [d.body["target"] for d in deletes if d.body] == [likes[0].id, reposts[0].id]
    assert f"Unreposted {short}: deleted" in done


async def test_a_second_like_says_nothing_was_signed(web: Web, node: FakeNode) -> None:
    bob = new_author()
    target = bob.post("like me")
    node.add(target)
    for _ in range(2):
        status, location, _ = await post(web, "/act", {"kind": "like", "id": target.id_hex})
        assert status == 303
    done = await outcome(web, location)
    assert 'data-changed="false"' in done and "You already like" in done
    assert "nothing was signed" in done
    status, location, _ = await post(web, "/act", {"kind": "unrepost", "id": target.id_hex})
    assert "You have not reposted" in await outcome(web, location)
    assert len(signed(node, web.me.did, "like")) == 1


async def test_delete_your_own_after_a_confirmation(web: Web, node: FakeNode) -> None:
    """A delete is confirmed first (GET /delete/ID, or the action without confirm=1:
    nothing signed); another author's post cannot be deleted (not-author)."""
    status, location, _ = await post(web, "/compose", {"text": "regrettable"})
    (mine,) = signed(node, web.me.did, "post")
    thread = await web.page(f"/thread/{mine.id_hex}")
    assert f'href="/delete/{mine.id_hex}' in thread  # own post: a Delete link
    confirm = await web.page(f"/delete/{mine.id_hex}")
    assert 'data-testid="confirm-delete"' in confirm and 'name="confirm" value="1"' in confirm
    status, _, page = await post(web, "/act", {"kind": "delete", "id": mine.id_hex})
    assert status == 200 and 'data-testid="confirm-delete"' in page
    assert signed(node, web.me.did, "delete") == []
    status, location, _ = await post(
        web, "/act", {"kind": "delete", "id": mine.id_hex[:12], "confirm": "1"}
    )
    assert status == 303
    assert "Deleted" in await outcome(web, location)
    (gone,) = signed(node, web.me.did, "delete")
    assert gone.body is not None and gone.body["target"] == mine.id

    bob = new_author()
    theirs = bob.post("not yours")
    node.add(theirs)
    thread = await web.page(f"/thread/{theirs.id_hex}")
    assert 'data-testid="action-like"' in thread and f"/delete/{theirs.id_hex}" not in thread
    status, _, page = await post(
        web, "/act", {"kind": "delete", "id": theirs.id_hex, "confirm": "1"}
    )
    assert status == 403 and error_code(page) == "not-author"
    assert len(signed(node, web.me.did, "delete")) == 1


async def test_compose_and_act_refuse_cross_site_requests(web: Web, node: FakeNode) -> None:
    """spec 0007 #web-security: a post or a like needs the session's CSRF token and a
    same-origin Origin; refused ones sign nothing."""
    bob = new_author()
    target = bob.post("x")
    node.add(target)
    csrf = await web.csrf("/compose")
    forms = [
        ("/compose", {"text": "forged"}),
        ("/act", {"kind": "like", "id": target.id_hex}),
    ]
    for path, form in forms:
        for headers, token in (
            ({"Origin": web.origin}, {}),
            ({"Origin": web.origin}, {"csrf": "wrong"}),
            ({"Origin": "http://evil.example"}, {"csrf": csrf}),
            ({}, {"csrf": csrf}),
        ):
            r = await web.client.post(path, data={**form, **token}, headers=headers)
            assert r.status == 403, (path, headers, token)
    assert node.submitted == []


async def test_a_sealed_key_is_unsealed_with_the_typed_passphrase(
    tmp_path: Path, net: Net, node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec 0007 #web-passphrase: with a sealed key and no server source, the form has
    a passphrase field; without it or with a wrong one the post is refused
    (bad-passphrase) and its draft kept; with it, it is signed."""
    monkeypatch.delenv("MURMUR_PASSPHRASE", raising=False)
    async with serve(tmp_path / "home", net, [node]) as w:
        await w.login()
        sealed = Keystore(tmp_path / "home").create("locked", passphrase="correct horse")
        app = w.client.app
        assert app is not None
        app[WEB].reads.as_name = "locked"
        page = await w.page("/compose")
        assert 'data-testid="passphrase"' in page and 'type="password"' in page
        for typed in ("", "wrong"):
            status, _, page = await post(w, "/compose", {"text": "sealed", "passphrase": typed})
            assert status == 400 and error_code(page) == "bad-passphrase"
            assert textarea(page) == "sealed" and "correct horse" not in page
        status, location, _ = await post(
            w, "/compose", {"text": "sealed", "passphrase": "correct horse"}
        )
        assert status == 303, location
        assert [e.body["text"] for e in signed(node, sealed.did, "post") if e.body] == ["sealed"]
        monkeypatch.setenv("MURMUR_PASSPHRASE", "correct horse")  # the server's source
        assert 'data-testid="passphrase"' not in await w.page("/compose")
        status, location, _ = await post(w, "/compose", {"text": "no typing"})
        assert status == 303, location
        assert len(signed(node, sealed.did, "post")) == 2


# -- one control per state, follow from the author page (spec 0007 #web-own-state) ----------


def controls(page: str, eid: str) -> set[str]:
    """The action buttons under the post ``eid`` (its ``post-actions`` block)."""
    m = re.search(rf'data-testid="post-actions" data-id="{eid}">(.*?)</div>', page, re.S)
    assert m is not None, page
    return set(re.findall(r'data-testid="action-([a-z]+)"', m.group(1)))


async def test_a_post_offers_like_or_unlike_from_your_own_acts(web: Web, node: FakeNode) -> None:
    """spec 0007 #web-own-state: each post shows Like or Unlike and Repost or Unrepost,
    from the reader's standing likes and reposts (their nodes), on every page."""
    bob = new_author()
    target = bob.post("like me")
    node.add(target)
    pages = (f"/thread/{target.id_hex}", f"/author/{bob.did}")
    for path in pages:
        assert {"like", "repost"} <= controls(await web.page(path), target.id_hex)
        assert not {"unlike", "unrepost"} & controls(await web.page(path), target.id_hex)
    status, _, _ = await post(web, "/act", {"kind": "like", "id": target.id_hex})
    assert status == 303
    for path in pages:
        shown = controls(await web.page(path), target.id_hex)
        assert "unlike" in shown and "like" not in shown, (path, shown)
        assert "repost" in shown and "unrepost" not in shown, (path, shown)
    status, _, _ = await post(web, "/act", {"kind": "repost", "id": target.id_hex})
    status, _, _ = await post(web, "/act", {"kind": "unlike", "id": target.id_hex})
    shown = controls(await web.page(f"/thread/{target.id_hex}"), target.id_hex)
    assert shown >= {"like", "unrepost"} and not shown & {"unlike", "repost"}, shown


async def test_follow_then_the_author_page_offers_unfollow(web: Web, node: FakeNode) -> None:
    """spec 0007 #web-own-state: the author page follows and unfollows (with a petname,
    as murmur follow DID --alias), answers with a 303 back to itself and the outcome,
    and its button says what holds; never offered on yourself."""
    bob = new_author()
    node.add(bob.post("hello"))
    page = await web.page(f"/author/{bob.did}")
    assert 'data-testid="follow"' in page and 'data-testid="unfollow"' not in page
    status, location, _ = await post(
        web, "/follow", {"kind": "follow", "did": bob.did, "alias": "bobby"}
    )
    assert status == 303 and location.startswith(f"/author/{bob.did}?done="), location
    page = await web.page(location)
    said = re.search(r'data-testid="outcome" data-changed="([a-z]+)"[^>]*>(.*?)</p>', page)
    assert said is not None and said.group(1) == "true", page
    assert said.group(2).startswith("Followed @bobby:"), said.group(2)
    assert 'data-testid="unfollow"' in page and 'data-testid="follow"' not in page
    (follow,) = signed(node, web.me.did, "follow")
    assert follow.body is not None and follow.body["subject"] == bob.did
    assert web.client.app is not None
    assert web.client.app[WEB].reads.config.petnames.get("bobby") == bob.did
    # A second follow signs nothing and says so; the button still says Unfollow.
    status, location, _ = await post(web, "/follow", {"kind": "follow", "did": bob.did})
    page = await web.page(location)
    assert 'data-changed="false"' in page and 'data-testid="unfollow"' in page
    status, location, _ = await post(web, "/follow", {"kind": "unfollow", "did": bob.did})
    page = await web.page(location)
    assert 'data-changed="true"' in page and "Unfollowed" in page
    assert 'data-testid="follow"' in page and 'data-testid="unfollow"' not in page
    assert len(signed(node, web.me.did, "unfollow")) == 1
    mine = await web.page(f"/author/{web.me.did}")
    assert 'data-testid="follow-form"' not in mine


async def test_follow_refuses_cross_site_requests(web: Web, node: FakeNode) -> None:
    """spec 0007 #web-security: a follow needs the session's CSRF token and a
    same-origin Origin; a refused one signs nothing."""
    bob = new_author()
    csrf = await web.csrf("/compose")
    form = {"kind": "follow", "did": bob.did}
    for headers, token in (
        ({"Origin": web.origin}, {}),
        ({"Origin": web.origin}, {"csrf": "wrong"}),
        ({"Origin": "http://evil.example"}, {"csrf": csrf}),
    ):
        r = await web.client.post("/follow", data={**form, **token}, headers=headers)
        assert r.status == 403, (headers, token)
    assert node.submitted == []
    status, _, _ = await post(web, "/follow", form)  # the same form, same-origin: signed
    assert status == 303 and len(signed(node, web.me.did, "follow")) == 1
