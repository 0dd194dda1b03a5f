"""Post facets: byte ranges of a post's text that mention, link or tag (spec 0003 #facets).

The vectors (events-valid/invalid.json) pin one case per rule; these tests add the
properties: a range is accepted exactly when it is in bounds and on UTF-8 character
boundaries, known-type facets never overlap, unknown types are skipped by readers
(#facets-unknown) but still need a valid range, and reading the facets back gives the
typed values in text order.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import BadFieldError
from protocol.facets import Facet, mentioned_dids, post_facets, validate_facets
from protocol.identity import Identity, did_murmur_from_genesis_body
from protocol.kinds import validate_body
from protocol.limits import MAX_FACETS, MAX_URI_BYTES

BOB = Identity.from_seed(bytes(31) + b"\x01").did
DANA = did_murmur_from_genesis_body(b"\x80")


def _ok(text: str, start: int, end: int) -> bool:
    """The reference rule: in bounds, and both cuts decode as UTF-8 on their own."""
    data = text.encode()
    if not 0 <= start < end <= len(data):
        return False
    try:
        data[:start].decode()
        data[start:end].decode()
    except UnicodeDecodeError:
        return False
    return True


@given(st.text(max_size=40), st.integers(-2, 200), st.integers(-2, 200))
def test_a_range_is_valid_iff_in_bounds_and_on_character_boundaries(
    text: str, start: int, end: int
) -> None:
    """spec 0003 #facets: offsets are UTF-8 bytes on character boundaries."""
    facet = {"type": "org.example.x", "start": start, "end": end}
    if _ok(text, start, end):
        validate_facets(text, [facet])
    else:
        with pytest.raises(BadFieldError):
            validate_facets(text, [facet])


@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(1, 6)), max_size=6),
)
def test_known_facets_are_valid_iff_no_two_overlap(spans: list[tuple[int, int]]) -> None:
    """spec 0003 #facets-overlap: touching ranges are fine, sharing a byte is not."""
    text = "x" * 20
    facets = [{"type": "tag", "start": s, "end": s + n, "tag": "t"} for s, n in spans]
    ranges = [(s, s + n) for s, n in spans]
    overlap = any(c < b and a < d for i, (a, b) in enumerate(ranges) for (c, d) in ranges[i + 1 :])
    if overlap:
        with pytest.raises(BadFieldError, match="overlap"):
            validate_facets(text, facets)
    else:
        validate_facets(text, facets)


def test_unknown_types_may_overlap_known_ones_and_are_left_out_when_read() -> None:
    """spec 0003 #facets-unknown."""
    text = "@bob #x"
    body: dict[str, Any] = {
        "text": text,
        "facets": [
            {"type": "tag", "start": 5, "end": 7, "tag": "x", "extra": [1]},
            {"type": "org.example.bold", "start": 0, "end": 7, "anything": b"\x00"},
            {"type": "mention", "start": 0, "end": 4, "did": BOB},
        ],
    }
    validate_body("post", body)
    assert post_facets(body) == [
        Facet(type="mention", start=0, end=4, value=BOB),
        Facet(type="tag", start=5, end=7, value="x"),
    ]


def test_an_unknown_type_still_needs_a_valid_range() -> None:
    """spec 0003 #facets-unknown: every reader skips it alike."""
    for bad in ({"start": 0, "end": 9}, {"start": 1, "end": 1}, {"start": "0", "end": 1}):
        with pytest.raises(BadFieldError):
            validate_body("post", {"text": "abc", "facets": [{"type": "x.y", **bad}]})


def test_a_malformed_known_facet_makes_the_body_invalid() -> None:
    """spec 0003 #facets: a known type with a bad field is bad-field, not ignored."""
    base = {"type": "mention", "start": 0, "end": 4}
    for facet in (
        base,
        {**base, "did": "did:key:zNOPE"},
        {**base, "did": BOB.encode()},
        {**base, "type": "link", "uri": "javascript:alert(1)"},
        {**base, "type": "link", "uri": "https://a.example/\x1b[2J"},
        {**base, "type": "link", "uri": "https://a.example/\x9b2J"},
        {**base, "type": "tag", "tag": "#bob"},
    ):
        with pytest.raises(BadFieldError):
            validate_body("post", {"text": "@bob", "facets": [facet]})


def test_mentioned_dids_are_each_did_once_in_text_order() -> None:
    """What the node's notification index reads: mention facets only."""
    text = "@dana @bob @dana https://a.example"
    body = {
        "text": text,
        "facets": [
            {"type": "mention", "start": 11, "end": 16, "did": DANA},
            {"type": "mention", "start": 6, "end": 10, "did": BOB},
            {"type": "mention", "start": 0, "end": 5, "did": DANA},
            {"type": "link", "start": 17, "end": 34, "uri": "https://a.example"},
        ],
    }
    validate_body("post", body)
    assert mentioned_dids(body) == [DANA, BOB]
    assert mentioned_dids({"text": "no facets"}) == []


def test_the_limits_at_their_edges() -> None:
    text = "x" * 40
    unknown = {"type": "x" * 32, "start": 0, "end": 1}
    validate_facets(text, [unknown] * MAX_FACETS)
    with pytest.raises(BadFieldError, match="more than 32"):
        validate_facets(text, [unknown] * (MAX_FACETS + 1))
    uri = "https://a.example/" + "a" * (MAX_URI_BYTES - len("https://a.example/"))
    validate_facets(text, [{"type": "link", "start": 0, "end": 1, "uri": uri}])
    with pytest.raises(BadFieldError, match="longer"):
        validate_facets(text, [{"type": "link", "start": 0, "end": 1, "uri": uri + "a"}])
    # A URI of the greatest length that fails on its last character: the one regular
    # expression is a single character class, so this is one linear pass.
    validate_facets(text, [{"type": "link", "start": 0, "end": 1, "uri": uri[:-1] + "/"}])
    with pytest.raises(BadFieldError):
        validate_facets(text, [{"type": "link", "start": 0, "end": 1, "uri": uri[:-1] + " "}])


def test_facet_checks_its_value_on_construction_and_maps_back() -> None:
    facet = Facet(type="link", start=0, end=5, value="https://x")
    assert facet.to_map() == {"type": "link", "start": 0, "end": 5, "uri": "https://x"}
    for kw in (
        {"type": "bold", "start": 0, "end": 1, "value": "x"},
        {"type": "tag", "start": 1, "end": 1, "value": "x"},
        {"type": "tag", "start": True, "end": 2, "value": "x"},
        {"type": "mention", "start": 0, "end": 1, "value": "bob"},
    ):
        with pytest.raises(BadFieldError):
            Facet(**kw)


@given(
    st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda scheme, rest: scheme + rest,
            st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "https:/", ""]),
            st.text(alphabet=st.characters(max_codepoint=0xA0), max_size=20),
        ),
    )
)
def test_the_ascii_fast_path_of_the_uri_check_agrees_with_the_rule(uri: str) -> None:
    """The link rule of spec 0003 #facets is one regular expression; the byte fast path
    for ASCII URIs must give the same answer on every string."""
    from protocol.facets import _URI_RE, _uri_ok

    assert _uri_ok(uri) == (_URI_RE.fullmatch(uri) is not None)
