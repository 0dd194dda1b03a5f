"""Nodes fetch the images of federated posts from peers (spec 0005 #blob-fetch).

In process, on both store backends: a real node app replicates a post and then its
image from another real node; fake peers serve altered, oversized or no bytes, or hold
their answers to show the concurrency bound. Fetched bytes are kept only when they
hash to the name they were asked under and match the post's claim (0004 #blob-keep).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.federation.blobfetch import FETCH_CONCURRENCY, GIVE_UP_MS, MAX_ATTEMPTS, RETRY_MAX_MS
from node.federation.peers import Score
from protocol.blobs import blob_hash, sniff
from protocol.embeds import EmbedImage
from protocol.events import Event
from scripts.blob_vectors import PNG_RGB_3X2
from tests.node.backends import Backend, both_backends
from tests.node.conftest import Author, Clock, b64, new_author
from tests.node.fed_fixtures import Cluster, FakePeer, FedNode, sse_event, wait_for

pytestmark = both_backends()


def png(tag: int, size: int = 4096) -> bytes:
    """A distinct PNG of ``size`` bytes (the 3x2 header, a tag, filler)."""
    head = PNG_RGB_3X2 + tag.to_bytes(4, "big")
    return head + b"\0" * (size - len(head))


def claim(data: bytes) -> dict[str, Any]:
    info = sniff(data)
    return EmbedImage(
        hash=blob_hash(data), mime=info.mime, size=len(data), width=info.width,
        height=info.height, alt="a test image",
    ).to_map()  # fmt: skip


def image_post(author: Author, *images: bytes) -> Event:
    return author.post("look", embed={"images": [claim(d) for d in images]})


class BlobPeer(FakePeer):
    """A fake peer that also serves ``GET /v1/blobs/{hash}`` from ``blobs`` (bytes
    served whatever their hash), 404 otherwise; ``gate``, when set, holds each answer
    until it is opened, counting the requests held at once."""

    def __init__(self, *, blobs: dict[bytes, bytes] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blobs = dict(blobs or {})
        self.gate: asyncio.Event | None = None
        self.held = 0
        self.most_held = 0
        self.blob_hits = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/blobs/{hash}", self._blob)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        self.blob_hits += 1
        data = self.blobs.get(bytes.fromhex(request.match_info["hash"]))
        if data is None:
            return web.json_response({"error": "not-found", "message": "no"}, status=404)
        if self.gate is not None:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        return web.Response(body=data, content_type="image/png")


@pytest.fixture
async def cluster(tmp_path: Path, clock: Clock, backend: Backend) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, clock, backend)
    try:
        yield c
    finally:
        await c.close()


async def blob_peer(cluster: Cluster, **kwargs: Any) -> BlobPeer:
    peer = BlobPeer(**kwargs)
    await peer.start()
    cluster._fakes.append(peer)
    return peer


async def held(node: FedNode, data: bytes) -> bool:
    r = await node.http.get(f"/v1/blobs/{blob_hash(data).hex()}")
    return r.status_code == 200 and r.content == data


async def test_image_follows_its_post_to_another_node(cluster: Cluster, clock: Clock) -> None:
    """spec 0005 #blob-fetch: the post comes by the stream, its image by GET /v1/blobs."""
    b = await cluster.start("b")
    a = await cluster.start("a", peers=[b.url])
    await wait_for(lambda: a.state_of(b.url) == "live", "A's stream to B")
    data = png(1)
    r = await b.http.post("/v1/blobs", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    post = image_post(new_author(clock), data)
    await b.ingest(post)
    await wait_for(lambda: a.has_all([post]), "the post on A")
    await wait_for(lambda: held(a, data), "the image served by A")
    assert a.fed.blobs.results["ok"] == 1
    assert await a.store.missing_blobs(10) == []
    text = (await a.http.get("/metrics")).text
    assert 'murmur_blob_fetches_total{result="ok"} 1' in text


async def test_altered_bytes_are_not_believed(cluster: Cluster, clock: Clock) -> None:
    """spec 0005 #blob-fetch: bytes that do not hash to their name are a peer fault and
    are never stored; the genuine bytes, served later, are."""
    data = png(2)
    altered = data[:-1] + b"\1"  # same size, same header: only the hash tells
    post = image_post(new_author(clock), data)
    fake = await blob_peer(
        cluster, wires=[post.wire], stream=sse_event(1, b64(post)), blobs={blob_hash(data): altered}
    )
    a = await cluster.start("a", peers=[fake.url])
    await wait_for(lambda: a.fed.blobs.results["mismatch"] >= 1, "the altered bytes refused")
    assert not await a.store.blob_bytes_stored(blob_hash(data))
    assert [h for h, _ in await a.store.missing_blobs(10)] == [blob_hash(data)]
    assert (await a.http.get(f"/v1/blobs/{blob_hash(data).hex()}")).status_code == 404
    assert a.known(fake.url).score <= Score.CONNECTED + Score.SYNCED + Score.BAD_EVENT

    fake.blobs[blob_hash(data)] = data  # now honest: a later round takes the bytes
    clock.advance(RETRY_MAX_MS * 2)
    a.fed.blobs.wake()
    await wait_for(lambda: held(a, data), "the genuine image held")


async def test_a_body_past_the_claimed_size_is_abandoned(cluster: Cluster, clock: Clock) -> None:
    """spec 0005 #blob-fetch: reading stops at the claimed size; nothing is stored."""
    data = png(3)
    post = image_post(new_author(clock), data)
    fake = await blob_peer(
        cluster, wires=[post.wire], stream=sse_event(1, b64(post)),
        blobs={blob_hash(data): data + b"\0" * 1_000_000},
    )  # fmt: skip
    a = await cluster.start("a", peers=[fake.url])
    await wait_for(lambda: a.fed.blobs.results["mismatch"] >= 1, "the long body refused")
    assert not await a.store.blob_bytes_stored(blob_hash(data))


async def test_fetches_are_bounded_in_number(cluster: Cluster, clock: Clock) -> None:
    """spec 0005 #blob-fetch: at most FETCH_CONCURRENCY fetches at once."""
    images = [png(10 + i) for i in range(FETCH_CONCURRENCY + 4)]
    author = new_author(clock)
    posts = [image_post(author, d) for d in images]
    fake = await blob_peer(
        cluster, wires=[p.wire for p in posts],
        stream=b"".join(sse_event(i + 1, b64(p)) for i, p in enumerate(posts)),
        blobs={blob_hash(d): d for d in images},
    )  # fmt: skip
    fake.gate = asyncio.Event()
    a = await cluster.start("a", peers=[fake.url])
    await wait_for(lambda: fake.held == FETCH_CONCURRENCY, "the first fetches held")
    fake.gate.set()
    for d in images:
        await wait_for(lambda d=d: held(a, d), "every image held")
    assert fake.most_held == FETCH_CONCURRENCY


async def test_a_hash_no_peer_serves_is_given_up_then_tried_again(
    cluster: Cluster, clock: Clock
) -> None:
    """spec 0005 #blob-fetch: retried with backoff, left after MAX_ATTEMPTS rounds,
    asked again after GIVE_UP_MS; it stays missing throughout."""
    data = png(4)
    post = image_post(new_author(clock), data)
    fake = await blob_peer(cluster, wires=[post.wire], stream=sse_event(1, b64(post)))
    a = await cluster.start("a", peers=[fake.url])
    await wait_for(lambda: fake.blob_hits >= 1, "the first try")
    fetcher = a.fed.blobs
    while fake.blob_hits < MAX_ATTEMPTS:
        clock.advance(RETRY_MAX_MS * 2)
        await fetcher.fetch_round()
    assert fake.blob_hits == MAX_ATTEMPTS
    clock.advance(RETRY_MAX_MS * 2)
    await fetcher.fetch_round()
    assert fake.blob_hits == MAX_ATTEMPTS  # given up for now
    assert [h for h, _ in await a.store.missing_blobs(10)] == [blob_hash(data)]
    clock.advance(GIVE_UP_MS)
    await fetcher.fetch_round()
    assert fake.blob_hits == MAX_ATTEMPTS + 1
    assert fetcher.results["not-found"] == MAX_ATTEMPTS + 1


async def test_missing_blobs_pages_with_a_cursor(cluster: Cluster, clock: Clock) -> None:
    """The store's missing blobs are read a page at a time after a cursor."""
    a = await cluster.start("a")
    images = [png(20 + i) for i in range(5)]
    await a.ingest(
        image_post(new_author(clock), *images[:4]), image_post(new_author(clock), images[4])
    )
    everything = [h for h, _ in await a.store.missing_blobs(10)]
    assert everything == sorted(blob_hash(d) for d in images)
    first = [h for h, _ in await a.store.missing_blobs(2)]
    rest = [h for h, _ in await a.store.missing_blobs(10, after=first[-1])]
    assert first + rest == everything


async def test_a_post_from_a_client_wakes_the_fetcher(cluster: Cluster, clock: Clock) -> None:
    """spec 0005 #blob-fetch: a post sent by a client (its upload failed on this node)
    names an image a peer holds: the node fetches it in a round now, not at the next
    periodic one (the cluster's is 10 minutes away)."""
    data = png(9)
    fake = await blob_peer(cluster, blobs={blob_hash(data): data})
    a = await cluster.start("a", peers=[fake.url])
    await wait_for(lambda: a.state_of(fake.url) == "live", "A's stream to the fake peer")
    rounds_before = fake.blob_hits
    doc = await a.ingest(image_post(new_author(clock), data))
    assert doc["accepted"] == 1
    await wait_for(lambda: held(a, data), "the image fetched after a client's post")
    assert fake.blob_hits == rounds_before + 1
