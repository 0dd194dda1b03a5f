"""The moderation page of ``murmur web`` in-process over fake nodes (issue #17; spec
0007 #web-moderation, spec 0006 #settings-library, #mute-words-badge).

Every form is a POST with the CSRF token that answers ``303`` back to the control it
changed with a flash message, and writes ``filters.toml`` with the library calls the
CLI makes (the CLI reads what the web wrote, and the other way round); bad input is
the page again with the error's stable code and the form as sent, the file
untouched; a foreign Origin or a missing CSRF token changes nothing.
"""

from __future__ import annotations

import re
import textwrap
import time
from html import unescape
from pathlib import Path

import httpx
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestServer

from client.config import ClientConfig
from client.moderation.config import ModerationConfig
from client.web.context import WEB
from protocol.events import decode_unverified
from tests.client.conftest import FakeNode, Net, event_json
from tests.e2e.client_fixtures import Cli
from tests.web.inproc import Web, new_author, serve

QUIET = '[[filters]]\nname = "quiet"\ntype = "mute-words"\nparams = { words = ["spoiler"] }\n'


async def _post(
    w: Web, path: str, data: dict[str, str], *, csrf: str | None = None
) -> ClientResponse:
    token = csrf if csrf is not None else await w.csrf("/moderation")
    return await w.client.post(
        path,
        data={"csrf": token, **data},
        headers={"Origin": w.origin},
        allow_redirects=False,
    )


async def _done(w: Web, path: str, data: dict[str, str], anchor: str) -> str:
    """POST a form; it must redirect to ``/moderation#anchor``; the page after it."""
    r = await _post(w, path, data)
    assert r.status == 303, await r.text()
    assert r.headers["Location"] == f"/moderation#{anchor}"
    return await w.page("/moderation")


async def _refused(w: Web, path: str, data: dict[str, str], code: str) -> str:
    server = w.client.server
    assert isinstance(server, TestServer)
    app = server.app
    path_toml = app[WEB].reads.home / "filters.toml"
    before = path_toml.read_bytes() if path_toml.exists() else None
    r = await _post(w, path, data)
    html = await r.text()
    assert r.status == 400, html
    assert f'data-code="{code}"' in html, html
    after = path_toml.read_bytes() if path_toml.exists() else None
    assert after == before, "a refused change wrote the settings"
    return html


