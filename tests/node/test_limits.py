"""Limits and errors (spec 0004 §limits, §errors): 413 before buffering, batch size,
per-IP rate limit with Retry-After, refused encodings, deadlines, and no 5xx or
stack trace for client mistakes."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node import SqliteStore, create_app
from node.limits import AdmissionGate, RateLimiter
from node.store.base import StoredEvent
from protocol.errors import RateLimitedError, UnavailableError
from tests.node.conftest import MSGPACK, Author, Clock, Node, b64, batch, make_config
from tests.node.fed_fixtures import wait_for


async def test_413_from_content_length(start_node: Callable[..., Any]) -> None:
    node: Node = await start_node(max_request_bytes=10_000)
    r = await node.http.post(
        "/v1/events", content=b"\x90" + b"\x00" * 20_000, headers={"Content-Type": MSGPACK}
    )
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"


async def test_413_for_chunked_body_without_length(start_node: Callable[..., Any]) -> None:
    node: Node = await start_node(max_request_bytes=100_000)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(8):
            sent += 32_768
            yield b"\x00" * 32_768

    r = await node.http.post("/v1/events", content=body(), headers={"Content-Type": MSGPACK})
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"
    assert "Content-Length" not in r.request.headers  # really chunked


async def test_batch_size_limit(start_node: Callable[..., Any], author: Author) -> None:
    node: Node = await start_node(max_batch=2)
    events = [author.post(str(i)) for i in range(3)]
    r = await node.http.post(
        "/v1/events", content=batch(*events), headers={"Content-Type": MSGPACK}
    )
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"
    r = await node.http.post("/v1/events", json={"events": [b64(e) for e in events]})
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"
    assert (await node.statuses(*events[:2])) == ["accepted", "accepted"]


async def test_oversized_event_is_rejected_per_event(
    start_node: Callable[..., Any], author: Author
) -> None:
    node: Node = await start_node(max_event_bytes=300)
    small, big = author.post("s"), author.post("b" * 400)
    assert await node.statuses(small, big) == ["accepted", "too-large"]


async def test_429_with_retry_after_then_recovers(
    start_node: Callable[..., Any], clock: Clock
) -> None:
    node: Node = await start_node(rate_per_ip=1, rate_burst=2)
    assert (await node.http.get("/v1/info")).status_code == 200
    assert (await node.http.get("/v1/info")).status_code == 200
    r = await node.http.get("/v1/info")
    assert r.status_code == 429 and r.json()["error"] == "rate-limited"
    assert r.headers["Retry-After"] == "1"
    assert (await node.http.get("/health")).status_code == 200  # never limited
    clock.advance(1000)
    assert (await node.http.get("/v1/info")).status_code == 200
    assert "murmur_rate_limited_total 1" in (await node.http.get("/metrics")).text


def test_rate_limiter_tracks_a_bounded_number_of_addresses() -> None:
    now = [0]
    limiter = RateLimiter(rate=1, burst=1, max_keys=3, now_ms=lambda: now[0])
    for i in range(10):
        limiter.take(f"10.0.0.{i}")
    assert len(limiter) == 3
    with pytest.raises(RateLimitedError) as info:
        limiter.take("10.0.0.9")
    assert info.value.retry_after == 1
    now[0] = 1000
    limiter.take("10.0.0.9")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_compressed_bodies_are_refused(node: Node, author: Author, encoding: str) -> None:
    r = await node.http.post(
        "/v1/events",
        content=gzip.compress(batch(author.post())),
        headers={"Content-Type": MSGPACK, "Content-Encoding": encoding},
    )
    assert r.status_code == 415 and r.json()["error"] == "unsupported-media-type"


class _BrokenStore(SqliteStore):
    async def get_event(self, eid: bytes) -> StoredEvent | None:
        raise RuntimeError("disk on fire: secret internals")


class _SlowStore(SqliteStore):
    async def get_event(self, eid: bytes) -> StoredEvent | None:
        await asyncio.sleep(10)
        return None


async def _serve(store_cls: type[SqliteStore], tmp_path: Path, clock: Clock, **limits: Any) -> Any:
    config = make_config(tmp_path, clock, **limits)
    store = store_cls(tmp_path, synchronous="normal", now_ms=clock)
    server = TestServer(create_app(config, store=store), host="127.0.0.1", port=0)
    await server.start_server()
    return server


async def test_unexpected_failure_is_500_without_internals(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _serve(_BrokenStore, tmp_path, clock)
    try:
        async with httpx.AsyncClient(base_url=str(server.make_url(""))) as http:
            r = await http.get("/v1/events/" + "00" * 32)
    finally:
        await server.close()
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "message": "internal error"}
    assert "disk on fire" not in r.text and "Traceback" not in r.text
    assert "disk on fire" in caplog.text  # logged for the operator


async def test_request_deadline_is_503(tmp_path: Path, clock: Clock) -> None:
    server = await _serve(_SlowStore, tmp_path, clock, request_timeout_ms=200)
    try:
        async with httpx.AsyncClient(base_url=str(server.make_url(""))) as http:
            r = await http.get("/v1/events/" + "00" * 32)
    finally:
        await server.close()
    assert r.status_code == 503 and r.json()["error"] == "unavailable"


async def test_body_deadline(start_node: Callable[..., Any]) -> None:
    node: Node = await start_node(body_timeout_ms=200)

    async def trickle() -> AsyncIterator[bytes]:
        yield b"\x91"
        await asyncio.sleep(1)
        yield b"\xc0"

    r = await node.http.post("/v1/events", content=trickle(), headers={"Content-Type": MSGPACK})
    assert r.status_code == 400 and r.json()["error"] == "bad-request"
    # The body deadline fired, not a verdict on the (complete, valid) batch.
    assert r.json()["message"] == "request body not received within 0.2 s"


# -- global admission gate (spec 0004 §limits, "Admission") ---------------------------


def test_admission_gate_bounds_requests_and_bytes() -> None:
    gate = AdmissionGate(max_requests=2, max_bytes=100)
    gate.admit(60, "a")
    with pytest.raises(UnavailableError):
        gate.admit(41, "b")  # 101 bytes in flight would pass max_bytes
    gate.admit(40, "b")
    with pytest.raises(UnavailableError):
        gate.admit(0, "c")  # a third request, however small
    assert (gate.requests, gate.bytes, gate.shed, len(gate)) == (2, 100, 2, 2)
    gate.release(60, "a")
    gate.release(40, "b")
    assert (gate.requests, gate.bytes, len(gate)) == (0, 0, 0)
    gate.admit(1_000, "a")  # larger than max_bytes on its own: admitted when alone...
    with pytest.raises(UnavailableError):
        gate.admit(1, "b")  # ...and then nothing else fits beside it
    gate.release(1_000, "a")
    gate.admit(100, "a")
    assert gate.shed == 3


def test_admission_gate_shares_per_address() -> None:
    """One address holds at most a quarter of the slots and half of the bytes, so a
    client dripping bodies cannot keep every other client's ingest shed."""
    gate = AdmissionGate(max_requests=8, max_bytes=1_000)
    assert (gate.max_requests_per_address, gate.max_bytes_per_address) == (2, 500)
    gate.admit(10, "10.0.0.1")
    gate.admit(10, "10.0.0.1")
    with pytest.raises(UnavailableError, match="from this address"):
        gate.admit(10, "10.0.0.1")
    gate.admit(480, "10.0.0.2")
    with pytest.raises(UnavailableError, match="from this address"):
        gate.admit(30, "10.0.0.2")  # 510 bytes from one address
    gate.admit(400, "10.0.0.3")  # others are still served
    gate.release(10, "10.0.0.1")
    gate.admit(10, "10.0.0.1")
    assert (gate.requests, gate.bytes, len(gate)) == (4, 900, 3)
    for size, key in [(10, "10.0.0.1"), (10, "10.0.0.1"), (480, "10.0.0.2"), (400, "10.0.0.3")]:
        gate.release(size, key)
    assert (gate.requests, gate.bytes, len(gate)) == (0, 0, 0)
    gate.admit(700, "10.0.0.4")  # over the address share alone: admitted


