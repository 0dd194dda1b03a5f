"""``murmur web`` in-process over fake nodes, for the page and security tests.

:func:`serve` builds a home (an unencrypted identity ``me`` whose signing key the test
holds, as an :class:`~tests.client.conftest.Author`, the fake nodes configured, an
optional ``filters.toml``), starts :func:`client.web.app.make_app` on a free loopback
port with aiohttp's ``TestServer`` (its node client over the fake nodes' transport),
and yields a :class:`Web` with an aiohttp ``TestClient`` that keeps cookies for
127.0.0.1. :meth:`Web.login` exchanges the token for the session cookie.
:func:`serve_nodes` is the same over real nodes (node apps on loopback, e.g. the
``start_node`` fixture of ``tests/client/test_moderation_apply.py``) and a real client.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer, unused_port

from client.config import ClientConfig
from client.keystore import Keystore
from client.web.app import make_app
from client.web.context import WEB
from client.web.security import Guard
from protocol.events import Event
from protocol.identity import Identity
from tests.client.conftest import Author, FakeNode, Net, event_json

HOST = "127.0.0.1"
TOKEN = "test-token-" + "x" * 32
_seeds = itertools.count(9000)


@dataclass
class Web:
    client: TestClient[object, object]
    guard: Guard
    me: Author
    #: The fake nodes' network (:func:`serve`); None over real nodes.
    net: Net | None

    @property
    def origin(self) -> str:
        return self.guard.origin

    async def login(self) -> None:
        r = await self.client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == "/"

    async def page(self, path: str) -> str:
        r = await self.client.get(path)
        text = await r.text()
        assert r.status == 200, text
        return text

    async def csrf(self, path: str = "/search") -> str:
        html = await self.page(path)
        m = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
        assert m is not None
        return m.group(1)


class StreamingNode(FakeNode):
    """A fake node with a live stream (spec 0004 #stream): ``publish`` stores events
    and appends them to the log that ``GET /v1/stream?cursor=N`` serves after N, open
    until the client leaves; ``/v1/info`` gives the current cursor."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.log: list[bytes] = []
        self._more = asyncio.Condition()

    async def publish(self, *events: Event) -> None:
        self.add(*events)
        async with self._more:
            self.log.extend(e.wire for e in events)
            self._more.notify_all()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/info":
            return httpx.Response(200, json={"cursor": len(self.log)})
        if request.url.path == "/v1/stream":
            start = int(request.url.params.get("cursor") or len(self.log))
            return httpx.Response(
                200, headers={"Content-Type": "text/event-stream"}, content=self._frames(start)
            )
        return await super().handle(request)

    def _beyond(self, cursor: int) -> bool:
        return len(self.log) > cursor

    async def _frames(self, cursor: int) -> AsyncIterator[bytes]:
        yield f": cursor={cursor}\n\n".encode()
        while True:
            async with self._more:
                await self._more.wait_for(functools.partial(self._beyond, cursor))
                fresh = self.log[cursor:]
            for wire in fresh:
                cursor += 1
                doc = {"cursor": cursor, "event": event_json(wire)}
                yield f"event: event\ndata: {json.dumps(doc)}\n\n".encode()


def new_author() -> Author:
    return Author(identity=Identity.from_seed(next(_seeds).to_bytes(32, "big")))


@asynccontextmanager
async def serve(
    home: Path, net: Net, nodes: list[FakeNode], *, filters: str | None = None
) -> AsyncIterator[Web]:
    async with net.client() as http, _serve(home, [n.url for n in nodes], http, filters) as w:
        w.net = net
        yield w


@asynccontextmanager
async def serve_nodes(
    home: Path, urls: list[str], *, filters: str | None = None
) -> AsyncIterator[Web]:
    """As :func:`serve`, over real nodes (``urls``: node apps on loopback) and a real
    HTTP client."""
    async with httpx.AsyncClient() as http, _serve(home, urls, http, filters) as w:
        yield w


@asynccontextmanager
async def _serve(
    home: Path, urls: list[str], http: httpx.AsyncClient, filters: str | None
) -> AsyncIterator[Web]:
    seed = next(_seeds).to_bytes(32, "big")
    Keystore(home).create("me", seed=seed, passphrase=None)
    me = Author(identity=Identity.from_seed(seed))
    config = ClientConfig.load(home)
    for url in urls:
        config.add_node(url)
    config.save()
    if filters is not None:
        (home / "filters.toml").write_text(filters)
    port = unused_port()
    app = make_app(home, host=HOST, port=port, token=TOKEN, http=http)
    server = TestServer(app, host=HOST, port=port)
    client: TestClient[object, object] = TestClient(server, cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    try:
        yield Web(client=client, guard=app[WEB].guard, me=me, net=None)
    finally:
        await client.close()
