"""Post search on the node (spec 0004 #search): what is indexed, how it leaves with
deletions and status changes (0008 #node-effects), the order and paging, the upgrade of
a schema-4 database, and queries that must never reach FTS5 as syntax."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.search_terms import (
    MAX_QUERY_BYTES,
    MAX_QUERY_WORDS,
    MAX_WORD_BYTES,
    _words,
    normalize_tag,
    post_tags,
    query_tag,
    query_words,
)
from node.store import SqliteStore
from node.store.migrations import MIGRATIONS
from node.store.pg_search import fold
from node.store.sqlite import DB_FILENAME
from node.store.sqlite_search import search_keys, tag_keys
from protocol.errors import BadRequestError
from protocol.events import Event
from tests.node.backends import both_backends
from tests.node.conftest import Author, Clock, Node
from tests.node.test_key_rotation import FORGED, theft


async def found(node: Node, **params: str) -> list[str]:
    """Ids (hex) of one search page."""
    r = await node.http.get("/v1/search", params=params)
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["events"]]


def ids(*events: Event) -> list[str]:
    return [e.id.hex() for e in events]


def _fts_consistent(data_dir: Path) -> None:
    """FTS5's own check of the index: a contentless 'delete' with other text than was
    inserted, or a delete of a row never inserted, corrupts it."""
    conn = sqlite3.connect(data_dir / DB_FILENAME)
    try:
        conn.execute("INSERT INTO post_text (post_text) VALUES ('integrity-check')")
    finally:
        conn.close()


# -- what matches ---------------------------------------------------------------------


@both_backends()
async def test_words_match_case_and_diacritics_insensitively(node: Node, author: Author) -> None:
    """spec 0004 #search-query: every word must be in the post, in any order and case,
    with or without diacritics; words are whole (no prefix match); punctuation and FTS5
    operators in q are separators, never syntax."""
    cafe = author.post("Le Café de Flore, open NOW")
    other = author.post("a café in the rain")
    await node.ingest(cafe, other)
    assert await found(node, q="cafe") == ids(other, cafe)
    assert await found(node, q="CAFÉ flore") == ids(cafe)
    assert await found(node, q="flore  café") == ids(cafe)
    assert await found(node, q='"flore" AND (open) NEAR*') == []  # "and", "near" are words
    assert await found(node, q='"flore" (open)*') == ids(cafe)
    assert await found(node, q="caf") == []  # no prefix search
    assert await found(node, q="rain -cafe") == ids(other)  # '-' is no NOT


@both_backends()
async def test_tags_from_the_tags_field_and_from_tag_facets(node: Node, author: Author) -> None:
    """spec 0004 #search-tags: a post's tags are its ``tags`` and the ``tag`` of its
    facets of type tag (0003 #facets), compared NFKC case-folded, '#' optional; its tags
    are also words of the full-text search."""
    tagged = author.post("about town", tags=["Café", "city"])
    faceted = author.post(
        "see #CAFÉ here", facets=[{"type": "tag", "start": 4, "end": 10, "tag": "CAFÉ"}]
    )
    plain = author.post("no tags, just café")
    await node.ingest(tagged, faceted, plain)
    for name in ("café", "#Café", "CAFÉ", " café "):
        assert await found(node, tag=name) == ids(faceted, tagged), name
    assert await found(node, tag="city") == ids(tagged)
    assert await found(node, tag="cafe") == []  # a tag is compared whole, accents kept
    assert await found(node, q="city") == ids(tagged)


@both_backends()
async def test_newest_first_by_ts_and_paged(node: Node, author: Author) -> None:
    """spec 0004 #search-order: newest first by the post's ts, not by arrival; pages
    follow ``next`` without gaps or repeats and the last one says none follow."""
    posts = [
        author.sign("post", {"text": f"storm {i}", "tags": ["storm"]}, ts=author.clock.now - i)
        for i in range(7)
    ]
    await node.ingest(*reversed(posts))  # the oldest arrives first
    for params in ({"q": "storm"}, {"tag": "storm"}):
        seen: list[str] = []
        before: str | None = None
        while True:
            query = {**params, "limit": "3", **({"before": before} if before else {})}
            r = await node.http.get("/v1/search", params=query)
            assert r.status_code == 200, r.text
            doc = r.json()
            seen += [e["id"] for e in doc["events"]]
            before = doc["next"]
            if before is None:
                break
        assert seen == ids(*posts), params


@both_backends()
async def test_only_posts_with_text_are_indexed(node: Node, author: Author) -> None:
    """spec 0004 #search: posts only (a profile, a label's text are not searched)."""
    await node.ingest(
        author.sign("profile", {"name": "rainmaker", "bio": "rain"}),
        author.post(""),
        author.post("rain"),
    )
    assert len(await found(node, q="rain")) == 1
    assert await found(node, q="rainmaker") == []


# -- deletions and statuses -----------------------------------------------------------


@both_backends()
async def test_a_deleted_post_leaves_search_and_a_tombstone_keeps_it_out(
    node: Node, author: Author, make_author: Any, store_backend: str
) -> None:
    """spec 0004 #search: deletion (#deletion) takes the post out of both indexes; a
    post whose delete came first is stored body-less and never indexed."""
    gone = author.post("ephemeral words", tags=["fleeting"])
    kept = author.post("ephemeral but kept")
    await node.ingest(gone, kept)
    assert await found(node, q="ephemeral") == ids(kept, gone)
    await node.ingest(author.sign("delete", {"target": gone.id}))
    assert await found(node, q="ephemeral") == ids(kept)
    assert await found(node, tag="fleeting") == []
    early = make_author()
    late_post = early.post("ephemeral late")
    await node.ingest(early.sign("delete", {"target": late_post.id}), late_post)
    assert await found(node, q="ephemeral") == ids(kept)
    if store_backend == "sqlite":
        _fts_consistent(node.config.data_dir)


@both_backends()
async def test_revoked_posts_leave_search_and_a_revoked_deletes_target_returns(
    node: Node, store_backend: str
) -> None:
    """spec 0008 #node-effects, #revoked-delete: a thief's post counts until the
    owner's rotation revokes it, then leaves search; the owner's post the thief deleted
    stays out while its body is missing, and is found again once a copy fills it in
    (spec 0004 #body-fill)."""
    _, ev = theft("searcher")
    before = [ev[n] for n in ("G", "p1", "prof", *FORGED)]
    assert await node.statuses(*before) == ["accepted"] * len(before)
    assert await found(node, q="coins") == ids(ev["t_post"])
    assert await found(node, q="hello alice") == []  # deleted by the thief
    assert await node.statuses(ev["K1"], ev["p2"]) == ["accepted", "accepted"]
    assert await found(node, q="coins") == []
    assert await found(node, q="me") == []  # the forged reply
    assert await found(node, q="hello alice") == []  # body-less: nothing to search
    assert await node.statuses(ev["p1"]) == ["accepted"]  # the full copy
    assert await found(node, q="hello alice") == ids(ev["p1"])
    assert await found(node, q="rotated") == ids(ev["p2"])
    if store_backend == "sqlite":
        _fts_consistent(node.config.data_dir)


# -- the API's parameters -------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": "a", "tag": "b"},
        {"q": ""},
        {"q": "  ...  ?! "},
        {"q": "x" * (MAX_QUERY_BYTES + 1)},
        {"q": " ".join(f"w{i}" for i in range(MAX_QUERY_WORDS + 1))},
        {"q": "é" * (MAX_WORD_BYTES // 2 + 1)},
        {"tag": ""},
        {"tag": "#"},
        {"tag": "x" * 65},
        {"q": "a", "before": "x"},
        {"q": "a", "before": "-1"},
        {"q": "a", "before": "9" * 20},
        {"q": "a", "limit": "0"},
    ],
    ids=repr,
)
@both_backends()
async def test_bad_queries_are_bad_request(node: Node, params: dict[str, str]) -> None:
    """spec 0004 #search-query: empty, oversized or malformed parameters are a 400
    ``bad-request`` with a message, never a 500."""
    r = await node.http.get("/v1/search", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad-request" and r.json()["message"]


@both_backends()
async def test_results_are_wire_events_in_json_and_msgpack(node: Node, author: Author) -> None:
    """spec 0004 #search: each result is an Event with its exact wire bytes."""
    post = author.post("verifiable")
    await node.ingest(post)
    r = await node.http.get("/v1/search", params={"q": "verifiable"})
    (doc,) = r.json()["events"]
    assert doc["wire"] and doc["body"] == {"text": "verifiable"} and r.json()["next"] is None
    r = await node.http.get("/v1/search", params={"q": "verifiable", "format": "msgpack"})
    from protocol.encoding import decode

    assert decode(r.content)["events"][0]["wire"] == post.wire


# -- pure parts -----------------------------------------------------------------------


def test_query_words_split_on_everything_but_letters_digits_and_marks() -> None:
    assert query_words("Hello, wörld! hello 42") == ("Hello", "wörld", "hello", "42")
    assert query_words('NEAR("a" b)* OR c^ d:e') == ("NEAR", "a", "b", "OR", "c", "d", "e")
    assert query_words("a\x00b") == ("a", "b")
    with pytest.raises(BadRequestError):
        query_words("\x00 \" * ( )")


def _slow_words(text: str) -> list[str]:
    """Words cut one character at a time by category: what the ASCII fast path of
    ``_words`` must agree with."""
    out, word = [], ""
    for ch in text:
        if unicodedata.category(ch)[0] in "LNM" or unicodedata.category(ch) == "Co":
            word += ch
        elif word:
            out, word = [*out, word], ""
    return [*out, word] if word else out


def _slow_fold(word: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare.casefold())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x17F), max_size=60))
def test_the_ascii_fast_paths_cut_and_fold_as_the_general_ones(text: str) -> None:
    assert list(_words(text)) == _slow_words(text)
    assert [fold(w) for w in _words(text)] == [_slow_fold(w) for w in _slow_words(text)]


