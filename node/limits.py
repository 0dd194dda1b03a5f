"""Request limits: per-IP token bucket, global admission gate, bounded body reading,
encoding refusal.

Every per-address limit (the rate limiter, the admission gate's share, the stream
slots, the announcement bucket) keys on :func:`client_address` of the transport's peer
address (``request.remote``); none trusts ``X-Forwarded-For`` (spec 0004
#client-address). The rate limiter tracks at most ``max_ips`` addresses, evicting the
least recently seen, so a scan of many addresses cannot grow memory. Time comes from
the injected clock, so tests control it.

The per-IP bucket cannot bound the node's memory on its own: many addresses (or one
generous limit) can still have any number of bodies in flight at once. The
:class:`AdmissionGate` is the global bound: at most ``max_requests`` requests with a
body are processed at once, holding at most ``max_bytes`` of declared body, with a
fair share per client address; a request that does not fit is refused at once with
503 and ``Retry-After`` (never queued, so waiting costs nothing either), before a
byte of its body is read.

:func:`read_body` enforces ``max_request_bytes`` on the declared ``Content-Length``
*before* reading anything and again while reading chunked bodies, never buffering more
than the limit plus one chunk.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web

from protocol import jsontext
from protocol.errors import (
    BadRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "ADMISSION_BYTE_SHARE",
    "ADMISSION_REQUEST_SHARE",
    "ADMISSION_RETRY_AFTER_S",
    "AdmissionGate",
    "RateLimiter",
    "check_content_length",
    "client_address",
    "read_body",
    "read_json",
    "refuse_encodings",
]

_READ_CHUNK = 64 * 1024
#: The ``Retry-After`` (seconds) of every 503, the admission gate's included: work
#: in flight is bounded by the request deadline, and usually done within a second.
ADMISSION_RETRY_AFTER_S = 1
#: The most of the gate's request slots, and of its bytes, one client address may hold.
ADMISSION_REQUEST_SHARE = 0.25
ADMISSION_BYTE_SHARE = 0.5


def client_address(remote: str | None) -> str:
    """The key of every per-address limit for a client at IP ``remote`` (spec 0004
    #client-address): an IPv4 address is itself, and so is an IPv4-mapped IPv6 one (a
    dual-stack socket); any other IPv6 address is its /64 network (``2001:db8::/64``),
    since one host or subscriber is routinely given a whole /64 and would otherwise
    hold any number of keys. ``"unknown"`` when the transport has no address."""
    if remote is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote  # not an IP (a Unix socket path): itself
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    # From the integer: a scope id (``fe80::1%eth0``) cannot get in the way.
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class RateLimiter:
    """Token buckets per key: ``rate`` tokens per second, at most ``burst`` stored.

    ``what`` describes the limit in the 429 message (default: "``rate`` requests/s").
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int,
        now_ms: Callable[[], int],
        what: str | None = None,
    ) -> None:
        self._rate = rate
        self._what = what or f"{rate:g} requests/s"
        self._burst = burst
        self._max_keys = max_keys
        self._now_ms = now_ms
        # key -> (tokens, last refill ms)
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens (one request; bytes for a byte budget) for ``key`` or
        raise ``RateLimitedError`` with a retry hint. ``cost`` is at most ``burst``."""
        now = self._now_ms()
        tokens, last = self._buckets.pop(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + max(0, now - last) * self._rate / 1000)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            wait_s = (cost - tokens) / self._rate
            raise RateLimitedError(
                f"more than {self._what} from this address",
                retry_after=max(1, math.ceil(wait_s)),
            )
        self._buckets[key] = (tokens - cost, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


class AdmissionGate:
    """Global bound on the requests with a body being processed, and on their bytes.

    :meth:`admit` reserves one slot and ``size`` bytes (the declared body length; the
    caller passes the largest acceptable body when none is declared) for the client
    address ``key``, or raises ``UnavailableError`` (503) when a bound would be
    passed; :meth:`release` gives them back when the response is ready.

    One address may hold at most :data:`ADMISSION_REQUEST_SHARE` of the slots and
    :data:`ADMISSION_BYTE_SHARE` of the bytes: otherwise a single client dripping a
    few bodies (each held up to the body deadline) could keep everyone else's ingest
    shed. A request larger than a byte bound on its own is admitted when its address
    (for the share) or the node (for the total) has nothing else in flight, so every
    acceptable request can eventually get through. Only addresses with something in
    flight are tracked, so the table is never larger than ``max_requests``.
    """

    def __init__(self, *, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_requests_per_address = max(1, math.floor(max_requests * ADMISSION_REQUEST_SHARE))
        self.max_bytes_per_address = max(1, math.floor(max_bytes * ADMISSION_BYTE_SHARE))
        #: Requests and reserved bytes in flight now, in all and by address.
        self.requests = 0
        self.bytes = 0
        self._by_address: dict[str, tuple[int, int]] = {}
        #: Requests refused since start.
        self.shed = 0

    def __len__(self) -> int:
        """Addresses with something in flight."""
        return len(self._by_address)

    def admit(self, size: int, key: str) -> None:
        """Reserve a slot and ``size`` bytes for ``key``, or raise ``UnavailableError``."""
        size = max(0, size)
        mine, my_bytes = self._by_address.get(key, (0, 0))
        reason = None
        if self.requests >= self.max_requests:
            reason = f"{self.requests} requests with a body in flight"
        elif self.requests and self.bytes + size > self.max_bytes:
            reason = f"{self.bytes} body bytes in flight, {size} more would pass {self.max_bytes}"
        elif mine >= self.max_requests_per_address:
            reason = f"{mine} requests with a body in flight from this address"
        elif mine and my_bytes + size > self.max_bytes_per_address:
            reason = f"{my_bytes} body bytes in flight from this address"
        if reason is not None:
            self.shed += 1
            raise UnavailableError(f"node busy: {reason}; retry later")
        self.requests += 1
        self.bytes += size
        self._by_address[key] = (mine + 1, my_bytes + size)

    def release(self, size: int, key: str) -> None:
        """Give back what :meth:`admit` reserved for a finished request of ``key``."""
        size = max(0, size)
        self.requests -= 1
        self.bytes -= size
        mine, my_bytes = self._by_address.pop(key, (1, size))
        if mine > 1:
            self._by_address[key] = (mine - 1, my_bytes - size)


class BodyTimeoutError(BadRequestError):
    """The body did not arrive in time; the connection is closed with the answer."""


class TransferCodingError(UnsupportedMediaTypeError):
    """A transfer coding other than ``chunked``; the connection is closed with the answer."""


def refuse_encodings(request: web.Request) -> None:
    """Compressed request bodies are refused: their decompressed size is unbounded.

    So is any transfer coding but ``chunked`` alone (``gzip, chunked``...): the HTTP
    layer would read such a body as plain chunks, while an intermediary that applies
    the coding would see another body (RFC 9112 §6.1); the two must never disagree.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaTypeError(f"Content-Encoding {encoding!r} is not accepted")
    transfer = request.headers.getall("Transfer-Encoding", [])
    codings = [c.strip().lower() for value in transfer for c in value.split(",")]
    if codings and codings != ["chunked"]:
        raise TransferCodingError(
            f"Transfer-Encoding {', '.join(codings)!r} is not accepted; only chunked"
        )


