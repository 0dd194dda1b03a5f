"""The one error tree of Murmur, with stable machine-readable codes.

Every failure that crosses a boundary (an HTTP response, a CLI message, a per-event
ingest result) is one of these classes, and its ``code`` is the string that appears on
the wire. Codes are stable: they are part of the protocol (specs/README.md, "Error
codes") and never change meaning once published. ``status`` is the HTTP status a node
uses when the error is the answer to a whole request.

The tree::

    ProtocolError                       protocol-error       400
    ├── EncodingError                   (bytes are not a valid canonical value)
    │   ├── MalformedError              malformed            400
    │   ├── NonCanonicalError           non-canonical        400
    │   ├── TooLargeError               too-large            413
    │   └── TooDeepError                too-deep             400
    ├── EventError                      (a well-encoded event that breaks a rule)
    │   ├── BadFieldError               bad-field            400
    │   ├── InvalidDidError             invalid-did          400
    │   ├── UnsupportedVersionError     unsupported-version  400
    │   ├── WrongNetworkError           wrong-network        400
    │   ├── FutureTimestampError        future-timestamp     400
    │   ├── BadPrevError                bad-prev             400
    │   ├── BodyMismatchError           body-mismatch        400
    │   ├── InvalidSignatureError       invalid-signature    400
    │   ├── NotAuthorError              not-author           403
    │   ├── BodyRequiredError           body-required        409  (retryable)
    │   ├── UnauthorizedKeyError        unauthorized-key     403  (spec 0008)
    │   ├── UnknownKeyEventError        unknown-key-event    409  (spec 0008, retryable)
    │   └── BadKevError                 bad-kev              400  (spec 0008)
    ├── RequestError                    (a request a node refuses as a whole)
    │   ├── BadRequestError             bad-request          400
    │   ├── NotFoundError               not-found            404
    │   ├── UnsupportedMediaTypeError   unsupported-media-type 415
    │   ├── PayloadTooLargeError        payload-too-large    413
    │   ├── RateLimitedError            rate-limited         429
    │   └── UnavailableError            unavailable          503
    ├── NegentropyError                 negentropy           400
    ├── BadBlobError                    bad-blob             400  (spec 0003 #embed)
    ├── FeedError                       feed-error           502  (spec 0009: a feed failed)
    │   ├── BadCursorError              bad-cursor           400  (a cursor the feed did not make)
    │   ├── FeedNotFoundError           feed-not-found       404
    │   ├── FeedLoadError               feed-load            400  (its code failed to load)
    │   └── FeedTimeoutError            feed-timeout         504  (retryable)
    └── RemoteError                     (raised by clients: a node answered with an error)

``RemoteError`` carries the code and message a node sent, so a client can show the
node's own words; it is the "remote" branch, everything else is "local".

``retryable`` marks the codes that say "not yet" rather than "never": the same bytes
may be accepted later (a clock caught up, a deletion arrived), so a peer that sent
them is not at fault and a node does not remember the id as bad.
"""

from __future__ import annotations

__all__ = [
    "BadBlobError",
    "BadCursorError",
    "BadFieldError",
    "BadKevError",
    "BadPrevError",
    "BadRequestError",
    "BodyMismatchError",
    "BodyRequiredError",
    "EncodingError",
    "EventError",
    "FeedError",
    "FeedLoadError",
    "FeedNotFoundError",
    "FeedTimeoutError",
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
    "UnauthorizedKeyError",
    "UnavailableError",
    "UnknownKeyEventError",
    "UnsupportedMediaTypeError",
    "UnsupportedVersionError",
    "WrongNetworkError",
    "error_for_code",
]


class ProtocolError(Exception):
    """Root of every Murmur error. ``code`` is stable; ``status`` is an HTTP hint."""

    code: str = "protocol-error"
    status: int = 400
    #: True when the same input may be accepted later (see the module docstring).
    retryable: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code

    def to_dict(self) -> dict[str, str]:
        """The JSON error shape used by nodes: ``{"error": code, "message": ...}``."""
        return {"error": self.code, "message": self.message}


# -- encoding -----------------------------------------------------------------------


class EncodingError(ProtocolError):
    """The bytes are not one valid canonical MessagePack value."""

    code = "encoding-error"


class MalformedError(EncodingError):
    """Not MessagePack at all: truncated, invalid UTF-8, or the wrong shape."""

    code = "malformed"


class NonCanonicalError(EncodingError):
    """Valid MessagePack, but not the one canonical encoding (spec 0002 §encoding)."""

    code = "non-canonical"


class TooLargeError(EncodingError):
    """A size limit was exceeded (bytes, string length, collection length, integer)."""

    code = "too-large"
    status = 413


class TooDeepError(EncodingError):
    """Nesting deeper than the limit."""

    code = "too-deep"


# -- events ---------------------------------------------------------------------------


class EventError(ProtocolError):
    """A well-encoded event that breaks a rule of spec 0002 or 0003."""

    code = "invalid-event"


class BadFieldError(EventError):
    """A header or body field is missing, of the wrong type, or out of its limits."""

    code = "bad-field"


class InvalidDidError(EventError):
    """A did is not a well-formed Ed25519 ``did:key``."""

    code = "invalid-did"


class UnsupportedVersionError(EventError):
    """The header's ``v`` is not a version this implementation speaks."""

    code = "unsupported-version"


