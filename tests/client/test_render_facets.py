"""How posts with facets are shown (spec 0007 #facets, #terminal-safety).

A mention shows the reader's name for the facet's did — petname ``@alias``, else
``~profile name``, else a short did — never the author's text, so a facet cannot make
the reader see another did than the one it names: not with text that reads
``@alice`` over mallory's did, not with offsets in the middle of a word, not with a
profile name built to look like a petname. Every piece is escaped on its own, so a
combining mark or joiner right after a mention cannot attach to the printed name and
no terminal escape survives. ``--json`` carries each facet with the covered text and,
for mentions, the resolved name.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest

from client.cli.render import Names, event_doc, format_event, post_text, short_did
from client.config import ClientConfig
from protocol.events import Event, sign_event
from protocol.identity import Identity

AUTHOR = Identity.from_seed(b"\x10" * 32)
ALICE = Identity.from_seed(b"\x11" * 32).did
MALLORY_ID = Identity.from_seed(b"\x12" * 32)
MALLORY = MALLORY_ID.did
STRANGER = Identity.from_seed(b"\x13" * 32).did


@pytest.fixture
def names(tmp_path: Path) -> Names:
    config = ClientConfig(path=tmp_path / "config.toml", petnames={"alice": ALICE})
    profile = sign_event(
        MALLORY_ID, kind="profile", body={"name": "\b\b@alice\x1b[2K"}, seq=1, prev=None
    )
    return Names(config, {MALLORY: profile})


def post(text: str, *facets: dict[str, Any], seq: int = 1) -> Event:
    body: dict[str, Any] = {"text": text}
    if facets:
        body["facets"] = list(facets)
    return sign_event(
        AUTHOR, kind="post", body=body, seq=seq, prev=None if seq == 1 else b"\x00" * 32
    )


def mention(start: int, end: int, did: str) -> dict[str, Any]:
    return {"type": "mention", "start": start, "end": end, "did": did}


def unsafe(text: str) -> list[str]:
    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs")]


def test_a_mention_shows_the_readers_petname(names: Names) -> None:
    e = post("hi @al, how are you?", mention(3, 6, ALICE))
    assert post_text(e, names) == "hi @alice, how are you?"


def test_text_reading_alice_over_mallorys_did_shows_mallory(names: Names) -> None:
    """The facet names mallory: the reader sees mallory's (marked, escaped) name."""
    e = post("send it to @alice now", mention(11, 17, MALLORY))
    shown = post_text(e, names)
    assert "@alice" not in shown.replace("~\\x08\\x08@alice", "")
    assert shown == "send it to ~\\x08\\x08@alice\\x1b[2K now"
    assert unsafe(shown) == []


def test_offsets_in_the_middle_of_a_word_still_show_the_named_did(names: Names) -> None:
    e = post("hello alice", mention(6, 9, STRANGER))
    assert post_text(e, names) == f"hello {short_did(STRANGER)}ce"
    e = post("hello alice", mention(1, 4, ALICE))
    assert post_text(e, names) == "h@aliceo alice"


def test_a_mark_or_joiner_after_a_mention_cannot_attach_to_the_name(names: Names) -> None:
    for tail, escaped in (("\u0301", "\\u0301"), ("\u200d", "\\u200d"), ("\ufe0f", "\\ufe0f")):
        e = post("@al" + tail + " x", mention(0, 3, ALICE))
        assert post_text(e, names) == "@alice" + escaped + " x"


def test_escapes_inside_and_around_facets_are_neutralised(names: Names) -> None:
    text = "\x1b[2J @al\u202e \x1b]0;t\x07#x https://a.example/ \x9b2J"
    data = text.encode()

    def span(part: str) -> tuple[int, int]:
        start = data.index(part.encode())
        return start, start + len(part.encode())

    e = post(
        text,
        mention(*span("@al\u202e"), ALICE),
        {"type": "tag", "start": span("#x")[0], "end": span("#x")[1], "tag": "x"},
        {"type": "link", "start": span("https")[0], "end": span("https://a.example/")[1],
         "uri": "https://a.example/"},
    )  # fmt: skip
    shown = format_event(e, names, now_ms=e.ts)
    assert unsafe(shown) == []
    assert "\\x1b[2J @alice \\x1b]0;t\\x07#x https://a.example/ \\x9b2J" in shown


def test_a_link_whose_text_is_not_its_uri_shows_the_uri(names: Names) -> None:
    text = "log in at https://bank.example/"
    e = post(text, {"type": "link", "start": 10, "end": 31, "uri": "https://evil.example/"})
    assert post_text(e, names) == text + " [→ https://evil.example/]"
    same = post(text, {"type": "link", "start": 10, "end": 31, "uri": "https://bank.example/"})
    assert post_text(same, names) == text
    tag = post("#cats", {"type": "tag", "start": 0, "end": 5, "tag": "dogs"})
    assert post_text(tag, names) == "#cats [#dogs]"


def test_unknown_facet_types_are_plain_text(names: Names) -> None:
    e = post("@al bold", {"type": "org.example.bold", "start": 0, "end": 8}, mention(0, 3, ALICE))
    assert post_text(e, names) == "@alice bold"


def test_the_snippet_of_a_replied_post_shows_mentions_by_name(names: Names) -> None:
    parent = post("thanks @al", mention(7, 10, ALICE))
    body = {"text": "yes", "reply": {"root": parent.id, "parent": parent.id}}
    reply = sign_event(AUTHOR, kind="post", body=body, seq=2, prev=parent.id)
    shown = format_event(reply, names, {parent.id: parent}, now_ms=reply.ts)
    assert "replying to " in shown and ": thanks @alice" in shown


def test_json_carries_facets_with_the_covered_text_and_resolved_names(names: Names) -> None:
    e = post(
        "🎉 @al @m #x",
        mention(5, 8, ALICE),
        mention(9, 11, MALLORY),
        {"type": "tag", "start": 12, "end": 14, "tag": "x"},
        {"type": "org.example.bold", "start": 0, "end": 4},
    )
    doc = event_doc(e, names)
    assert doc["facets"] == [
        {"type": "mention", "start": 5, "end": 8, "text": "@al", "did": ALICE,
         "name": "@alice", "alias": "alice"},
        {"type": "mention", "start": 9, "end": 11, "text": "@m", "did": MALLORY,
         "name": "~\b\b@alice\x1b[2K", "alias": None},
        {"type": "tag", "start": 12, "end": 14, "text": "#x", "tag": "x"},
    ]  # fmt: skip
    assert event_doc(post("no facets"), names)["facets"] == []
