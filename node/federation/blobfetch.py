"""Fetching the images stored posts name from peers (spec 0005 #blob-fetch).

A post arrives by federation without its images: a node holds an image's bytes only
once they verify against a stored post's claim (spec 0004 #blob-keep), so the node asks
its peers for the bytes it lacks, ``GET /v1/blobs/{hash}``, first from the peer that
sent the post, else from any connected peer. One task (:meth:`BlobFetcher.run`, on the
federation leader only) works in rounds: woken after posts with images are stored, and
every ``sync_interval_ms`` (the same rhythm as the body repair), it walks the store's
missing blobs with a cursor and fetches the ones that are due, bounded three ways:

* at most :data:`FETCH_CONCURRENCY` fetches at once, and :data:`FETCH_BUDGET_BYTES`
  of claimed sizes in flight together;
* each body is streamed and abandoned as soon as it passes the claimed size (no body
  read past it, and never past ``MAX_BLOB_BYTES``), within the outbound policy's total
  time (the same guarded client as every other call to a peer: no private addresses
  unless allowed, same-origin redirects only, no compressed bodies);
* a hash that no peer served is tried again after a growing delay, and after
  :data:`MAX_ATTEMPTS` failed rounds it is left for :data:`GIVE_UP_MS` (it stays in the
  store's missing blobs, and later rounds try it again).

Bytes are kept only through :meth:`~node.store.base.Store.put_fetched_blob`, which
checks them against the stored claim. Bytes that do not hash to the name they were
asked under are a peer's fault (scored like an invalid event) and are never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

import httpx

from node.federation.errors import (
    ForbiddenAddressError,
    PeerBadResponseError,
    PeerError,
    PeerRejectedError,
    PeerTimeoutError,
)
from node.federation.outbound import OutboundPolicy, open_stream
from node.federation.peers import Peer, PeerState, PeerTable, Score
from node.store.base import Store
from protocol.blobs import blob_hash
from protocol.embeds import EmbedImage, post_images
from protocol.errors import ProtocolError
from protocol.events import decode_unverified
from protocol.limits import MAX_BLOB_BYTES

__all__ = [
    "FETCH_BUDGET_BYTES",
    "FETCH_CONCURRENCY",
    "FETCH_RESULTS",
    "GIVE_UP_MS",
    "MAX_ATTEMPTS",
    "BlobFetcher",
    "ByteBudget",
    "wire_image_hashes",
]

log = logging.getLogger("murmur.node.federation.blobs")

#: Blob fetches running at once.
FETCH_CONCURRENCY: Final = 4
#: Claimed bytes of the fetches running at once, together: two images of the largest
#: size, or four smaller ones.
FETCH_BUDGET_BYTES: Final = 2 * MAX_BLOB_BYTES
#: Missing blobs read per store call, and looked at per round (the rest: next round,
#: from the cursor on).
SCAN_SLICE: Final = 64
SCAN_MAX: Final = 1_024
#: Rounds in which no peer served a hash before it is left for :data:`GIVE_UP_MS`;
#: the delay between them doubles from :data:`RETRY_MIN_MS` (short: the peer that sent
#: the post is often still fetching its image) to :data:`RETRY_MAX_MS` (about 4 min
#: of tries in all).
MAX_ATTEMPTS: Final = 10
RETRY_MIN_MS: Final = 250
RETRY_MAX_MS: Final = 120_000
GIVE_UP_MS: Final = 3_600_000
#: Hashes remembered with the peer that sent their post, and with their failures.
_REMEMBERED: Final = 10_000
#: Every result a fetch from one peer may have (``murmur_blob_fetches_total{result}``):
#: ``refused`` is bytes that hash right but that the store did not keep (the post's
#: claim is wrong about them, or the author's quota is full): no peer's fault.
FETCH_RESULTS: Final = ("ok", "mismatch", "not-found", "error", "refused")


class ByteBudget:
    """Bytes in flight, at most ``limit`` together (a request larger than the limit
    is charged the whole limit, so it runs alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def take(self, n: int) -> AsyncIterator[None]:
        n = min(n, self.limit)
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n
        try:
            yield
        finally:
            async with self._cond:
                self.used -= n
                self._cond.notify_all()


@dataclass(slots=True)
class _Failures:
    rounds: int = 0
    next_ms: int = 0


class BlobFetcher:
    """Fetches the blobs a node's stored posts name and it lacks (one per federation)."""

    def __init__(
        self,
        *,
        store: Store,
        client: Callable[[], httpx.AsyncClient],
        policy: OutboundPolicy,
        table: PeerTable,
        now_ms: Callable[[], int],
        interval_ms: int,
        rng: random.Random,
    ) -> None:
        self.store = store
        self._client = client
        self.policy = policy
        self.table = table
        self._now_ms = now_ms
        self.interval_ms = interval_ms
        self._rng = rng
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(FETCH_CONCURRENCY)
        self.budget = ByteBudget(FETCH_BUDGET_BYTES)
        #: Fetches by result, one per peer asked (``murmur_blob_fetches_total``).
        self.results: Counter[str] = Counter({r: 0 for r in FETCH_RESULTS})
        self._source: OrderedDict[bytes, str] = OrderedDict()
        self._failures: OrderedDict[bytes, _Failures] = OrderedDict()
        self._after = b""
        #: One round at a time (the task's, or a caller's such as a test's).
        self._round = asyncio.Lock()

    # -- triggers ---------------------------------------------------------------------

    def post_stored(self, digests: list[bytes], peer_url: str | None) -> None:
        """Posts naming ``digests`` were stored (from ``peer_url``): ask that peer first,
        now, and forget earlier failures (a new post may come with its image)."""
        for digest in digests:
            if peer_url is not None:
                self._source[digest] = peer_url
                self._source.move_to_end(digest)
                while len(self._source) > _REMEMBERED:
                    self._source.popitem(last=False)
            self._failures.pop(digest, None)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Rounds until cancelled: after a wake, every ``interval_ms``, and when a
        hash's retry is due."""
        while True:
            timeout = self._next_wait_ms()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout / 1000):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.fetch_round()
            except Exception:  # a failed round (the store, say) is tried again later
                log.exception("blob fetch round failed")

    def _next_wait_ms(self) -> float:
        wait = float(self.interval_ms) * self._rng.uniform(0.8, 1.2)
        if self._failures:
            soonest = min(f.next_ms for f in self._failures.values())
            wait = min(wait, max(soonest - self._now_ms(), 0) + 50.0)
        return wait

    # -- a round ----------------------------------------------------------------------

    async def fetch_round(self) -> int:
        """Fetch the missing blobs that are due (at most :data:`SCAN_MAX` looked at, from
        the cursor on); return how many are now held."""
        async with self._round:
            return await self._fetch_due()

    async def _fetch_due(self) -> int:
        now = self._now_ms()
        due: list[EmbedImage] = []
        seen = 0
        after = self._after
        while seen < SCAN_MAX:
            rows = await self.store.missing_blobs(SCAN_SLICE, after=after)
            seen += len(rows)
            for digest, claim in rows:
                failures = self._failures.get(digest)
                if failures is None or failures.next_ms <= now:
                    due.append(claim)
            if len(rows) < SCAN_SLICE:
                after = b""  # the end: the next round starts over
                break
            after = rows[-1][0]
        self._after = after
        if not due:
            return 0
        held = await asyncio.gather(*(self._fetch_one(claim) for claim in due))
        got = sum(held)
        if got:
            log.info("blobs fetched count=%d of=%d", got, len(due))
        return got

    def _candidates(self, digest: bytes) -> list[Peer]:
        live = [p for p in self.table.all() if p.state is PeerState.LIVE]
        self._rng.shuffle(live)
        source = self.table.get(self._source.get(digest, ""))
        if source is not None and (source.state is PeerState.LIVE or source.reachable):
            live = [source, *(p for p in live if p is not source)]
        return live

    async def _fetch_one(self, claim: EmbedImage) -> bool:
        digest = claim.hash
        async with self._slots, self.budget.take(claim.size):
            for peer in self._candidates(digest):
                result = await self._from(peer, claim)
                self.results[result] += 1
                if result == "ok":
                    self._failures.pop(digest, None)
                    self._source.pop(digest, None)
                    return True
                if result == "refused":
                    # The genuine bytes, that this node's posts' claims do not describe:
                    # no other peer can do better. Asked again after the give-up time.
                    self._failed(digest, give_up=True)
                    return False
        self._failed(digest, give_up=False)
        return False

    def _failed(self, digest: bytes, *, give_up: bool) -> None:
        failures = self._failures.pop(digest, None) or _Failures()
        failures.rounds += 1
        now = self._now_ms()
        if give_up or failures.rounds >= MAX_ATTEMPTS:
            failures.rounds = 0
            failures.next_ms = now + GIVE_UP_MS
            log.info("blob fetch given up for now hash=%s", digest.hex())
        else:
            delay = min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (failures.rounds - 1))
            failures.next_ms = now + int(delay * self._rng.uniform(0.75, 1.25))
        self._failures[digest] = failures
        while len(self._failures) > _REMEMBERED:
            self._failures.popitem(last=False)

    async def _from(self, peer: Peer, claim: EmbedImage) -> str:
        """Ask ``peer`` for the bytes of ``claim``; store them if they verify. The
        result, one of :data:`FETCH_RESULTS`."""
        digest = claim.hash
        url = f"{peer.url}/v1/blobs/{digest.hex()}"
        try:
            data = await self._read(url, claim.size)
        except PeerRejectedError as exc:
            if exc.http_status == 404:
                return "not-found"
            peer.adjust(Score.REJECTED)
            log.info("blob fetch refused url=%s code=%s", url, exc.remote_code)
            return "error"
        except (PeerBadResponseError, ForbiddenAddressError) as exc:
            peer.adjust(Score.BAD_RESPONSE)
            log.info("blob fetch failed url=%s error=%s message=%s", url, exc.code, exc.message)
            return "error"
        except PeerError as exc:
            peer.adjust(Score.UNREACHABLE)
            log.info("blob fetch failed url=%s error=%s", url, exc.code)
            return "error"
        if data is None:
            # More bytes than the post claims: not the image its post names (or the
            # post's claim is wrong about the size). Abandoned at the claimed size; no
            # penalty, since an honest peer holding the genuine bytes under another
            # post's claim would look the same.
            log.info("blob fetch over the claimed size url=%s size=%d", url, claim.size)
            return "mismatch"
        if await asyncio.to_thread(blob_hash, data) != digest:
            # Bytes asked for by their SHA-256 that do not have it: whatever any post
            # claims, no honest node serves them (spec 0005 #blob-fetch).
            peer.adjust(Score.BAD_EVENT)
            log.warning("peer served altered blob url=%s bytes=%d", url, len(data))
            return "mismatch"
        if await self.store.put_fetched_blob(digest, data):
            return "ok"
        log.info("fetched blob not kept hash=%s url=%s", digest.hex(), url)
        return "refused"

    async def _read(self, url: str, cap: int) -> bytes | None:
        """The body at ``url``, or None once it passes ``cap`` bytes (then abandoned)."""
        try:
            async with asyncio.timeout(self.policy.total_timeout_s):
                async with open_stream(self._client(), url, policy=self.policy, expect=()) as r:
                    declared = r.headers.get("content-length")
                    if declared is not None and declared.isdigit() and int(declared) > cap:
                        return None
                    body = bytearray()
                    async for chunk in r.aiter_raw():
                        body += chunk
                        if len(body) > cap:
                            return None
                    return bytes(body)
        except TimeoutError:
            raise PeerTimeoutError(f"{url}: image not read in time", url=url) from None


def wire_image_hashes(wire: bytes) -> list[bytes]:
    """The hashes of the images a stored post names (spec 0003 #embed); a cheap byte
    test first, as most events name none."""
    if b"embed" not in wire:
        return []
    try:
        body = decode_unverified(wire, allow_v2=True).body
        return [image.hash for image in post_images(body)] if body is not None else []
    except ProtocolError:
        return []