class WrongNetworkError(EventError):
    """The header's ``net`` is not the network of the node or client checking it."""

    code = "wrong-network"


class FutureTimestampError(EventError):
    """``ts`` is further in the future than the allowed clock skew."""

    code = "future-timestamp"
    retryable = True


class BadPrevError(EventError):
    """``prev`` is present at seq 1 or absent after it."""

    code = "bad-prev"


class BodyMismatchError(EventError):
    """The body bytes do not hash to the header's ``body``."""

    code = "body-mismatch"


class InvalidSignatureError(EventError):
    """The signature does not verify under the author's key."""

    code = "invalid-signature"


class NotAuthorError(EventError):
    """An event acts on another author's event where only that author may (delete)."""

    code = "not-author"
    status = 403


class BodyRequiredError(EventError):
    """A body-less copy of an event that no deletion explains (spec 0004 #bodyless).

    Anyone can strip a body from a public event; a node stores an event without its
    body only when the author's own ``delete`` of it is held. Retryable: the delete
    may simply not have arrived yet.
    """

    code = "body-required"
    status = 409
    retryable = True


class UnauthorizedKeyError(EventError):
    """The header's ``key`` was not entitled to sign this event at its ``kev``.

    Spec 0008 §8.4: a ``rotate`` not signed by the key committed as ``next``, a
    ``recover`` by a key not in the recovery list at ``kev``, an ordinary event not
    signed by the ``signing`` key at ``kev``. Never retryable: the state at ``kev`` is
    fixed by the key event's id.
    """

    code = "unauthorized-key"
    status = 403


class UnknownKeyEventError(EventError):
    """``kev`` names a key event that is not held yet (spec 0008 §8.5 step 2).

    Retryable: the same bytes become valid when the key event arrives, so the sender is
    not at fault and the id is never remembered as rejected.
    """

    code = "unknown-key-event"
    status = 409
    retryable = True


class BadKevError(EventError):
    """``kev`` is not a key event of the author, or not below the event's ``seq``.

    Spec 0008 §8.5 step 3. Also the reason recorded for an event that breaks kev
    continuity with its ``prev`` (§8.5 step 5), which is a status, not a rejection.
    """

    code = "bad-kev"


# -- requests (nodes) -----------------------------------------------------------------


class RequestError(ProtocolError):
    """A request that a node refuses as a whole."""

    code = "bad-request"


class BadRequestError(RequestError):
    """Bad query parameters, bad JSON, a bad path segment."""

    code = "bad-request"


class NotFoundError(RequestError):
    code = "not-found"
    status = 404


class UnsupportedMediaTypeError(RequestError):
    code = "unsupported-media-type"
    status = 415


class PayloadTooLargeError(RequestError):
    code = "payload-too-large"
    status = 413


class RateLimitedError(RequestError):
    code = "rate-limited"
    status = 429

    def __init__(self, message: str = "", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(RequestError):
    code = "unavailable"
    status = 503


# -- set reconciliation ---------------------------------------------------------------


class NegentropyError(ProtocolError):
    """A negentropy message is malformed or breaks the protocol (spec 0005)."""

    code = "negentropy"


# -- blobs --------------------------------------------------------------------------


class BadBlobError(ProtocolError):
    """Bytes offered as an image are not one (spec 0003 #embed).

    Not PNG, JPEG, WebP or GIF by their header, dimensions outside 1-16384, more than
    ``MAX_BLOB_BYTES``, or not what a post's embed claims (hash, size, type, width,
    height). Never retryable: the same bytes never become a different image.
    """

    code = "bad-blob"


# -- feeds ----------------------------------------------------------------------------


class FeedError(ProtocolError):
    """A feed (spec 0009) failed to make a page: its code raised, or answered what a
    feed may not (more ids than asked, a cursor too long, not a page)."""

    code = "feed-error"
    status = 502


class BadCursorError(FeedError):
    """A cursor the feed did not make, or can no longer read: start again without one."""

    code = "bad-cursor"
    status = 400


class FeedNotFoundError(FeedError):
    """No feed of that name here (a node serves only the feeds its operator enabled)."""

    code = "feed-not-found"
    status = 404


class FeedLoadError(FeedError):
    """A feed's code could not be loaded or built: no such file or entry point, an
    exception while importing or constructing it, or a class without ``page``."""

    code = "feed-load"
    status = 400


class FeedTimeoutError(FeedError):
    """The feed did not make its page within its deadline (spec 0009 #deadline)."""

    code = "feed-timeout"
    status = 504
    retryable = True


# -- remote ---------------------------------------------------------------------------


class RemoteError(ProtocolError):
    """A node answered with an error; ``code`` and ``message`` are the node's."""

    def __init__(self, code: str, message: str = "", *, status: int = 400) -> None:
        super().__init__(message or code)
        self.code = code
        self.status = status


def _all_subclasses(cls: type[ProtocolError]) -> list[type[ProtocolError]]:
    out: list[type[ProtocolError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str) -> type[ProtocolError] | None:
    """The most specific local class whose stable code is ``code``, if any."""
    found: type[ProtocolError] | None = None
    for cls in _all_subclasses(ProtocolError):
        if cls is RemoteError:
            continue
        if cls.code == code:
            found = cls  # later (deeper) classes override their parents
    return found