async def _inflight(node: Node) -> int:
    text = (await node.http.get("/metrics")).text
    match = re.search(r"^murmur_inflight_requests (\d+)$", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1))


@pytest.mark.parametrize(
    ("bound", "limits", "held_from", "then_from", "expect"),
    [
        # Two held bodies fill two slots; a third client is shed.
        ("requests", {"max_inflight_ingest": 2}, ["127.0.0.2", "127.0.0.3"], "127.0.0.4", 503),
        # One held body plus another would pass the byte bound (1.5 bodies, set below).
        ("bytes", {}, ["127.0.0.2"], "127.0.0.3", 503),
        # 8 slots, 2 per address: a third body from the same address is shed...
        ("share", {"max_inflight_ingest": 8}, ["127.0.0.2"] * 2, "127.0.0.2", 503),
        # ...while another address is served.
        ("share-other", {"max_inflight_ingest": 8}, ["127.0.0.2"] * 2, "127.0.0.3", 200),
    ],
    ids=["requests", "bytes", "share", "share-other"],
)
async def test_admission_gate_sheds_with_503_and_retry_after(
    start_node: Callable[..., Any],
    make_author: Callable[[], Author],
    bound: str,
    limits: dict[str, int],
    held_from: list[str],
    then_from: str,
    expect: int,
) -> None:
    """Bodies held open by slow clients fill the gate; the next ingest is refused at
    once with 503 + Retry-After (not queued, not 429: the per-IP limit is far away),
    reads are still served, and once the held requests finish the node accepts again."""
    bodies = [batch(make_author().post("gate")) for _ in range(len(held_from) + 1)]
    if bound == "bytes":
        limits = {"max_inflight_bytes": len(bodies[0]) * 3 // 2}
    node: Node = await start_node(rate_per_ip=10_000, rate_burst=10_000, **limits)
    release = asyncio.Event()

    async def slow(data: bytes) -> AsyncIterator[bytes]:
        yield data[:1]
        await release.wait()
        yield data[1:]

    async def post(source: str, body: bytes, *, held: bool) -> httpx.Response:
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(base_url=node.url, transport=transport) as http:
            return await http.post(
                "/v1/events",
                content=slow(body) if held else body,
                headers={"Content-Type": MSGPACK, "Content-Length": str(len(body))},
            )

    held = [
        asyncio.create_task(post(source, body, held=True))
        for source, body in zip(held_from, bodies, strict=False)
    ]
    try:

        async def all_admitted() -> bool:
            return await _inflight(node) == len(held)

        await wait_for(all_admitted, f"{len(held)} held request(s) admitted")
        r = await post(then_from, bodies[-1], held=False)
        assert r.status_code == expect, r.text
        if expect == 503:
            assert r.json()["error"] == "unavailable"
            assert r.headers["Retry-After"] == "1"
        assert (await node.http.get("/v1/info")).status_code == 200  # reads are not gated
        assert await _inflight(node) == len(held)
    finally:
        release.set()
    for task in held:
        done = await task
        assert done.status_code == 200 and done.json()["accepted"] == 1, done.text
    assert await _inflight(node) == 0
    if expect == 503:  # what was shed is accepted on retry
        r = await post(then_from, bodies[-1], held=False)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


@web.middleware
async def _remote_from_header(request: web.Request, handler: Any) -> web.StreamResponse:
    """Test only: the client address is ``X-Test-Remote`` (loopback gives one IPv6
    address; a /64 needs many)."""
    remote = request.headers.get("X-Test-Remote")
    result: web.StreamResponse = await handler(request.clone(remote=remote) if remote else request)
    return result


async def test_every_per_address_limit_counts_an_ipv6_64_as_one_address(
    tmp_path: Path, clock: Clock, make_author: Callable[[], Author]
) -> None:
    """spec 0004 #client-address: the per-IP bucket, the announcement bucket, the
    stream share and the admission gate's share all count the addresses of one IPv6
    /64 as one; another /64 is another address."""
    config = make_config(
        tmp_path / "n",
        clock,
        rate_per_ip=1,
        rate_burst=3,
        announce_burst=1,
        max_streams_per_address=1,
        max_inflight_ingest=4,  # a quarter: one body in flight per address
    )
    app = create_app(config)
    app.middlewares.insert(0, _remote_from_header)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    release = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:

            def at(remote: str) -> dict[str, str]:
                return {"X-Test-Remote": remote}

            # Per-IP bucket: three tokens for the whole /64.
            for host in ("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"):
                assert (await http.get("/v1/info", headers=at(host))).status_code == 200
            r = await http.get("/v1/info", headers=at("2001:db8:1::4"))
            assert r.status_code == 429, r.text
            assert (await http.get("/v1/info", headers=at("2001:db8:2::1"))).status_code == 200

            # Announcement bucket: one announcement for the whole /64.
            peer = {"url": "http://192.0.2.1:1"}
            r = await http.post("/v1/peers", json=peer, headers=at("2001:db8:3::1"))
            assert r.status_code != 429, r.text
            r = await http.post("/v1/peers", json=peer, headers=at("2001:db8:3::2"))
            assert r.status_code == 429 and "announcements" in r.json()["message"], r.text

            # Stream share: one stream for the whole /64.
            async with http.stream("GET", "/v1/stream", headers=at("2001:db8:4::1")) as first:
                assert first.status_code == 200
                second = await http.get("/v1/stream", headers=at("2001:db8:4::2"))
                assert second.status_code == 429, second.text
                async with http.stream("GET", "/v1/stream", headers=at("2001:db8:5::1")) as other:
                    assert other.status_code == 200

            # Admission gate: one body in flight for the whole /64.
            bodies = [batch(make_author().post("gate")) for _ in range(3)]

            async def slow(data: bytes) -> AsyncIterator[bytes]:
                yield data[:1]
                await release.wait()
                yield data[1:]

            def post(host: str, body: bytes, content: Any) -> Any:
                headers = {**at(host), "Content-Type": MSGPACK, "Content-Length": str(len(body))}
                return http.post("/v1/events", content=content, headers=headers)

            held = asyncio.create_task(post("2001:db8:6::1", bodies[0], slow(bodies[0])))

            async def admitted() -> bool:
                text = (await http.get("/metrics", headers=at("2001:db8:7::1"))).text
                return "murmur_inflight_requests 1\n" in text

            await wait_for(admitted, "the held body admitted")
            r = await post("2001:db8:6::2", bodies[1], bodies[1])
            assert r.status_code == 503, r.text
            r = await post("2001:db8:8::1", bodies[2], bodies[2])
            assert r.status_code == 200, r.text
            release.set()
            assert (await held).status_code == 200
    finally:
        release.set()
        await server.close()
