"""Handlers for image blobs: upload and serve (spec 0004 #blob-upload, #blob-serve).

Thin: bound and check the bytes with :mod:`protocol.blobs`, call the store. What a
blob served here may do in a browser is fixed by the headers of :data:`SERVE_HEADERS`,
whatever the bytes hold past their image header (spec 0003 #blob-polyglot).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from node.limits import check_content_length, client_address, read_body
from node.state import BLOBS, CONFIG, STORE
from protocol.blobs import BlobInfo, blob_hash, sniff
from protocol.embeds import IMAGE_MIME_TYPES
from protocol.errors import (
    BadBlobError,
    BadRequestError,
    NotFoundError,
    ProtocolError,
    UnsupportedMediaTypeError,
)
from protocol.limits import MAX_BLOB_BYTES

__all__ = ["SERVE_HEADERS", "get_blob", "post_blob"]

_HEX: Final = frozenset("0123456789abcdefABCDEF")
#: Headers of every blob served (spec 0004 #blob-serve): never sniffed into another
#: type, never a document that runs anything, cacheable for ever (the name is the hash).
SERVE_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "public, max-age=31536000, immutable",
    "Content-Disposition": "inline",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


def _checked(data: bytes, mime: str) -> tuple[bytes, BlobInfo]:
    """The hash and sniffed info of uploaded bytes declared as ``mime`` (on a thread:
    a 2 MiB JPEG walk is not for the event loop)."""
    info = sniff(data)
    if info.mime != mime:
        raise BadBlobError(f"the bytes are {info.mime}, not the declared {mime}")
    return blob_hash(data), info


async def post_blob(request: web.Request) -> web.Response:
    """``POST /v1/blobs``: the raw bytes of one image in, its hash and facts out."""
    keeper = request.app[BLOBS]
    try:
        doc = await _upload(request)
    except ProtocolError as exc:
        keeper.uploads[exc.code] += 1
        raise
    keeper.uploads["stored"] += 1
    return web.json_response(doc)


async def _upload(request: web.Request) -> dict[str, Any]:
    app = request.app
    config = app[CONFIG]
    keeper = app[BLOBS]
    mime = request.content_type
    if mime not in IMAGE_MIME_TYPES:
        raise UnsupportedMediaTypeError(
            "an image upload is image/png, image/jpeg, image/webp or image/gif"
        )
    check_content_length(request, MAX_BLOB_BYTES)  # 413 before the budget is spent
    address = client_address(request.remote)
    declared = request.content_length
    if declared is not None:
        keeper.budget.take(address, declared)
    data = await read_body(
        request, max_bytes=MAX_BLOB_BYTES, timeout_s=config.limits.body_timeout_ms / 1000
    )
    if declared is None:
        keeper.budget.take(address, len(data))
    digest, info = await asyncio.to_thread(_checked, data, mime)
    held = await app[STORE].put_upload(
        digest, info, data, now_ms=config.now_ms(), max_pending=keeper.max_pending
    )
    return {
        "hash": digest.hex(),
        "mime": info.mime,
        "size": len(data),
        "width": info.width,
        "height": info.height,
        "held": held,
    }


async def get_blob(request: web.Request) -> web.Response:
    """``GET /v1/blobs/{hash}`` (and HEAD): the bytes, only while a stored post uses them."""
    raw = request.match_info["hash"]
    if len(raw) != 64 or not _HEX.issuperset(raw):
        raise BadRequestError("hash must be 64 hex characters (the SHA-256 of the image)")
    digest = bytes.fromhex(raw)
    blob = await request.app[STORE].get_blob(digest)
    if blob is None:
        raise NotFoundError(f"no image {digest.hex()} used by a post on this node")
    headers = {**SERVE_HEADERS, "Content-Type": blob.mime, "ETag": f'"{digest.hex()}"'}
    return web.Response(body=blob.data, headers=headers)
