"""The node's middleware: errors as JSON, request metrics, rate limit, admission, deadlines.

Every response that is an error is ``{"error": code, "message": ...}`` with the 4xx
status of its ``ProtocolError`` (spec 0004 §errors). Router misses become
``not-found`` (404) and ``method-not-allowed`` (405); anything unexpected is logged
with its traceback and answered with a bare 500 ``internal`` — never a stack trace in
a body. Client mistakes never reach that branch: handlers translate them first.

Order of the checks (spec 0004 §limits): the per-IP token bucket (429), refused
encodings (415), then, for a request with a body, the global admission gate (503 when
full), then the deadline around the handler. Every 503 carries ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from node.limits import (
    ADMISSION_RETRY_AFTER_S,
    BodyTimeoutError,
    TransferCodingError,
    client_address,
    refuse_encodings,
)
from node.state import CONFIG, GATE, LIMITER, METRICS
from protocol.errors import ProtocolError, RateLimitedError, UnavailableError

__all__ = ["error_body", "murmur_middleware"]

log = logging.getLogger("murmur.node.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes that are neither rate limited nor put under the request deadline.
_UNLIMITED = frozenset({"/health", "/metrics"})
_NO_DEADLINE = frozenset({"/v1/stream"})
#: Requests with these methods carry a body and pass the admission gate.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

_HTTP_CODES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def error_body(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _from_protocol(exc: ProtocolError) -> web.Response:
    resp = error_body(exc.code, exc.message, exc.status)
    if isinstance(exc, RateLimitedError):
        resp.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, UnavailableError):
        resp.headers["Retry-After"] = str(ADMISSION_RETRY_AFTER_S)
    if exc.status == 413 or isinstance(exc, BodyTimeoutError | TransferCodingError):
        # The rest of an oversized or dripping body is not worth reading, and a body
        # in an unknown transfer coding has no trustworthy end: close the connection.
        resp.force_close()
    return resp


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    route = _route_name(request)
    # One key for every per-address limit (spec 0004 #client-address): an IPv6 /64.
    address = client_address(request.remote)
    if route not in _UNLIMITED:
        try:
            app[LIMITER].take(address)
        except RateLimitedError:
            app[METRICS].rate_limited += 1
            raise
    if request.method not in _BODY_METHODS:
        return await _within_deadline(request, handler, route)
    refuse_encodings(request)
    gate = app[GATE]
    # What the body may occupy: its declared length, else the most any body may be.
    declared = request.content_length
    size = declared if declared is not None else app[CONFIG].limits.max_request_bytes
    gate.admit(size, address)  # 503 before a byte of the body is read
    try:
        return await _within_deadline(request, handler, route)
    finally:
        gate.release(size, address)


async def _within_deadline(
    request: web.Request, handler: Handler, route: str
) -> web.StreamResponse:
    if route in _NO_DEADLINE:
        return await handler(request)
    timeout_s = request.app[CONFIG].limits.request_timeout_ms / 1000
    try:
        async with asyncio.timeout(timeout_s):
            return await handler(request)
    except TimeoutError:
        raise UnavailableError(f"request did not finish within {timeout_s:g} s") from None


@web.middleware
async def murmur_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: turn every failure into the JSON error shape and count the request."""
    resp: web.StreamResponse
    try:
        resp = await _guarded(request, handler)
    except ProtocolError as exc:
        resp = _from_protocol(exc)
        if exc.status == 503 and request.can_read_body:
            resp.force_close()  # shed: do not keep the connection for the unread rest
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "bad-request" if exc.status < 500 else "internal")
        resp = error_body(code, exc.reason, exc.status)
        if exc.status == 405:
            allow = exc.headers.get("Allow")
            if allow:
                resp.headers["Allow"] = allow
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error method=%s path=%s", request.method, request.path)
        resp = error_body("internal", "internal error", 500)
    request.app[METRICS].count_request(_route_name(request), request.method, resp.status)
    return resp
