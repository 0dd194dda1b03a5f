"""Signed events (spec 0002): build, wire form, validation order, error codes."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import encode
from protocol.errors import (
    BadFieldError,
    BadPrevError,
    BodyMismatchError,
    FutureTimestampError,
    InvalidDidError,
    InvalidSignatureError,
    MalformedError,
    NonCanonicalError,
    ProtocolError,
    TooLargeError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.events import (
    SIGNING_DOMAIN,
    Event,
    decode_event,
    decode_unverified,
    event_id,
    sign_event,
    signing_message,
)
from protocol.identity import Identity
from protocol.limits import FUTURE_SKEW_MS, MAX_WIRE_BYTES

from .conftest import NOW


def post(identity: Identity, text: str = "hello", **kw: Any) -> Event:
    args: dict[str, Any] = {"seq": 1, "prev": None, "ts": NOW}
    args.update(kw)
    return sign_event(identity, kind="post", body={"text": text}, **args)


def resign(identity: Identity, header: dict[str, Any], body_bytes: bytes | None) -> bytes:
    """Wire bytes of a hand-built header, properly signed: tests later checks in isolation."""
    header_bytes = msgpack.packb(header, use_bin_type=True)
    sig = identity.sign(SIGNING_DOMAIN + hashlib.sha256(header_bytes).digest())
    return encode([header_bytes, sig, body_bytes])


def header_of(event: Event) -> dict[str, Any]:
    return dict(event.header.to_map())


def test_round_trip(alice: Identity) -> None:
    event = post(alice)
    got = decode_event(event.wire, now_ms=NOW)
    assert got == event
    assert got.id == hashlib.sha256(event.header_bytes).digest() == event_id(event.header_bytes)
    assert got.body == {"text": "hello"}
    assert got.author == alice.did and got.seq == 1 and got.prev is None and got.ts == NOW


def test_signature_is_domain_separated(alice: Identity) -> None:
    event = post(alice)
    assert signing_message(event.id) == b"murmur-event-v1:" + event.id
    alice.public.verify(event.sig, b"murmur-event-v1:" + event.id)
    with pytest.raises(InvalidSignatureError):
        alice.public.verify(event.sig, event.id)  # a bare-id signature is not the same


def test_wire_form_is_the_three_element_array(alice: Identity) -> None:
    event = post(alice)
    outer = msgpack.unpackb(event.wire, raw=False)
    assert outer == [event.header_bytes, event.sig, event.body_bytes]
    header = msgpack.unpackb(event.header_bytes, raw=False)
    assert list(header) == ["author", "body", "kind", "net", "prev", "seq", "ts", "v"]


def test_dropped_body_still_verifies(alice: Identity) -> None:
    event = post(alice)
    bare = event.without_body()
    got = decode_event(bare.wire, now_ms=NOW)
    assert got.body is None and got.body_bytes is None and got.id == event.id


def test_forged_signature(alice: Identity) -> None:
    event = post(alice)
    sig = bytes([event.sig[0] ^ 1]) + event.sig[1:]
    with pytest.raises(InvalidSignatureError) as info:
        decode_event(encode([event.header_bytes, sig, event.body_bytes]), now_ms=NOW)
    assert info.value.code == "invalid-signature"


def test_signed_by_another_key(alice: Identity, bob: Identity) -> None:
    event = post(alice)
    sig = bob.sign(signing_message(event.id))
    with pytest.raises(InvalidSignatureError):
        decode_event(encode([event.header_bytes, sig, event.body_bytes]), now_ms=NOW)


def test_body_mismatch(alice: Identity) -> None:
    event = post(alice)
    other = encode({"text": "HELLO"})
    with pytest.raises(BodyMismatchError) as info:
        decode_event(encode([event.header_bytes, event.sig, other]), now_ms=NOW)
    assert info.value.code == "body-mismatch"
    with pytest.raises(BodyMismatchError):
        decode_unverified(encode([event.header_bytes, event.sig, other]))


def test_future_timestamp_window(alice: Identity) -> None:
    ok = post(alice, ts=NOW + 9 * 60 * 1000)
    decode_event(ok.wire, now_ms=NOW)
    late = post(alice, ts=NOW + 11 * 60 * 1000)
    with pytest.raises(FutureTimestampError) as info:
        decode_event(late.wire, now_ms=NOW)
    assert info.value.code == "future-timestamp"
    edge = post(alice, ts=NOW + FUTURE_SKEW_MS)
    decode_event(edge.wire, now_ms=NOW)
    decode_event(post(alice, ts=0).wire, now_ms=NOW)  # the past is always allowed


def test_wrong_network(alice: Identity) -> None:
    event = post(alice, net="testnet")
    decode_event(event.wire, net="testnet", now_ms=NOW)
    with pytest.raises(WrongNetworkError) as info:
        decode_event(event.wire, now_ms=NOW)
    assert info.value.code == "wrong-network"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"v": 2}, UnsupportedVersionError),
        ({"v": True}, BadFieldError),
        ({"seq": 0}, BadFieldError),
        ({"seq": -1}, BadFieldError),
        ({"seq": 1, "prev": b"\x00" * 32}, BadPrevError),
        ({"seq": 2, "prev": None}, BadPrevError),
        ({"prev": b"\x00" * 31, "seq": 2}, BadFieldError),
        ({"ts": -5}, BadFieldError),
        ({"ts": "now"}, BadFieldError),
        ({"kind": "Post"}, BadFieldError),
        ({"kind": ""}, BadFieldError),
        ({"kind": "x" * 65}, BadFieldError),
        ({"net": "Murmur"}, BadFieldError),
        ({"author": "did:key:zNope"}, InvalidDidError),
        ({"author": "did:web:example.com"}, InvalidDidError),
        ({"author": 7}, BadFieldError),
        ({"body": b"\x00" * 31}, BadFieldError),
        ({"extra": 1}, BadFieldError),
    ],
    ids=lambda v: str(v)[:40],
)
def test_header_field_rules(alice: Identity, change: dict[str, Any], error: type) -> None:
    event = post(alice)
    header = header_of(event)
    header.update(change)
    header = dict(sorted(header.items()))  # keep it canonical: only the field is wrong
    wire = resign(alice, header, event.body_bytes)
    with pytest.raises(error):
        decode_event(wire, now_ms=NOW)


def test_missing_header_key(alice: Identity) -> None:
    event = post(alice)
    header = header_of(event)
    del header["ts"]
    with pytest.raises(BadFieldError):
        decode_event(resign(alice, dict(sorted(header.items())), event.body_bytes), now_ms=NOW)


def test_non_canonical_header_is_rejected_before_signature(alice: Identity) -> None:
    event = post(alice)
    header = header_of(event)  # insertion order: v, net, author, ... — not sorted
    with pytest.raises(NonCanonicalError) as info:
        decode_event(resign(alice, header, event.body_bytes), now_ms=NOW)
    assert info.value.code == "non-canonical"


def test_non_canonical_body(alice: Identity) -> None:
    body_bytes = msgpack.packb({"text": "x", "langs": ["en"]}, use_bin_type=True)  # unsorted
    event = post(alice)
    header = header_of(event)
    header["body"] = hashlib.sha256(body_bytes).digest()
    with pytest.raises(NonCanonicalError):
        decode_event(resign(alice, dict(sorted(header.items())), body_bytes), now_ms=NOW)


def test_float_in_body(alice: Identity) -> None:
    body_bytes = msgpack.packb({"text": "x", "z": 1.5}, use_bin_type=True)
    header = header_of(post(alice))
    header["body"] = hashlib.sha256(body_bytes).digest()
    with pytest.raises(NonCanonicalError):
        decode_event(resign(alice, dict(sorted(header.items())), body_bytes), now_ms=NOW)


def test_trailing_bytes(alice: Identity) -> None:
    with pytest.raises(NonCanonicalError):
        decode_event(post(alice).wire + b"\x00", now_ms=NOW)


def test_oversize_text(alice: Identity) -> None:
    with pytest.raises(BadFieldError):
        post(alice, text="é" * 1501)  # 3002 bytes: sign_event refuses, too
    body_bytes = encode({"text": "a" * 3001})
    header = header_of(post(alice))
    header["body"] = hashlib.sha256(body_bytes).digest()
    with pytest.raises(BadFieldError):
        decode_event(resign(alice, dict(sorted(header.items())), body_bytes), now_ms=NOW)
    post(alice, text="a" * 3000)


def test_too_large_wire() -> None:
    with pytest.raises(TooLargeError) as info:
        decode_event(b"\x93" + b"\x00" * MAX_WIRE_BYTES, now_ms=NOW)
    assert info.value.code == "too-large"


@pytest.mark.parametrize(
    "outer",
    [
        [1, 2, 3],
        [b"h", b"s"],
        [b"h", b"s" * 64, b"b", b"x"],
        {"a": 1},
        "event",
        [b"h", b"s" * 63, None],
    ],
    ids=["ints", "two", "four", "map", "str", "short-sig"],
)
def test_wrong_wire_shape(outer: Any) -> None:
    with pytest.raises(MalformedError):
        decode_event(encode(outer), now_ms=NOW)


def test_validation_order_cheap_checks_first(alice: Identity, bob: Identity) -> None:
    # Wrong network AND forged signature: the network check (cheap) reports first.
    event = post(alice, net="othernet")
    forged = encode([event.header_bytes, bob.sign(signing_message(event.id)), event.body_bytes])
    with pytest.raises(WrongNetworkError):
        decode_event(forged, now_ms=NOW)
    # Future timestamp AND body mismatch: time window comes before body hash.
    late = post(alice, ts=NOW + 3_600_000)
    with pytest.raises(FutureTimestampError):
        decode_event(encode([late.header_bytes, late.sig, encode({"text": "?"})]), now_ms=NOW)
    # Body mismatch AND forged signature: body hash comes before the signature.
    ok = post(alice)
    with pytest.raises(BodyMismatchError):
        decode_event(encode([ok.header_bytes, bytes(64), encode({"text": "?"})]), now_ms=NOW)


def test_decode_unverified_skips_signature_network_and_clock(alice: Identity) -> None:
    event = post(alice, net="elsewhere", ts=NOW + 10**9)
    forged = encode([event.header_bytes, bytes(64), event.body_bytes])
    assert decode_unverified(forged).id == event.id


def test_unknown_kind_is_a_valid_event(alice: Identity) -> None:
    event = sign_event(
        alice,
        kind="app.example.poll",
        body={"q": "tea?", "opts": ["yes", "no"], "n": 2},
        seq=1,
        prev=None,
        ts=NOW,
    )
    assert decode_event(event.wire, now_ms=NOW).body == {"q": "tea?", "opts": ["yes", "no"], "n": 2}


def test_sign_event_refuses_floats_and_bad_kinds(alice: Identity) -> None:
    with pytest.raises(NonCanonicalError):
        sign_event(alice, kind="post", body={"text": "x", "f": 0.5}, seq=1, prev=None, ts=NOW)
    with pytest.raises(BadFieldError):
        sign_event(alice, kind="POST", body={"text": "x"}, seq=1, prev=None, ts=NOW)
    with pytest.raises(TooLargeError):
        sign_event(alice, kind="blob", body={"b": b"x" * 70_000}, seq=1, prev=None, ts=NOW)


def test_chain_link_fields(alice: Identity) -> None:
    first = post(alice)
    second = post(alice, "two", seq=2, prev=first.id, ts=NOW + 1)
    assert decode_event(second.wire, now_ms=NOW).prev == first.id


@given(st.binary(max_size=400))
@settings(max_examples=1500)
def test_random_bytes_never_crash_the_event_decoder(data: bytes) -> None:
    try:
        decode_event(data, now_ms=NOW)
    except ProtocolError:
        pass


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
@settings(max_examples=1500)
def test_mutated_events_only_raise_protocol_errors(pos: int, byte: int) -> None:
    alice = Identity.from_seed(bytes(32))
    wire = bytearray(post(alice, "mutate me", seq=1).wire)
    original = bytes(wire)
    wire[pos % len(wire)] = byte
    try:
        event = decode_event(bytes(wire), now_ms=NOW)
    except ProtocolError:
        return
    assert bytes(wire) == original and event.body == {"text": "mutate me"}
