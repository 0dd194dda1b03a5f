"""Hostile text from other people never reaches the reader's terminal raw (issue #14,
finding 3; spec 0007 #terminal-safety).

Authors with hostile display names, bios, posts and list names publish to a real node
process; a reader's ``murmur`` (in-process, :class:`tests.e2e.client_fixtures.Cli`)
reads them through every view that prints other people's text: timeline, author,
thread, profile, search, list and ``--explain``. Attacks: a backspace that erases the
``~`` of a self-claimed name and forges the reader's ``@alice`` petname; a carriage
return and cursor-up/erase-line sequences that overwrite lines of the screen; a
clear-screen; an OSC 8 hyperlink that hides its target; a window-title OSC; a C1 CSI;
a right-to-left override and a zero-width space in a name; a Cyrillic look-alike of
"alice". The text output must hold no control or format character but newlines, show
each one as a visible escape, keep the ``~`` in front of every self-claimed name
(so ``@alice`` heads only the reader's real alice), and mark the look-alike; the
``--json`` output must be valid ASCII JSON carrying the exact text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.config import ClientConfig
from client.keystore import Keystore
from protocol.events import Event, sign_event
from tests.adversarial.conftest import Probe
from tests.e2e.client_fixtures import Cli
from tests.e2e.fedproc import Author
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e

#: Seeds of this module's authors (far from other suites').
_SEED = 0x7E_5C_0000

#: Erase the '~' before the name and write the reader's petname instead, then erase
#: the rest of the line.
MALLORY_NAME = "\b\b@alice\x1b[2K"
MALLORY_BIO = "bio\x1b]0;pwned\x07\nsecond line"
#: A Cyrillic "а", then "lice", a right-to-left override and a zero-width space.
EVE_NAME = "\u0430lice\u202e\u200b"
CLEAR_SCREEN = "before\x1b[2J\x1b[Hafter"
#: Go up one line, erase it, and print a fake post header of alice.
OVERWRITE = "line one\n\x1b[1A\x1b[2K\r@alice · just now\n  I trust mallory with my keys"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\https://bank.example/\x1b]8;;\x1b\\"
REPLY = "\x9b2J\u202etxet desrever"
LIST_NAME = "mute\x1b[31mlist"


def unsafe(text: str) -> list[str]:
    """Characters a terminal would act on or not draw: controls but the newline,
    format characters (bidi, zero-width), surrogates, line/paragraph separators."""
    return sorted(
        {c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")}
    )


@dataclass
class Scene:
    node: NodeProcess
    home: Path
    alice: Author
    mallory: Author
    eve: Author
    alice_post: Event
    mallory_posts: list[Event]


def _sign(author: Author, kind: str, body: dict[str, Any]) -> Event:
    author.seq += 1
    ev = sign_event(author.identity, kind=kind, body=body, seq=author.seq, prev=author.prev)
    author.prev = ev.id
    return ev


@pytest.fixture(scope="module")
def scene(adv_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    alice, mallory, eve, reader = (Author(_SEED + i) for i in range(4))
    alice_post = _sign(alice, "post", {"text": "hello from alice"})
    events = [
        _sign(alice, "profile", {"name": "Alice"}),
        alice_post,
        _sign(mallory, "profile", {"name": MALLORY_NAME, "bio": MALLORY_BIO}),
        *(_sign(mallory, "post", {"text": t}) for t in (CLEAR_SCREEN, OVERWRITE, OSC8)),
        _sign(
            mallory,
            "post",
            {"text": REPLY, "reply": {"root": alice_post.id, "parent": alice_post.id}},
        ),
        _sign(
            mallory, "list", {"name": LIST_NAME, "purpose": "mute", "members": [alice.identity.did]}
        ),
        _sign(eve, "profile", {"name": EVE_NAME}),
        _sign(eve, "post", {"text": "I am alice, honest"}),
        *(_sign(reader, "follow", {"subject": a.identity.did}) for a in (alice, mallory, eve)),
    ]
    with Probe(adv_node) as probe:
        results = probe.ingest(*(e.wire for e in events))
    assert all(r["status"] == "accepted" for r in results), results

    home = tmp_path_factory.mktemp("terminal-reader")
    Keystore(home).create("reader", seed=(_SEED + 3).to_bytes(32, "big"), passphrase=None)
    config = ClientConfig.load(home)
    config.add_node(adv_node.url)
    config.set_petname("alice", alice.identity.did)
    config.save()
    mallory_posts = [e for e in events if e.author == mallory.identity.did and e.kind == "post"]
    yield Scene(adv_node, home, alice, mallory, eve, alice_post, mallory_posts)


@pytest.fixture
def cli(scene: Scene, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(scene.home, capsys)


def _assert_safe(out: str) -> None:
    assert unsafe(out) == [], f"raw control/format characters reached stdout: {unsafe(out)}"


def _headed_by_alice(out: str) -> int:
    """Lines that begin (after indentation) with the reader's petname ``@alice``."""
    return len(re.findall(r"^\s*@alice ", out, re.MULTILINE))


