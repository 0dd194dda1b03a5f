"""Fixtures for in-process node tests: a real app on aiohttp's TestServer (port 0),
driven by a real httpx client, with an injected clock and throwaway data dirs."""

from __future__ import annotations

import base64
import itertools
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node import NodeConfig, NodeLimits, create_app
from protocol.encoding import encode
from protocol.events import Event, sign_event
from protocol.identity import Identity
from tests.node.backends import Backend

MSGPACK = "application/msgpack"
T0 = 1_700_000_000_000
_seeds = itertools.count(1)


class Clock:
    """A controllable ``now_ms``."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class Author:
    """An identity that signs a well-formed chain of events."""

    identity: Identity
    clock: Clock
    net: str = "murmur"
    seq: int = 0
    prev: bytes | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def did(self) -> str:
        return self.identity.did

    def sign(self, kind: str, body: dict[str, Any], **kw: Any) -> Event:
        """Sign the next event in the chain (or at an explicit ``seq``/``prev``)."""
        seq = kw.pop("seq", self.seq + 1)
        prev = kw.pop("prev", self.prev)
        ts = kw.pop("ts", self.clock.now + seq)
        net = kw.pop("net", self.net)
        ev = sign_event(self.identity, kind=kind, body=body, seq=seq, prev=prev, ts=ts, net=net)
        if seq == self.seq + 1:
            self.seq, self.prev = seq, ev.id
        self.events.append(ev)
        return ev

    def post(self, text: str = "hello", **body: Any) -> Event:
        return self.sign("post", {"text": text, **body})


def new_author(clock: Clock, name: str | None = None) -> Author:
    seed = next(_seeds).to_bytes(32, "big")
    return Author(identity=Identity.from_seed(seed), clock=clock)


def batch(*events: Event | bytes) -> bytes:
    """A msgpack ingest body."""
    return encode([e if isinstance(e, bytes) else e.wire for e in events])


def b64(ev: Event) -> str:
    return base64.b64encode(ev.wire).decode()


@dataclass
class Node:
    app: web.Application
    http: httpx.AsyncClient
    clock: Clock
    config: NodeConfig
    url: str

    async def ingest(self, *events: Event | bytes, status: int = 200) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/events", content=batch(*events), headers={"Content-Type": MSGPACK}
        )
        assert r.status_code == status, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def statuses(self, *events: Event | bytes) -> list[str]:
        doc = await self.ingest(*events)
        return [r["status"] if r["status"] != "rejected" else r["error"] for r in doc["results"]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def author(clock: Clock) -> Author:
    return new_author(clock)


@pytest.fixture
def make_author(clock: Clock) -> Callable[[], Author]:
    return lambda: new_author(clock)


def make_config(data_dir: Path, clock: Clock, **limits: Any) -> NodeConfig:
    return NodeConfig(
        data_dir=data_dir,
        port=0,
        now_ms=clock,
        verify_workers=2,
        sqlite_synchronous="normal",
        limits=replace(NodeLimits(), **limits),
    )


NodeFactory = Callable[..., Any]


@pytest.fixture
async def start_node(
    tmp_path: Path, clock: Clock, backend: Backend
) -> AsyncIterator[Callable[..., Any]]:
    """``await start_node(**limits)`` -> :class:`Node` on the test's store backend (the
    same ``data_dir`` again: the same data); all are stopped at teardown."""
    started: list[tuple[TestServer, httpx.AsyncClient]] = []

    async def start(data_dir: Path | None = None, **limits: Any) -> Node:
        config = make_config(data_dir or tmp_path / f"node{len(started)}", clock, **limits)
        store = None if backend.kind == "sqlite" else await backend.store(config.data_dir)
        app = create_app(config, store=store)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        http = httpx.AsyncClient(base_url=url, timeout=10)
        started.append((server, http))
        return Node(app=app, http=http, clock=clock, config=config, url=url)

    yield start
    for server, http in reversed(started):
        await http.aclose()
        await server.close()


@pytest.fixture
async def node(start_node: Callable[..., Any]) -> Node:
    result: Node = await start_node()
    return result


def forge(
    identity: Identity,
    *,
    header: dict[str, Any] | None = None,
    body: dict[str, Any] | bytes | None = None,
    sig: bytes | None = None,
    **fields: Any,
) -> bytes:
    """Hand-build a signed wire event, bypassing every check of ``sign_event``."""
    import hashlib

    from protocol.events import SIGNING_DOMAIN

    body_value: dict[str, Any] | bytes = {"text": "forged"} if body is None else body
    body_bytes = body_value if isinstance(body_value, bytes) else encode(body_value, max_depth=64)
    h: dict[str, Any] = {
        "v": 1,
        "net": "murmur",
        "author": identity.did,
        "seq": 1,
        "prev": None,
        "ts": T0,
        "kind": "post",
        "body": hashlib.sha256(body_bytes).digest(),
    }
    h.update(header or {})
    h.update(fields)
    header_bytes = encode(h)
    eid = hashlib.sha256(header_bytes).digest()
    signature = identity.sign(SIGNING_DOMAIN + eid) if sig is None else sig
    return encode([header_bytes, signature, body_bytes])


_LINES: weakref.WeakKeyDictionary[httpx.Response, AsyncIterator[str]] = (
    weakref.WeakKeyDictionary()
)


async def read_sse(resp: httpx.Response, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    """Read ``count`` SSE messages (``{"id": int, "data": dict}``) within ``within`` s."""
    import asyncio
    import json

    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    lines = _LINES.get(resp)
    if lines is None:
        lines = _LINES[resp] = resp.aiter_lines()
    async with asyncio.timeout(within):
        async for line in lines:
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "data" in current:
                out.append(current)
                current = {}
                if len(out) >= count:
                    break
    return out
