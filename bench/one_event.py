"""One event per request: many concurrent posters, then a lone one (issue #19 point 4).

Users post one event at a time, so this is the request every post takes. ``murmur bench
ingest`` calls :func:`measure_one_event` for each of its node set-ups: a fresh node,
``clients`` concurrent posters each with its own keep-alive connection, each posting the
next event (a one-event msgpack batch, as ``client.api.NodeClient.submit`` sends it) as
soon as its last one is acknowledged; every event must come back ``accepted``. Reported:
events/s, the node's CPU per event, p50/p99 of the acknowledgement latency (from writing
the request to the answer read), and this client's own CPU, so that a pegged client
shows instead of passing for a slow node. After the last run of a set-up, on the same
(now idle) node, a lone poster posts one event at a time: the latency of a post that
nothing else is written with (spec 0004 #group-commit: nothing waits on purpose).

The client is lean on purpose: requests are encoded before the clock starts and sent
through a minimal HTTP/1.1 keep-alive protocol (:class:`KeepAliveConnection`); a
general client (httpx) spends several times the node's CPU per request on its own
machinery (header models, pools, the h11 state machine), which on the one-core set-up
would measure the client.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import NodeProcess, percentile, write_config
from node.limits import ADMISSION_REQUEST_SHARE
from protocol.encoding import encode_bins

__all__ = [
    "CLIENTS",
    "TARGET_P99_MS",
    "TARGET_RATIO",
    "KeepAliveConnection",
    "Posted",
    "encode_posts",
    "measure_one_event",
    "post_each",
]

#: Concurrent one-event posters of each run (issue #19).
CLIENTS = (8, 64)
#: Issue #19: one event per request, 64 clients, one core, over raw single-core verify.
TARGET_RATIO = 0.35
#: Issue #19: p99 acknowledgement latency of those posts.
TARGET_P99_MS = 50.0
#: A post shed (429/503) is sent again after its Retry-After this many times at most.
_MAX_TRIES = 20
_HEAD_END = b"\r\n\r\n"


class KeepAliveConnection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, one request at a time, answers with a
    ``Content-Length`` (as the node's are): :meth:`request` writes pre-encoded request
    bytes and returns ``(status, retry_after_s, body)``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiting: asyncio.Future[tuple[int, float, bytes]] | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> KeepAliveConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(ConnectionError(f"the node closed the connection: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        answer = self._parse()
        if answer is not None and self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(answer)

    def _parse(self) -> tuple[int, float, bytes] | None:
        end = self._buf.find(_HEAD_END)
        if end < 0:
            return None
        head = bytes(self._buf[:end]).lower()
        status = int(head[9:12])
        length, retry = 0, 0.0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"retry-after":
                retry = float(value)
            elif name == b"transfer-encoding":
                raise ConnectionError("the node answered without a Content-Length")
        start = end + len(_HEAD_END)
        stop = start + length
        if len(self._buf) < stop:
            return None
        body = bytes(self._buf[start:stop])
        del self._buf[:stop]
        return status, retry, body

    async def request(self, data: bytes) -> tuple[int, float, bytes]:
        if self._transport is None:
            raise ConnectionError("the connection is closed")
        self._waiting = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return await self._waiting

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def encode_posts(wires: Sequence[bytes], host: str) -> list[bytes]:
    """Each wire event as a whole ``POST /v1/events`` request of one event."""
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/msgpack\r\n"
        "Accept: application/json\r\nContent-Length: "
    ).encode()
    out = []
    for wire in wires:
        body = encode_bins([wire])
        out.append(head + str(len(body)).encode() + _HEAD_END + body)
    return out


@dataclass(slots=True)
class Posted:
    """What :func:`post_each` did: wall time, acknowledgement latencies (ms), posts
    shed and sent again, and this process's CPU seconds meanwhile."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    shed: int = 0
    client_cpu_s: float = 0.0


async def post_each(host: str, port: int, requests: Sequence[bytes], clients: int) -> Posted:
    """Post every request with ``clients`` posters, each on its own connection taking
    the next request when its last is acknowledged; every event must be accepted."""
    conns = await asyncio.gather(*(KeepAliveConnection.open(host, port) for _ in range(clients)))
    todo: Iterator[bytes] = iter(requests)
    out = Posted(0.0)
    lat = out.latencies_ms
    clock = time.perf_counter

    async def poster(conn: KeepAliveConnection) -> None:
        for data in todo:
            start = clock()
            for _ in range(_MAX_TRIES):
                status, retry, body = await conn.request(data)
                if status not in (429, 503):
                    break
                out.shed += 1  # the node's admission gate or rate limiter said "later"
                await asyncio.sleep(retry or 1.0)
            if status != 200 or json.loads(body)["accepted"] != 1:
                raise RuntimeError(f"a one-event post was not accepted: {status} {body[:300]!r}")
            lat.append((clock() - start) * 1000)

    try:
        cpu = time.process_time()
        start = clock()
        await asyncio.gather(*(poster(c) for c in conns))
        out.seconds = clock() - start
        out.client_cpu_s = time.process_time() - cpu
    finally:
        for c in conns:
            c.close()
    if len(lat) != len(requests):
        raise RuntimeError(f"{len(lat)} of {len(requests)} one-event posts acknowledged")
    return out


def _summary(posted: Posted, events: int) -> dict[str, Any]:
    lat = posted.latencies_ms
    return {
        "events": events,
        "seconds": round(posted.seconds, 3),
        "events_per_s": round(events / posted.seconds, 1),
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2),
        "shed": posted.shed,
        "client_cpu_us_per_event": round(posted.client_cpu_s / events * 1e6, 1),
        # Of the wall time: near 1.0 means the client was pegged on its CPU.
        "client_cpu_share": round(posted.client_cpu_s / posted.seconds, 3),
    }


def measure_one_event(
    wires: Sequence[bytes], clients: int, *, lone: Sequence[bytes] = (),
    node_cpus: set[int] | None, client_cpus: set[int] | None, workers: int, where: Path,
) -> dict[str, Any]:  # fmt: skip
    """A fresh node; ``wires`` posted one a request by ``clients`` posters; then, if
    given, ``lone`` posted one at a time by one poster on the idle node."""
    import os

    # The admission gate lets one address hold ADMISSION_REQUEST_SHARE of its slots
    # (8 of the default 32): every poster of this one client address must fit. The
    # per-IP rate limiter is opened up by write_config.
    gate = math.ceil(max(clients, 1) / ADMISSION_REQUEST_SHARE)
    config = write_config(
        where / "node.toml", node={"verify_workers": workers},
        limits={"max_inflight_ingest": max(gate, 32)},
    )  # fmt: skip
    with NodeProcess(where / "data", "--config", str(config), cpus=node_cpus) as node:
        host, port = node.url.removeprefix("http://").rsplit(":", 1)
        requests = encode_posts(wires, f"{host}:{port}")
        lone_requests = encode_posts(lone, f"{host}:{port}")
        old = os.sched_getaffinity(0) if client_cpus else None
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        try:
            before = node.cpu_seconds()
            posted = asyncio.run(post_each(host, int(port), requests, clients))
            cpu = node.cpu_seconds() - before
            alone = asyncio.run(post_each(host, int(port), lone_requests, 1)) if lone else None
        finally:
            if old is not None:
                os.sched_setaffinity(0, old)
    result = {"clients": clients, **_summary(posted, len(wires))}
    result["node_cpu_us_per_event"] = round(cpu / len(wires) * 1e6, 1)
    if alone is not None:
        result["lone"] = _summary(alone, len(lone))
    return result
