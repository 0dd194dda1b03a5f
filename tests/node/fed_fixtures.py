"""Helpers for the federation tests: real nodes with fast federation settings that can
be stopped and restarted on their data dir, fake (hostile) peers as small aiohttp apps
that count the requests they get, and a deadline-bound wait.

Everything listens on 127.0.0.1, port 0, in this process. Waits poll a condition under
a deadline; nothing synchronises on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from node import create_app
from node.config import FederationConfig, NodeConfig
from node.federation.manager import Federation
from node.federation.outbound import peer_origin
from node.federation.peers import Peer
from node.federation.sync import SYNC_CONTENT_TYPE
from node.metrics import Metrics
from node.state import FEDERATION, METRICS, STORE
from node.store.base import Store
from protocol.encoding import DecodeLimits, decode, encode
from protocol.events import Event, decode_unverified
from protocol.negentropy import Negentropy, NegentropyStorage
from tests.node.backends import Backend
from tests.node.conftest import MSGPACK, Clock, batch

__all__ = [
    "FAST",
    "Cluster",
    "FakePeer",
    "FedNode",
    "closed_port",
    "fed_config",
    "sse_event",
    "wait_for",
]

#: Federation settings of every test node unless a test overrides them: quick
#: reconnects, and no periodic sync or gossip inside a test's lifetime (a test that
#: wants them asks, or calls ``sync_once`` / ``gossip_with`` itself).
FAST: dict[str, int] = {
    "backoff_min_ms": 50,
    "backoff_max_ms": 500,
    "sync_interval_ms": 600_000,
    "gossip_interval_ms": 600_000,
    "connect_timeout_ms": 2_000,
    "read_timeout_ms": 10_000,
    "total_timeout_ms": 5_000,
}
#: The longest any wait in these tests may take before it fails.
DEADLINE_S = 8.0
#: Longest a fake peer holds a stream open (it is always released at teardown).
FAKE_HOLD_S = 15.0


async def wait_for(
    cond: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = DEADLINE_S
) -> None:
    """Poll ``cond`` (sync or async) until it is true; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def fed_config(
    data_dir: Path,
    clock: Clock,
    *,
    peers: Sequence[str] = (),
    allow_private: bool = True,
    port: int = 0,
    **federation: Any,
) -> NodeConfig:
    return NodeConfig(
        data_dir=data_dir,
        port=port,
        peers=tuple(peers),
        allow_private_peers=allow_private,
        now_ms=clock,
        verify_workers=2,
        sqlite_synchronous="normal",
        federation=FederationConfig(**{**FAST, **federation}),
    )


def sse_event(cursor: int, wire_b64: str) -> bytes:
    """One stream message as a node sends it (only the fields a subscriber reads)."""
    data = json.dumps({"cursor": cursor, "event": {"wire": wire_b64}}, separators=(",", ":"))
    return f"id: {cursor}\nevent: event\ndata: {data}\n\n".encode()


@dataclass
class FedNode:
    """A real node app on a TestServer, with a client for its API."""

    name: str
    config: NodeConfig
    app: web.Application
    server: TestServer
    http: httpx.AsyncClient
    url: str

    @property
    def fed(self) -> Federation:
        return self.app[FEDERATION]

    @property
    def store(self) -> Store:
        return self.app[STORE]

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    @property
    def origin(self) -> str:
        return peer_origin(self.url)

    def peer(self, url: str) -> Peer | None:
        return self.fed.table.get(peer_origin(url))

    def known(self, url: str) -> Peer:
        """The peer at ``url``, which the test expects to be in the table."""
        peer = self.peer(url)
        assert peer is not None, f"{url} is not in {self.name}'s peer table"
        return peer

    def state_of(self, url: str) -> str | None:
        peer = self.peer(url)
        return None if peer is None else peer.state.value

    async def ingest(self, *events: Event | bytes) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/events", content=batch(*events), headers={"Content-Type": MSGPACK}
        )
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        assert all(x["status"] == "accepted" for x in doc["results"]), doc
        return doc

    async def items(self) -> list[tuple[int, bytes]]:
        """Every stored event as a negentropy item, in order (from the sync storage)."""
        storage = await self.store.sync_storage()
        return [(storage.timestamp(i), storage.id(i)) for i in range(len(storage))]

    async def ids(self) -> set[bytes]:
        return {eid for _, eid in await self.items()}

    async def has_all(self, events: Sequence[Event]) -> bool:
        return {e.id for e in events} <= await self.ids()

    async def peers_doc(self) -> dict[str, Any]:
        r = await self.http.get("/v1/peers")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def peer_entry(self, url: str) -> dict[str, Any] | None:
        origin = peer_origin(url)
        for entry in (await self.peers_doc())["peers"]:
            if entry["url"] == origin:
                return dict(entry)
        return None


