"""Finding facets in what a person typed, and cutting a text by facets (client/facets.py;
spec 0003 #facets, spec 0007 #facets).

Properties (hypothesis): whatever the text, the facets found make a valid post body
(offsets in bytes, on character boundaries, no overlap, at most 32), each facet covers
what it says it is (``@name`` of its did, the exact URL, ``#`` and the tag), and the
segments of any text by any facets — hostile ones included — join back into the text.
Then the tricky texts: emoji and combining marks around facets, URLs with trailing
punctuation and brackets, ``@`` in e-mail addresses and paths, terminal escapes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from client.facets import fill_post, merge_tags, parse_text, segments
from protocol.facets import Facet
from protocol.identity import Identity, did_murmur_from_genesis_body
from protocol.kinds import validate_body
from protocol.limits import MAX_FACETS, MAX_TAGS

BOB = Identity.from_seed(b"\x01" * 32).did
CAROL = Identity.from_seed(b"\x02" * 32).did
DANA = did_murmur_from_genesis_body(b"\x80")
KNOWN = {"bob": BOB, "carol.k": CAROL, "dana": DANA}


def resolve(name: str) -> str | None:
    return KNOWN.get(name)


def found(text: str) -> list[tuple[str, str, str]]:
    """(type, covered text, value) of each facet found in ``text``."""
    data = text.encode()
    return [
        (f.type, data[f.start : f.end].decode(), f.value) for f in parse_text(text, resolve).facets
    ]


# -- properties --------------------------------------------------------------------------

PIECES = [
    "@bob", "@carol.k", "@dana", "@nobody", f"@{BOB}", f"@{DANA}", "@did:key:zBAD",
    "https://a.example/x", "http://b.example/p?q=1&r=(2)", "https://", "#tag", "#café",
    "#cafe\u0301", "#1", "#", "@", "🎉", "👩\u200d💻", "e\u0301", "\u0301", " ", "  ", ".",
    ",", "!", "(", ")", "[", "]", "'", '"', "bob@example.com", "\u200d", "\u202e", "x", "é",
    "\n", "\r\n", "\t", "\x1b[2J", "\x1b]8;;https://evil.example/\x1b\\", "#x#y", "a_", "&#39;",
    "\ud800",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map("".join)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@given(texts)
def test_what_is_found_makes_a_valid_post_body(text: str) -> None:
    """spec 0003 #facets: bytes, boundaries, no overlap, at most 32, tags within 16."""
    if not _encodable(text):  # a lone surrogate: no post can carry it, parsing survives it
        parse_text(text, resolve)
        return
    body: dict[str, Any] = {"text": text}
    fill_post(body, resolve)
    validate_body("post", body)
    assert len(body.get("facets", [])) <= MAX_FACETS
    assert len(body.get("tags", [])) <= MAX_TAGS


@given(texts)
def test_each_facet_covers_what_it_names(text: str) -> None:
    if not _encodable(text):
        return
    for kind, covered, value in found(text):
        if kind == "mention":
            name = covered[1:]
            assert covered.startswith("@")
            assert value == (name if name.startswith("did:") else KNOWN[name])
        elif kind == "link":
            assert covered == value and value.startswith(("http://", "https://"))
        else:
            assert covered == "#" + value


@given(texts)
def test_segments_of_found_facets_join_back_into_the_text(text: str) -> None:
    if not _encodable(text):
        return
    parsed = parse_text(text, resolve)
    parts = segments(text, parsed.facets)
    assert "".join(p.text for p in parts) == text
    assert [p.facet for p in parts if p.facet is not None] == parsed.facets


@given(
    texts,
    st.lists(st.tuples(st.integers(0, 80), st.integers(1, 80)), max_size=8),
)
def test_segments_survive_any_offsets(text: str, spans: list[tuple[int, int]]) -> None:
    """A renderer handed hostile ranges (mid-character, out of range, overlapping)
    still gets pieces that join back into the exact text, each faceted piece exactly
    the facet's bytes."""
    if not _encodable(text):
        return
    facets = [Facet(type="tag", start=s, end=s + n, value="t") for s, n in spans]
    parts = segments(text, facets)
    assert "".join(p.text for p in parts) == text
    data, pos = text.encode(), 0
    for p in parts:
        size = len(p.text.encode())
        if p.facet is not None:
            assert (p.facet.start, p.facet.end) == (pos, pos + size)
            assert data[p.facet.start : p.facet.end].decode() == p.text
        pos += size


# -- tricky texts --------------------------------------------------------------------------


def test_offsets_are_utf8_bytes_after_emoji_and_accents() -> None:
    text = "Olá 🎉 @bob é #café"
    parsed = parse_text(text, resolve)
    assert [(f.type, f.start, f.end) for f in parsed.facets] == [
        ("mention", 10, 14),  # "Olá " is 5 bytes, "🎉 " 5 more
        ("tag", 18, 24),  # " é " is 4 bytes, "#café" 6
    ]


