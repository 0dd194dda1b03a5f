"""Signed events: header, id, signature, wire form, and validation (spec 0002).

An event travels as the wire array ``[header_bytes, sig, body_bytes | nil]``. The
header is a canonical map::

    {"v": 1, "net": str, "author": did, "seq": int >= 1, "prev": bin32 | nil,
     "ts": int ms, "kind": str, "body": bin32 = sha256(body_bytes)}

``id = sha256(header_bytes)`` and ``sig = Ed25519(b"murmur-event-v1:" + id)``. The
signature covers the header and, through its ``body`` hash, the body; the wire form
carries the exact signed bytes so nobody re-encodes anything before verifying. A body
may be dropped (``nil``) by a node — after a deletion, say — and the header still
proves itself.

:func:`decode_event` checks in the order of spec 0002 §validation, cheapest first:
size → strict decode → canonical → field types and limits → network → time window →
body hash → signature. :func:`sign_event` builds events and refuses to sign anything
:func:`decode_event` would reject. :func:`decode_unverified` skips the signature and
the clock, and is for tooling only.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from protocol import kinds
from protocol.encoding import DecodeLimits, decode, encode, encode_bins
from protocol.errors import (
    BadFieldError,
    BadPrevError,
    BodyMismatchError,
    FutureTimestampError,
    MalformedError,
    ProtocolError,
    TooLargeError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.identity import Identity, PublicKey, public_bytes_from_did
from protocol.limits import (
    FUTURE_SKEW_MS,
    MAX_BODY_BYTES,
    MAX_BODY_ITEMS,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    MAX_KIND_BYTES,
    MAX_NET_BYTES,
    MAX_SEQ,
    MAX_SHAPE_DEPTH,
    MAX_SHAPE_ITEMS,
    MAX_TS,
    MAX_WIRE_BYTES,
)

__all__ = [
    "DEFAULT_NETWORK",
    "EVENT_VERSION",
    "HEADER_KEYS",
    "SIGNING_DOMAIN",
    "Event",
    "Header",
    "decode_event",
    "try_decode_event",
    "claimed_id",
    "decode_unverified",
    "event_id",
    "signing_message",
    "sign_event",
]

EVENT_VERSION = 1
DEFAULT_NETWORK = "murmur"
#: Domain separation: a Murmur signature can never be replayed as anything else.
SIGNING_DOMAIN = b"murmur-event-v1:"
HEADER_KEYS = frozenset({"v", "net", "author", "seq", "prev", "ts", "kind", "body"})

# kind and net names: lowercase, digits, '-', '.', starting with a letter or digit.
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9.\-]*\Z")

# Decode bounds per layer (spec 0002 §limits). Each layer is decoded on its own, its
# top value at depth 0. The wire and header bounds are loose enough that a value of
# the wrong type or size decodes and then fails the shape check with a precise code.
_WIRE_LIMITS = DecodeLimits(
    max_bytes=MAX_WIRE_BYTES,
    max_depth=MAX_SHAPE_DEPTH,
    max_str=MAX_HEADER_BYTES,
    max_bin=MAX_BODY_BYTES,
    max_items=MAX_SHAPE_ITEMS,
)
_HEADER_LIMITS = DecodeLimits(
    max_bytes=MAX_HEADER_BYTES,
    max_depth=MAX_SHAPE_DEPTH,
    max_str=MAX_HEADER_BYTES,
    max_bin=MAX_HEADER_BYTES,
    max_items=MAX_SHAPE_ITEMS,
)
_BODY_LIMITS = DecodeLimits(
    max_bytes=MAX_BODY_BYTES,
    max_depth=MAX_DEPTH,
    max_str=MAX_BODY_BYTES,
    max_bin=MAX_BODY_BYTES,
    max_items=MAX_BODY_ITEMS,
)


def event_id(header_bytes: bytes) -> bytes:
    """``sha256(header_bytes)``: the 32-byte event id."""
    return hashlib.sha256(header_bytes).digest()


def signing_message(eid: bytes) -> bytes:
    """The bytes an author signs for event ``eid`` (spec 0002 §signature)."""
    return SIGNING_DOMAIN + eid


def _check_name(what: str, value: object, max_bytes: int) -> str:
    if not isinstance(value, str) or not value:
        raise BadFieldError(f"{what} must be a non-empty string")
    if len(value.encode("utf-8")) > max_bytes:
        raise BadFieldError(f"{what} is longer than {max_bytes} bytes")
    if not _NAME_RE.match(value):
        raise BadFieldError(f"{what} {value!r} must match [a-z0-9][a-z0-9.-]*")
    return value


def _check_uint(what: str, value: object, minimum: int, maximum: int) -> int:
    # bool is an int subclass in Python; it is a different msgpack type, so refuse it.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadFieldError(f"{what} must be an integer")
    if not minimum <= value <= maximum:
        raise BadFieldError(f"{what} must be in [{minimum}, {maximum}]")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The signed header of an event. Validates its fields on construction."""

    v: int
    net: str
    author: str
    seq: int
    prev: bytes | None
    ts: int
    kind: str
    body_hash: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.v, int) or isinstance(self.v, bool):
            raise BadFieldError("v must be an integer")
        if self.v != EVENT_VERSION:
            raise UnsupportedVersionError(f"event version {self.v} is not supported")
        _check_name("net", self.net, MAX_NET_BYTES)
        if not isinstance(self.author, str):
            raise BadFieldError("author must be a did:key string")
        public_bytes_from_did(self.author)  # raises InvalidDidError
        _check_uint("seq", self.seq, 1, MAX_SEQ)
        if self.prev is not None and (not isinstance(self.prev, bytes) or len(self.prev) != 32):
            raise BadFieldError("prev must be 32 bytes or nil")
        if self.seq == 1 and self.prev is not None:
            raise BadPrevError("seq 1 must have prev = nil")
        if self.seq > 1 and self.prev is None:
            raise BadPrevError(f"seq {self.seq} must carry the previous event's id in prev")
        _check_uint("ts", self.ts, 0, MAX_TS)
        _check_name("kind", self.kind, MAX_KIND_BYTES)
        if not isinstance(self.body_hash, bytes) or len(self.body_hash) != 32:
            raise BadFieldError("body must be the 32-byte sha256 of the body bytes")

    def to_map(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "net": self.net,
            "author": self.author,
            "seq": self.seq,
            "prev": self.prev,
            "ts": self.ts,
            "kind": self.kind,
            "body": self.body_hash,
        }

    @classmethod
    def from_map(cls, m: object) -> Header:
        if not isinstance(m, dict):
            raise BadFieldError("header must be a map")
        # The version comes first: a future version may add or drop header keys, and
        # must be reported as unsupported-version, not as a bad field.
        v = m.get("v")
        if isinstance(v, int) and not isinstance(v, bool) and v != EVENT_VERSION:
            raise UnsupportedVersionError(f"event version {v} is not supported")
        keys = set(m)
        if keys != HEADER_KEYS:
            missing = sorted(HEADER_KEYS - keys)
            extra = sorted(str(k) for k in keys - HEADER_KEYS)
            raise BadFieldError(f"header keys: missing {missing}, unexpected {extra}")
        return cls(
            v=m["v"],
            net=m["net"],
            author=m["author"],
            seq=m["seq"],
            prev=m["prev"],
            ts=m["ts"],
            kind=m["kind"],
            body_hash=m["body"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A signed event with its exact bytes. ``body`` is ``None`` when dropped.

    Build one with :func:`sign_event` or :func:`decode_event`; constructing it by hand
    checks shapes but proves nothing.
    """

    header: Header
    header_bytes: bytes = field(repr=False)
    id: bytes
    sig: bytes = field(repr=False)
    body_bytes: bytes | None = field(repr=False)
    body: dict[str, Any] | None
    #: The wire form ``[header_bytes, sig, body_bytes | nil]``, computed once.
    wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.id) != 32:
            raise BadFieldError("id must be 32 bytes")
        if not isinstance(self.sig, bytes) or len(self.sig) != 64:
            raise BadFieldError("sig must be 64 bytes")
        if (self.body_bytes is None) != (self.body is None):
            raise BadFieldError("body and body_bytes must both be present or both absent")
        # Frozen: set the derived field once, here. Events are read far more than built.
        object.__setattr__(
            self, "wire", encode_bins([self.header_bytes, self.sig, self.body_bytes])
        )

    # Header shortcuts: events are read far more than they are built.
    @property
    def author(self) -> str:
        return self.header.author

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def prev(self) -> bytes | None:
        return self.header.prev

    @property
    def ts(self) -> int:
        return self.header.ts

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def net(self) -> str:
        return self.header.net

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    def without_body(self) -> Event:
        """The same event with its body dropped (after a deletion, or by policy)."""
        return replace(self, body_bytes=None, body=None)

    def verify_signature(self) -> None:
        """Return nothing if ``sig`` is the author's signature of ``id``; else raise."""
        PublicKey.from_did(self.header.author).verify(self.sig, signing_message(self.id))


def sign_event(
    identity: Identity,
    *,
    kind: str,
    body: Mapping[str, Any],
    seq: int,
    prev: bytes | None,
    ts: int | None = None,
    net: str = DEFAULT_NETWORK,
) -> Event:
    """Build and sign an event. Raises the same errors :func:`decode_event` would."""
    if not isinstance(body, Mapping):
        raise BadFieldError("body must be a map")
    body_bytes = encode(body, max_depth=MAX_DEPTH)
    if len(body_bytes) > MAX_BODY_BYTES:
        raise TooLargeError(f"body is {len(body_bytes)} bytes; the limit is {MAX_BODY_BYTES}")
    body_value: dict[str, Any] = decode(body_bytes, limits=_BODY_LIMITS)
    kinds.validate_body(kind, body_value)
    header = Header(
        v=EVENT_VERSION,
        net=net,
        author=identity.did,
        seq=seq,
        prev=prev,
        ts=int(time.time() * 1000) if ts is None else ts,
        kind=kind,
        body_hash=hashlib.sha256(body_bytes).digest(),
    )
    header_bytes = encode(header.to_map())
    eid = event_id(header_bytes)
    return Event(
        header=header,
        header_bytes=header_bytes,
        id=eid,
        sig=identity.sign(signing_message(eid)),
        body_bytes=body_bytes,
        body=body_value,
    )


def _parse(wire: bytes) -> Event:
    """Steps 1–4 of validation: size, strict decode, canonical, fields (no crypto)."""
    if not isinstance(wire, bytes | bytearray | memoryview):
        raise MalformedError("an event is bytes")
    if len(wire) > MAX_WIRE_BYTES:
        raise TooLargeError(f"event is {len(wire)} bytes; the limit is {MAX_WIRE_BYTES}")
    outer = decode(bytes(wire), limits=_WIRE_LIMITS)
    if not isinstance(outer, list) or len(outer) != 3:
        raise MalformedError("an event is the array [header, sig, body | nil]")
    header_bytes, sig, body_bytes = outer
    if not isinstance(header_bytes, bytes):
        raise MalformedError("header must be bin")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise MalformedError("sig must be 64 bytes of bin")
    if body_bytes is not None and not isinstance(body_bytes, bytes):
        raise MalformedError("body must be bin or nil")
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise TooLargeError(f"header is {len(header_bytes)} bytes; limit {MAX_HEADER_BYTES}")
    if body_bytes is not None and len(body_bytes) > MAX_BODY_BYTES:
        raise TooLargeError(f"body is {len(body_bytes)} bytes; limit {MAX_BODY_BYTES}")
    header_map = decode(header_bytes, limits=_HEADER_LIMITS)
    body: dict[str, Any] | None = None
    if body_bytes is not None:
        decoded = decode(body_bytes, limits=_BODY_LIMITS)
        if not isinstance(decoded, dict):
            raise BadFieldError("body must be a map")
        body = decoded
    header = Header.from_map(header_map)
    if body is not None:
        kinds.validate_body(header.kind, body)
    return Event(
        header=header,
        header_bytes=header_bytes,
        id=event_id(header_bytes),
        sig=sig,
        body_bytes=body_bytes,
        body=body,
    )


def _check_body_hash(event: Event) -> None:
    if event.body_bytes is not None:
        if hashlib.sha256(event.body_bytes).digest() != event.header.body_hash:
            raise BodyMismatchError("body bytes do not hash to the header's body field")


def decode_event(
    wire: bytes,
    *,
    net: str = DEFAULT_NETWORK,
    now_ms: int | None = None,
    max_skew_ms: int = FUTURE_SKEW_MS,
) -> Event:
    """Decode, validate and verify one wire event; raise a ``ProtocolError`` if invalid.

    ``now_ms`` is the checker's clock (milliseconds since the epoch; the system clock
    when omitted). An event more than ``max_skew_ms`` ahead of it is rejected.
    """
    event = _parse(wire)
    if event.header.net != net:
        raise WrongNetworkError(f"event is for network {event.header.net!r}, not {net!r}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if event.header.ts > now + max_skew_ms:
        raise FutureTimestampError(
            f"ts is {event.header.ts - now} ms in the future; at most {max_skew_ms} allowed"
        )
    _check_body_hash(event)
    event.verify_signature()
    return event


def try_decode_event(
    wire: bytes, *, net: str = DEFAULT_NETWORK, now_ms: int | None = None
) -> Event | ProtocolError:
    """:func:`decode_event`, with the error returned instead of raised: for checking
    many events where each failure belongs in place of its event."""
    try:
        return decode_event(wire, net=net, now_ms=now_ms)
    except ProtocolError as exc:
        return exc


def claimed_id(wire: bytes) -> bytes | None:
    """The id a wire event names (the hash of its header bytes), or None if its outer
    form does not even decode. Nothing is checked: this only lets a node see that it
    already holds an event before paying for its verification. Holding the id means
    holding exactly these header bytes; a different signature or body could add
    nothing to the stored event, so answering ``duplicate`` stays true.
    """
    try:
        outer = decode(bytes(wire), limits=_WIRE_LIMITS)
    except ProtocolError:
        return None
    if isinstance(outer, list) and len(outer) == 3 and isinstance(outer[0], bytes):
        return event_id(outer[0])
    return None


def decode_unverified(wire: bytes) -> Event:
    """Decode and check structure and body hash only: NO signature, network or clock.

    For tooling (inspection, vector generation, debugging). Never store or show what
    this returns as if it were authentic.
    """
    event = _parse(wire)
    _check_body_hash(event)
    return event
