"""Limits and errors (spec 0004 §limits, §errors): 413 before buffering, batch size,
per-IP rate limit with Retry-After, refused encodings, deadlines, and no 5xx or
stack trace for client mistakes."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from node import SqliteStore, create_app
from node.limits import RateLimiter
from node.store.base import StoredEvent
from protocol.errors import RateLimitedError
from tests.node.conftest import MSGPACK, Author, Clock, Node, b64, batch, make_config


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
