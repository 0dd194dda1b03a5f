"""``murmur web`` in-process over fake nodes, for the page and security tests.

:func:`serve` builds a home (an unencrypted identity ``me`` whose signing key the test
holds, as an :class:`~tests.client.conftest.Author`, the fake nodes configured, an
optional ``filters.toml``), starts :func:`client.web.app.make_app` on a free loopback
port with aiohttp's ``TestServer`` (its node client over the fake nodes' transport),
and yields a :class:`Web` with an aiohttp ``TestClient`` that keeps cookies for
127.0.0.1. :meth:`Web.login` exchanges the token for the session cookie.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer, unused_port

from client.config import ClientConfig
from client.keystore import Keystore
from client.web.app import make_app
from client.web.context import WEB
from client.web.security import Guard
from protocol.identity import Identity
from tests.client.conftest import Author, FakeNode, Net

HOST = "127.0.0.1"
TOKEN = "test-token-" + "x" * 32  # noqa: S105 - a test's token
_seeds = itertools.count(9000)


@dataclass
class Web:
    client: TestClient[object, object]
    guard: Guard
    me: Author
    net: Net

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


def new_author() -> Author:
    return Author(identity=Identity.from_seed(next(_seeds).to_bytes(32, "big")))


@asynccontextmanager
async def serve(
    home: Path, net: Net, nodes: list[FakeNode], *, filters: str | None = None
) -> AsyncIterator[Web]:
    seed = next(_seeds).to_bytes(32, "big")
    Keystore(home).create("me", seed=seed, passphrase=None)
    me = Author(identity=Identity.from_seed(seed))
    config = ClientConfig.load(home)
    for n in nodes:
        config.add_node(n.url)
    config.save()
    if filters is not None:
        (home / "filters.toml").write_text(filters)
    port = unused_port()
    async with net.client() as http:
        app = make_app(home, host=HOST, port=port, token=TOKEN, http=http)
        server = TestServer(app, host=HOST, port=port)
        client: TestClient[object, object] = TestClient(server, cookie_jar=CookieJar(unsafe=True))
        await client.start_server()
        try:
            yield Web(client=client, guard=app[WEB].guard, me=me, net=net)
        finally:
            await client.close()
