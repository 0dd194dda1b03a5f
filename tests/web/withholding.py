"""A withholding node for the browser tests: a real node behind a small proxy that
leaves chosen events out of every answer (spec 0007 #withheld, #web-nodes).

:class:`WithholdingProxy` serves on a free loopback port from a background loop
(:class:`tests.adversarial.hostile.LoopThread`) and forwards every request to the
upstream node, except that any object of a JSON answer whose ``id`` (or whose
``event``'s ``id``) is withheld is dropped from its list, ``GET /v1/events/{id}`` of
a withheld event is ``404 not-found``, and the live stream is not offered (``404``):
to a reader, a node that holds everything but these events. ``dropped`` counts the
objects left out, so a test can tell that the proxy really withheld something.
"""

from __future__ import annotations

from typing import Any

import httpx
from aiohttp import web

from bench.common import free_port
from tests.adversarial.hostile import LoopThread

__all__ = ["WithholdingProxy"]


class WithholdingProxy:
    def __init__(self, upstream: str, withheld: set[str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.withheld = set(withheld)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dropped = 0
        self._loop = LoopThread()
        self._runner: web.AppRunner | None = None
        self._http: httpx.AsyncClient | None = None
        self._loop.run(self._start())

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(timeout=10)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _hidden(self, item: object) -> bool:
        if not isinstance(item, dict):
            return False
        event = item.get("event")
        inner = event.get("id") if isinstance(event, dict) else None
        return item.get("id") in self.withheld or inner in self.withheld

    def _strip(self, doc: Any) -> Any:
        if isinstance(doc, list):
            kept = [x for x in doc if not self._hidden(x)]
            self.dropped += len(doc) - len(kept)
            return [self._strip(x) for x in kept]
        if isinstance(doc, dict):
            return {k: self._strip(v) for k, v in doc.items()}
        return doc

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/v1/stream":
            return web.json_response({"error": "not-found", "message": "no stream"}, status=404)
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "events"] and len(parts) == 3 and parts[2] in self.withheld:
            self.dropped += 1
            return web.json_response({"error": "not-found", "message": "not-found"}, status=404)
        assert self._http is not None
        upstream = await self._http.request(
            request.method,
            self.upstream + path,
            params=list(request.query.items()),
            content=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
        )
        kind = upstream.headers.get("Content-Type", "")
        if kind.startswith("application/json"):
            return web.json_response(self._strip(upstream.json()), status=upstream.status_code)
        return web.Response(
            body=upstream.content,
            status=upstream.status_code,
            headers={"Content-Type": kind or "application/octet-stream"},
        )

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._http is not None:
                await self._http.aclose()

        self._loop.run(stop())
        self._loop.close()
