"""Nodes: each configured node's health now, and what the reader saw from it on the
reads this server made (spec 0007 #web-nodes).

``GET /nodes`` asks every configured node ``/health`` and ``/v1/info`` at once
(:func:`client.nodehealth.check_nodes`: reachable, latency, version, node id, its
network) and sums up the last reads' reports (:class:`client.readlog.ReadLog`, kept by
the :class:`~client.session.Session`): the events each node withheld, named
(whose, which seq, when it was seen), the invalid events it served, its failures; and
for all nodes the gaps the repair filled, the gaps none could fill, and forks.
``POST /nodes/add`` and ``POST /nodes/remove`` change ``config.toml``'s node set with
the CLI's rules (:meth:`client.config.ClientConfig.add_node`, spec 0007 #node-url); a
refused URL is the page again with the error and the URL as typed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from client.config import ClientConfig
from client.errors import NoNodesError
from client.nodehealth import NodeHealth, check_nodes
from client.readlog import reading
from client.web.context import WEB, render
from client.web.render import Names
from protocol.errors import ProtocolError

__all__ = ["setup"]

log = logging.getLogger("murmur.client.web.nodes")

#: Longest URL the add form takes (a node URL is short; this bounds the echo).
MAX_URL_CHARS: Final = 2048

routes = web.RouteTableDef()


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: ProtocolError | None = None,
    typed: str = "",
) -> web.Response:
    state = request.app[WEB]
    reads = state.reads
    config = reads.config
    health: list[NodeHealth] = []
    try:
        clients = reads.node_clients()
    except NoNodesError:
        clients = []
    health = await check_nodes(clients)
    urls = [n.url for n in clients]
    history = reads.history
    names = Names(config, reads.profiles_with_own({}))
    done = None
    for verb in ("added", "removed", "unchanged"):
        if verb in request.query:
            done = (verb, request.query[verb][:MAX_URL_CHARS])
    return render(
        request,
        "nodes.html",
        status=status,
        title="Nodes",
        health=health,
        seen={s.url: s for s in history.by_node(urls)},
        reads=len(history),
        gaps=history.gaps(),
        repaired=history.repaired(),
        forks=history.forks(),
        names=names,
        configured=config.nodes,
        overridden=bool(reads.nodes),
        net=reads.net(config),
        error=error,
        typed=typed,
        done=done,
    )


@routes.get("/nodes", name="nodes")
async def nodes(request: web.Request) -> web.Response:
    return await _page(request)


async def _url(request: web.Request) -> str:
    form = await request.post()
    value = form.get("url")
    return value[:MAX_URL_CHARS] if isinstance(value, str) else ""


@routes.post("/nodes/add", name="nodes-add")
async def add(request: web.Request) -> web.StreamResponse:
    typed = await _url(request)
    try:
        config = ClientConfig.load(request.app[WEB].reads.home)
        url, added = config.add_node(typed)
        if added:
            config.save()
    except ProtocolError as exc:
        return await _page(request, status=400, error=exc, typed=typed)
    log.info("node added url=%s new=%s", url, added)
    verb = "added" if added else "unchanged"
    raise web.HTTPSeeOther(request.app.router["nodes"].url_for().with_query({verb: url}))


@routes.post("/nodes/remove", name="nodes-remove")
async def remove(request: web.Request) -> web.StreamResponse:
    typed = await _url(request)
    try:
        config = ClientConfig.load(request.app[WEB].reads.home)
        url = config.remove_node(typed)
        config.save()
    except ProtocolError as exc:
        return await _page(request, status=400, error=exc)
    log.info("node removed url=%s", url)
    raise web.HTTPSeeOther(request.app.router["nodes"].url_for().with_query({"removed": url}))


@web.middleware
async def _name_reads(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Each read a page makes is logged under the page's path (the "what" of a read)."""
    token = reading.set(request.path)
    try:
        return await handler(request)
    finally:
        reading.reset(token)


def setup(app: web.Application) -> None:
    app.middlewares.append(_name_reads)
    app.router.add_routes(routes)