class FakePeer:
    """A peer that speaks (or mis-speaks) the node API, as an aiohttp app.

    By default it is well behaved: ``/v1/info`` names ``network`` and ``node_id``; its
    event set is ``wires`` (negentropy over ``POST /v1/sync``, ``GET /v1/events?ids=``);
    ``/v1/stream`` sends the ``: cursor=0`` comment, then the ``stream`` chunks
    (``gap_s`` apart), and stays open until released. ``items`` are extra negentropy
    items (ids it claims to hold but cannot serve), ``frame_limit`` its sync frame
    limit. Misbehaviour is set with ``info`` (status, content type, body),
    ``stream`` and ``extra_events`` (sent with every ``GET /v1/events`` answer, asked
    for or not). ``hits`` counts requests by path.
    """

    def __init__(
        self,
        *,
        node_id: str = "fa" * 16,
        network: str = "murmur",
        wires: Sequence[bytes] = (),
        stream: bytes | Sequence[bytes] = b"",
        gap_s: float = 0.0,
        info: tuple[int, str, bytes] | None = None,
        extra_events: Sequence[bytes] = (),
        frame_limit: int = 1_000_000,
        items: Sequence[tuple[int, bytes]] = (),
        port: int = 0,
    ) -> None:
        self.node_id = node_id
        self.network = network
        self.wires = list(wires)
        self.stream = [stream] if isinstance(stream, bytes) else list(stream)
        self.gap_s = gap_s
        self.info = info
        self.frame_limit = frame_limit
        self.items = list(items)
        self.port = port
        #: The ``cursor`` query parameter of each stream request (None: absent).
        self.stream_cursors: list[str | None] = []
        self.extra_events = list(extra_events)
        self.hits: Counter[str] = Counter()
        self.offered: list[bytes] = []
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> FakePeer:
        @web.middleware
        async def count(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            self.hits[request.path] += 1
            return await handler(request)

        app = web.Application(middlewares=[count])
        app.router.add_get("/v1/info", self._info)
        app.router.add_get("/v1/stream", self._stream)
        app.router.add_post("/v1/sync", self._sync)
        app.router.add_get("/v1/events", self._get_events)
        app.router.add_post("/v1/events", self._post_events)
        app.router.add_get("/v1/peers", self._get_peers)
        app.router.add_post("/v1/peers", self._announce)
        self.add_routes(app.router)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()
        return self

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """More routes, for subclasses (none here)."""

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    # -- handlers -------------------------------------------------------------------

    async def _info(self, request: web.Request) -> web.Response:
        if self.info is not None:
            status, content_type, body = self.info
            return web.Response(status=status, body=body, content_type=content_type)
        return web.json_response({"network": self.network, "node_id": self.node_id})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        self.stream_cursors.append(request.query.get("cursor"))
        await resp.prepare(request)
        await resp.write(b"retry: 1000\n: cursor=0\n\n")
        for i, chunk in enumerate(self.stream):
            if i and self.gap_s:
                await asyncio.sleep(self.gap_s)  # pacing, so chunks arrive apart
            await resp.write(chunk)
        try:
            async with asyncio.timeout(FAKE_HOLD_S):
                await self.release.wait()
        except TimeoutError:
            pass
        return resp

    def storage(self) -> NegentropyStorage:
        items = list(self.items)
        for wire in self.wires:
            ev = decode_unverified(wire)
            items.append((ev.ts, ev.id))
        return NegentropyStorage.from_items(items)

    async def _sync(self, request: web.Request) -> web.Response:
        message = await request.read()
        answer = Negentropy(self.storage(), self.frame_limit).reconcile(message)
        return web.Response(body=answer, content_type=SYNC_CONTENT_TYPE)

    async def _get_events(self, request: web.Request) -> web.Response:
        wanted = [bytes.fromhex(x) for x in request.query.get("ids", "").split(",") if x]
        by_id = {decode_unverified(w).id: w for w in self.wires}
        events = [{"wire": by_id[i]} for i in wanted if i in by_id]
        events += [{"wire": w} for w in self.extra_events]
        missing = [i.hex() for i in wanted if i not in by_id]
        body = encode({"events": events, "missing": missing})
        return web.Response(body=body, content_type=MSGPACK)

    async def _post_events(self, request: web.Request) -> web.Response:
        body = await request.read()
        limits = DecodeLimits(
            max_bytes=len(body) + 1,
            max_depth=2,
            max_str=len(body) + 1,
            max_bin=len(body) + 1,
            max_items=10_000,
        )
        wires = decode(body, limits=limits)
        self.offered.extend(wires)
        return web.json_response({"accepted": len(wires), "results": []})

    async def _get_peers(self, request: web.Request) -> web.Response:
        return web.json_response({"node_id": self.node_id, "url": None, "peers": []})

    async def _announce(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "known"})


