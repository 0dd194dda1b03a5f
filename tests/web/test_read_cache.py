"""``murmur web`` keeps its reads between pages, and every change still shows on the next
page (issue #17 point 6; spec 0007 #web-read-cache, spec 0006 #worker-reuse).

Against the real 3-node devnet and a real ``murmur web`` process: a warm page asks the
nodes only for their ``/v1/info`` and takes every other answer from the read cache
(its ``Server-Timing`` says how many); then, each time on the very next page load, a
post published through another node is on the timeline, a muted word added with the
CLI hides it, removing the word shows it again, a custom filter hides it, and an edit
of that filter's file (its worker kept between pages) is in force.
"""

from __future__ import annotations

import re
import secrets
import textwrap
from pathlib import Path

import httpx

from tests.web.conftest import WebDevnet
from tests.web.harness import murmur

HIDER = textwrap.dedent(
    """
    from client.moderation import Action, Decision, SourceKind

    class Hider:
        '''Hides posts that contain WORD.'''
        name = "hider"
        def check(self, item):
            if WORD in (item.event.body or {}).get("text", ""):
                return Decision(Action.HIDE, "hider: " + WORD, "hider", SourceKind.USER)
            return None
    """
)


def _tally(r: httpx.Response) -> dict[str, int]:
    """``requests`` and ``cached`` of the page's ``Server-Timing`` (client.web.timing)."""
    m = re.search(r'nodes;desc="requests=(\d+) cached=(\d+)"', r.headers.get("Server-Timing", ""))
    assert m is not None, f"no node tally in Server-Timing: {r.headers.get('Server-Timing')}"
    return {"requests": int(m.group(1)), "cached": int(m.group(2))}


def _state(html: str, eid: str) -> str | None:
    """The timeline row of ``eid``: ``shown`` (or another post state), ``hidden``, or None."""
    m = re.search(rf'data-testid="(post|hidden-item)" data-id="{eid}" data-state="(\w+)"', html)
    return None if m is None else m.group(2)


def _home(http: httpx.Client) -> httpx.Response:
    r = http.get("/")
    assert r.status_code == 200, r.text[:500]
    return r


def _write_hider(path: Path, word: str) -> None:
    path.write_text(f"WORD = {word!r}\n" + HIDER)


def test_a_warm_page_reads_from_its_cache_and_every_change_shows_at_once(
    web_devnet: WebDevnet, web_http: httpx.Client, tmp_path: Path
) -> None:
    """spec 0007 #web-read-cache: answers are kept while each node's cursor is unchanged,
    so a new event or a setting is on the next page; spec 0006 #worker-reuse: the
    pipeline is built again when filters.toml or a custom filter's file changes."""
    _home(web_http)
    warm = _tally(_home(web_http))
    assert warm["requests"] == len(web_devnet.urls)  # one /v1/info a node: the validation
    assert warm["cached"] > 0

    word = f"cachecheck{secrets.token_hex(4)}"
    eid = web_devnet.post("bob", f"a fresh post about {word}", node=2)
    r = _home(web_http)
    assert _state(r.text, eid) == "shown"
    assert _tally(r)["requests"] > len(web_devnet.urls)  # the nodes changed: asked again

    reader = web_devnet.reader
    name = f"mute-{word}"
    murmur(reader, "filters", "add", "mute-words", "--name", name, "--param", f'words=["{word}"]')
    try:
        assert _state(_home(web_http).text, eid) == "hidden"
    finally:
        murmur(reader, "filters", "remove", name)
    assert _state(_home(web_http).text, eid) == "shown"

    hider = tmp_path / "hider.py"
    _write_hider(hider, word)
    murmur(reader, "filters", "add", f"{hider}:Hider", "--name", "hider")
    try:
        html = _home(web_http).text
        assert _state(html, eid) == "hidden"
        assert _state(_home(web_http).text, eid) == "hidden"  # the kept worker, again
        _write_hider(hider, f"{word}-but-not-this-one")
        assert _state(_home(web_http).text, eid) == "shown"
    finally:
        murmur(reader, "filters", "remove", "hider")
