"""Hostile search queries against a real node process (spec 0004 #search-query), and a
real node started on a schema-4 database (#search-upgrade).

Whatever ``q`` or ``tag`` holds — FTS5 operators, quotes, NUL, lone marks, percent
garbage, huge or many words — the node answers 200 or ``400 bad-request``, never a
5xx, and stays healthy; a query is never read as FTS5 syntax (an operator is a plain
word or a separator, so it cannot widen or break a search).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.events import sign_event
from tests.adversarial.conftest import Probe, Tally, new_identity, now_ms, start_node
from tests.adversarial.test_fuzz import FUZZ
from tests.node.test_search import _v4_database

#: Pieces of FTS5 syntax and other trouble a query might carry.
_SYNTAX = ['"', "'", "*", "(", ")", "NEAR", "NEAR(", "AND", "OR", "NOT", ":", "^", "-",
           "+", "\x00", "{", "}", "text:", "post_text", "rowid", "%", "\\", "é", "\u0301",
           "\U0001F600", " ", "\t", "\n", "stormy", "#", ",", "NEAR/2"]
_queries = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(_SYNTAX), max_size=40).map("".join),
)


@pytest.fixture(scope="module")
def seeded(adv_probe: Probe) -> Probe:
    author = new_identity()
    ts = now_ms() - 60_000
    first = sign_event(author, kind="post", seq=1, prev=None, ts=ts,
                       body={"text": "stormy weather", "tags": ["Stormy"]})
    second = sign_event(author, kind="post", seq=2, prev=first.id, ts=ts + 1,
                        body={"text": "NEAR the rowid of text: \"AND\" OR NOT"})
    assert [r["status"] for r in adv_probe.ingest(first.wire, second.wire)] == ["accepted"] * 2
    return adv_probe


def _search(probe: Probe, params: dict[str, str]) -> httpx.Response:
    r = probe.http.get("/v1/search", params=params)
    assert r.status_code in (200, 400), (params, r.status_code, r.text)
    if r.status_code == 400:
        assert r.json()["error"] == "bad-request", r.text
    return r


@settings(FUZZ, max_examples=250)
@given(q=_queries)
def test_any_q_or_tag_is_200_or_bad_request(seeded: Probe, adv_tally: Tally, q: str) -> None:
    """spec 0004 #search-query, #search-tags: no query is a 5xx."""
    errors_before = seeded.internal_errors()
    _search(seeded, {"q": q})
    _search(seeded, {"tag": q})
    _search(seeded, {"q": q, "before": q, "limit": q})
    assert seeded.internal_errors() == errors_before
    adv_tally.add("search-queries", 3)


def test_operators_are_words_not_syntax(seeded: Probe, adv_tally: Tally) -> None:
    """spec 0004 #search-query: ``stormy OR x`` needs the word "or" (no OR), ``NOT x``
    does not exclude, ``sto*`` is no prefix, a column filter is two words."""
    def hits(q: str) -> int:
        return len(_search(seeded, {"q": q}).json()["events"])

    assert hits("stormy") == 1
    assert hits("stormy OR weather") == 0  # "or" is a word the post lacks
    assert hits("NEAR rowid AND OR NOT") == 1  # the second post has all five words
    assert hits("weather NOT stormy") == 0  # "not": a word, no exclusion
    assert hits("sto*") == 0
    assert hits("text:stormy") == 0  # "text" is a word the first post lacks
    assert hits('"stormy weather"') == 1
    assert len(_search(seeded, {"tag": "#STORMY"}).json()["events"]) == 1
    for q in ("", "   ", "*", '""', "\x00", "x" * 257, " ".join("abcdefghi")):
        assert _search(seeded, {"q": q}).status_code == 400, q
    assert seeded.healthy()
    adv_tally.add("search-queries", 15)


def test_a_node_started_on_a_schema_4_database_finds_its_posts(tmp_path: Path) -> None:
    """spec 0004 #search-upgrade: a real node started on a database a schema-4 node
    left indexes the posts it holds before it serves; a deleted one stays out."""
    author = new_identity()
    ts = now_ms() - 60_000
    kept = sign_event(author, kind="post", seq=1, prev=None, ts=ts,
                      body={"text": "older than search", "tags": ["legacy"]})
    gone = sign_event(author, kind="post", seq=2, prev=kept.id, ts=ts + 1,
                      body={"text": "older and deleted"})
    _v4_database(tmp_path / "data", [(kept, {}), (gone, {"body": None, "deleted": 1})])
    node = start_node(tmp_path)
    try:
        with Probe(node) as probe:
            events = _search(probe, {"q": "older"}).json()["events"]
            assert [e["id"] for e in events] == [kept.id.hex()]
            tagged = _search(probe, {"tag": "Legacy"}).json()["events"]
            assert [e["id"] for e in tagged] == [kept.id.hex()]
    finally:
        node.stop()
