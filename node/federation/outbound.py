"""Safe outbound HTTP to peers: the one client factory every call to a peer goes through.

A node calls URLs that other people give it (configured peers, gossip, redirects), so
each call is a chance to make the node reach where it should not (SSRF): its own
loopback, the cloud metadata service at 169.254.169.254, a LAN. The address check is
therefore made on the *resolved* address, at connect time, inside the transport
(:class:`GuardedNetworkBackend`): a DNS answer that changes between two look-ups
(rebinding) or a redirect cannot get around it, and the socket connects to exactly the
address that was checked. TLS still verifies the original host name: httpcore calls
``start_tls(server_hostname=origin host)`` on the stream ``connect_tcp`` returns, so
connecting to the IP changes nothing there.

On top of that, :func:`fetch` and :func:`open_stream` follow only same-origin
redirects, refuse compressed bodies (``Accept-Encoding: identity``; no decompression
bombs), cap body sizes while streaming, bound every call in time, and translate every
failure into the :mod:`node.federation.errors` tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, fields
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from node.federation.addresses import (
    ForbiddenConnect,
    ForbiddenConnectError,
    GuardedNetworkBackend,
    IPAddress,
    Resolver,
    forbidden_reason,
    select_addresses,
    system_resolver,
)
from node.federation.errors import (
    ForbiddenAddressError,
    PeerBadResponseError,
    PeerRejectedError,
    PeerTimeoutError,
    PeerUnreachableError,
)
from protocol import jsontext

__all__ = [
    # policy and client
    "OutboundPolicy",
    "create_peer_client",
    "peer_origin",
    # calls
    "fetch",
    "open_stream",
    "map_transport_errors",
    # address checks
    "IPAddress",
    "Resolver",
    "forbidden_reason",
    "select_addresses",
    "system_resolver",
    "GuardedNetworkBackend",
]

log = logging.getLogger("murmur.node.outbound")


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Largest error body read to find a Murmur error ``{"error", "message"}``.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: A peer cannot ask us to stay away longer than this with ``Retry-After``.
MAX_RETRY_AFTER_S = 3600.0
KEEPALIVE_EXPIRY_S = 5.0
#: Longest piece of peer-controlled text quoted in an error message.
MAX_QUOTED_CHARS = 200

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_.])?")
_ERROR_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_SECONDS = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,9})?")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundPolicy:
    """Limits of every outbound call to a peer. Times in seconds, sizes in bytes."""

    #: Turn the address check off entirely (tests, nodes on one LAN).
    allow_private: bool = False
    connect_timeout_s: float = 5.0
    #: Per read; the live stream sends heartbeats every 15 s.
    read_timeout_s: float = 20.0
    #: Whole request and body of :func:`fetch`; the opening of :func:`open_stream`.
    total_timeout_s: float = 30.0
    max_response_bytes: int = 16 * 1024 * 1024
    #: Only same-origin redirects are ever followed.
    max_redirects: int = 3
    #: Connections open at once, over all peers (live streams hold one each).
    max_connections: int = 64
    user_agent: str = "murmur-node/0.1"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s") and not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"OutboundPolicy.{f.name} must be a positive number")
        if self.max_response_bytes <= 0 or self.max_connections <= 0:
            raise ValueError("OutboundPolicy sizes and connection counts must be positive")
        if self.max_redirects < 0:
            raise ValueError("OutboundPolicy.max_redirects cannot be negative")


# -- the transport ------------------------------------------------------------------------

# Most specific first, as httpx's own transport maps them.
_HTTPCORE_TO_HTTPX: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (ForbiddenConnect, ForbiddenConnectError),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _map_httpcore_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _HTTPCORE_TO_HTTPX:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _PeerResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _map_httpcore_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with _map_httpcore_errors():
                await aclose()


class _PeerTransport(httpx.AsyncBaseTransport):
    """httpx's AsyncHTTPTransport, reduced to HTTP/1.1 over a given network backend
    (it has no public parameter for one)."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("the peer transport needs an async request body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _map_httpcore_errors():
            core_response = await self._pool.handle_async_request(core_request)
        if not isinstance(core_response.stream, AsyncIterable):
            raise TypeError("httpcore returned a sync body to an async transport")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_PeerResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def create_peer_client(
    policy: OutboundPolicy, *, resolver: Resolver | None = None
) -> httpx.AsyncClient:
    """The client for every call to a peer: checked addresses, no redirects followed by
    httpx, no proxies or certificates from the environment, no cookies kept, identity
    encoding only, timeouts and connection limits from ``policy``. Close it with
    ``aclose()`` (or ``async with``)."""
    backend = GuardedNetworkBackend(allow_private=policy.allow_private, resolver=resolver)
    pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=policy.max_connections,
        max_keepalive_connections=policy.max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
        http1=True,
        http2=False,
        retries=0,
        network_backend=backend,
    )
    # An empty allow-list refuses every cookie a peer sets, so none is ever sent back.
    jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        transport=_PeerTransport(pool),
        follow_redirects=False,
        trust_env=False,
        cookies=jar,
        timeout=httpx.Timeout(
            connect=policy.connect_timeout_s,
            read=policy.read_timeout_s,
            write=policy.read_timeout_s,
            pool=policy.total_timeout_s,
        ),
        headers={"User-Agent": policy.user_agent, "Accept-Encoding": "identity"},
    )