def check_content_length(request: web.Request, max_bytes: int) -> None:
    """413 from the declared length alone, before reading a byte of the body."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(f"request body is {length} bytes; the limit is {max_bytes}")


async def read_body(request: web.Request, *, max_bytes: int, timeout_s: float) -> bytes:
    """Read the whole body, bounded in size and time."""
    check_content_length(request, max_bytes)
    content = request.content
    if content.is_eof():
        # All of it already arrived (a small body, with its headers): no timer to set.
        body = content.read_nowait(-1)
        if len(body) > max_bytes:
            raise PayloadTooLargeError(
                f"request body is larger than the limit of {max_bytes} bytes"
            )
        return body
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.read(_READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLargeError(
                        f"request body is larger than the limit of {max_bytes} bytes"
                    )
                parts.append(chunk)
    except TimeoutError:
        raise BodyTimeoutError(f"request body not received within {timeout_s:g} s") from None
    return b"".join(parts)


async def read_json(request: web.Request, *, max_bytes: int, timeout_s: float, shape: str) -> Any:
    """An ``application/json`` body, bounded as :func:`read_body`; ``shape`` (what the
    body should look like) goes into the errors."""
    if request.content_type != "application/json":
        raise UnsupportedMediaTypeError(f"this request takes application/json: {shape}")
    body = await read_body(request, max_bytes=max_bytes, timeout_s=timeout_s)
    try:
        return jsontext.loads(body)
    except ValueError:
        raise BadRequestError(f"body is not valid JSON; expected {shape}") from None
