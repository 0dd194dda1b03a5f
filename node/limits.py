"""Request limits: per-IP token bucket, bounded body reading, encoding refusal.

The rate limiter keys on the transport's peer address (``request.remote``); it does
not trust ``X-Forwarded-For`` (spec 0004 §limits). It tracks at most ``max_ips``
addresses, evicting the least recently seen, so a scan of many addresses cannot grow
memory. Time comes from the injected clock, so tests control it.

:func:`read_body` enforces ``max_request_bytes`` on the declared ``Content-Length``
*before* reading anything and again while reading chunked bodies, never buffering more
than the limit plus one chunk.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from protocol.errors import (
    BadRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    UnsupportedMediaTypeError,
)

__all__ = ["RateLimiter", "check_content_length", "read_body", "refuse_encodings"]

_READ_CHUNK = 64 * 1024


class RateLimiter:
    """Token buckets per key: ``rate`` tokens per second, at most ``burst`` stored."""

    def __init__(
        self, *, rate: int, burst: int, max_keys: int, now_ms: Callable[[], int]
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._now_ms = now_ms
        # key -> (tokens, last refill ms)
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> None:
        """Spend one token for ``key`` or raise ``RateLimitedError`` with a retry hint."""
        now = self._now_ms()
        tokens, last = self._buckets.pop(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + max(0, now - last) * self._rate / 1000)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait_s = (1.0 - tokens) / self._rate
            raise RateLimitedError(
                f"more than {self._rate} requests/s from this address",
                retry_after=max(1, math.ceil(wait_s)),
            )
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


def refuse_encodings(request: web.Request) -> None:
    """Compressed request bodies are refused: their decompressed size is unbounded."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaTypeError(f"Content-Encoding {encoding!r} is not accepted")


def check_content_length(request: web.Request, max_bytes: int) -> None:
    """413 from the declared length alone, before reading a byte of the body."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(
            f"request body is {length} bytes; the limit is {max_bytes}"
        )


async def read_body(request: web.Request, *, max_bytes: int, timeout_s: float) -> bytes:
    """Read the whole body, bounded in size and time."""
    check_content_length(request, max_bytes)
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
        raise BadRequestError(f"request body not received within {timeout_s:g} s") from None
    return b"".join(parts)
