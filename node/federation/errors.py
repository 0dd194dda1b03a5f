"""Errors of a node's outbound calls to its peers, in the one ProtocolError tree.

Everything :mod:`node.federation.outbound` raises about a peer is one of these; the
transport's own exceptions (httpx, httpcore, OSError, TimeoutError) never escape it.
``status`` is the HTTP status a node uses if it has to answer a request because of the
failure (a bad gateway, by default).

The tree::

    ProtocolError
    └── PeerError                       peer-error              502
        ├── ForbiddenAddressError       peer-forbidden-address  the host resolves only to
        │                                                       refused addresses (loopback,
        │                                                       private, link-local, ...)
        ├── PeerUnreachableError        peer-unreachable        DNS failure, refused, reset
        │   └── PeerTimeoutError        peer-timeout            connect, read or total timeout
        ├── PeerBadResponseError        peer-bad-response       not what spec 0004 promises:
        │                                                       status, content type, size,
        │                                                       encoding, redirect elsewhere
        └── PeerRejectedError           peer-rejected           the peer answered a Murmur
                                                                error ``{"error", "message"}``

``PeerRejectedError`` keeps the peer's own code (``remote_code``), the HTTP status and
the ``Retry-After`` delay, so callers can back off when a peer sheds load (429/503).
"""

from __future__ import annotations

from protocol.errors import ProtocolError

__all__ = [
    "PeerError",
    "ForbiddenAddressError",
    "PeerUnreachableError",
    "PeerTimeoutError",
    "PeerBadResponseError",
    "PeerRejectedError",
]


class PeerError(ProtocolError):
    """A call to a peer failed; ``url`` names the peer URL (never its query string)."""

    code = "peer-error"
    status = 502

    def __init__(self, message: str = "", *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ForbiddenAddressError(PeerError):
    """The peer's host resolves only to addresses a node refuses to connect to."""

    code = "peer-forbidden-address"


class PeerUnreachableError(PeerError):
    """The peer could not be reached: DNS failure, connection refused or reset, TLS."""

    code = "peer-unreachable"


class PeerTimeoutError(PeerUnreachableError):
    """The peer did not connect, send or finish within the policy's timeouts."""

    code = "peer-timeout"


class PeerBadResponseError(PeerError):
    """The peer answered, but not acceptably (status, type, size, encoding, redirect)."""

    code = "peer-bad-response"


class PeerRejectedError(PeerError):
    """The peer refused the request with a Murmur error; its code is ``remote_code``."""

    code = "peer-rejected"

    def __init__(
        self,
        message: str = "",
        *,
        remote_code: str,
        http_status: int,
        retry_after: float | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.remote_code = remote_code
        self.http_status = http_status
        #: Seconds the peer asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after