# -- URLs ---------------------------------------------------------------------------------


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid peer URL: {exc}") from exc


def _origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL; ValueError otherwise."""
    scheme = url.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"peer URL must be http or https, not {scheme or 'relative'!r}")
    if url.userinfo:
        raise ValueError("peer URL must not carry a user name or password")
    host = url.raw_host.decode("ascii").lower()
    if not host:
        raise ValueError("peer URL has no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"peer URL has a bad IPv6 host {host!r}") from exc
        host = f"[{host}]"
    elif not _HOST_NAME.fullmatch(host):
        raise ValueError(f"peer URL has a bad host {host!r}")
    port = url.port
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"peer URL has a bad port {port}")
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def peer_origin(url: str) -> str:
    """Normalise a peer URL to its origin: ``"http://Host:80/x/"`` -> ``"http://host"``.

    Scheme, lowercase host and port (the default one dropped); the path is dropped.
    ValueError for a scheme other than http(s), a user name or password, a query or
    fragment, or no host.
    """
    if "?" in url or "#" in url:
        raise ValueError("peer URL must not have a query or fragment")
    return _origin(_parse(url))


def _checked(url: str) -> httpx.URL:
    parsed = _parse(url)
    _origin(parsed)
    return parsed


def _display(url: str | httpx.URL) -> str:
    """The URL for messages and logs: origin and path, never userinfo or query."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        path = parsed.raw_path.split(b"?", 1)[0].decode("ascii")
        return _origin(parsed) + path
    except (httpx.InvalidURL, ValueError):
        return str(url).split("?", 1)[0].split("#", 1)[0][:MAX_QUOTED_CHARS]


# -- errors -------------------------------------------------------------------------------


def _find_forbidden(exc: BaseException) -> ForbiddenConnect | ForbiddenConnectError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ForbiddenConnect | ForbiddenConnectError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_QUOTED_CHARS else text[: MAX_QUOTED_CHARS - 3] + "..."


@contextlib.contextmanager
def map_transport_errors(url: str | httpx.URL) -> Iterator[None]:
    """Translate httpx transport errors (and TimeoutError) into the PeerError tree.

    Timeouts become :class:`PeerTimeoutError`; a refused address
    :class:`ForbiddenAddressError`; any other transport error (DNS, refused, reset,
    TLS, a broken HTTP exchange) :class:`PeerUnreachableError`. Messages name ``url``.
    """
    shown = _display(url)
    try:
        yield
    except (httpx.TimeoutException, TimeoutError) as exc:
        log.info("peer timeout url=%s error=%s", shown, type(exc).__name__)
        raise PeerTimeoutError(f"{shown}: timed out ({_short(exc)})", url=shown) from exc
    except httpx.TransportError as exc:
        forbidden = _find_forbidden(exc)
        if forbidden is not None:
            log.warning("peer forbidden address url=%s reason=%s", shown, forbidden)
            raise ForbiddenAddressError(f"{shown}: {forbidden}", url=shown) from exc
        log.info("peer unreachable url=%s error=%s", shown, _short(exc))
        raise PeerUnreachableError(f"{shown}: {_short(exc)}", url=shown) from exc


@contextlib.contextmanager
def _map_httpx_errors(url: str) -> Iterator[None]:
    """:func:`map_transport_errors` without bare TimeoutError (a caller's own deadline
    inside an ``open_stream`` block stays the caller's)."""
    try:
        yield
    except httpx.TransportError:
        with map_transport_errors(url):
            raise


def _bad(shown: str, what: str) -> PeerBadResponseError:
    log.info("peer bad response url=%s reason=%s", shown, what)
    return PeerBadResponseError(f"{shown}: {what}", url=shown)


# -- calls --------------------------------------------------------------------------------


def _media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def _retry_after(value: str | None) -> float | None:
    if value is None or not _SECONDS.fullmatch(value.strip()):
        return None  # absent, or an HTTP date (peers are asked to send seconds)
    return min(float(value.strip()), MAX_RETRY_AFTER_S)


