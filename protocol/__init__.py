"""Murmur protocol core: pure and sans-IO.

Bytes and objects in, bytes and objects out: identities (``did:key``, and the
``did:murmur`` of rotatable identities with their v2 headers, spec 0008), the one
canonical MessagePack codec, signed events and their validation, the v1 kinds, chain
analysis, negentropy v1 set reconciliation, and the error tree. Nothing here touches
the network, the disk or an event loop (a test checks that importing it pulls in no
aiohttp, httpx, sqlite3 or asyncio); ``node`` and ``client`` build on it. The
normative text is ``specs/``.
"""

from __future__ import annotations

from protocol import kinds, limits
from protocol.chain import ChainItem, ChainReport, analyze_chain
from protocol.encoding import DEFAULT_LIMITS, DecodeLimits, decode, encode
from protocol.errors import (
    BadBlobError,
    BadFieldError,
    BadPrevError,
    BadRequestError,
    BodyMismatchError,
    EncodingError,
    EventError,
    FutureTimestampError,
    InvalidDidError,
    InvalidSignatureError,
    MalformedError,
    NegentropyError,
    NonCanonicalError,
    NotAuthorError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitedError,
    RemoteError,
    RequestError,
    TooDeepError,
    TooLargeError,
    UnavailableError,
    UnsupportedMediaTypeError,
    UnsupportedVersionError,
    WrongNetworkError,
    error_for_code,
)
from protocol.events import (
    DEFAULT_NETWORK,
    EVENT_VERSION,
    EVENT_VERSION_V2,
    SIGNING_DOMAIN,
    SIGNING_DOMAIN_V2,
    Event,
    Header,
    HeaderV2,
    decode_event,
    decode_unverified,
    event_id,
    sign_event,
    sign_event_v2,
    sign_genesis,
    signing_message,
    signing_message_v2,
)
from protocol.identity import (
    DidMethod,
    Identity,
    PublicKey,
    did_from_public_bytes,
    did_method,
    did_murmur_from_genesis_body,
    did_murmur_hash,
    next_key_commitment,
    public_bytes_from_did,
)
from protocol.negentropy import Negentropy, NegentropyStorage

__version__ = "0.1.0"

__all__ = [
    # identity (spec 0001)
    "Identity",
    "PublicKey",
    "did_from_public_bytes",
    "public_bytes_from_did",
    # did:murmur (spec 0008)
    "DidMethod",
    "did_method",
    "did_murmur_from_genesis_body",
    "did_murmur_hash",
    "next_key_commitment",
    # canonical encoding (spec 0002)
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "decode",
    "encode",
    # events (spec 0002)
    "DEFAULT_NETWORK",
    "EVENT_VERSION",
    "SIGNING_DOMAIN",
    "Event",
    "Header",
    "decode_event",
    "decode_unverified",
    "event_id",
    "sign_event",
    "signing_message",
    # v2 events of did:murmur authors (spec 0008)
    "EVENT_VERSION_V2",
    "HeaderV2",
    "SIGNING_DOMAIN_V2",
    "sign_event_v2",
    "sign_genesis",
    "signing_message_v2",
    # kinds and limits (spec 0003)
    "kinds",
    "limits",
    # set reconciliation, negentropy v1 (spec 0005)
    "Negentropy",
    "NegentropyStorage",
    # chains (spec 0002)
    "ChainItem",
    "ChainReport",
    "analyze_chain",
    # errors (specs/README.md)
    "BadBlobError",
    "BadFieldError",
    "BadPrevError",
    "BadRequestError",
    "BodyMismatchError",
    "EncodingError",
    "EventError",
    "FutureTimestampError",
    "InvalidDidError",
    "InvalidSignatureError",
    "MalformedError",
    "NegentropyError",
    "NonCanonicalError",
    "NotAuthorError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RateLimitedError",
    "RemoteError",
    "RequestError",
    "TooDeepError",
    "TooLargeError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "UnsupportedVersionError",
    "WrongNetworkError",
    "error_for_code",
    # version
    "__version__",
]