class LabelsNode(FakeNode):
    """A fake node that also serves ``GET /v1/labels?labeler=`` (spec 0004)."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/labels":
            labeler = request.url.params.get("labeler")
            rows = [
                {"event": event_json(w)}
                for w in self.wires.values()
                if (e := decode_unverified(w, allow_v2=True)).kind == "label"
                and e.author == labeler
            ]
            return httpx.Response(200, json={"labels": rows, "next": None})
        return await super().handle(request)


def _config(home: Path) -> ModerationConfig:
    return ModerationConfig.load(home)


def _hidden_row(html: str, eid: str) -> str:
    m = re.search(rf'<div class="hidden-row[^"]*"[^>]*data-id="{eid}".*?</div>', html, re.S)
    assert m is not None, f"{eid[:12]} is not a hidden row"
    return unescape(m.group(0))


async def test_filters_enable_disable_move_remove(tmp_path: Path) -> None:
    """The filter list in order, each with its anchor; enable, disable, move up and
    down, remove: each a PRG with a flash, written to filters.toml."""
    net = Net()
    a = net.node("a")
    home = tmp_path / "home"
    filters = (
        QUIET + '[[filters]]\nname = "en-only"\ntype = "languages"\nparams = { allow = ["en"] }\n'
    )
    async with serve(home, net, [a], filters=filters) as w:
        await w.login()
        html = await w.page("/moderation")
        assert html.index('data-name="quiet"') < html.index('data-name="en-only"')
        assert 'id="filter-en-only"' in html and 'id="order-quiet"' in html
        assert 'id="filter-quiet"' in html  # its words card
        html = await _done(w, "/moderation/filters/quiet/disable", {}, "order-quiet")
        assert "Disabled filter quiet." in html and 'data-testid="flash"' in html
        assert _config(home).find("quiet").enabled is False
        assert "Disabled filter quiet." not in await w.page("/moderation")  # shown once
        await _done(w, "/moderation/filters/quiet/enable", {}, "order-quiet")
        assert _config(home).find("quiet").enabled is True
        await _done(w, "/moderation/filters/quiet/down", {}, "move-quiet-down")
        assert [f.name for f in _config(home).filters] == ["en-only", "quiet"]
        await _done(w, "/moderation/filters/quiet/up", {}, "move-quiet-up")
        await _done(w, "/moderation/filters/quiet/up", {}, "move-quiet-up")  # stays first
        assert [f.name for f in _config(home).filters] == ["quiet", "en-only"]
        html = await _done(w, "/moderation/filters/en-only/remove", {}, "filters")
        assert [f.name for f in _config(home).filters] == ["quiet"]
        assert 'data-name="en-only"' not in html
        await _refused(w, "/moderation/filters/nope/disable", {}, "filter-not-found")


async def test_muting_a_word_hides_it_and_its_why_leads_to_the_control(tmp_path: Path) -> None:
    """Mute a word: the timeline hides the post behind a row naming the filter and the
    word, whose "Change this setting" is the filter's card; switching it to badge
    shows the post with the word on a badge (spec 0006 §builtins: mute-words badge);
    removing the last word removes the filter and the post shows plainly."""
    net = Net()
    a = net.node("a")
    bob = new_author()
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        post = bob.post("the ending: spoiler inside")
        a.add(w.me.sign("follow", {"subject": bob.did}), post)
        await w.login()
        page = await _done(
            w,
            "/moderation/words",
            {"words": "Spoiler", "tags": "#finale", "action": "hide"},
            "filter-mute-words",
        )
        assert 'id="filter-mute-words"' in page and "“Spoiler”" in page and "#finale" in page
        # The defaults were written out with the change (spec 0006 #default-filters).
        assert [f.name for f in _config(home).filters] == ["self-labels", "mute-words"]
        timeline = await w.page("/")
        row = _hidden_row(timeline, post.id_hex)
        assert 'muted word "Spoiler"' in row and ">mute-words</code>" in row
        assert 'href="/moderation#filter-mute-words" data-testid="why-setting"' in row
        await _done(
            w,
            "/moderation/filters/mute-words/settings",
            {"action": "badge", "for": "keep"},
            "filter-mute-words",
        )
        timeline = await w.page("/")
        assert re.search(rf'data-id="{post.id_hex}" data-state="badged"', timeline)
        badge = re.search(r'data-testid="badge">(.*?)</span>', timeline, re.S)
        assert badge is not None and 'muted word "Spoiler"' in unescape(badge.group(1))
        await _done(
            w,
            "/moderation/filters/mute-words/entries",
            {"op": "remove", "what": "word", "value": "Spoiler"},
            "filter-mute-words",
        )
        assert _config(home).find("mute-words").params["tags"] == ["finale"]
        page = await _done(
            w,
            "/moderation/filters/mute-words/entries",
            {"op": "remove", "what": "tag", "value": "finale"},
            "words",
        )
        assert "was empty, removed" in page
        assert [f.name for f in _config(home).filters] == ["self-labels"]
        timeline = await w.page("/")
        assert re.search(rf'data-id="{post.id_hex}" data-state="shown"', timeline)


async def test_muted_words_expire_and_group_by_action(tmp_path: Path) -> None:
    """An expiry is a duration or a date; words with the same action and expiry share
    a filter, others get their own; a date in the past is refused."""
    net = Net()
    home = tmp_path / "home"
    async with serve(home, net, [net.node("a")]) as w:
        await w.login()
        before = int(time.time() * 1000)
        await _done(
            w,
            "/moderation/words",
            {"words": "a, b", "action": "warn", "for": "7d"},
            "filter-mute-words",
        )
        spec = _config(home).find("mute-words")
        assert spec.params["words"] == ["a", "b"] and spec.params["action"] == "warn"
        week = 7 * 86_400_000
        assert before + week <= spec.params["expires"] <= int(time.time() * 1000) + week
        await _done(w, "/moderation/words", {"words": "c", "action": "hide"}, "filter-mute-words-2")
        await _done(w, "/moderation/words", {"words": "d", "action": "hide"}, "filter-mute-words-2")
        assert _config(home).find("mute-words-2").params["words"] == ["c", "d"]
        await _done(
            w,
            "/moderation/words",
            {"tags": "x", "action": "badge", "for": "date", "until": "2999-01-31"},
            "filter-mute-words-3",
        )
        assert _config(home).find("mute-words-3").params["action"] == "badge"
        # Its expiry changed in place to "for good".
        await _done(
            w,
            "/moderation/filters/mute-words-3/settings",
            {"action": "badge", "for": "never"},
            "filter-mute-words-3",
        )
        assert "expires" not in _config(home).find("mute-words-3").params
        html = await _refused(
            w,
            "/moderation/words",
            {"words": "kept text", "action": "hide", "for": "date", "until": "2001-01-01"},
            "bad-request",
        )
        assert "is not in the future" in html
        assert 'value="kept text"' in html  # nothing typed is lost


async def test_bad_input_is_the_page_again_with_a_code(tmp_path: Path) -> None:
    """Each form refuses what it cannot save with a stable code, keeps what was typed,
    and leaves filters.toml as it was."""
    net = Net()
    home = tmp_path / "home"
    async with serve(home, net, [net.node("a")], filters=QUIET) as w:
        await w.login()
        html = await _refused(
            w, "/moderation/words", {"words": "x", "action": "shout"}, "bad-request"
        )
        assert "action must be one of hide, warn, badge" in unescape(html)
        await _refused(w, "/moderation/words", {"words": " ", "action": "hide"}, "bad-request")
        html = await _refused(
            w, "/moderation/filters", {"type": "no-such-type", "name": "mine"}, "filter-not-found"
        )
        assert 'value="no-such-type"' in html and 'value="mine"' in html
        await _refused(w, "/moderation/filters", {"type": "./nowhere.py:X"}, "filter-load")
        await _refused(w, "/moderation/filters", {"type": "mute-words"}, "filter-load")  # no words
        await _refused(
            w,
            "/moderation/filters",
            {"type": "mute-words", "name": "quiet", "params": "words=a"},
            "filter-error",
        )
        await _refused(
            w, "/moderation/filters", {"type": "languages", "params": "allow"}, "bad-request"
        )
        await _refused(
            w, "/moderation/filters", {"type": "self-labels", "position": "first"}, "bad-request"
        )
        await _refused(w, "/moderation/accounts", {"who": "@nobody"}, "invalid-did")
        await _refused(w, "/moderation/filters/quiet/settings", {"action": "allow"}, "bad-request")
        await _refused(
            w,
            "/moderation/filters/quiet/entries",
            {"op": "remove", "what": "word", "value": "absent"},
            "filter-not-found",
        )
        await _refused(w, "/moderation/labelers", {"who": new_author().did}, "bad-request")
        await _refused(
            w,
            "/moderation/labelers/label",
            {"did": new_author().did, "val": "spam", "action": "hide"},
            "filter-not-found",
        )
        await _refused(
            w,
            "/moderation/lists",
            {"who": new_author().did, "list": "x", "action": "allow"},
            "bad-request",
        )


async def test_csrf_and_origin_refusals_change_nothing(tmp_path: Path) -> None:
    """spec 0007 #web-security: a form without the session's CSRF token, or from
    another Origin, is 403 and filters.toml is not touched."""
    net = Net()
    home = tmp_path / "home"
    async with serve(home, net, [net.node("a")], filters=QUIET) as w:
        await w.login()
        before = (home / "filters.toml").read_bytes()
        token = await w.csrf("/moderation")
        for headers, data, why in (
            ({"Origin": w.origin}, {"words": "x"}, "bad-csrf"),
            ({"Origin": w.origin}, {"words": "x", "csrf": "forged"}, "bad-csrf"),
            ({"Origin": "http://evil.example"}, {"words": "x", "csrf": token}, "cross-origin"),
            ({}, {"words": "x", "csrf": token}, "cross-origin"),
        ):
            r = await w.client.post(
                "/moderation/words", data=data, headers=headers, allow_redirects=False
            )
            assert r.status == 403 and f'data-why="{why}"' in await r.text()
            r = await w.client.post(
                "/moderation/filters/quiet/remove",
                data=data,
                headers=headers,
                allow_redirects=False,
            )
            assert r.status == 403
        assert (home / "filters.toml").read_bytes() == before


async def test_accounts_mute_block_and_names_shown_safely(tmp_path: Path) -> None:
    """Mute by @petname (warn, with an expiry), block by did; names come from the
    petname or the profile, made inert; remove an account in place."""
    net = Net()
    a = net.node("a")
    bob, eve = new_author(), new_author()
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        config = ClientConfig.load(home)
        config.set_petname("bobby", bob.did)
        config.save()
        a.add(eve.sign("profile", {"name": "<img src=x onerror=alert(1)>\u202eeve"}))
        await w.login()
        await _done(
            w,
            "/moderation/accounts",
            {"who": "@bobby", "how": "mute", "action": "warn", "for": "1d"},
            "filter-mute-authors",
        )
        spec = _config(home).find("mute-authors")
        assert spec.params["dids"] == [bob.did] and spec.params["action"] == "warn"
        page = await _done(
            w, "/moderation/accounts", {"who": eve.did, "how": "block"}, "filter-block-authors"
        )
        assert _config(home).find("block-authors").params["dids"] == [eve.did]
        assert "@bobby" in page
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "\u202e" not in page and "\\u202e" in page
        await _done(
            w,
            "/moderation/filters/block-authors/entries",
            {"op": "add", "what": "did", "value": "@bobby"},
            "filter-block-authors",
        )
        assert _config(home).find("block-authors").params["dids"] == sorted([bob.did, eve.did])
        await _done(
            w,
            "/moderation/filters/block-authors/entries",
            {"op": "remove", "what": "did", "value": eve.did},
            "filter-block-authors",
        )
        assert _config(home).find("block-authors").params["dids"] == [bob.did]


async def test_lists_and_labelers_with_a_per_label_action(tmp_path: Path) -> None:
    """Subscribe to a list (action warn) and a labeler; a label shows as a badge on the
    timeline with a link to that label's control; changing it in place to hide hides
    the post, and its why names the labeler and the label."""
    net = Net()
    a = LabelsNode("http://a.test")
    net.nodes[a.url] = a
    bob, lab, curator = new_author(), new_author(), new_author()
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        post = bob.post("a perfectly normal post")
        label = lab.sign("label", {"subject": post.id, "val": "spam"})
        a.add(w.me.sign("follow", {"subject": bob.did}), post, label)
        await w.login()
        page = await _done(
            w,
            "/moderation/lists",
            {"who": curator.did, "list": "Trolls", "action": "warn"},
            "filter-list-trolls",
        )
        spec = _config(home).find("list-trolls")
        assert spec.params == {"ref": f"{curator.did}/Trolls", "action": "warn"}
        assert 'id="filter-list-trolls"' in page
        anchor = f"label-{lab.did}-spam"
        page = await _done(
            w,
            "/moderation/labelers",
            {"who": lab.did, "labels": "spam=badge"},
            f"labeler-{lab.did}",
        )
        assert f'id="{anchor}"' in page
        timeline = await w.page("/")
        assert re.search(rf'data-id="{post.id_hex}" data-state="badged"', timeline)
        badge = re.search(r'data-testid="badge">(.*?)</span>', timeline, re.S)
        assert badge is not None and 'labeled "spam"' in unescape(badge.group(1))
        assert f'href="/moderation#{anchor}"' in badge.group(1)
        await _done(
            w,
            "/moderation/labelers/label",
            {"did": lab.did, "val": "spam", "action": "hide"},
            anchor,
        )
        assert _config(home).labeler(lab.did).labels == {"spam": "hide"}  # type: ignore[union-attr]
        row = _hidden_row(await w.page("/"), post.id_hex)
        assert 'labeled "spam"' in row and ">labelers</code>" in row
        assert f'href="/moderation#{anchor}"' in row
        await _done(w, "/moderation/labelers/remove", {"did": lab.did}, "labelers")
        assert _config(home).labelers == []


async def test_add_a_custom_filter_by_path_and_test_it_on_a_post(tmp_path: Path) -> None:
    """A custom filter added by PATH.py:Class with parameters (built in its worker
    before it is saved), then "test a filter" on a post by its short id shows the
    decision (spec 0006 §explain)."""
    net = Net()
    a = net.node("a")
    bob = new_author()
    code = tmp_path / "shouting.py"
    code.write_text(
        textwrap.dedent("""
        from client.moderation.core import Action, Decision, SourceKind

        class Shouting:
            def __init__(self, *, min_caps=3):
                self.min_caps = min_caps

            def check(self, item):
                caps = sum(c.isupper() for c in item.text)
                if caps >= self.min_caps:
                    return Decision(Action.WARN, f"{caps} capitals", "you", SourceKind.USER)
                return None
    """)
    )
    home = tmp_path / "home"
    async with serve(home, net, [a]) as w:
        loud = bob.post("WHY ARE WE SHOUTING")
        a.add(loud)
        await w.login()
        await _done(
            w,
            "/moderation/filters",
            {"type": f"{code}:Shouting", "params": "min_caps=5\n", "position": "1"},
            "filter-shouting",
        )
        spec = _config(home).filters[0]
        assert spec.name == "shouting" and spec.params == {"min_caps": 5}
        r = await w.client.get(
            "/moderation/test", params={"filter": "shouting", "event": loud.id_hex}
        )
        html = unescape(await r.text())
        assert r.status == 200, html
        m = re.search(r'data-testid="test-result" data-action="(\w+)"', html)
        assert m is not None and m.group(1) == "warn"
        assert "16 capitals" in html
        r = await w.client.get("/moderation/test", params={"filter": "shouting", "event": "zz"})
        assert r.status == 400 and 'data-code="bad-request"' in await r.text()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "home", capsys)


async def test_the_cli_and_the_web_read_and_write_the_same_settings(
    tmp_path: Path, cli: Cli
) -> None:
    """What the web saves, ``murmur filters list`` shows; what the CLI changes, the
    next page shows (one library, spec 0006 §config)."""
    net = Net()
    async with serve(cli.home, net, [net.node("a")]) as w:
        await w.login()
        await _done(
            w, "/moderation/words", {"words": "leak", "action": "badge"}, "filter-mute-words"
        )
        doc = cli.json("filters", "list")
        row = next(f for f in doc["filters"] if f["name"] == "mute-words")
        assert row["params"] == {"words": ["leak"], "action": "badge"}
        cli.json("filters", "disable", "mute-words")
        page = await w.page("/moderation")
        assert re.search(r'data-name="mute-words" data-enabled="false"', page)