async def _read_capped(response: httpx.Response, cap: int, shown: str) -> bytes:
    """The raw body, aborting as soon as it passes ``cap`` (never holds cap + a chunk)."""
    declared = response.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _bad(shown, f"bad Content-Length {declared[:40]!r}") from None
        if size > cap:
            raise _bad(shown, f"body of {size} bytes is over the limit of {cap}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > cap:
            raise _bad(shown, f"body is over the limit of {cap} bytes")
    return bytes(body)


async def _check_response(response: httpx.Response, expect: tuple[str, ...]) -> None:
    """Raise unless ``response`` is a 2xx of an expected type, uncompressed."""
    shown = _display(response.url)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise _bad(shown, f"compressed body (Content-Encoding {encoding[:40]!r})")
    status = response.status_code
    if 200 <= status < 300:
        media = _media_type(response)
        if expect and status != 204 and media not in {e.lower() for e in expect}:
            raise _bad(shown, f"content type {media[:60]!r}, expected {' or '.join(expect)}")
        return
    if status >= 400 and _media_type(response) == "application/json":
        with contextlib.suppress(PeerBadResponseError):
            body = await _read_capped(response, MAX_ERROR_BODY_BYTES, shown)
            rejected = _rejection(response, body, shown)
            if rejected is not None:
                raise rejected
    raise _bad(shown, f"HTTP {status}")


def _rejection(response: httpx.Response, body: bytes, shown: str) -> PeerRejectedError | None:
    """A Murmur error ``{"error": code, "message": text}``, or None if it is not one."""
    try:
        doc = jsontext.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    code, message = doc.get("error"), doc.get("message", "")
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        return None
    if not isinstance(message, str):
        return None
    status = response.status_code
    retry_after = _retry_after(response.headers.get("retry-after"))
    log.info(
        "peer rejected url=%s status=%d code=%s retry_after=%s", shown, status, code, retry_after
    )
    return PeerRejectedError(
        f"{shown}: peer answered {status} {code}: {message[:MAX_QUOTED_CHARS]!r}",
        remote_code=code,
        http_status=status,
        retry_after=retry_after,
        url=shown,
    )


async def _send_following(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    *,
    policy: OutboundPolicy,
    content: bytes | None,
    headers: dict[str, str],
) -> httpx.Response:
    """Send, following only same-origin redirects, at most ``policy.max_redirects``.
    The returned response is open (streaming); the caller closes it."""
    origin = _origin(url)
    redirects = 0
    while True:
        request = client.build_request(method, url, content=content, headers=headers)
        response = await client.send(request, stream=True)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or location is None:
            return response
        await response.aclose()
        shown = _display(url)
        try:
            target = url.join(location)
            target_origin = _origin(target)
        except (httpx.InvalidURL, ValueError):
            raise _bad(shown, f"redirect to a bad location {location[:80]!r}") from None
        if target_origin != origin:
            raise _bad(shown, f"redirect to another origin ({target_origin})")
        if redirects >= policy.max_redirects:
            raise _bad(shown, f"too many redirects (more than {policy.max_redirects})")
        redirects += 1
        # As browsers and httpx do: 303 (and 301/302 after a POST) turn into a GET.
        status = response.status_code
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        url = target


def _request_headers(headers: Mapping[str, str] | None, expect: tuple[str, ...]) -> dict[str, str]:
    out = dict(headers or {})
    if expect and not any(k.lower() == "accept" for k in out):
        out["Accept"] = ", ".join(expect)
    return out


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    expect: tuple[str, ...] = ("application/json",),
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
) -> tuple[httpx.Response, bytes]:
    """One request to a peer, body read in full: ``(response, body)``.

    The response is closed when this returns; its body is the returned bytes (not
    ``response.content``). Bounded by ``policy.total_timeout_s`` as a whole, redirects
    and body included. A 2xx must have a media type in ``expect`` (any, if empty; a
    204 needs none). ``max_bytes`` overrides ``policy.max_response_bytes``.

    ValueError if ``url`` is not an absolute http(s) URL without userinfo; otherwise
    every failure is a :class:`~node.federation.errors.PeerError`.
    """
    target = _checked(url)
    cap = policy.max_response_bytes if max_bytes is None else max_bytes
    request_headers = _request_headers(headers, expect)
    with map_transport_errors(target):
        async with asyncio.timeout(policy.total_timeout_s):
            response = await _send_following(
                client, method, target, policy=policy, content=content, headers=request_headers
            )
            try:
                await _check_response(response, expect)
                body = await _read_capped(response, cap, _display(response.url))
            finally:
                await response.aclose()
    return response, body


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    policy: OutboundPolicy,
    headers: Mapping[str, str] | None = None,
    expect: tuple[str, ...] = ("text/event-stream",),
) -> AsyncIterator[httpx.Response]:
    """GET a long-lived stream (the live SSE stream) and yield the open response.

    Opening (connect, same-origin redirects, headers, status and type checks) is bounded
    by ``policy.total_timeout_s`` and raises before anything is yielded; after that only
    ``policy.read_timeout_s`` applies, per read. Iterate ``response.aiter_lines()`` or
    ``aiter_bytes()`` inside the block: httpx errors escaping the block are turned into
    PeerErrors, and callers that handle them inside can wrap the iteration in
    ``with map_transport_errors(url):``. The response is closed on exit.
    """
    target = _checked(url)
    shown = _display(target)
    request_headers = _request_headers(headers, expect)
    with map_transport_errors(target):
        async with asyncio.timeout(policy.total_timeout_s):
            response = await _send_following(
                client, "GET", target, policy=policy, content=None, headers=request_headers
            )
            try:
                await _check_response(response, expect)
            except BaseException:
                await response.aclose()
                raise
    try:
        with _map_httpx_errors(shown):
            yield response
    finally:
        await response.aclose()
