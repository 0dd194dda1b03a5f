"""Safe outbound HTTP to peers (node/federation/outbound.py): address checks at connect
time, same-origin redirects only, size and time caps, and the PeerError mapping.

Everything runs against real aiohttp servers on 127.0.0.1 (port 0) with an injected
resolver; nothing touches the internet. Servers count the requests they get, so a test
can assert that a refused call never reached them.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from node.federation import errors as errors_module
from node.federation import outbound
from node.federation.errors import (
    ForbiddenAddressError,
    PeerBadResponseError,
    PeerError,
    PeerRejectedError,
    PeerTimeoutError,
    PeerUnreachableError,
)
from node.federation.outbound import (
    GuardedNetworkBackend,
    OutboundPolicy,
    Resolver,
    create_peer_client,
    fetch,
    forbidden_reason,
    map_transport_errors,
    open_stream,
    peer_origin,
    select_addresses,
)
from protocol.errors import ProtocolError, error_for_code

LOCAL = OutboundPolicy(allow_private=True, connect_timeout_s=2, read_timeout_s=5, total_timeout_s=5)
STRICT = OutboundPolicy(connect_timeout_s=2, read_timeout_s=5, total_timeout_s=5)
#: Bound of every wait a fake server does (it is always released earlier).
SERVER_WAIT_S = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- fake peers -----------------------------------------------------------------------------


@dataclass
class Peer:
    """A local HTTP server that records what it was asked."""

    server: TestServer
    hits: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        port = self.server.port
        assert port is not None
        return port

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[Peer]]]:
    """``await serve({"/path": handler})`` -> a running :class:`Peer`."""
    started: list[TestServer] = []

    async def start(routes: dict[str, Handler]) -> Peer:
        peer: Peer

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            peer.hits.append(request.path)
            peer.headers.append(dict(request.headers))
            peer.methods.append(request.method)
            peer.bodies.append(await request.read())
            return await handler(request)

        app = web.Application(middlewares=[record])
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        started.append(server)
        peer = Peer(server=server)
        return peer

    yield start
    for server in reversed(started):
        await server.close()


def resolver_of(table: dict[str, list[str]]) -> Resolver:
    """A resolver answering from ``table``; unknown names fail like getaddrinfo."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


