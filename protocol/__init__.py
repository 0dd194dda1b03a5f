"""Murmur protocol core: pure and sans-IO.

Bytes and objects in, bytes and objects out: identities (``did:key``), the one
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
    SIGNING_DOMAIN,
    Event,
    Header,
    decode_event,
    decode_unverified,
    event_id,
    sign_event,
    signing_message,
)
from protocol.identity import (
    Identity,
    PublicKey,
    did_from_public_bytes,
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
