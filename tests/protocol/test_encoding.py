"""Canonical MessagePack (spec 0002 §encoding): round trips, rejections, fuzzing."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import DecodeLimits, decode, encode
from protocol.errors import (
    EncodingError,
    MalformedError,
    NonCanonicalError,
    ProtocolError,
    TooDeepError,
    TooLargeError,
)

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.none() | st.booleans() | ints | st.text(max_size=40) | st.binary(max_size=40)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.dictionaries(st.text(max_size=8), ints, min_size=2, max_size=8))
def test_keys_are_sorted_bytewise_whatever_the_insertion_order(d: dict[str, int]) -> None:
    forward = encode(dict(sorted(d.items())))
    backward = encode(dict(sorted(d.items(), reverse=True)))
    assert forward == backward
    keys = list(msgpack.unpackb(forward, raw=False))
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_key_order_is_utf8_bytes_not_code_points() -> None:
    # UTF-16 code units would put U+FF5E after U+10000 (a surrogate pair, d800..);
    # UTF-8 bytes put it before (ef.. < f0..), and so must we. Uppercase before lowercase.
    data = encode({"b": 1, "B": 2, "a": 3, "\U00010000": 4, "\uff5e": 5})
    assert list(msgpack.unpackb(data, raw=False)) == ["B", "a", "b", "\uff5e", "\U00010000"]


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@given(values, st.integers(min_value=0), st.integers(min_value=0, max_value=255))
@settings(max_examples=1000)
def test_mutated_valid_bytes_only_raise_protocol_errors(value: Any, pos: int, byte: int) -> None:
    data = bytearray(encode(value))
    data[pos % len(data)] = byte
    try:
        out = decode(bytes(data))
    except ProtocolError:
        return
    assert encode(out) == bytes(data)  # anything accepted is canonical


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (msgpack.packb({"b": 1, "a": 2}), NonCanonicalError),  # unsorted keys
        (b"\x82\xa1a\x01\xa1a\x02", NonCanonicalError),  # duplicate key
        (msgpack.packb(1.5), NonCanonicalError),  # float64
        (b"\xca\x00\x00\x00\x00", NonCanonicalError),  # float32
        (b"\xcc\x01", NonCanonicalError),  # 1 as uint8: not shortest
        (b"\xd0\x01", NonCanonicalError),  # 1 as int8
        (b"\xcf" + b"\x00" * 7 + b"\x05", NonCanonicalError),  # 5 as uint64
        (b"\xd9\x01a", NonCanonicalError),  # 1-char str as str8
        (b"\xc5\x00\x01a", NonCanonicalError),  # 1-byte bin as bin16
        (b"\x01\x02", NonCanonicalError),  # trailing bytes
        (b"\xd4\x01\x00", NonCanonicalError),  # ext type
        (b"\xd6\xff\x00\x00\x00\x00", NonCanonicalError),  # timestamp ext -1
        (b"\x81\x01\x01", NonCanonicalError),  # int map key
        (b"\x81\xc4\x01a\x01", NonCanonicalError),  # bin map key
        (b"\xa1\xff", MalformedError),  # invalid UTF-8
        (b"\x92\x01", MalformedError),  # truncated
        (b"\xc1", MalformedError),  # reserved byte
        (b"\xc7\x50\x01" + b"\x00" * 0x50, NonCanonicalError),  # big ext
        (b"\xd5\xff\x00\x00", NonCanonicalError),  # ext -1 with a bad timestamp payload
        (b"\x81\x90\x01", NonCanonicalError),  # array as map key
        (b"", MalformedError),
        (b"\xdd\xff\xff\xff\xff", TooLargeError),  # declared 4G-element array
        (b"\xdf\xff\xff\xff\xff", TooLargeError),  # declared 4G-entry map
        (b"\xdb\xff\xff\xff\xff", EncodingError),  # declared 4 GiB string, no data
        (b"\x91" * 40 + b"\xc0", TooDeepError),
        (b"\x91" * 100_000 + b"\xc0", EncodingError),  # hostile depth: no recursion crash
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else bytes(v[:6]).hex(),
)
def test_rejections(data: bytes, error: type[ProtocolError]) -> None:
    with pytest.raises(error):
        decode(data)


def test_error_codes_are_stable() -> None:
    cases = {
        b"\xcc\x01": "non-canonical",
        b"\xa1\xff": "malformed",
        b"\xdd\xff\xff\xff\xff": "too-large",
        b"\x91" * 40 + b"\xc0": "too-deep",
    }
    for data, code in cases.items():
        with pytest.raises(ProtocolError) as info:
            decode(data)
        assert info.value.code == code


def test_limits_are_enforced() -> None:
    limits = DecodeLimits(max_bytes=10, max_depth=2, max_str=3, max_bin=3, max_items=2)
    with pytest.raises(TooLargeError):
        decode(encode("x" * 20), limits=limits)
    with pytest.raises(TooLargeError):
        decode(encode("abcd"), limits=limits)
    with pytest.raises(TooLargeError):
        decode(encode(b"abcd"), limits=limits)
    with pytest.raises(TooLargeError):
        decode(encode([1, 2, 3]), limits=limits)
    with pytest.raises(TooDeepError):
        decode(encode([[[1]]]), limits=limits)
    assert decode(encode([[1]]), limits=limits) == [[1]]


@pytest.mark.parametrize(
    "value",
    [1.0, {1: 2}, {b"k": 1}, 2**64, -(2**63) - 1, object(), {"a": {1.5}}],
    ids=["float", "int-key", "bin-key", "too-big", "too-small", "object", "set"],
)
def test_encode_refuses_values_without_a_canonical_form(value: Any) -> None:
    with pytest.raises(EncodingError):
        encode(value)


def test_integer_boundaries_use_shortest_form() -> None:
    assert encode(127) == b"\x7f"
    assert encode(128) == b"\xcc\x80"
    assert encode(-32) == b"\xe0"
    assert encode(-33) == b"\xd0\xdf"
    assert encode(2**64 - 1) == b"\xcf" + b"\xff" * 8
    assert decode(b"\xcf" + b"\xff" * 8) == 2**64 - 1
