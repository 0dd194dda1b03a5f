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

Version 2 headers (spec 0008 #header-v2) belong to ``did:murmur`` authors: two more
keys, ``key`` (the public key that signed) and ``kev`` (the id of the latest key event
in the event's ancestry, nil only for a ``genesis``), and the signature is by ``key``
over ``b"murmur-event-v2:" + id``. Whether ``key`` was entitled to sign is decided
against the author's key state (``protocol/keystate.py``), not here. Until nodes and
clients check key states, decoding v2 is off: :func:`decode_event` answers
``unsupported-version`` for ``v: 2`` unless the caller passes ``allow_v2=True``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from protocol import kinds
from protocol.embeds import EmbedImage, post_images
from protocol.encoding import DecodeLimits, decode, encode, encode_bins
from protocol.errors import (
    BadFieldError,
    BadPrevError,
    BodyMismatchError,
    BodyRequiredError,
    FutureTimestampError,
    InvalidDidError,
    MalformedError,
    ProtocolError,
    TooLargeError,
    UnsupportedVersionError,
    WrongNetworkError,
)
from protocol.identity import (
    Identity,
    PublicKey,
    did_method,
    did_murmur_from_genesis_body,
    next_key_commitment,
    public_bytes_from_did,
    verify_with_key,
)
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
    "EVENT_VERSION_V2",
    "HEADER_KEYS",
    "HEADER_KEYS_V2",
    "SIGNING_DOMAIN",
    "SIGNING_DOMAIN_V2",
    "Event",
    "Header",
    "HeaderV2",
    "decode_event",
    "try_decode_event",
    "claimed_id",
    "claimed_id_kev",
    "claimed_kev",
    "decode_unverified",
    "event_id",
    "signing_message",
    "signing_message_v2",
    "sign_event",
    "sign_event_v2",
    "sign_genesis",
]

EVENT_VERSION = 1
#: Headers of did:murmur authors (spec 0008 #header-v2).
EVENT_VERSION_V2 = 2
DEFAULT_NETWORK = "murmur"
#: Domain separation: a Murmur signature can never be replayed as anything else.
SIGNING_DOMAIN = b"murmur-event-v1:"
#: The v2 domain (spec 0008 #signature-v2): a v1 signature never verifies as v2.
SIGNING_DOMAIN_V2 = b"murmur-event-v2:"
HEADER_KEYS = frozenset({"v", "net", "author", "seq", "prev", "ts", "kind", "body"})
HEADER_KEYS_V2 = HEADER_KEYS | {"key", "kev"}

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
    """The bytes an author signs for v1 event ``eid`` (spec 0002 §signature)."""
    return SIGNING_DOMAIN + eid


def signing_message_v2(eid: bytes) -> bytes:
    """The bytes ``key`` signs for v2 event ``eid`` (spec 0008 #signature-v2)."""
    return SIGNING_DOMAIN_V2 + eid


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


def _wrong_keys(what: str, keys: set[Any], expected: frozenset[str]) -> NoReturn:
    missing = sorted(expected - keys)
    extra = sorted(str(k) for k in keys - expected)
    raise BadFieldError(f"{what} keys: missing {missing}, unexpected {extra}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The signed header of a v1 event. Validates its fields on construction.

    v2 headers (did:murmur authors) are :class:`HeaderV2`, a subclass with ``key``
    and ``kev``: kept apart so that the v1 path, the ingest hot path, pays nothing
    for them.
    """

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
        # A did:murmur author fails here too: v1 is did:key only (0008 #header-v2).
        public_bytes_from_did(self.author)  # raises InvalidDidError
        self._check_after_author()

    def _check_after_author(self) -> None:
        """The rows of 0002 §2.4 after ``author``, in order; shared by both versions."""
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
    def from_map(cls, m: object, *, allow_v2: bool = False) -> Header:
        """The header of a decoded header map: a :class:`HeaderV2` for ``v: 2`` if
        ``allow_v2``, else ``unsupported-version`` as for any other version."""
        if not isinstance(m, dict):
            raise BadFieldError("header must be a map")
        # The version comes first: a future version may add or drop header keys, and
        # must be reported as unsupported-version, not as a bad field.
        v = m.get("v")
        if isinstance(v, int) and not isinstance(v, bool) and v != EVENT_VERSION:
            if v != EVENT_VERSION_V2 or not allow_v2:
                raise UnsupportedVersionError(f"event version {v} is not supported")
            return HeaderV2.from_v2_map(m)
        keys = set(m)
        if keys != HEADER_KEYS:
            _wrong_keys("header", keys, HEADER_KEYS)
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
class HeaderV2(Header):
    """The header of a v2 event (spec 0008 #header-v2): a did:murmur ``author``, the
    ``key`` that signed, and ``kev``, the latest key event in the event's ancestry
    (nil iff ``kind`` is ``genesis``). Constructing one is always possible (signing
    needs it); *decoding* one is opt-in (:func:`decode_event`).
    """

    key: bytes
    kev: bytes | None

    def __post_init__(self) -> None:
        # The rows of 0002 §2.4 in order (as Header, whose __post_init__ is not called:
        # it insists on v 1), then key and kev (0008 #header-v2).
        if not isinstance(self.v, int) or isinstance(self.v, bool):
            raise BadFieldError("v must be an integer")
        if self.v != EVENT_VERSION_V2:
            raise UnsupportedVersionError(f"a v2 header has v 2, not {self.v}")
        _check_name("net", self.net, MAX_NET_BYTES)
        if not isinstance(self.author, str):
            raise BadFieldError("author must be a did:murmur string")
        if did_method(self.author) != "murmur":  # raises InvalidDidError
            raise InvalidDidError("a v2 header's author is a did:murmur, not a did:key")
        self._check_after_author()
        if not isinstance(self.key, bytes) or len(self.key) != 32:
            raise BadFieldError("key must be the 32-byte public key that signed")
        if self.kev is not None and (not isinstance(self.kev, bytes) or len(self.kev) != 32):
            raise BadFieldError("kev must be a 32-byte event id or nil")
        if (self.kev is None) != (self.kind == kinds.GENESIS):
            raise BadFieldError("kev must be nil for a genesis and only for a genesis")

    def to_map(self) -> dict[str, Any]:
        m = Header.to_map(self)
        m["key"] = self.key
        m["kev"] = self.kev
        return m

    @classmethod
    def from_v2_map(cls, m: dict[Any, Any]) -> HeaderV2:
        """A v2 header from a decoded map whose ``v`` is 2 (spec 0008 #header-v2)."""
        keys = set(m)
        if keys != HEADER_KEYS_V2:
            _wrong_keys("v2 header", keys, HEADER_KEYS_V2)
        return cls(
            v=m["v"],
            net=m["net"],
            author=m["author"],
            seq=m["seq"],
            prev=m["prev"],
            ts=m["ts"],
            kind=m["kind"],
            body_hash=m["body"],
            key=m["key"],
            kev=m["kev"],
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
    def key(self) -> bytes | None:
        """The public key that signed a v2 event; ``None`` for v1 (the author's did is it)."""
        header = self.header
        return header.key if isinstance(header, HeaderV2) else None

    @property
    def kev(self) -> bytes | None:
        """The key event a v2 event relies on (nil for a genesis, ``None`` for v1)."""
        header = self.header
        return header.kev if isinstance(header, HeaderV2) else None

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    @property
    def images(self) -> tuple[EmbedImage, ...]:
        """The images a post embeds (spec 0003 #embed), in order, as the author signed
        them; ``()`` for other kinds, posts without images and dropped bodies (and for a
        malformed embed, which a verified event never has)."""
        if self.header.kind != kinds.POST or self.body is None:
            return ()
        try:
            return post_images(self.body)
        except BadFieldError:
            return ()

    def without_body(self) -> Event:
        """The same event with its body dropped (after a deletion, or by policy)."""
        return replace(self, body_bytes=None, body=None)

    def verify_signature(self) -> None:
        """Return nothing if ``sig`` is the author's signature of ``id``; else raise.

        v1: by the key the author's did:key names. v2: by the header's ``key``, over
        the v2 domain; whether that key was the author's is the key state's question.
        """
        header = self.header
        if isinstance(header, HeaderV2):
            verify_with_key(header.key, self.sig, signing_message_v2(self.id))
        else:
            PublicKey.from_did(header.author).verify(self.sig, signing_message(self.id))


def _check_v2_binding(event: Event) -> None:
    """The checks of a v2 event that tie its header to its body (spec 0008), after the
    signature: a genesis names its own did and is signed by its own ``signing`` key
    (#validity step 1); a rotate or recover hands over to keys other than the one
    that signed it (#key-events). None needs a key state.
    """
    header = event.header
    if not isinstance(header, HeaderV2) or header.kind not in kinds.KEY_EVENT_KINDS:
        return
    body = event.body
    if body is None or event.body_bytes is None:
        raise BodyRequiredError(
            f"a {header.kind} is never body-less: its body holds the keys (0008 #key-event-body)"
        )
    key = header.key
    if header.kind == kinds.GENESIS:
        if header.seq != 1:
            raise InvalidDidError("a genesis is the first event of its identity: seq 1")
        if key != body["signing"]:
            raise InvalidDidError("a genesis is signed by the signing key of its own body")
        if did_murmur_from_genesis_body(event.body_bytes) != header.author:
            raise InvalidDidError("author is not the did:murmur of this genesis body")
        return
    if body["signing"] == key:
        raise BadFieldError(f"a {header.kind} cannot make the key that signed it the signing key")
    if body["next"] == next_key_commitment(key):
        raise BadFieldError(f"a {header.kind} cannot commit to the key that signed it as next")


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
    """Build and sign a v1 event. Raises the same errors :func:`decode_event` would."""
    body_bytes, body_value = _body_of(kind, body)
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


def _body_of(kind: str, body: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """Canonical bytes and decoded value of a body to sign, checked as a receiver would."""
    if not isinstance(body, Mapping):
        raise BadFieldError("body must be a map")
    body_bytes = encode(body, max_depth=MAX_DEPTH)
    if len(body_bytes) > MAX_BODY_BYTES:
        raise TooLargeError(f"body is {len(body_bytes)} bytes; the limit is {MAX_BODY_BYTES}")
    body_value: dict[str, Any] = decode(body_bytes, limits=_BODY_LIMITS)
    kinds.validate_body(kind, body_value)
    return body_bytes, body_value


def sign_event_v2(
    signer: Identity,
    *,
    author: str,
    kind: str,
    body: Mapping[str, Any],
    seq: int,
    prev: bytes | None,
    kev: bytes | None,
    ts: int | None = None,
    net: str = DEFAULT_NETWORK,
) -> Event:
    """Build and sign a v2 event of the did:murmur ``author`` with ``signer``'s key.

    ``kev`` is the id of the latest key event in the event's ancestry (spec 0008
    #header-v2), nil only for a genesis (:func:`sign_genesis` is the easy way to make
    one). Raises what :func:`decode_event` with ``allow_v2=True`` would; it does not
    (cannot) check that ``signer`` is entitled to sign at ``kev``.
    """
    body_bytes, body_value = _body_of(kind, body)
    header = HeaderV2(
        v=EVENT_VERSION_V2,
        net=net,
        author=author,
        seq=seq,
        prev=prev,
        ts=int(time.time() * 1000) if ts is None else ts,
        kind=kind,
        body_hash=hashlib.sha256(body_bytes).digest(),
        key=signer.public.raw,
        kev=kev,
    )
    header_bytes = encode(header.to_map())
    eid = event_id(header_bytes)
    event = Event(
        header=header,
        header_bytes=header_bytes,
        id=eid,
        sig=signer.sign(signing_message_v2(eid)),
        body_bytes=body_bytes,
        body=body_value,
    )
    _check_v2_binding(event)
    return event


def sign_genesis(
    signing: Identity,
    *,
    next_key: bytes,
    recovery: Sequence[bytes],
    from_did: str | None = None,
    ts: int | None = None,
    net: str = DEFAULT_NETWORK,
) -> Event:
    """The genesis of a new did:murmur (spec 0008 #genesis); its ``author`` is the did.

    ``next_key`` and ``recovery`` are *public* keys (32 bytes each, recovery highest
    priority first): the genesis commits to the next key by its hash, and neither the
    next key's nor the recovery keys' seeds are needed here, so a client can keep them
    away from the signing key from the start. ``from_did`` names the did:key this
    identity moves from (#move).
    """
    body: dict[str, Any] = {
        "signing": signing.public.raw,
        "next": next_key_commitment(next_key),
        "recovery": list(recovery),
    }
    if from_did is not None:
        body["from"] = from_did
    body_bytes, _ = _body_of(kinds.GENESIS, body)
    return sign_event_v2(
        signing,
        author=did_murmur_from_genesis_body(body_bytes),
        kind=kinds.GENESIS,
        body=body,
        seq=1,
        prev=None,
        kev=None,
        ts=ts,
        net=net,
    )


def _parse(wire: bytes, allow_v2: bool = False) -> Event:
    """Steps 1–7 of validation: size, strict decode, canonical, fields (no crypto)."""
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
    header = Header.from_map(header_map, allow_v2=allow_v2)
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
    allow_v2: bool = False,
) -> Event:
    """Decode, validate and verify one wire event; raise a ``ProtocolError`` if invalid.

    ``now_ms`` is the checker's clock (milliseconds since the epoch; the system clock
    when omitted). An event more than ``max_skew_ms`` ahead of it is rejected.

    ``allow_v2`` opts in to v2 headers (spec 0008). Off by default: a v2 event is only
    as good as the key-state check that follows it, and a caller that does not run one
    must keep answering ``unsupported-version``. Even with it, a valid v2 event proves
    that ``key`` signed it, not that ``key`` was the author's (0008 #validity).
    """
    event = _parse(wire, allow_v2)
    if event.header.net != net:
        raise WrongNetworkError(f"event is for network {event.header.net!r}, not {net!r}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if event.header.ts > now + max_skew_ms:
        raise FutureTimestampError(
            f"ts is {event.header.ts - now} ms in the future; at most {max_skew_ms} allowed"
        )
    _check_body_hash(event)
    event.verify_signature()
    if event.header.v != EVENT_VERSION:
        _check_v2_binding(event)
    return event


def try_decode_event(
    wire: bytes,
    *,
    net: str = DEFAULT_NETWORK,
    now_ms: int | None = None,
    allow_v2: bool = False,
) -> Event | ProtocolError:
    """:func:`decode_event`, with the error returned instead of raised: for checking
    many events where each failure belongs in place of its event."""
    try:
        return decode_event(wire, net=net, now_ms=now_ms, allow_v2=allow_v2)
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


def claimed_kev(wire: bytes) -> tuple[str, bytes] | None:
    """The ``(author, kev)`` a v2 wire event names, or None (a v1 event, a genesis, or
    anything whose outer form or header does not decode). Nothing is checked, not even
    the signature: this only lets a node see that an event relies on a key event it
    does not hold (spec 0008 §8.5 step 2, ``unknown-key-event``) before paying for its
    verification (0004 #ingest-v2). A v1 header never holds the key ``kev``, so a v1
    event almost always costs one substring search of its wire bytes.
    """
    if b"\xa3kev" not in wire:  # the fixstr "kev": only v2 headers hold it (for sure)
        return None
    try:
        outer = decode(bytes(wire), limits=_WIRE_LIMITS)
        if not isinstance(outer, list) or len(outer) != 3 or not isinstance(outer[0], bytes):
            return None
        header_bytes = outer[0]
        if b"\xa3kev" not in header_bytes:  # the fixstr "kev": only v2 headers hold it
            return None
        header = decode(header_bytes, limits=_HEADER_LIMITS)
    except ProtocolError:
        return None
    if not isinstance(header, dict) or header.get("v") != EVENT_VERSION_V2:
        return None
    author, kev = header.get("author"), header.get("kev")
    if not isinstance(author, str) or not isinstance(kev, bytes) or len(kev) != 32:
        return None
    return author, kev


#: A 32-byte ``kev`` as a canonical v2 header holds it: the fixstr key, then bin8 of 32.
_KEV_FIELD = b"\xa3kev\xc4\x20"


def claimed_id_kev(wire: bytes) -> tuple[bytes | None, bytes | None]:
    """:func:`claimed_id` and the ``kev`` of :func:`claimed_kev` from one decode of the
    outer form, for a node's pre-checks (0004 #ingest-v2). Nothing is checked.

    The ``kev`` is read from the header bytes without decoding them when the bytes of
    a 32-byte ``kev`` field occur exactly once: in a valid header they can only be that
    field (a ``str`` value is UTF-8, where ``\\xc4`` is never followed by a space; any
    other place is inside an event's own hashes or keys, which only its author could
    grind, 48 bits, to have their own event refused ``unknown-key-event``, retryable).
    Otherwise the header is decoded as :func:`claimed_kev` does. A misread claim of an
    invalid event changes only which rejection it gets.
    """
    try:
        outer = decode(bytes(wire), limits=_WIRE_LIMITS)
    except ProtocolError:
        return None, None
    if not (isinstance(outer, list) and len(outer) == 3 and isinstance(outer[0], bytes)):
        return None, None
    header = outer[0]
    eid = event_id(header)
    at = header.find(_KEV_FIELD)
    if at < 0:
        return eid, None  # v1, a genesis (kev nil), or no 32-byte kev at all
    start = at + len(_KEV_FIELD)
    if header.find(_KEV_FIELD, at + 1) < 0 and len(header) >= start + 32:
        return eid, header[start : start + 32]
    claim = claimed_kev(wire)
    return eid, None if claim is None else claim[1]


def decode_unverified(wire: bytes, *, allow_v2: bool = False) -> Event:
    """Decode and check structure and body hash only: NO signature, network or clock.

    For tooling (inspection, vector generation, debugging). Never store or show what
    this returns as if it were authentic.
    """
    event = _parse(wire, allow_v2)
    _check_body_hash(event)
    if event.header.v != EVENT_VERSION:
        _check_v2_binding(event)
    return event