def test_tags_are_normalized_alike_on_both_sides() -> None:
    body = {"text": "", "tags": ["Straße", "#ﬁsh", 7],
            "facets": [{"type": "tag", "tag": "STRASSE"}, {"type": "link", "tag": "no"},
                       "junk", {"type": "tag", "tag": "x" * 65}]}
    assert post_tags(body) == ["strasse", "fish"]
    assert query_tag("#Straße") == normalize_tag("STRASSE") == "strasse"
    assert post_tags({"text": "", "facets": {"not": "a list"}}) == []


# -- upgrade from schema 4 --------------------------------------------------------------


def _v4_database(data_dir: Path, events: list[tuple[Event, dict[str, Any]]]) -> None:
    """A database as a schema-4 node left it: the published migrations 1-4 and rows
    written the way that node wrote them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(data_dir / DB_FILENAME, isolation_level=None)
    try:
        for version, steps in enumerate(MIGRATIONS[:4]):
            for step in steps:
                assert isinstance(step, str)
                conn.execute(step)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        for ev, cols in events:
            row = {
                "id": ev.id, "author": ev.author, "seq": ev.seq, "prev": ev.prev, "ts": ev.ts,
                "kind": ev.kind, "header": ev.header_bytes, "sig": ev.sig,
                "body": ev.body_bytes, "deleted": 0, "received_ms": ev.ts, **cols,
            }
            names = ", ".join(row)
            conn.execute(
                f"INSERT INTO events ({names}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
                list(row.values()),
            )
    finally:
        conn.close()


async def test_upgrade_from_schema_4_indexes_the_posts_held(
    tmp_path: Path, clock: Clock, make_author: Any
) -> None:
    """spec 0004 #search-upgrade: the migration to schema 5 indexes every held post
    that counts, and none that does not (deleted, revoked, no body)."""
    a = make_author()
    kept = a.post("upgrade survivor", tags=["Old"])
    deleted = a.post("upgrade casualty")
    revoked = a.post("upgrade revoked")
    profile = a.sign("profile", {"name": "upgrade"})
    _v4_database(tmp_path, [
        (kept, {}),
        (deleted, {"body": None, "deleted": 1}),
        (revoked, {"status": "revoked"}),
        (profile, {}),
    ])
    store = SqliteStore(tmp_path, now_ms=clock)
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        (key,) = search_keys(conn, ["upgrade"], None, 10)
        assert tag_keys(conn, "old", None, 10) == [key]
        (held,) = conn.execute("SELECT id FROM events WHERE search_key = ?", (key,)).fetchone()
        assert held == kept.id
    finally:
        conn.close()
    _fts_consistent(tmp_path)


# -- any query ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    """A schema-5 database holding one indexed post, for the fuzzing below."""
    import asyncio

    from protocol.events import decode_event
    from tests.node.conftest import T0, new_author

    path = tmp_path_factory.mktemp("fuzz-search")
    clock = Clock()
    post = new_author(clock).post("fuzzing finds things", tags=["fuzz"])

    async def setup() -> None:
        store = SqliteStore(path, now_ms=clock)
        await store.open()
        await store.apply_batch([decode_event(post.wire, now_ms=T0)])
        await store.close()

    asyncio.run(setup())
    return sqlite3.connect(path / DB_FILENAME, check_same_thread=False)


@settings(deadline=None, database=None, max_examples=300,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=80)
       | st.lists(st.sampled_from(['"', "*", "(", ")", "NEAR", "AND", "OR", "NOT", ":",
                                   "^", "-", "+", "\x00", "text", "fuzz", "é", " ", "{"]),
                  max_size=30).map("".join))
def test_any_query_is_words_or_bad_request_and_never_fails_in_fts5(
    indexed: sqlite3.Connection, q: str
) -> None:
    """spec 0004 #search-query: whatever q holds, it is words (which FTS5 takes as
    quoted strings) or a bad-request; never an FTS5 syntax error."""
    try:
        words = query_words(q)
    except BadRequestError:
        return
    assert 1 <= len(words) <= MAX_QUERY_WORDS
    search_keys(indexed, words, None, 10)
    try:
        tag = query_tag(q)
    except BadRequestError:
        return
    tag_keys(indexed, tag, None, 10)
