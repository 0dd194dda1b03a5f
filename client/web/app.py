"""The ``murmur web`` server: an aiohttp application over the client library.

:func:`make_app` builds the application for one home (typed state under :data:`WEB`,
the middlewares of :mod:`client.web.security`, the jinja2 templates with autoescape on
for every template, the static files, and every page group of
:mod:`client.web.pages`); :func:`run` serves it on loopback and prints the URL with
its secret token. Pages are thin: they call the library (:mod:`client.views`,
:mod:`client.moderation`, :class:`client.session.Session`) and render.
"""

from __future__ import annotations

import logging
import sys
import webbrowser
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
from aiohttp import web

from client.moderation.reuse import Pipelines
from client.readcache import ReadCache, tally
from client.session import Session
from client.web import DEFAULT_HOST, DEFAULT_PORT, pages, timing
from client.web.context import WEB, WebState, render, templates
from client.web.security import (
    Guard,
    auth_guard,
    host_guard,
    is_loopback,
    security_headers,
)
from client.web.timing import PageTiming
from protocol.errors import ProtocolError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "WEB", "WebState", "make_app", "run"]

log = logging.getLogger("murmur.client.web")

HERE: Final = Path(__file__).parent
#: Status of a page whose read failed at the nodes (none answered, a bad answer).
NODES_FAILED_STATUS: Final = 502


async def _refuse(request: web.Request, why: str) -> web.StreamResponse:
    """The 403 page: no token, a wrong one, a foreign origin or a missing CSRF token."""
    log.info("refused why=%s method=%s path=%s", why, request.method, request.path)
    return render(request, "forbidden.html", status=403, title="Not allowed", why=why)


@web.middleware
async def _timing(request: web.Request, handler: Any) -> web.StreamResponse:
    """``Server-Timing`` on every answer: what the page cost the server, its phases,
    its requests to nodes and its cached answers (:mod:`client.web.timing`)."""
    page = PageTiming()
    timing_token = timing.current.set(page)
    tally_token = tally.set(page.tally)
    try:
        response: web.StreamResponse = await handler(request)
    finally:
        tally.reset(tally_token)
        timing.current.reset(timing_token)
    if not response.prepared:
        response.headers["Server-Timing"] = page.header()
    return response


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A read that fails (no node answered, not found, a bad id) is a page saying so."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ProtocolError as exc:
        status = exc.status if exc.status in (400, 404) else NODES_FAILED_STATUS
        return render(
            request, "error.html", status=status, title="Error", code=exc.code, message=exc.message
        )


def make_app(
    home: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    http: httpx.AsyncClient | None = None,
    as_name: str | None = None,
    nodes: Sequence[str] = (),
    passphrase_file: str | None = None,
) -> web.Application:
    """The application for ``home``, answering only as ``host:port``.

    ``http`` is the client for the nodes (tests pass one over a fake transport); without
    one, the application opens its own and closes it at cleanup. ``token`` is the
    secret of the URL (default: a new random one)."""
    guard = Guard(host=host, port=port) if token is None else Guard(host, port, token)
    app = web.Application(
        middlewares=[
            _timing,
            security_headers,
            host_guard(guard),
            auth_guard(guard, _refuse),
            _errors,
        ]
    )
    own_http = http is None
    client = http if http is not None else httpx.AsyncClient(follow_redirects=False)
    app[WEB] = WebState(
        reads=Session(
            home=home,
            http=client,
            as_name=as_name,
            nodes=tuple(nodes),
            cache=ReadCache(),
            pipelines=Pipelines(),
        ),
        guard=guard,
        templates=templates(),
        passphrase_file=passphrase_file,
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        pipelines = app[WEB].reads.pipelines
        if pipelines is not None:
            await pipelines.aclose()
        if own_http:
            await client.aclose()

    async def end_streams(app: web.Application) -> None:
        for task in list(app[WEB].streams):
            task.cancel()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)
    app.router.add_static("/static/", HERE / "static", name="static", append_version=False)
    pages.setup(app)
    return app


def run(
    home: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    allow_remote: bool = False,
    as_name: str | None = None,
    nodes: Sequence[str] = (),
    passphrase_file: str | None = None,
) -> int:
    """Serve until Ctrl-C; prints the URL with the token. A host that is not loopback
    is refused unless ``allow_remote`` (then a warning: the token is all that guards
    it, over plain HTTP)."""
    if not is_loopback(host) and not allow_remote:
        print(
            f"murmur web: refusing to serve on {host}: only loopback (127.0.0.1, ::1, "
            "localhost) unless --allow-remote",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(host):
        print(
            f"warning: serving on {host}: anyone who can reach it and learns the token "
            "reads as you (plain HTTP, no TLS)",
            file=sys.stderr,
        )
    app = make_app(
        home, host=host, port=port, as_name=as_name, nodes=nodes, passphrase_file=passphrase_file
    )
    url = app[WEB].guard.url()

    async def announce(app: web.Application) -> None:
        print(f"murmur web: serving {home} — open {url}", flush=True)
        if open_browser:
            webbrowser.open(url)

    app.on_startup.append(announce)
    web.run_app(app, host=host.strip("[]"), port=port, print=None, shutdown_timeout=2.0)
    return 0