class Cluster:
    """Starts nodes and fake peers for one test and stops them all at teardown."""

    def __init__(self, root: Path, clock: Clock, backend: Backend | None = None) -> None:
        self.root = root
        self.clock = clock
        #: The store backend of the nodes (None: SQLite under each data dir).
        self.backend = backend
        self._nodes: list[FedNode] = []
        self._fakes: list[FakePeer] = []

    async def start(
        self,
        name: str,
        *,
        peers: Sequence[str] = (),
        port: int = 0,
        config: NodeConfig | None = None,
        **settings: Any,
    ) -> FedNode:
        """A node named ``name`` (its data dir is ``root/name``); ``settings`` are
        ``allow_private`` or federation settings overriding :data:`FAST`."""
        if config is None:
            config = fed_config(self.root / name, self.clock, peers=peers, port=port, **settings)
        store = None
        if self.backend is not None and self.backend.kind != "sqlite":
            store = await self.backend.store(config.data_dir)
        app = create_app(config, store=store)
        server = TestServer(app, host="127.0.0.1", port=config.port)
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        http = httpx.AsyncClient(base_url=url, timeout=10)
        node = FedNode(name=name, config=config, app=app, server=server, http=http, url=url)
        self._nodes.append(node)
        return node

    async def stop(self, node: FedNode) -> None:
        if node in self._nodes:
            self._nodes.remove(node)
            await node.http.aclose()
            await node.server.close()

    async def restart(self, node: FedNode) -> FedNode:
        """Stop ``node`` and start a new app on the same configuration and data dir."""
        await self.stop(node)
        return await self.start(node.name, config=node.config)

    async def fake(self, **kwargs: Any) -> FakePeer:
        peer = await FakePeer(**kwargs).start()
        self._fakes.append(peer)
        return peer

    async def close(self) -> None:
        for fake in self._fakes:
            fake.release.set()
        for node in reversed(list(self._nodes)):
            await self.stop(node)
        for fake in self._fakes:
            await fake.close()
