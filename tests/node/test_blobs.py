"""Image blobs on a node (spec 0004 #blobs, #blob-upload, #blob-serve, #blob-keep).

In-process nodes on both store backends: bytes are kept only while a stored post
names them with a claim they match, served with headers that make a polyglot inert
(spec 0003 #blob-polyglot), and dropped after the upload grace period, with the last
referencing post, or past the author's quota. Images are the vectors' real ones
(scripts/blob_vectors.py); a big image is a real header followed by filler, which
the header-only sniff accepts (spec 0003 #blob-check).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from node.blobs import SWEEP_BATCH
from node.config import ConfigError, NodeLimits
from node.state import BLOBS, STORE
from node.store.base import Store
from protocol.blobs import blob_hash, sniff
from protocol.embeds import EmbedImage
from protocol.limits import MAX_BLOB_BYTES
from scripts.blob_vectors import GIF_3X2, JPEG_BASELINE_3X2, PNG_POLYGLOT, PNG_RGB_3X2
from tests.node.backends import Backend, both_backends
from tests.node.conftest import Author, Node, NodeFactory

pytestmark = both_backends()

GRACE_MS = 15 * 60 * 1000
MIB = 1024 * 1024
_SERVE_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
    "cache-control": "public, max-age=31536000, immutable",
    "content-disposition": "inline",
    "cross-origin-resource-policy": "cross-origin",
}


def big_png(size: int, tag: int = 0) -> bytes:
    """A PNG of ``size`` bytes (the 3x2 header, then filler; ``tag`` varies the hash)."""
    head = PNG_RGB_3X2 + tag.to_bytes(4, "big")
    return head + b"\0" * (size - len(head))


def claim(data: bytes, **over: Any) -> dict[str, Any]:
    info = sniff(data)
    fields: dict[str, Any] = {
        "hash": blob_hash(data), "mime": info.mime, "size": len(data), "width": info.width,
        "height": info.height, "alt": "a test image",
    }  # fmt: skip
    fields.update(over)
    return EmbedImage(**fields).to_map()


def image_post(author: Author, *claims: dict[str, Any]) -> Any:
    return author.post("look", embed={"images": list(claims)})


async def upload(node: Node, data: bytes, mime: str = "image/png") -> httpx.Response:
    return await node.http.post("/v1/blobs", content=data, headers={"Content-Type": mime})


def store(node: Node) -> Store:
    return node.app[STORE]


async def test_upload_then_post_serves_identical_bytes(node: Node, author: Author) -> None:
    """spec 0004 #blob-upload, #blob-serve: the answer, then every serving header."""
    r = await upload(node, PNG_RGB_3X2)
    assert r.status_code == 200, r.text
    digest = hashlib.sha256(PNG_RGB_3X2).hexdigest()
    assert r.json() == {
        "hash": digest, "mime": "image/png", "size": len(PNG_RGB_3X2), "width": 3,
        "height": 2, "held": False,
    }  # fmt: skip
    assert (await upload(node, PNG_RGB_3X2)).json()["held"] is False  # idempotent
    assert await node.statuses(image_post(author, claim(PNG_RGB_3X2))) == ["accepted"]
    got = await node.http.get(f"/v1/blobs/{digest.upper()}")
    assert got.status_code == 200
    assert got.content == PNG_RGB_3X2
    assert got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == f'"{digest}"'
    for name, value in _SERVE_HEADERS.items():
        assert got.headers[name] == value, name
    head = await node.http.head(f"/v1/blobs/{digest}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(PNG_RGB_3X2))
    assert head.headers["x-content-type-options"] == "nosniff"
    again = await upload(node, PNG_RGB_3X2)
    assert again.json()["held"] is True


async def test_unreferenced_upload_is_never_served(node: Node) -> None:
    """spec 0004 #blob-serve: a pending upload is not served (no free file host)."""
    await upload(node, GIF_3X2, "image/gif")
    r = await node.http.get(f"/v1/blobs/{hashlib.sha256(GIF_3X2).hexdigest()}")
    assert r.status_code == 404 and r.json()["error"] == "not-found"
    assert (await node.http.get("/v1/blobs/" + "ab" * 32)).status_code == 404
    for bad in ("ab" * 31, "zz" * 32, "ab" * 33):
        r = await node.http.get(f"/v1/blobs/{bad}")
        assert r.status_code == 400 and r.json()["error"] == "bad-request", bad


async def test_refused_uploads(node: Node) -> None:
    """spec 0004 #blob-upload: size (413), type (415), bytes (400 bad-blob)."""
    too_big = big_png(MAX_BLOB_BYTES + 1)
    r = await upload(node, too_big)
    assert r.status_code == 413 and r.json()["error"] == "payload-too-large"
    for mime in ("image/svg+xml", "text/html", "application/octet-stream"):
        r = await upload(node, PNG_RGB_3X2, mime)
        assert r.status_code == 415 and r.json()["error"] == "unsupported-media-type", mime
    r = await node.http.post("/v1/blobs", content=PNG_RGB_3X2)  # no Content-Type
    assert r.status_code == 415
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    html = b"<!doctype html><html><script>alert(1)</script></html>"
    for data, mime in ((svg, "image/png"), (html, "image/png"), (PNG_RGB_3X2, "image/jpeg"),
                       (JPEG_BASELINE_3X2, "image/png"), (b"", "image/gif")):  # fmt: skip
        r = await upload(node, data, mime)
        assert r.status_code == 400 and r.json()["error"] == "bad-blob", (data[:10], mime)
    assert store(node).blob_totals().pending_bytes == 0


async def test_polyglot_is_only_ever_a_png(node: Node, author: Author) -> None:
    """spec 0003 #blob-polyglot, 0004 #blob-serve: a PNG header then HTML is taken as
    image/png only, and served so that no browser treats it as a document."""
    assert (await upload(node, PNG_POLYGLOT, "text/html")).status_code == 415
    assert (await upload(node, PNG_POLYGLOT, "image/gif")).json()["error"] == "bad-blob"
    r = await upload(node, PNG_POLYGLOT)
    assert r.status_code == 200 and r.json()["mime"] == "image/png"
    await node.ingest(image_post(author, claim(PNG_POLYGLOT)))
    got = await node.http.get(f"/v1/blobs/{r.json()['hash']}")
    assert got.status_code == 200 and got.content == PNG_POLYGLOT
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"


async def test_claim_mismatch_is_not_served(node: Node, author: Author) -> None:
    """spec 0004 #blob-keep: bytes that do not match the post's claim are not kept."""
    digest = blob_hash(PNG_RGB_3X2)
    await upload(node, PNG_RGB_3X2)
    wrong = claim(PNG_RGB_3X2, mime="image/jpeg")
    assert await node.statuses(image_post(author, wrong)) == ["accepted"]
    assert (await node.http.get(f"/v1/blobs/{digest.hex()}")).status_code == 404
    assert [h for h, _ in await store(node).missing_blobs(10)] == [digest]
    wider = claim(PNG_RGB_3X2, width=4)
    await node.ingest(image_post(author, wider))
    assert (await node.http.get(f"/v1/blobs/{digest.hex()}")).status_code == 404
    # The same bytes from a peer match no claim either.
    assert await store(node).put_fetched_blob(digest, PNG_RGB_3X2) is False
    node.clock.advance(GRACE_MS + 1)
    assert await node.app[BLOBS].sweep_once() == 1
    assert not await store(node).blob_bytes_stored(digest)


async def test_delete_drops_the_bytes(node: Node, author: Author) -> None:
    """spec 0004 #blob-keep: the last referencing post deleted, the bytes go with it."""
    digest = blob_hash(JPEG_BASELINE_3X2)
    await upload(node, JPEG_BASELINE_3X2, "image/jpeg")
    first = image_post(author, claim(JPEG_BASELINE_3X2))
    second = image_post(author, claim(JPEG_BASELINE_3X2))
    await node.ingest(first, second)
    assert await store(node).blob_ref_count(digest) == 2
    await node.ingest(author.sign("delete", {"target": first.id}))
    assert (await node.http.get(f"/v1/blobs/{digest.hex()}")).status_code == 200
    await node.ingest(author.sign("delete", {"target": second.id}))
    assert await store(node).blob_ref_count(digest) == 0
    assert not await store(node).blob_bytes_stored(digest)
    assert (await node.http.get(f"/v1/blobs/{digest.hex()}")).status_code == 404
    assert store(node).blob_drops == {"deleted": 1}
    assert store(node).blob_totals().held == 0


async def test_post_and_its_delete_in_one_batch_keep_nothing(node: Node, author: Author) -> None:
    """spec 0004 #blob-keep: references go with the body, in the same transaction."""
    await upload(node, GIF_3X2, "image/gif")
    post = image_post(author, claim(GIF_3X2))
    await node.ingest(post, author.sign("delete", {"target": post.id}))
    assert await store(node).blob_ref_count(blob_hash(GIF_3X2)) == 0
    assert (await node.http.get(f"/v1/blobs/{blob_hash(GIF_3X2).hex()}")).status_code == 404


async def test_grace_period_drops_unused_uploads(node: Node) -> None:
    """spec 0004 #blob-keep: an upload no post uses goes after the grace period."""
    await upload(node, GIF_3X2, "image/gif")
    node.clock.advance(GRACE_MS - 1000)
    assert await node.app[BLOBS].sweep_once() == 0
    await upload(node, GIF_3X2, "image/gif")  # sent again: a new grace period
    node.clock.advance(2000)
    assert await node.app[BLOBS].sweep_once() == 0
    assert await store(node).blob_bytes_stored(blob_hash(GIF_3X2))
    node.clock.advance(GRACE_MS)
    assert await node.app[BLOBS].sweep_once() == 1
    assert not await store(node).blob_bytes_stored(blob_hash(GIF_3X2))
    assert store(node).blob_totals().pending_bytes == 0
    assert store(node).blob_drops == {"grace": 1}


async def test_sweep_is_bounded_per_transaction(node: Node) -> None:
    """The sweep drops in transactions of SWEEP_BATCH and goes on until none is left."""
    s = store(node)
    n = SWEEP_BATCH + 3
    for i in range(n):
        data = big_png(64, tag=i)
        digest, info = blob_hash(data), sniff(data)
        await s.put_upload(digest, info, data, now_ms=node.clock.now, max_pending=MIB)
    assert await s.sweep_blobs(received_before_ms=node.clock.now + 1, limit=5) == 5
    node.clock.advance(GRACE_MS + 1)
    assert await node.app[BLOBS].sweep_once() == n - 5
    assert s.blob_totals().pending_bytes == 0


async def test_post_first_then_upload_or_fetch(node: Node, author: Author) -> None:
    """A post stored before its image (federation): the blob is missing until bytes
    matching the claim come, by upload (held at once) or from a peer."""
    s = store(node)
    await node.ingest(image_post(author, claim(PNG_RGB_3X2), claim(GIF_3X2)))
    missing = dict(await s.missing_blobs(10))
    assert set(missing) == {blob_hash(PNG_RGB_3X2), blob_hash(GIF_3X2)}
    assert missing[blob_hash(GIF_3X2)].mime == "image/gif"
    r = await upload(node, PNG_RGB_3X2)
    assert r.json()["held"] is True
    assert await s.put_fetched_blob(blob_hash(GIF_3X2), PNG_RGB_3X2) is False
    assert await s.put_fetched_blob(blob_hash(GIF_3X2), GIF_3X2) is True
    assert await s.missing_blobs(10) == []
    for data in (PNG_RGB_3X2, GIF_3X2):
        got = await node.http.get(f"/v1/blobs/{blob_hash(data).hex()}")
        assert got.status_code == 200 and got.content == data
    assert s.blob_totals().held == 2
    assert s.blob_totals().held_bytes == len(PNG_RGB_3X2) + len(GIF_3X2)
    # Bytes no post names are not taken from a peer.
    assert await s.put_fetched_blob(blob_hash(JPEG_BASELINE_3X2), JPEG_BASELINE_3X2) is False
    assert not await s.blob_bytes_stored(blob_hash(JPEG_BASELINE_3X2))


async def test_per_address_upload_quota(start_node: NodeFactory) -> None:
    """spec 0004 #blob-upload: bytes an hour per client address, then 429."""
    node = await start_node(blob_upload_bytes_per_hour=MAX_BLOB_BYTES)
    half = MAX_BLOB_BYTES // 2 + 1
    assert (await upload(node, big_png(half, 1))).status_code == 200
    r = await upload(node, big_png(half, 2))
    assert r.status_code == 429 and r.json()["error"] == "rate-limited"
    assert int(r.headers["retry-after"]) >= 1
    assert not await store(node).blob_bytes_stored(blob_hash(big_png(half, 2)))
    node.clock.advance(3600 * 1000)
    assert (await upload(node, big_png(half, 2))).status_code == 200


async def test_pending_bytes_cap(start_node: NodeFactory, author: Author) -> None:
    """spec 0004 #blob-upload: node-wide bytes of unused uploads, then 503."""
    node = await start_node(blob_pending_bytes=MAX_BLOB_BYTES)
    first, second = big_png(MIB + 1, 1), big_png(MIB + 1, 2)
    assert (await upload(node, first)).status_code == 200
    r = await upload(node, second)
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    assert "retry-after" in r.headers
    await node.ingest(image_post(author, claim(first)))  # held: no longer pending
    assert (await upload(node, second)).status_code == 200


async def test_author_quota(
    start_node: NodeFactory, author: Author, make_author: Callable[[], Author]
) -> None:
    """spec 0004 #blob-keep: past the author's quota the post is stored, the new
    image's bytes are not kept."""
    node = await start_node(blob_author_bytes=MAX_BLOB_BYTES)
    first, second = big_png(MIB + 1, 1), big_png(MIB + 1, 2)
    for data in (first, second):
        assert (await upload(node, data)).status_code == 200
    assert await node.statuses(image_post(author, claim(first))) == ["accepted"]
    assert await node.statuses(image_post(author, claim(second))) == ["accepted"]
    assert (await node.http.get(f"/v1/blobs/{blob_hash(first).hex()}")).status_code == 200
    assert (await node.http.get(f"/v1/blobs/{blob_hash(second).hex()}")).status_code == 404
    assert not await store(node).blob_bytes_stored(blob_hash(second))
    assert store(node).blob_drops == {"author-quota": 1}
    # Sent again, it is still over the quota of the only author using it...
    r = await upload(node, second)
    assert r.status_code == 200 and r.json()["held"] is False
    assert not await store(node).blob_bytes_stored(blob_hash(second))
    # ... until another author's post uses it (within that author's quota).
    await node.ingest(image_post(make_author(), claim(second)))
    assert (await upload(node, second)).json()["held"] is True
    assert (await node.http.get(f"/v1/blobs/{blob_hash(second).hex()}")).status_code == 200


async def test_metrics(node: Node, author: Author) -> None:
    """spec 0004 #ops: the blob gauges and counters."""
    await upload(node, PNG_RGB_3X2)
    await upload(node, b"<svg/>", "image/png")
    post = image_post(author, claim(PNG_RGB_3X2))
    await node.ingest(post)
    text = (await node.http.get("/metrics")).text
    assert "murmur_blobs_held 1\n" in text
    assert f"murmur_blob_bytes_held {len(PNG_RGB_3X2)}\n" in text
    assert 'murmur_blob_uploads_total{result="stored"} 1\n' in text
    assert 'murmur_blob_uploads_total{result="bad-blob"} 1\n' in text
    await node.ingest(author.sign("delete", {"target": post.id}))
    text = (await node.http.get("/metrics")).text
    assert "murmur_blobs_held 0\n" in text
    assert 'murmur_blobs_dropped_total{reason="deleted"} 1\n' in text


async def test_totals_are_stored(node: Node, author: Author, backend: Backend) -> None:
    """The totals are stored with the blobs: a store opened again reads them."""
    await upload(node, GIF_3X2, "image/gif")
    await node.ingest(image_post(author, claim(GIF_3X2)))
    await upload(node, PNG_RGB_3X2)
    again = await backend.open(node.config.data_dir)
    try:
        totals = again.blob_totals()
    finally:
        await again.close()
    assert (totals.held, totals.held_bytes) == (1, len(GIF_3X2))
    assert totals.pending_bytes == len(PNG_RGB_3X2)


@pytest.mark.parametrize(
    "name", ["blob_upload_bytes_per_hour", "blob_pending_bytes", "blob_author_bytes"]
)
def test_limits_below_one_image_are_refused(name: str, store_backend: str) -> None:
    with pytest.raises(ConfigError, match=name):
        NodeLimits(**{name: MAX_BLOB_BYTES - 1})