async def ok_json(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


def redirect_to(location: str, status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return handler


# -- forbidden_reason ---------------------------------------------------------------------

REASONS: list[tuple[str, str | None]] = [
    # IPv4
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("172.32.0.1", None),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.255", "cgnat"),
    ("100.128.0.1", None),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 (an address under test, not a bind)
    ("0.1.2.3", "this-network"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.18.0.1", "reserved"),
    ("203.0.113.5", "reserved"),
    ("8.8.8.8", None),
    ("93.184.216.34", None),
    ("1.1.1.1", None),
    # IPv6
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12::1", "private"),
    ("fec0::1", "private"),
    ("ff02::1", "multicast"),
    ("100::1", "reserved"),
    ("2001:db8::1", "reserved"),
    ("4000::1", "reserved"),
    ("2606:4700::1111", None),
    ("2001:4860:4860::8888", None),
    # IPv6 forms that carry an IPv4 address are judged by it
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:8.8.8.8", None),
    ("::127.0.0.1", "loopback"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b::808:808", None),
    ("2002:7f00:1::", "loopback"),
    ("2002:a00:1::", "private"),
    ("2002:808:808::1", None),
    ("2001:0:808:808::80ff:fffe", "loopback"),  # Teredo, client ~127.0.0.1
    ("2001:0:808:808::f7f7:f7f7", None),  # Teredo, client ~8.8.8.8, server 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), REASONS, ids=[a for a, _ in REASONS])
def test_forbidden_reason(address: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_embedded_ipv4_is_judged_like_ipv4(value: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    expected = forbidden_reason(v4)
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | value)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | value)
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)
    assert forbidden_reason(mapped) == expected
    assert forbidden_reason(nat64) == expected
    assert forbidden_reason(sixtofour) == expected


def test_select_addresses_keeps_only_public_ones_in_order() -> None:
    allowed, refused = select_addresses(
        ["10.0.0.1", "93.184.216.34", "not-an-ip", "93.184.216.34", "1.1.1.1"],
        allow_private=False,
    )
    assert allowed == [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("1.1.1.1")]
    assert refused == [("10.0.0.1", "private"), ("not-an-ip", "invalid")]


def test_select_addresses_allow_private_allows_all() -> None:
    allowed, refused = select_addresses(["10.0.0.1", "127.0.0.1"], allow_private=True)
    assert [str(a) for a in allowed] == ["10.0.0.1", "127.0.0.1"]
    assert refused == []


# -- the backend, without a network -------------------------------------------------------


class StopHere(httpcore.ConnectError):
    pass


class FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, log: list[tuple[str, str | None]]) -> None:
        self.log = log

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        self.log.append(("start_tls", server_hostname))
        raise StopHere("stop after recording the TLS server name")

    async def aclose(self) -> None:
        self.log.append(("aclose", None))


class FakeBackend(httpcore.AsyncNetworkBackend):
    """Records connects; addresses in ``fail`` refuse the connection."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.fail = fail
        self.log: list[tuple[str, str | None]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.log.append(("connect", host))
        if host in self.fail:
            raise httpcore.ConnectError(f"refused by {host}")
        return FakeStream(self.log)


async def test_backend_connects_by_ip_to_first_allowed_address_that_answers() -> None:
    inner = FakeBackend(fail=frozenset({"93.184.216.34"}))
    backend = GuardedNetworkBackend(
        allow_private=False,
        resolver=resolver_of({"peer.example": ["10.0.0.1", "93.184.216.34", "1.1.1.1"]}),
        inner=inner,
    )
    stream = await backend.connect_tcp("peer.example", 443)
    assert isinstance(stream, FakeStream)
    assert inner.log == [("connect", "93.184.216.34"), ("connect", "1.1.1.1")]


async def test_backend_refuses_when_every_address_is_refused() -> None:
    inner = FakeBackend()
    backend = GuardedNetworkBackend(
        allow_private=False,
        resolver=resolver_of({"evil.example": ["127.0.0.1", "169.254.169.254"]}),
        inner=inner,
    )
    with pytest.raises(httpcore.ConnectError, match=r"127\.0\.0\.1 \(loopback\).*link-local"):
        await backend.connect_tcp("evil.example", 80)
    with pytest.raises(httpcore.ConnectError, match="unix-socket"):
        await backend.connect_unix_socket("/run/docker.sock")
    assert inner.log == []


async def test_tls_uses_the_host_name_while_the_socket_uses_the_checked_ip() -> None:
    inner = FakeBackend()
    backend = GuardedNetworkBackend(
        allow_private=False,
        resolver=resolver_of({"peer.example": ["93.184.216.34"]}),
        inner=inner,
    )
    async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        with pytest.raises(StopHere):
            await pool.request("GET", "https://peer.example/v1/info")
    assert inner.log[:2] == [("connect", "93.184.216.34"), ("start_tls", "peer.example")]


# -- forbidden addresses, end to end ------------------------------------------------------


async def test_literal_loopback_is_refused_before_any_request(serve: Any) -> None:
    peer = await serve({"/": ok_json})
    async with create_peer_client(STRICT) as client:
        with pytest.raises(ForbiddenAddressError, match="loopback") as info:
            await fetch(client, "GET", peer.url("/?secret=1"), policy=STRICT)
    assert peer.hits == []
    assert "secret" not in str(info.value)
    assert info.value.url == peer.url("/")


async def test_name_resolving_to_loopback_is_refused(serve: Any) -> None:
    peer = await serve({"/": ok_json})
    resolver = resolver_of({"evil.example": ["127.0.0.1"]})
    async with create_peer_client(STRICT, resolver=resolver) as client:
        with pytest.raises(ForbiddenAddressError, match=r"evil\.example.*loopback"):
            await fetch(client, "GET", peer.url(host="evil.example"), policy=STRICT)
    assert peer.hits == []


async def test_ipv4_mapped_ipv6_literal_is_refused(serve: Any) -> None:
    peer = await serve({"/": ok_json})
    async with create_peer_client(STRICT) as client:
        with pytest.raises(ForbiddenAddressError, match="loopback"):
            await fetch(client, "GET", peer.url(host="[::ffff:127.0.0.1]"), policy=STRICT)
    assert peer.hits == []


async def test_allow_private_connects(serve: Any) -> None:
    peer = await serve({"/": ok_json})
    resolver = resolver_of({"peer.example": ["127.0.0.1"]})
    async with create_peer_client(LOCAL, resolver=resolver) as client:
        response, body = await fetch(client, "GET", peer.url(), policy=LOCAL)
        assert response.status_code == 200 and json.loads(body) == {"ok": True}
        response, body = await fetch(client, "GET", peer.url(host="peer.example"), policy=LOCAL)
        assert json.loads(body) == {"ok": True}
    assert peer.hits == ["/", "/"]
    sent = peer.headers[0]
    assert sent["User-Agent"] == LOCAL.user_agent
    assert sent["Accept-Encoding"] == "identity"
    assert sent["Accept"] == "application/json"


# -- redirects ----------------------------------------------------------------------------


async def test_redirect_to_metadata_service_is_refused(serve: Any) -> None:
    peer = await serve({"/": redirect_to("http://169.254.169.254/latest/meta-data/")})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="another origin"):
            await fetch(client, "GET", peer.url(), policy=LOCAL)


async def test_redirect_to_another_port_is_not_followed(serve: Any) -> None:
    other = await serve({"/": ok_json})
    peer = await serve({"/": redirect_to(other.url("/"))})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="another origin"):
            await fetch(client, "GET", peer.url(), policy=LOCAL)
    assert peer.hits == ["/"]
    assert other.hits == []


async def test_same_origin_redirects_are_followed(serve: Any) -> None:
    peer = await serve({"/a": redirect_to("/b", 301), "/b": redirect_to("./c", 307), "/c": ok_json})
    async with create_peer_client(LOCAL) as client:
        response, body = await fetch(client, "GET", peer.url("/a"), policy=LOCAL)
    assert json.loads(body) == {"ok": True}
    assert str(response.url) == peer.url("/c")
    assert peer.hits == ["/a", "/b", "/c"]


async def test_redirect_keeps_body_on_307_and_drops_it_on_303(serve: Any) -> None:
    peer = await serve(
        {"/k": redirect_to("/ok", 307), "/g": redirect_to("/ok", 303), "/ok": ok_json}
    )
    async with create_peer_client(LOCAL) as client:
        await fetch(client, "POST", peer.url("/k"), policy=LOCAL, content=b"payload")
        await fetch(client, "POST", peer.url("/g"), policy=LOCAL, content=b"payload")
    assert list(zip(peer.hits, peer.methods, peer.bodies, strict=True)) == [
        ("/k", "POST", b"payload"),
        ("/ok", "POST", b"payload"),
        ("/g", "POST", b"payload"),
        ("/ok", "GET", b""),
    ]


async def test_redirect_loop_stops_after_max_redirects(serve: Any) -> None:
    peer = await serve({"/loop": redirect_to("/loop")})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="too many redirects"):
            await fetch(client, "GET", peer.url("/loop"), policy=LOCAL)
    assert len(peer.hits) == LOCAL.max_redirects + 1


# -- status, type, encoding -----------------------------------------------------------------


async def test_wrong_content_type_is_a_bad_response(serve: Any) -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html></html>", content_type="text/html")

    async def json_with_params(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{}", headers={"Content-Type": "Application/JSON; charset=utf-8"})

    peer = await serve({"/html": html, "/json": json_with_params})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="text/html"):
            await fetch(client, "GET", peer.url("/html"), policy=LOCAL)
        _, body = await fetch(client, "GET", peer.url("/json"), policy=LOCAL)
        assert body == b"{}"
        _, body = await fetch(client, "GET", peer.url("/html"), policy=LOCAL, expect=())
        assert body == b"<html></html>"


def murmur_error(status: int, code: str, retry_after: str | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": code, "message": "slow down"}
        return web.json_response(body, status=status, headers=headers)

    return handler


async def test_murmur_error_is_a_rejection_with_retry_after(serve: Any) -> None:
    peer = await serve(
        {
            "/429": murmur_error(429, "rate-limited", "7"),
            "/503": murmur_error(503, "unavailable", "99999"),
            "/frac": murmur_error(503, "unavailable", "1.5"),
            "/date": murmur_error(503, "unavailable", "Wed, 21 Oct 2015 07:28:00 GMT"),
            "/400": murmur_error(400, "bad-request"),
        }
    )
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerRejectedError) as info:
            await fetch(client, "GET", peer.url("/429"), policy=LOCAL)
        assert (info.value.remote_code, info.value.http_status) == ("rate-limited", 429)
        assert info.value.retry_after == 7.0
        assert info.value.code == "peer-rejected"
        assert "slow down" in str(info.value)
        expected = {"/503": 3600.0, "/frac": 1.5, "/date": None, "/400": None}
        for path, retry_after in expected.items():
            with pytest.raises(PeerRejectedError) as info:
                await fetch(client, "GET", peer.url(path), policy=LOCAL)
            assert info.value.retry_after == retry_after, path


async def test_other_errors_are_bad_responses(serve: Any) -> None:
    async def html_500(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="<h1>oops</h1>", content_type="text/html")

    async def other_json(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "not found"}, status=404)

    peer = await serve({"/500": html_500, "/404": other_json})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="HTTP 500"):
            await fetch(client, "GET", peer.url("/500"), policy=LOCAL)
        with pytest.raises(PeerBadResponseError, match="HTTP 404"):
            await fetch(client, "GET", peer.url("/404"), policy=LOCAL)


async def test_compressed_response_is_refused(serve: Any) -> None:
    async def gzipped(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(b'{"ok": true}')
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=body, headers=headers)

    peer = await serve({"/": gzipped})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="gzip"):
            await fetch(client, "GET", peer.url(), policy=LOCAL)


async def test_cookies_are_never_sent_back(serve: Any) -> None:
    async def set_cookie(request: web.Request) -> web.StreamResponse:
        response = web.json_response({})
        response.set_cookie("session", "abc", path="/")
        return response

    peer = await serve({"/set": set_cookie, "/check": ok_json})
    async with create_peer_client(LOCAL) as client:
        await fetch(client, "GET", peer.url("/set"), policy=LOCAL)
        await fetch(client, "GET", peer.url("/check"), policy=LOCAL)
        assert len(client.cookies) == 0
    assert "Cookie" not in peer.headers[1]


# -- size and time ------------------------------------------------------------------------


async def test_declared_oversize_body_is_refused_without_reading(serve: Any) -> None:
    release = asyncio.Event()

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100 * 1024 * 1024
        await response.prepare(request)
        await response.write(b"x" * 1024)
        # Never sends the rest: a client that tried to read it would time out instead.
        await asyncio.wait_for(release.wait(), SERVER_WAIT_S)
        return response

    peer = await serve({"/": huge})
    try:
        async with create_peer_client(LOCAL) as client:
            with pytest.raises(PeerBadResponseError, match="104857600 bytes is over the limit"):
                await fetch(client, "GET", peer.url(), policy=LOCAL, max_bytes=1024 * 1024)
    finally:
        release.set()


async def test_growing_chunked_body_is_cut_off(serve: Any) -> None:
    chunk = b"x" * 65536
    limit = 1600  # 100 MiB if nobody stops it
    written = 0
    done = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for _ in range(limit):
                await response.write(chunk)
                written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        finally:
            done.set()
        return response

    peer = await serve({"/": endless})
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="over the limit of 262144"):
            await fetch(client, "GET", peer.url(), policy=LOCAL, max_bytes=256 * 1024)
    await asyncio.wait_for(done.wait(), 30)
    assert written < 32 * 1024 * 1024  # socket buffers, not the 100 MiB the loop allows


async def test_trickling_body_hits_the_total_timeout(serve: Any) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100
        await response.prepare(request)
        for _ in range(100):
            await response.write(b" ")
            await asyncio.sleep(0.3)
        return response

    peer = await serve({"/": trickle})
    policy = OutboundPolicy(allow_private=True, read_timeout_s=5, total_timeout_s=1)
    async with create_peer_client(policy) as client:
        with pytest.raises(PeerTimeoutError, match="timed out") as caught:
            await fetch(client, "GET", peer.url(), policy=policy)
    # The total timeout fired (asyncio's TimeoutError), not httpx's read timeout, which
    # a byte every 0.3 s never trips.
    cause = caught.value.__cause__
    assert isinstance(cause, TimeoutError) and not isinstance(cause, httpx.TimeoutException)


# -- unreachable ----------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerUnreachableError) as info:
            await fetch(client, "GET", url, policy=LOCAL)
    assert type(info.value) is PeerUnreachableError
    assert info.value.code == "peer-unreachable"


async def test_unresolvable_name_is_unreachable() -> None:
    resolver = resolver_of({"empty.example": []})
    async with create_peer_client(STRICT, resolver=resolver) as client:
        with pytest.raises(PeerUnreachableError, match=r"nowhere\.example") as info:
            await fetch(client, "GET", "http://nowhere.example/", policy=STRICT)
        assert type(info.value) is PeerUnreachableError
        with pytest.raises(PeerUnreachableError, match="no address") as info:
            await fetch(client, "GET", "http://empty.example/", policy=STRICT)
        assert type(info.value) is PeerUnreachableError


async def test_slow_resolver_is_a_timeout() -> None:
    never = asyncio.Event()

    async def hang(host: str, port: int) -> list[str]:
        await asyncio.wait_for(never.wait(), SERVER_WAIT_S)
        return []

    policy = OutboundPolicy(connect_timeout_s=0.2, total_timeout_s=5)
    async with create_peer_client(policy, resolver=hang) as client:
        with pytest.raises(PeerTimeoutError):
            await fetch(client, "GET", "http://slow.example/", policy=policy)


async def test_bad_urls_are_value_errors() -> None:
    async with create_peer_client(LOCAL) as client:
        for url in ("ftp://peer.example/", "http://user:pw@peer.example/", "/v1/info"):
            with pytest.raises(ValueError):
                await fetch(client, "GET", url, policy=LOCAL)


# -- open_stream ----------------------------------------------------------------------------


def sse(events: list[bytes], release: asyncio.Event | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        if release is not None:
            await asyncio.wait_for(release.wait(), SERVER_WAIT_S)
        return response

    return handler


async def test_open_stream_yields_lines(serve: Any) -> None:
    peer = await serve({"/v1/stream": sse([b"data: one\n\n", b": beat\n\ndata: two\n\n"])})
    async with create_peer_client(LOCAL) as client:
        async with open_stream(client, peer.url("/v1/stream"), policy=LOCAL) as response:
            lines = [line async for line in response.aiter_lines()]
    assert lines == ["data: one", "", ": beat", "", "data: two", ""]
    assert peer.headers[0]["Accept"] == "text/event-stream"


async def test_open_stream_checks_type_before_yielding(serve: Any) -> None:
    peer = await serve({"/v1/stream": ok_json})
    entered = False
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="application/json"):
            async with open_stream(client, peer.url("/v1/stream"), policy=LOCAL):
                entered = True
    assert not entered


async def test_open_stream_refuses_forbidden_and_cross_origin(serve: Any) -> None:
    other = await serve({"/": sse([b"data: x\n\n"])})
    peer = await serve({"/": redirect_to(other.url("/"))})
    async with create_peer_client(STRICT) as client:
        with pytest.raises(ForbiddenAddressError):
            async with open_stream(client, other.url(), policy=STRICT):
                pass
    async with create_peer_client(LOCAL) as client:
        with pytest.raises(PeerBadResponseError, match="another origin"):
            async with open_stream(client, peer.url(), policy=LOCAL):
                pass
    assert other.hits == []


@pytest.mark.parametrize("wrapped", [True, False], ids=["map_transport_errors", "bare"])
async def test_idle_stream_times_out_per_read(serve: Any, wrapped: bool) -> None:
    release = asyncio.Event()
    peer = await serve({"/": sse([b"data: hello\n\n"], release)})
    policy = OutboundPolicy(allow_private=True, read_timeout_s=0.3, total_timeout_s=5)
    lines: list[str] = []
    try:
        async with create_peer_client(policy) as client:
            with pytest.raises(PeerTimeoutError):
                async with open_stream(client, peer.url(), policy=policy) as response:
                    if wrapped:
                        with map_transport_errors(peer.url()):
                            async for line in response.aiter_lines():
                                lines.append(line)
                    else:
                        async for line in response.aiter_lines():
                            lines.append(line)
    finally:
        release.set()
    assert lines == ["data: hello", ""]


def test_map_transport_errors_translates_httpx() -> None:
    url = "http://peer.example/v1/info?x=1"
    with pytest.raises(PeerTimeoutError, match=r"http://peer\.example/v1/info: "):
        with map_transport_errors(url):
            raise httpx.ReadTimeout("read timed out")
    with pytest.raises(PeerUnreachableError) as info:
        with map_transport_errors(url):
            raise httpx.RemoteProtocolError("peer closed connection")
    assert info.value.url == "http://peer.example/v1/info"
    with pytest.raises(ValueError):  # anything else passes through
        with map_transport_errors(url):
            raise ValueError("not a transport error")


# -- peer_origin ----------------------------------------------------------------------------

ORIGINS = [
    ("http://Host:80/x/", "http://host"),
    ("HTTPS://Example.COM:443", "https://example.com"),
    ("https://example.com:8443/v1/", "https://example.com:8443"),
    ("http://example.com:443", "http://example.com:443"),
    ("http://127.0.0.1:8701", "http://127.0.0.1:8701"),
    ("http://[::1]:8701/", "http://[::1]:8701"),
    ("https://[2606:4700::1111]/", "https://[2606:4700::1111]"),
    ("http://bücher.example/", "http://xn--bcher-kva.example"),
]
NOT_ORIGINS = [
    "ftp://example.com/",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "example.com",
    "/relative/path",
    "http://user:pw@example.com/",
    "http://user@example.com/",
    "http://example.com/?q=1",
    "http://example.com/?",
    "http://example.com/#top",
    "http:///path",
    "http://",
    "http://exa mple.com/",
    "http://example.com:0/",
    "http://example.com:99999/",
]


@pytest.mark.parametrize(("url", "origin"), ORIGINS, ids=[u for u, _ in ORIGINS])
def test_peer_origin(url: str, origin: str) -> None:
    assert peer_origin(url) == origin


@pytest.mark.parametrize("url", NOT_ORIGINS)
def test_peer_origin_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        peer_origin(url)


# -- API and errors -------------------------------------------------------------------------


def test_public_names() -> None:
    assert set(outbound.__all__) == {
        "OutboundPolicy",
        "create_peer_client",
        "peer_origin",
        "fetch",
        "open_stream",
        "map_transport_errors",
        "IPAddress",
        "Resolver",
        "forbidden_reason",
        "select_addresses",
        "system_resolver",
        "GuardedNetworkBackend",
    }
    assert all(hasattr(outbound, name) for name in outbound.__all__)
    assert set(errors_module.__all__) == {
        name
        for name, value in vars(errors_module).items()
        if isinstance(value, type) and issubclass(value, PeerError)
    }


def test_error_codes_are_stable() -> None:
    assert issubclass(PeerError, ProtocolError) and PeerError.status == 502
    assert issubclass(PeerTimeoutError, PeerUnreachableError)
    codes: dict[type[PeerError], str] = {
        PeerError: "peer-error",
        ForbiddenAddressError: "peer-forbidden-address",
        PeerUnreachableError: "peer-unreachable",
        PeerTimeoutError: "peer-timeout",
        PeerBadResponseError: "peer-bad-response",
        PeerRejectedError: "peer-rejected",
    }
    for cls, code in codes.items():
        assert cls.code == code
        assert error_for_code(code) is cls


def test_policy_validates() -> None:
    with pytest.raises(ValueError):
        OutboundPolicy(total_timeout_s=0)
    with pytest.raises(ValueError):
        OutboundPolicy(max_response_bytes=0)
    with pytest.raises(ValueError):
        OutboundPolicy(max_redirects=-1)


async def test_system_resolver_resolves_localhost() -> None:
    addresses = await outbound.system_resolver("localhost", 80)
    assert addresses and len(addresses) == len(set(addresses))
    assert all(forbidden_reason(ipaddress.ip_address(a)) == "loopback" for a in addresses)
