"""Hostile post facets against a real node and a reader's ``murmur`` (spec 0003 #facets,
spec 0007 #facets-render, #terminal-safety).

Malformed facets are refused by the node as ``bad-field`` and nothing is stored: a
range that splits a character, known facets that overlap, a ``javascript:`` link, a
mention of something that is not a did, an unknown type without a range. Facets that
are valid but lie are stored (the author signs both text and facets) and the reader
is not fooled: mallory's text reads ``@alice`` over mallory's own did and shows
mallory's marked, escaped name; a range in the middle of a word shows the did it
names; a combining mark after a mention is escaped rather than drawn onto the name;
a link whose text is the bank shows its real target; no terminal escape survives.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.config import ClientConfig
from client.keystore import Keystore
from protocol.events import Event, sign_event
from tests.adversarial.conftest import Probe, new_identity, signed
from tests.e2e.client_fixtures import Cli
from tests.e2e.fedproc import Author
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e

#: Seeds of this module's authors (far from other suites').
_SEED = 0xFA_CE_0000
MALLORY_NAME = "\b\b@alice\x1b[2K"
LIE = "send it to @alice now"
MID_WORD = "hello alice\u0301 and all"
BANK = "log in at https://bank.example/ \x1b]0;pwned\x07"


def _sign(author: Author, kind: str, body: dict[str, Any]) -> Event:
    author.seq += 1
    ev = sign_event(author.identity, kind=kind, body=body, seq=author.seq, prev=author.prev)
    author.prev = ev.id
    return ev


def _span(text: str, part: str) -> tuple[int, int]:
    data = text.encode()
    start = data.index(part.encode())
    return start, start + len(part.encode())


@dataclass
class Scene:
    home: Path
    alice: str
    mallory: str


@pytest.fixture(scope="module")
def scene(adv_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    alice, mallory, reader = (Author(_SEED + i) for i in range(3))
    m_did = mallory.identity.did
    link_start, link_end = _span(BANK, "https://bank.example/")
    events = [
        _sign(alice, "profile", {"name": "Alice"}),
        _sign(mallory, "profile", {"name": MALLORY_NAME}),
        _sign(
            mallory,
            "post",
            {"text": LIE, "facets": [{"type": "mention", "start": 11, "end": 17, "did": m_did}]},
        ),
        _sign(
            mallory,
            "post",
            {
                "text": MID_WORD,
                "facets": [{"type": "mention", "start": 6, "end": 11, "did": alice.identity.did}],
            },
        ),
        _sign(
            mallory,
            "post",
            {
                "text": BANK,
                "facets": [
                    {
                        "type": "link",
                        "start": link_start,
                        "end": link_end,
                        "uri": "https://evil.example/",
                    },
                ],
            },
        ),
        *(_sign(reader, "follow", {"subject": a.identity.did}) for a in (alice, mallory)),
    ]
    with Probe(adv_node) as probe:
        results = probe.ingest(*(e.wire for e in events))
    assert all(r["status"] == "accepted" for r in results), results
    home = tmp_path_factory.mktemp("facets-reader")
    Keystore(home).create("reader", seed=(_SEED + 2).to_bytes(32, "big"), passphrase=None)
    config = ClientConfig.load(home)
    config.add_node(adv_node.url)
    config.set_petname("alice", alice.identity.did)
    config.save()
    yield Scene(home, alice.identity.did, m_did)


@pytest.mark.parametrize(
    "facet",
    [
        pytest.param({"type": "org.example.x", "start": 1, "end": 3}, id="splits-a-character"),
        pytest.param(
            {"type": "link", "start": 0, "end": 4, "uri": "javascript:alert(1)"}, id="javascript"
        ),
        pytest.param({"type": "mention", "start": 0, "end": 4, "did": "@alice"}, id="not-a-did"),
        pytest.param({"type": "org.example.x", "start": 0}, id="unknown-type-without-end"),
        pytest.param({"type": "tag", "start": 0, "end": 9, "tag": "x"}, id="past-the-text"),
    ],
)
def test_the_node_refuses_malformed_facets(adv_probe: Probe, facet: dict[str, Any]) -> None:
    """spec 0003 #facets: a malformed facet makes the event bad-field."""
    author = new_identity()
    wire, eid = signed(author, {"text": "é@al", "facets": [facet]})
    adv_probe.assert_rejected(wire, "bad-field", event_id=eid, author=author.did)


def test_the_node_refuses_overlapping_known_facets(adv_probe: Probe) -> None:
    """spec 0003 #facets-overlap."""
    author = new_identity()
    facets = [
        {"type": "tag", "start": 0, "end": 4, "tag": "abcd"},
        {"type": "mention", "start": 3, "end": 6, "did": author.did},
    ]
    wire, eid = signed(author, {"text": "abcdef", "facets": facets})
    adv_probe.assert_rejected(wire, "bad-field", event_id=eid, author=author.did)


def _unsafe(text: str) -> list[str]:
    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs")]


def test_lying_facets_show_the_did_they_name(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #facets-render: names, not the author's text; each piece escaped."""
    cli = Cli(scene.home, capsys)
    out = cli.ok("timeline", "--limit", "20")
    assert _unsafe(out) == []
    # "@alice" over mallory's did: mallory's self-claimed, escaped name, '~' first.
    assert "send it to ~\\x08\\x08@alice\\x1b[2K now" in out
    # A range in the middle of a word names alice: the reader's petname shows, and the
    # combining mark after it is escaped, not drawn onto the name.
    assert "hello @alice\\u0301 and all" in out
    # The link's text is the bank, its target is not: both are shown.
    assert "https://bank.example/ [→ https://evil.example/] \\x1b]0;pwned\\x07" in out
    # Only the reader's real alice is ever printed as a bare '@alice' mention.
    assert out.count("@alice") == out.count("~\\x08\\x08@alice") + 1


def test_json_names_the_did_of_every_mention(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(scene.home, capsys)
    code, out, err = cli.run("timeline", "--limit", "20", "--json")
    assert code == 0, err
    assert out.isascii()
    posts = {p["text"]: p for p in json.loads(out)["posts"]}
    [lie] = posts[LIE]["facets"]
    assert lie["text"] == "@alice" and lie["did"] == scene.mallory
    assert lie["name"] == "~" + MALLORY_NAME and lie["alias"] is None
    [mid] = posts[MID_WORD]["facets"]
    assert mid["text"] == "alice" and mid["did"] == scene.alice and mid["name"] == "@alice"
    [link] = posts[BANK]["facets"]
    assert link["text"] == "https://bank.example/" and link["uri"] == "https://evil.example/"