def test_mentions_by_petname_identity_name_and_did() -> None:
    text = f"@bob, @carol.k. @dana! @{DANA} @{BOB}"
    assert found(text) == [
        ("mention", "@bob", BOB),
        ("mention", "@carol.k", CAROL),  # the sentence's '.' is not part of the name
        ("mention", "@dana", DANA),
        ("mention", f"@{DANA}", DANA),
        ("mention", f"@{BOB}", BOB),
    ]


def test_an_unknown_name_stays_plain_text_with_a_note() -> None:
    parsed = parse_text("hi @nobody and @bob", resolve)
    assert [f.value for f in parsed.facets] == [BOB]
    assert len(parsed.notes) == 1 and "@nobody" in parsed.notes[0]
    assert "murmur follow DID --alias nobody" in parsed.notes[0]
    bad = parse_text("@did:key:z6MkNOTAKEY", resolve)
    assert bad.facets == [] and "not a valid did" in bad.notes[0]


def test_at_signs_inside_words_are_not_mentions() -> None:
    for text in (
        "mail bob@example.com",
        "see medium.com/@bob",
        "a+@bob",
        "x_@bob",
        "@bob@example.com",
        "@bobby",  # not @bob: the name continues
        "@bobé",
    ):
        parsed = parse_text(text, resolve)
        assert parsed.facets == [], text


def test_urls_lose_trailing_punctuation_and_unmatched_brackets() -> None:
    cases = {
        "see https://a.example/x.": "https://a.example/x",
        "(https://en.wikipedia.org/wiki/Foo_(bar))": "https://en.wikipedia.org/wiki/Foo_(bar)",
        "[https://a.example/]": "https://a.example/",
        "https://a.example/?q=1, next": "https://a.example/?q=1",
        "'https://a.example/a'": "https://a.example/a",
        '"https://a.example/"!': "https://a.example/",
        "<https://a.example/x>": "https://a.example/x",
        "http://a.example/#frag#tag": "http://a.example/#frag#tag",  # no tag inside
        "https://a.example/@bob": "https://a.example/@bob",  # no mention inside
        "https://a.example/\u202eevil": "https://a.example/",  # bidi override ends it
        "https://a.example/\x1b[2J": "https://a.example/",
    }
    for text, uri in cases.items():
        assert found(text) == [("link", uri, uri)], text
    for text in ("https://", "xhttps://a.example/", "HTTPS://a.example/"):
        assert [f for f in found(text) if f[0] == "link"] == [], text


def test_hashtags() -> None:
    assert found("#Murmur, #café #cafe\u0301 #日本 #x_1") == [
        ("tag", "#Murmur", "Murmur"),
        ("tag", "#café", "café"),
        ("tag", "#cafe\u0301", "cafe\u0301"),  # the combining mark stays in the tag
        ("tag", "#日本", "日本"),
        ("tag", "#x_1", "x_1"),
    ]
    # numbers, entities, words with '#', a mark first, and too long: not tags
    for text in ("#1", "&#39;", "C#", "##x", "#\u0301x", "#" + "a" * 65):
        assert found(text) == [], text
    assert "longer than 64" in parse_text("#" + "a" * 65, resolve).notes[0]


def test_hashtags_go_to_tags_once_within_the_limit() -> None:
    body: dict[str, Any] = {"text": "#Murmur #murmur #MURMUR #b", "tags": ["a"]}
    assert fill_post(body, resolve) == []
    assert body["tags"] == ["a", "Murmur", "b"]
    many = " ".join(f"#t{i}" for i in range(20))
    body = {"text": many}
    notes = fill_post(body, resolve)
    assert body["tags"] == [f"t{i}" for i in range(MAX_TAGS)]
    assert len(body["facets"]) == 20  # every hashtag is still marked in the text
    assert "#t16 #t17 #t18 #t19" in notes[0]
    assert merge_tags(["X"], ["x", "y"], limit=1) == (["X"], ["y"])


def test_at_most_32_facets_with_a_note() -> None:
    text = " ".join(["@bob"] * 40)
    parsed = parse_text(text, resolve)
    assert len(parsed.facets) == MAX_FACETS
    assert "first 32" in parsed.notes[0]


def test_a_post_without_facets_gets_no_facets_key() -> None:
    body: dict[str, Any] = {"text": "plain words, no links"}
    assert fill_post(body, resolve) == []
    assert body == {"text": "plain words, no links"}


def test_terminal_escapes_in_text_survive_parsing_unchanged() -> None:
    """The parser never rewrites the text; textsafety does the showing (render tests)."""
    text = "\x1b[2J @bob\x1b]0;t\x07 #x\x9b2J https://a.example/\x1b[1A"
    body: dict[str, Any] = {"text": text}
    fill_post(body, resolve)
    assert body["text"] == text
    validate_body("post", body)
    assert [f["type"] for f in body["facets"]] == ["mention", "tag", "link"]
