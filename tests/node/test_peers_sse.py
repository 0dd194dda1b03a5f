"""The pure parts of federation: the bounded SSE parser a node reads its peers' streams
with (node/federation/sse.py) and the peer table with its scores and drop rules
(node/federation/peers.py, spec 0005 §peers)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.federation.errors import PeerBadResponseError
from node.federation.peers import (
    DROP_AFTER_FAILURES,
    DROP_SCORE,
    SCORE_MAX,
    SCORE_MIN,
    Peer,
    PeerState,
    PeerTable,
    Score,
)
from node.federation.sse import SseMessage, SseParser
from tests.node.backends import both_backends

# The node API over each store backend (spec 0004 §store: one contract).
pytestmark = both_backends()

# -- SseParser ------------------------------------------------------------------------

LIMIT = 64 * 1024


def parse(
    stream: bytes, *, cuts: list[int] | None = None, limit: int = LIMIT
) -> tuple[list[SseMessage], list[str]]:
    """Feed ``stream`` cut at the ``cuts`` offsets: the messages and the comments."""
    parser = SseParser(max_message_bytes=limit)
    offsets = sorted({c for c in (cuts or []) if 0 < c < len(stream)})
    out: list[SseMessage] = []
    start = 0
    for cut in [*offsets, len(stream)]:
        out += parser.feed(stream[start:cut])
        start = cut
    return out, parser.comments


def messages(stream: bytes, **kw: Any) -> list[SseMessage]:
    return parse(stream, **kw)[0]


# One line's text: any UTF-8 character but the line breaks (and NUL, which makes an id
# ignored; tested on its own).
_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=12)
_message = st.fixed_dictionaries(
    {
        "comments": st.lists(_text, max_size=2),
        "event": st.one_of(st.none(), _text),
        "data": st.lists(_text, min_size=1, max_size=3),
        "id": st.one_of(st.none(), _text),
        "unknown": st.booleans(),
        "tight": st.booleans(),
    }
)


def _render(
    msgs: list[dict[str, Any]], crlf: list[bool]
) -> tuple[bytes, list[SseMessage], list[str]]:
    """A stream for ``msgs``, and the messages and comments a correct parser yields."""
    lines: list[str] = []
    expected: list[SseMessage] = []
    comments: list[str] = []
    last_id: str | None = None
    for m in msgs:
        for c in m["comments"]:
            lines.append(f":{c}")
            comments.append(c.strip())
        if m["unknown"]:
            lines += ["retry: 1000", "x-unknown: ignored"]
        if m["event"] is not None:
            lines.append(f"event: {m['event']}")
        for d in m["data"]:
            # "data:x" and "data: x" are the same line (one leading space is dropped).
            lines.append(f"data:{d}" if m["tight"] and not d.startswith(" ") else f"data: {d}")
        if m["id"] is not None:
            lines.append(f"id: {m['id']}")
            last_id = m["id"]
        lines.append("")
        expected.append(SseMessage(m["event"] or "message", "\n".join(m["data"]), last_id))
    out = b"".join(
        line.encode() + (b"\r\n" if crlf[i % len(crlf)] else b"\n") for i, line in enumerate(lines)
    )
    return out, expected, comments[:16]


@settings(max_examples=150, deadline=None)
@given(
    msgs=st.lists(_message, max_size=5),
    crlf=st.lists(st.booleans(), min_size=1, max_size=7),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_any_chunking_yields_the_same_messages(
    msgs: list[dict[str, Any]], crlf: list[bool], cuts: list[int]
) -> None:
    stream, expected, comments = _render(msgs, crlf)
    assert parse(stream) == (expected, comments)
    # Cut anywhere, even inside a CRLF or a multi-byte character.
    assert parse(stream, cuts=cuts) == (expected, comments)
    # And one byte at a time.
    assert messages(stream, cuts=list(range(len(stream)))) == expected


def test_a_node_stream_frame_and_crlf() -> None:
    frame = b'retry: 1000\r\n: cursor=7\r\n\r\nid: 8\r\nevent: event\r\ndata: {"cursor":8}\r\n\r\n'
    assert parse(frame) == ([SseMessage("event", '{"cursor":8}', "8")], ["cursor=7"])


def test_partial_message_waits_for_its_blank_line() -> None:
    parser = SseParser(max_message_bytes=LIMIT)
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"data: b\n") == []
    assert parser.feed(b"\n") == [SseMessage("message", "a\nb", None)]


def test_id_persists_and_event_resets() -> None:
    stream = b"event: x\nid: 5\ndata: a\n\ndata: b\n\nid: 6\ndata: c\n\n"
    assert messages(stream) == [
        SseMessage("x", "a", "5"),
        SseMessage("message", "b", "5"),  # the last event id persists, the type does not
        SseMessage("message", "c", "6"),
    ]


def test_id_with_nul_is_ignored_and_long_fields_are_cut() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nevent: " + b"e" * 100 + b"\nid: "
    stream += b"9" * 100 + b"\ndata: c\n\n"
    got = messages(stream)
    assert [m.id for m in got] == ["1", "1", "9" * 64]
    assert got[2].event == "e" * 64


def test_message_without_data_is_not_dispatched() -> None:
    # "event" alone and a blank line dispatch nothing, and the type does not leak.
    assert messages(b"event: x\n\ndata: y\n\n") == [SseMessage("message", "y", None)]
    assert messages(b"\n\n\n") == []
    # A field without a colon has an empty value: "data" alone is one empty data line.
    assert messages(b"data\n\n") == [SseMessage("message", "", None)]


def test_comments_are_collected_up_to_16_keeping_the_newest() -> None:
    stream = b"".join(f": c{i} \n".encode() for i in range(20)) + b"data: x\n\n"
    parser = SseParser(max_message_bytes=LIMIT)
    assert parser.feed(stream) == [SseMessage("message", "x", None)]
    assert parser.comments == [f"c{i}" for i in range(4, 20)]
    parser.comments.clear()  # what the manager does after reading them
    parser.feed(b": cursor=3\n")
    assert parser.comments == ["cursor=3"]


def test_line_at_the_limit_is_kept_one_byte_more_is_refused() -> None:
    parser = SseParser(max_message_bytes=100)
    line = b"data: " + b"x" * 94  # 100 bytes, no newline yet
    for i in range(0, len(line), 7):
        assert parser.feed(line[i : i + 7]) == []
    with pytest.raises(PeerBadResponseError) as err:
        parser.feed(b"x")
    assert err.value.code == "peer-bad-response"


def test_endless_line_in_small_chunks_is_refused_without_buffering_it() -> None:
    parser = SseParser(max_message_bytes=1000)
    with pytest.raises(PeerBadResponseError):
        for _ in range(10_000):
            parser.feed(b"x" * 10)
    assert len(parser._partial) <= 1000 + 10


def test_message_over_the_limit_is_refused() -> None:
    parser = SseParser(max_message_bytes=100)
    # Each data line counts its length plus one (the newline joining them).
    line = b"data: " + b"a" * 49 + b"\n"
    assert parser.feed(line * 2 + b"\n") == [
        SseMessage("message", "a" * 49 + "\n" + "a" * 49, None)
    ]
    assert parser.feed(line * 2) == []
    with pytest.raises(PeerBadResponseError, match="larger than 100"):
        parser.feed(b"data:\n")


@pytest.mark.parametrize(
    "stream",
    [
        b"data: \xff\xfe\n\n",
        b": \xc3\n",  # a truncated two-byte sequence in a comment
        b"event: \xed\xa0\x80\ndata: x\n\n",  # an encoded surrogate
        b"id: \x80\n",
    ],
    ids=["data", "comment", "surrogate", "id"],
)
def test_non_utf8_is_refused(stream: bytes) -> None:
    with pytest.raises(PeerBadResponseError, match="UTF-8"):
        SseParser(max_message_bytes=LIMIT).feed(stream)


def test_multibyte_character_split_across_chunks_is_fine() -> None:
    data = "é€😀".encode()
    stream = b"data: " + data + b"\n\n"
    for cut in range(1, len(stream)):
        assert messages(stream, cuts=[cut]) == [SseMessage("message", "é€😀", None)]


def test_message_limit_is_in_bytes() -> None:
    parser = SseParser(max_message_bytes=100)
    # 40 characters, 120 bytes of data: over a 100-byte limit.
    with pytest.raises(PeerBadResponseError):
        parser.feed(b"data: " + "€".encode() * 40 + b"\n\n")


def test_complete_long_line_in_one_chunk_is_refused() -> None:
    parser = SseParser(max_message_bytes=100)
    with pytest.raises(PeerBadResponseError):
        parser.feed(b":" + b"x" * 1000 + b"\n")


# -- PeerTable, Peer --------------------------------------------------------------------


def peer(url: str = "http://a.example", source: str = "gossip", **kw: Any) -> Peer:
    return Peer(url=url, source=source, **kw)


def test_add_duplicate_and_full() -> None:
    table = PeerTable(max_peers=2, drop_silence_ms=1000)
    assert table.add(peer("http://a.example"))
    assert not table.add(peer("http://a.example", source="static"))  # same origin
    assert table.add(peer("http://b.example"))
    assert not table.add(peer("http://c.example"))  # full for gossip
    assert table.add(peer("http://s.example", source="static"))  # static always fits
    assert table.add(peer("http://t.example", source="static"))
    assert len(table) == 4
    assert "http://c.example" not in table and "http://t.example" in table
    table.remove("http://a.example")
    table.remove("http://nope.example")  # absent: no error
    assert not table.add(peer("http://c.example"))  # still full (3 >= 2)
    assert [p.url for p in table.all()] == [
        "http://b.example",
        "http://s.example",
        "http://t.example",
    ]


def test_same_node_only_counts_connected_or_connecting_others() -> None:
    table = PeerTable(max_peers=8, drop_silence_ms=1000)
    a = peer("http://a.example", node_id="n1", state=PeerState.LIVE)
    b = peer("http://b.example", node_id="n1", state=PeerState.CONNECTING)
    c = peer("http://c.example", node_id="n2", state=PeerState.CONNECTING)
    for p in (a, b, c):
        table.add(p)
    assert table.same_node(b, "n1") is a
    assert table.same_node(a, "n1") is b
    assert table.same_node(c, "n2") is None  # itself does not count
    assert table.same_node(c, "n3") is None
    for state in (PeerState.BACKOFF, PeerState.DUPLICATE, PeerState.NEW, PeerState.SELF):
        a.state = b.state = state
        assert table.same_node(c, "n1") is None, state


def test_should_drop_rules() -> None:
    silence = 1000
    table = PeerTable(max_peers=8, drop_silence_ms=silence)
    now = 10_000
    # Static: never, whatever happened.
    s = peer(source="static", score=SCORE_MIN, failures=1000, added_ms=0)
    assert not table.should_drop(s, now)
    # Score at or below DROP_SCORE.
    assert table.should_drop(peer(score=DROP_SCORE, added_ms=now), now)
    assert not table.should_drop(peer(score=DROP_SCORE + 0.1, added_ms=now), now)
    # Enough failures AND silent long enough (since last success, else since added).
    dead = peer(failures=DROP_AFTER_FAILURES, added_ms=now - silence - 1)
    assert table.should_drop(dead, now)
    assert not table.should_drop(
        peer(failures=DROP_AFTER_FAILURES - 1, added_ms=now - silence - 1), now
    )
    assert not table.should_drop(peer(failures=DROP_AFTER_FAILURES, added_ms=now - silence), now)
    assert not table.should_drop(peer(failures=100, added_ms=0, last_ok_ms=now - silence + 1), now)
    assert table.should_drop(peer(failures=100, added_ms=now, last_ok_ms=now - silence - 1), now)


def test_score_is_clamped_and_outcomes_move_it() -> None:
    p = peer()
    for _ in range(30):
        p.adjust(Score.CONNECTED)
    assert p.score == SCORE_MAX
    p.adjust(Score.FORBIDDEN)
    p.adjust(Score.FORBIDDEN)
    p.adjust(Score.BAD_RESPONSE)
    assert p.score == SCORE_MIN
    p = peer()
    p.failed("peer-unreachable", Score.UNREACHABLE)
    p.failed("peer-bad-response", Score.BAD_RESPONSE)
    assert (p.failures, p.last_error, p.score) == (2, "peer-bad-response", -25.0)
    p.succeeded(1234, Score.CONNECTED)  # credit, but the stream has not proven itself
    assert (p.failures, p.last_error, p.last_ok_ms) == (2, "peer-bad-response", 1234)
    assert p.score == -20.0
    p.recovered()
    assert (p.failures, p.last_error) == (0, None)
    assert [s.value for s in Score] == [5.0, 2.0, -5.0, -2.0, -20.0, -10.0, -100.0]


def test_to_json_shape_and_order() -> None:
    table = PeerTable(max_peers=8, drop_silence_ms=1000)
    table.add(peer("http://b.example", score=1.23456, cursor=9, node_id="n"))
    table.add(peer("http://a.example", source="static", state=PeerState.LIVE))
    doc = table.to_json()
    assert [d["url"] for d in doc] == ["http://a.example", "http://b.example"]
    assert set(doc[0]) == {
        "url",
        "state",
        "score",
        "source",
        "node_id",
        "cursor",
        "failures",
        "last_ok_ms",
        "last_error",
        "next_attempt_ms",
        "events_received",
        "events_rejected",
        "last_sync",
    }
    assert doc[0]["state"] == "live" and doc[0]["source"] == "static"
    assert doc[1]["score"] == 1.23 and doc[1]["cursor"] == 9 and doc[1]["node_id"] == "n"
    assert doc[1]["state"] == "new"


def test_record_round_trip_keeps_what_survives_a_restart() -> None:
    p = peer(
        node_id="n",
        cursor=42,
        score=-7.5,
        failures=3,
        last_ok_ms=5,
        added_ms=4,
        state=PeerState.LIVE,
        last_error="x",
        events_received=9,
    )
    back = Peer.from_record(p.record())
    assert (back.url, back.source, back.node_id, back.cursor, back.score) == (
        p.url,
        p.source,
        "n",
        42,
        -7.5,
    )
    assert (back.failures, back.last_ok_ms, back.added_ms) == (3, 5, 4)
    assert back.state is PeerState.NEW  # runtime state starts over
