"""Image blobs against a real node process (spec 0004 #blob-upload, #blob-serve,
#blob-keep; 0003 #blob-polyglot).

What a browser would get from the node matters here, so it is read off the wire of a
real ``murmur node`` process: a PNG header followed by ``<html><script>`` is taken only
as ``image/png`` and served with ``nosniff`` and a sandboxing CSP; markup named
``image/png`` is ``bad-blob``; bodies over ``MAX_BLOB_BYTES``, declared or chunked,
are 413 without being buffered; nothing is served before a post uses the bytes or
after its delete. No refusal is a 5xx.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from protocol.blobs import sniff
from protocol.events import Event, sign_event
from protocol.limits import MAX_BLOB_BYTES
from scripts.blob_vectors import PNG_POLYGLOT
from tests.adversarial.conftest import Probe, new_identity, now_ms

_SERVE_HEADERS = {
    "content-type": "image/png",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
    "cache-control": "public, max-age=31536000, immutable",
    "content-disposition": "inline",
    "cross-origin-resource-policy": "cross-origin",
}


def _claim(data: bytes) -> dict[str, Any]:
    info = sniff(data)
    return {
        "hash": hashlib.sha256(data).digest(), "mime": info.mime, "size": len(data),
        "width": info.width, "height": info.height, "alt": "",
    }  # fmt: skip


def _upload(probe: Probe, data: bytes, mime: str) -> Any:
    return probe.http.post("/v1/blobs", content=data, headers={"Content-Type": mime})


def test_polyglot_is_served_inert_and_only_while_a_post_uses_it(adv_probe: Probe) -> None:
    """spec 0003 #blob-polyglot, 0004 #blob-serve, #blob-keep."""
    errors = adv_probe.internal_errors()
    digest = hashlib.sha256(PNG_POLYGLOT).hexdigest()
    assert _upload(adv_probe, PNG_POLYGLOT, "text/html").status_code == 415
    r = _upload(adv_probe, PNG_POLYGLOT, "image/png")
    assert r.status_code == 200, r.text
    assert r.json()["hash"] == digest and r.json()["mime"] == "image/png"
    assert adv_probe.http.get(f"/v1/blobs/{digest}").status_code == 404  # pending
    ident = new_identity()
    post: Event = sign_event(
        ident, kind="post", body={"text": "pic", "embed": {"images": [_claim(PNG_POLYGLOT)]}},
        seq=1, prev=None, ts=now_ms(), net="murmur",
    )  # fmt: skip
    assert adv_probe.ingest(post.wire)[0]["status"] == "accepted"
    for method in ("GET", "HEAD"):
        got = adv_probe.http.request(method, f"/v1/blobs/{digest}")
        assert got.status_code == 200
        for name, value in _SERVE_HEADERS.items():
            assert got.headers[name] == value, (method, name)
        assert got.headers["etag"] == f'"{digest}"'
        assert got.content == (PNG_POLYGLOT if method == "GET" else b"")
    delete = sign_event(
        ident, kind="delete", body={"target": post.id}, seq=2, prev=post.id, ts=now_ms(),
        net="murmur",
    )  # fmt: skip
    assert adv_probe.ingest(delete.wire)[0]["status"] == "accepted"
    assert adv_probe.http.get(f"/v1/blobs/{digest}").status_code == 404
    assert adv_probe.internal_errors() == errors


def test_hostile_uploads_are_refused(adv_probe: Probe) -> None:
    """spec 0004 #blob-upload: markup named image/png, other types, oversized bodies
    (declared or chunked), each with its code; the node stays healthy."""
    errors = adv_probe.internal_errors()
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    html = b"\xef\xbb\xbf  <html><body><script>alert(document.domain)</script></body></html>"
    for data in (svg, html, b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"<script>" * 8):
        r = _upload(adv_probe, data, "image/png")
        assert r.status_code == 400 and r.json()["error"] == "bad-blob", data[:16]
    for mime in ("image/svg+xml", "text/html", "application/xhtml+xml", "image/bmp"):
        r = _upload(adv_probe, PNG_POLYGLOT, mime)
        assert r.status_code == 415 and r.json()["error"] == "unsupported-media-type", mime
    big = PNG_POLYGLOT + b"\0" * (MAX_BLOB_BYTES + 1 - len(PNG_POLYGLOT))
    r = _upload(adv_probe, big, "image/png")
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"

    def chunks() -> Iterator[bytes]:
        yield PNG_POLYGLOT
        for _ in range(64):  # 4 MiB, never declared
            yield b"\0" * 65536

    r = adv_probe.http.post("/v1/blobs", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"
    for bad in ("g" * 64, "ab" * 31, "ab" * 32 + "/x"):
        assert adv_probe.http.get(f"/v1/blobs/{bad}").status_code in (400, 404)
    assert adv_probe.healthy()
    assert adv_probe.internal_errors() == errors
