"""``GET /media/{hash}``: a post's image, from the reader's nodes, verified (spec 0007
#web-images).

Only hashes of images the server has drawn in a page answer (``404`` otherwise: the
server is no proxy for any blob another site's page names). The bytes come from the
verified cache, else from the reader's nodes one after the other through
``client.imagexfer.fetch_image``, which checks each answer against the signed claim
(spec 0003 #blob-hash): a node serving altered bytes is logged and the next asked;
no node serving the named bytes is a ``502`` with a short text. Served with the
claimed (= verified) type, ``nosniff`` and a CSP that makes the answer inert if it
were ever opened as a document (spec 0003 #blob-polyglot); the session guard of
every page applies (``SameSite=Strict`` cookies go with same-origin ``<img>``).
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from client.imagexfer import fetch_image
from client.web.context import WEB
from protocol.errors import ProtocolError

__all__ = ["MEDIA_CACHE_CONTROL", "MEDIA_CSP", "setup"]

log = logging.getLogger("murmur.client.web.media")

#: The CSP of an image answer: nothing loads, and as a document it would be sandboxed.
MEDIA_CSP: Final = "default-src 'none'; sandbox"
#: Bytes named by their hash never change; private: the reader's, not a proxy's.
MEDIA_CACHE_CONTROL: Final = "private, max-age=86400, immutable"

routes = web.RouteTableDef()


def _plain(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text + "\n", content_type="text/plain")
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get(r"/media/{hash:[0-9a-f]{64}}", name="media")
async def media(request: web.Request) -> web.Response:
    state = request.app[WEB]
    digest = bytes.fromhex(request.match_info["hash"])
    claims = state.media.known.claims(digest)
    if not claims:
        return _plain(404, "not an image of a post this server has shown")
    cached = state.media.cache.get(digest)
    if cached is not None:
        return _image(cached.data, cached.mime)
    nodes = state.reads.node_clients()
    failures: list[str] = []
    for claim in claims:  # newest first; more than one only when a post lied
        try:
            got = await fetch_image(nodes, claim)
        except ProtocolError as exc:
            failures.append(f"{exc.code}: {exc.message}")
            continue
        for f in got.failed:
            log.warning("image node=%s hash=%s code=%s", f.url, digest.hex()[:12], f.code)
        state.media.cache.put(digest, got.data, claim.mime)
        return _image(got.data, claim.mime)
    log.warning("image unavailable hash=%s why=%r", digest.hex()[:12], "; ".join(failures))
    return _plain(502, "image unavailable: no node served the bytes the post names")


def _image(data: bytes, mime: str) -> web.Response:
    response = web.Response(body=data, content_type=mime)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    response.headers["Cache-Control"] = MEDIA_CACHE_CONTROL
    return response


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