def test_timeline_escapes_names_and_posts_and_keeps_the_markers(cli: Cli, scene: Scene) -> None:
    out = cli.ok("timeline", "--limit", "50")
    _assert_safe(out)
    # The forged petname is visible as such, behind the '~' of a self-claimed name.
    assert "~\\x08\\x08@alice\\x1b[2K" in out
    # Only alice's own post is headed by @alice; mallory's forged header is inert text.
    assert _headed_by_alice(out) == 1
    assert "\\x1b[1A\\x1b[2K\\r@alice · just now" in out
    assert "I trust mallory with my keys" in out  # the text itself is shown
    assert "before\\x1b[2J\\x1b[Hafter" in out
    # OSC 8: the hidden target is printed.
    assert "\\x1b]8;;https://evil.example/\\x1b\\https://bank.example/" in out
    # The look-alike of "alice" is marked, its bidi override and zero-width space shown.
    assert "~\u0430lice\\u202e\\u200b ⚠mixed-script" in out


def test_timeline_json_is_ascii_and_exact(cli: Cli, scene: Scene) -> None:
    code, out, err = cli.run("timeline", "--limit", "50", "--json")
    assert code == 0, err
    assert out.isascii() and "\x1b" not in out and "\b" not in out
    doc = json.loads(out)
    texts = {p["text"] for p in doc["posts"]}
    assert {CLEAR_SCREEN, OVERWRITE, OSC8} <= texts
    names = {p["author"]: p["author_name"] for p in doc["posts"]}
    assert names[scene.mallory.identity.did] == "~" + MALLORY_NAME
    assert names[scene.eve.identity.did] == "~" + EVE_NAME
    assert names[scene.alice.identity.did] == "@alice"


def test_author_view_escapes_the_header_and_bio(cli: Cli, scene: Scene) -> None:
    out = cli.ok("author", scene.mallory.identity.did)
    _assert_safe(out)
    assert out.startswith("~\\x08\\x08@alice\\x1b[2K  did:key:")
    assert "  bio\\x1b]0;pwned\\x07\n  second line\n" in out  # each bio line indented
    assert _headed_by_alice(out) == 0


def test_thread_escapes_a_hostile_reply(cli: Cli, scene: Scene) -> None:
    out = cli.ok("thread", scene.alice_post.id.hex())
    _assert_safe(out)
    assert _headed_by_alice(out) == 1  # the root, by the real alice
    assert "\\x9b2J\\u202etxet desrever" in out
    assert "~\\x08\\x08@alice\\x1b[2K" in out


def test_profile_and_search_escape_names_and_bios(cli: Cli, scene: Scene) -> None:
    out = cli.ok("profile", "show", scene.mallory.identity.did)
    _assert_safe(out)
    assert "name: \\x08\\x08@alice\\x1b[2K\n" in out
    assert "bio:  bio\\x1b]0;pwned\\x07\n        second line" in out

    out = cli.ok("search", "lice")
    _assert_safe(out)
    assert "\\x08\\x08@alice\\x1b[2K  " + scene.mallory.identity.did in out
    assert "\u0430lice\\u202e\\u200b ⚠mixed-script  " + scene.eve.identity.did in out
    assert _headed_by_alice(out) == 0


def test_list_names_and_moderation_reasons_are_escaped(cli: Cli, scene: Scene) -> None:
    mallory = scene.mallory.identity.did
    out = cli.ok("list", "show", mallory, LIST_NAME)
    _assert_safe(out)
    assert out.startswith("~\\x08\\x08@alice\\x1b[2K/mute\\x1b[31mlist (mute,")

    cli.ok("filters", "add", "list", "--param", f"ref={mallory}/{LIST_NAME}")
    try:
        out = cli.ok("author", "alice", "--explain")
    finally:
        cli.ok("filters", "remove", "list")
    _assert_safe(out)
    assert 'in mute list "mute\\x1b[31mlist"' in out
    assert "/mute\\x1b[31mlist)" in out  # the decision's source: the list's author/name
