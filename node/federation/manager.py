"""The federation manager: one subscription and one anti-entropy loop per peer.

Spec 0005. For each known peer the manager runs two tasks:

* a **connect loop**: probe ``GET /v1/info`` (same network? is it this node, or a
  node already subscribed to under another URL?), announce this node's URL, then
  follow the peer's ``GET /v1/stream`` from the persisted cursor, ingesting what
  arrives in batches exactly like ``POST /v1/events``. The cursor is saved after the
  events up to it committed (at-least-once; ingest is idempotent). When the stream
  fails, the loop waits an exponential backoff with jitter, so a dead peer costs one
  timer, and a peer that keeps failing is scored down and (if learnt by gossip)
  dropped;
* a **sync loop**: negentropy v1 with the peer after every (re)connect and every
  ``sync_interval_ms``, then fetch what this node lacks and offer what the peer lacks.
  This is what repairs anything the stream missed: restarts, partitions, shed load.

A third task, when peer exchange is on, asks connected peers for their peers every
``gossip_interval_ms`` and adds the new ones (bounded by ``max_peers``). A fourth
fetches the images that stored posts name and the node lacks
(:mod:`node.federation.blobfetch`, spec 0005 #blob-fetch).
Every outbound call goes through the one client made by
:func:`node.federation.outbound.create_peer_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from node.config import NodeConfig
from node.federation.blobfetch import BlobFetcher, wire_image_hashes
from node.federation.errors import (
    ForbiddenAddressError,
    PeerBadResponseError,
    PeerError,
    PeerRejectedError,
)
from node.federation.outbound import (
    OutboundPolicy,
    create_peer_client,
    fetch,
    map_transport_errors,
    open_stream,
    peer_origin,
)
from node.federation.peers import (
    GOSSIP_NEW_PER_ROUND,
    UNTRIED_PROBES,
    Peer,
    PeerState,
    PeerTable,
    Score,
)
from node.federation.sse import SseMessage, SseParser, stream_event
from node.federation.sync import (
    MAX_FRAME_BYTES,
    SyncOutcome,
    SyncSnapshot,
    fetch_events,
    offer_missing,
    reconcile_with,
)
from node.ingest import ingest_batch
from node.metrics import Metrics
from node.store.base import Store
from node.stream import StreamHub, client_address
from node.verify import Verifier
from protocol import jsontext
from protocol.errors import BodyRequiredError, ProtocolError, UnknownKeyEventError
from protocol.events import decode_unverified

__all__ = ["Federation"]

log = logging.getLogger("murmur.node.federation")

#: Largest SSE message accepted from a peer's stream (an event's JSON form with its
#: base64 wire is well under this).
_MAX_STREAM_MESSAGE = 512 * 1024
#: Save a peer's stream cursor at most this often while events flow (and always when
#: the stream ends): a crash re-receives at most this much, which ingest ignores.
_CURSOR_SAVE_MS = 2_000
#: Stream messages queued between the reader and the store (each chunk read is one
#: entry), and the most events stored in one batch from a stream.
_STREAM_QUEUE = 64
_STREAM_BATCH = 1_000
#: Ids remembered as rejected by this node, so anti-entropy stops fetching them.
_REJECTED_MEMORY = 100_000
_REJECTED_TTL_MS = 3_600_000
#: Bytes per offer request: well under every node's default request limit.
_OFFER_BYTES = 4 * 1024 * 1024
#: Most peer URLs taken from one peer's list.
_GOSSIP_TAKE = 64
#: A 429 during a fetch is waited out this many times before the run gives up.
_FETCH_RETRIES = 3
#: An announcement answered 429 is retried after its Retry-After this many times.
_ANNOUNCE_RETRIES = 3
#: Held body-less events asked of a peer per reconciliation (spec 0005 #body-repair).
_REPAIR_IDS = 500
#: Retryable refusals that a fetch run's other batches may cure: retried once they are
#: in, then remembered without penalty (spec 0005 #anti-entropy, 0008 #nodes).
_LATER_CODES = frozenset({BodyRequiredError.code, UnknownKeyEventError.code})


class Federation:
    """Runs a node's peer subscriptions, anti-entropy and peer exchange."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: Store,
        verifier: Verifier,
        hub: StreamHub,
        metrics: Metrics,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        fed = config.federation
        self.store = store
        self.verifier = verifier
        self.hub = hub
        self.metrics = metrics
        self.policy = OutboundPolicy(
            allow_private=config.allow_private_peers,
            connect_timeout_s=fed.connect_timeout_ms / 1000,
            read_timeout_s=fed.read_timeout_ms / 1000,
            total_timeout_s=fed.total_timeout_ms / 1000,
        )
        self._own_client = client is None
        self._client = client
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.table = PeerTable(
            max_peers=max(fed.max_peers, len(config.peers)),
            drop_silence_ms=4 * fed.backoff_max_ms,
        )
        self.snapshot = SyncSnapshot(store)
        self.node_id = ""
        #: The URL the node actually listens on, once known (a port of 0 is resolved
        #: only after the socket is bound); see :attr:`advertised_url`.
        self.listen_url: str | None = None
        self._stopping = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sync_wanted: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # (peer url, event id) -> when this node rejected it from that peer. Per peer:
        # a forged signature over a genuine header must not block the genuine event
        # arriving from an honest peer.
        self._rejected: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._cursor_saved_ms: dict[str, int] = {}
        #: Probes of peers that never worked (URLs anyone may name) run at most this
        #: many at once (spec 0005 #peer-eviction).
        self._untried_probes = asyncio.Semaphore(UNTRIED_PROBES)
        #: Per peer, the cursor after which the body repair step looks next (it walks
        #: the node's missing bodies a bounded slice per sync, then starts over).
        self._repair_after: dict[str, int] = {}
        #: This process runs the node's federation loops. A node served by several
        #: processes on one database has one leader at a time (node.cluster, spec
        #: 0004 #store-processes); the others answer peers but contact none.
        self.leading = True
        self._gossip: asyncio.Task[None] | None = None
        #: Awaited after a process that is not the leader saved a new peer, so that
        #: the leader takes it now (node.cluster: NOTIFY, then :meth:`adopt_peers`).
        self.on_peer_saved: Callable[[], Awaitable[None]] | None = None
        self.blobs = BlobFetcher(
            store=store,
            client=lambda: self.client,
            policy=self.policy,
            table=self.table,
            now_ms=self._now,
            interval_ms=fed.sync_interval_ms,
            rng=self._rng,
        )
        self._blob_task: asyncio.Task[None] | None = None
        metrics.labeled_counter(
            "murmur_blob_fetches_total",
            "Images asked of peers, one per peer asked, by result (spec 0005 #blob-fetch).",
            "result",
            lambda: self.blobs.results,
        )

    # -- lifecycle --------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = create_peer_client(self.policy)
        return self._client

    def _now(self) -> int:
        return self.config.now_ms()

    async def start(self, *, lead: bool = True) -> None:
        """Load known peers, add the configured ones, start every loop (only when
        ``lead``: otherwise :meth:`lead` starts them once this process is the leader)."""
        self.leading = lead
        self.node_id = await self.store.node_id()
        for rec in await self.store.load_peers():
            self.table.add(Peer.from_record(rec))
        configured: set[str] = set()
        for raw in self.config.peers:
            try:
                url = peer_origin(raw)
            except ValueError as exc:
                log.error("peer ignored url=%s error=%s", raw, exc)
                continue
            configured.add(url)
            known = self.table.get(url)
            if known is None:
                self.table.add(Peer(url=url, source="static", added_ms=self._now()))
            else:
                known.source = "static"
        for peer in self.table.all():
            if peer.source != "static" and not self.config.federation.peer_exchange:
                # Learnt by gossip in an earlier run; without peer exchange, a node
                # contacts only its configured peers.
                self.table.remove(peer.url)
                await self.store.delete_peer(peer.url)
            elif peer.source == "static" and peer.url not in configured:
                # Removed from the configuration: forget it unless gossip may keep it.
                if self.config.federation.peer_exchange:
                    peer.source = "gossip"
                else:
                    self.table.remove(peer.url)
                    await self.store.delete_peer(peer.url)
        self._run_loops()
        log.info(
            "federation started node_id=%s peers=%d peer_exchange=%s allow_private=%s "
            "leading=%s",
            self.node_id,
            len(self.table),
            self.config.federation.peer_exchange,
            self.config.allow_private_peers,
            self.leading,
        )

    def _run_loops(self) -> None:
        if not self.leading or self._stopping.is_set():
            return
        for peer in self.table.all():
            self._spawn(peer)
        if self.config.federation.peer_exchange and self._gossip is None:
            self._gossip = asyncio.create_task(self._gossip_loop(), name="murmur-gossip")
            self._keep(self._gossip)
        if self._blob_task is None:
            self._blob_task = asyncio.create_task(self.blobs.run(), name="murmur-blob-fetch")
            self._keep(self._blob_task)

    async def lead(self) -> None:
        """This process became the node's federation leader: take the peers the
        database holds now (the previous leader's, and those announced to any process)
        and start every loop."""
        if self.leading or self._stopping.is_set():
            return
        for rec in await self.store.load_peers():
            known = self.table.get(rec.url)
            if known is None:
                self.table.add(Peer.from_record(rec))
            elif rec.cursor is not None and (known.cursor or 0) < rec.cursor:
                known.cursor = rec.cursor  # saved by the previous leader
        self.leading = True
        self._run_loops()
        log.info("federation leader node_id=%s peers=%d", self.node_id, len(self.table))

    async def adopt_peers(self) -> int:
        """The leader takes the peers another process of the node saved (announced to
        it) since: each new row of the peer table joins as if announced here (an
        untried one may make room, spec 0005 #peer-eviction) and its loops start.
        Returns how many joined."""
        if not self.leading or self._stopping.is_set():
            return 0
        added = 0
        for rec in await self.store.load_peers():
            if rec.url in self.table:
                continue
            if rec.source != "static" and not self.config.federation.peer_exchange:
                continue
            peer = Peer.from_record(rec)
            if not self.table.add(peer):
                victim = self.table.untried_victim(by_gossip_at_ms=None)
                if victim is None or len(self.table) - 1 >= self.table.max_peers:
                    continue
                self._replace(victim, by=peer.url)
                self.table.add(peer)
            log.info("peer adopted url=%s source=%s", peer.url, peer.source)
            self._spawn(peer)
            added += 1
        return added

    async def follow(self) -> None:
        """This process is no longer the leader (its lock connection was lost): stop
        the loops, keep answering peers."""
        if not self.leading:
            return
        self.leading = False
        tasks = [
            *self._tasks.values(),
            *([self._gossip] if self._gossip else []),
            *([self._blob_task] if self._blob_task else []),
        ]
        self._gossip = self._blob_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.warning("federation follower node_id=%s (leadership lost)", self.node_id)

    async def stop(self) -> None:
        """Cancel every loop, save every peer, close the outbound client (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in self.table.all() if self.leading else ():
            # A follower's table is not newer than the leader's rows.
            with contextlib.suppress(Exception):
                await self.store.save_peer(peer.record())
        if self._own_client and self._client is not None:
            await self._client.aclose()

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _spawn(self, peer: Peer) -> None:
        if peer.url in self._tasks or self._stopping.is_set() or not self.leading:
            return
        self._sync_wanted[peer.url] = asyncio.Event()
        task = asyncio.create_task(self._peer_main(peer), name=f"murmur-peer {peer.url}")
        self._tasks[peer.url] = task

        def done(t: asyncio.Task[None], url: str = peer.url) -> None:
            if self._tasks.get(url) is t:
                del self._tasks[url]
                self._sync_wanted.pop(url, None)

        task.add_done_callback(done)

    async def _pause(self, ms: float) -> None:
        """Sleep ``ms`` unless the node stops first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, ms) / 1000):
                await self._stopping.wait()

    def _backoff_ms(self, failures: int) -> float:
        fed = self.config.federation
        base = min(fed.backoff_max_ms, fed.backoff_min_ms * 2 ** min(max(failures - 1, 0), 30))
        return float(base) * self._rng.uniform(0.5, 1.5)

    async def _save(self, peer: Peer) -> None:
        if self.table.get(peer.url) is peer:
            await self.store.save_peer(peer.record())

    # -- public (for handlers) --------------------------------------------------------

    def peers_json(self) -> list[dict[str, Any]]:
        return self.table.to_json()

    def consider(self, raw_url: str, *, via: str, by_gossip: bool = False) -> str:
        """A peer URL learnt from ``via`` (gossip or an announcement): add it if new.

        Returns ``"added"``, ``"known"``, ``"full"`` or ``"ignored"`` (peer exchange off).
        Raises ``ValueError`` for a URL that is not an http(s) origin. A URL learnt by
        gossip (not rate-limited like announcements) replaces only an untried peer
        whose first probe finished or whose grace ran out (spec 0005 #peer-eviction).
        """
        url = peer_origin(raw_url)
        if not self.config.federation.peer_exchange:
            return "ignored"
        if url in self.table:
            return "known"
        if url == self._own_origin():
            return "known"
        peer = Peer(url=url, source="gossip", added_ms=self._now())
        if not self.table.add(peer):
            # Full: the oldest peer that never worked makes room (spec 0005
            # #peer-eviction), so dead URLs named by anyone cannot keep working
            # peers out; a table of peers that all worked once stays as it is.
            victim = self.table.untried_victim(
                by_gossip_at_ms=self._now() if by_gossip else None
            )
            if victim is None or len(self.table) - 1 >= self.table.max_peers:
                return "full"
            self._replace(victim, by=url)
            self.table.add(peer)
        log.info("peer learnt url=%s via=%s", url, via)
        self._keep(asyncio.create_task(self._save_learnt(peer)))
        self._spawn(peer)
        return "added"

    async def _save_learnt(self, peer: Peer) -> None:
        await self._save(peer)
        if not self.leading and self.on_peer_saved is not None:
            # Saved: the process that runs the federation takes it from the table.
            await self.on_peer_saved()

    @property
    def advertised_url(self) -> str | None:
        """The URL announced to peers: ``public_url``, else the bound listen URL when
        the node listens on a specific address (not a wildcard)."""
        adv = self.config.advertised_url
        if (
            adv is None
            and self.listen_url is not None
            and self.config.host
            not in (
                "0.0.0.0",  # noqa: S104 - a comparison, not a bind
                "::",
                "",
            )
        ):
            adv = self.listen_url
        return adv

    def _own_origin(self) -> str | None:
        adv = self.advertised_url
        if adv is None:
            return None
        try:
            return peer_origin(adv)
        except ValueError:
            return None

    def want_sync(self, url: str) -> None:
        event = self._sync_wanted.get(url)
        if event is not None:
            event.set()

    # -- one peer ---------------------------------------------------------------------

    async def _peer_main(self, peer: Peer) -> None:
        syncer = asyncio.create_task(self._sync_loop(peer), name=f"murmur-sync {peer.url}")
        try:
            await self._connect_loop(peer)
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer

    async def _connect_loop(self, peer: Peer) -> None:
        fed = self.config.federation
        while not self._stopping.is_set():
            wait = (peer.next_attempt_ms or 0) - self._now()
            if wait > 0:
                await self._pause(wait)
                if self._stopping.is_set():
                    return
            peer.state = PeerState.CONNECTING
            delay: float
            try:
                await self._probe(peer)
                if peer.state is PeerState.SELF:
                    log.info("peer is this node url=%s (not subscribing)", peer.url)
                    peer.next_attempt_ms = None
                    await self._save(peer)
                    return
                if peer.state is PeerState.DUPLICATE:
                    delay = fed.backoff_max_ms
                else:
                    await self._follow(peer)
                    peer.state = PeerState.BACKOFF
                    delay = self._backoff_ms(1)  # the stream ended cleanly: come back soon
            except ForbiddenAddressError as exc:
                peer.state = PeerState.REFUSED
                peer.failed(exc.code, Score.FORBIDDEN)
                log.warning("peer refused url=%s error=%s", peer.url, exc.message)
                delay = fed.backoff_max_ms
            except PeerRejectedError as exc:
                # The peer answered, with an error (e.g. its stream slots are full or it
                # sheds load): it is reachable, so anti-entropy with it goes on, and its
                # Retry-After is honoured before the stream is tried again.
                peer.state = PeerState.BACKOFF
                peer.failed(exc.remote_code, Score.REJECTED)
                delay = max(self._backoff_ms(peer.failures), (exc.retry_after or 0) * 1000)
                if peer.reachable:
                    self.want_sync(peer.url)
                log.info(
                    "peer refused us url=%s error=%s status=%d retry_in_ms=%d",
                    peer.url,
                    exc.remote_code,
                    exc.http_status,
                    delay,
                )
            except PeerError as exc:
                peer.state = PeerState.BACKOFF
                peer.reachable = False
                bad = isinstance(exc, PeerBadResponseError)
                peer.failed(exc.code, Score.BAD_RESPONSE if bad else Score.UNREACHABLE)
                delay = self._backoff_ms(peer.failures)
                log.info(
                    "peer down url=%s error=%s retry_in_ms=%d message=%s",
                    peer.url,
                    exc.code,
                    delay,
                    exc.message,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not kill the loop
                peer.state = PeerState.BACKOFF
                peer.failed("internal", Score.UNREACHABLE)
                delay = self._backoff_ms(peer.failures)
                log.exception("peer loop error url=%s error=%r", peer.url, exc)
            if self.table.should_drop(peer, self._now()):
                await self._drop(peer)
                return
            peer.next_attempt_ms = self._now() + round(delay)
            await self._save(peer)

    def _replace(self, peer: Peer, *, by: str) -> None:
        """Forget a gossip peer that never worked, to make room for ``by``."""
        log.info("peer replaced url=%s by=%s", peer.url, by)
        self.table.remove(peer.url)
        self._repair_after.pop(peer.url, None)
        # Its loops end now; a later re-announcement of its URL starts new ones.
        task = self._tasks.pop(peer.url, None)
        self._sync_wanted.pop(peer.url, None)
        if task is not None:
            task.cancel()
        self._keep(asyncio.create_task(self.store.delete_peer(peer.url)))

    async def _drop(self, peer: Peer) -> None:
        """Forget a gossip peer that misbehaved or stayed dead; end its loops."""
        log.info("peer dropped url=%s score=%.1f failures=%d", peer.url, peer.score, peer.failures)
        self.table.remove(peer.url)
        self._repair_after.pop(peer.url, None)
        await self.store.delete_peer(peer.url)
        task = self._tasks.get(peer.url)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _probe(self, peer: Peer) -> None:
        """``GET /v1/info``: check the network, and whether the peer is us or a twin."""
        untried = peer.source != "static" and peer.last_ok_ms is None
        async with self._untried_probes if untried else contextlib.nullcontext():
            response, body = await fetch(
                self.client, "GET", f"{peer.url}/v1/info", policy=self.policy, max_bytes=64 * 1024
            )
        address = _server_address(response)
        try:
            doc = jsontext.loads(body)
        except ValueError:
            raise PeerBadResponseError(f"{peer.url}/v1/info is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("network"), str):
            raise PeerBadResponseError(f"{peer.url}/v1/info has no network")
        if doc["network"] != self.config.network:
            raise PeerBadResponseError(
                f"{peer.url} is on network {doc['network'][:64]!r}, not {self.config.network!r}"
            )
        node_id = doc.get("node_id")
        if node_id is not None and (not isinstance(node_id, str) or len(node_id) > 64):
            raise PeerBadResponseError(f"{peer.url}/v1/info has a bad node_id")
        peer.frame_bytes = _frame_bytes(doc)
        if node_id == self.node_id:
            peer.node_id, peer.state = node_id, PeerState.SELF
            return
        if peer.node_id is not None and node_id != peer.node_id:
            # Another store behind the same URL: its cursors mean nothing here.
            log.info("peer changed identity url=%s old=%s new=%s", peer.url, peer.node_id, node_id)
            peer.cursor = None
        if node_id is not None:
            twin = self.table.same_node(peer, node_id)
            if twin is not None:
                peer.node_id, peer.state = node_id, PeerState.DUPLICATE
                log.info("peer is a duplicate url=%s same_as=%s", peer.url, twin.url)
                return
        peer.node_id = node_id
        peer.address = address
        peer.reachable = True

    async def _follow(self, peer: Peer) -> None:
        """Follow the peer's live stream until it ends (returns) or fails (raises)."""
        url = f"{peer.url}/v1/stream"
        if peer.cursor is not None:
            url += f"?cursor={peer.cursor}"
        async with open_stream(self.client, url, policy=self.policy) as resp:
            peer.state = PeerState.LIVE
            peer.succeeded(self._now(), Score.CONNECTED)
            await self._save(peer)
            log.info("peer live url=%s cursor=%s", peer.url, peer.cursor)
            self.want_sync(peer.url)
            self._keep(asyncio.create_task(self._greet(peer)))
            parser = SseParser(max_message_bytes=_MAX_STREAM_MESSAGE)
            # Reading and storing run side by side: while one batch commits, what
            # arrives meanwhile queues up and is stored as the next batch, so under
            # load a follower commits many events at once, not one transaction each.
            queue: asyncio.Queue[list[SseMessage] | None] = asyncio.Queue(_STREAM_QUEUE)

            async def read() -> None:
                proven = False
                with map_transport_errors(url):
                    async for chunk in resp.aiter_bytes():
                        messages = parser.feed(chunk)
                        if not proven and (messages or parser.comments):
                            # A stream that opens and then breaks the spec must not
                            # reset the backoff; one that speaks SSE has proven itself.
                            proven = True
                            peer.recovered()
                        if parser.comments:
                            self._start_cursor(peer, parser.comments)
                            parser.comments.clear()
                        if messages:
                            await queue.put(messages)
                await queue.put(None)

            reader = asyncio.create_task(read())
            taker = asyncio.create_task(self._take_stream(peer, queue))
            try:
                await asyncio.wait({reader, taker}, return_when=asyncio.FIRST_EXCEPTION)
                for task in (taker, reader):  # a bad event explains a reader cut off
                    if task.done() and not task.cancelled():
                        if (exc := task.exception()) is not None:
                            raise exc
            finally:
                for task in (reader, taker):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        await self._save(peer)

    async def _take_stream(
        self, peer: Peer, queue: asyncio.Queue[list[SseMessage] | None]
    ) -> None:
        """Store what the stream reader queued, everything queued at once, in order,
        until ``None``."""
        end = False
        while not end:
            part = await queue.get()
            if part is None:
                return
            messages = list(part)
            while len(messages) < _STREAM_BATCH and not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    end = True
                    break
                messages.extend(more)
            await self._take(peer, messages)

    @staticmethod
    def _start_cursor(peer: Peer, comments: list[str]) -> None:
        """A stream opened "from now" says where now is (``: cursor=N``); start there."""
        if peer.cursor is not None:
            return
        for comment in comments:
            if comment.startswith("cursor="):
                value = comment.removeprefix("cursor=")
                if value.isascii() and value.isdigit() and len(value) <= 19:
                    peer.cursor = int(value)
                    return

    async def _take(self, peer: Peer, messages: Sequence[SseMessage]) -> None:
        wires: list[bytes] = []
        last: int | None = None
        for message in messages:
            if message.event != "event":
                continue
            wire, cursor = stream_event(message)
            wires.append(wire)
            last = cursor
        if wires:
            await self._ingest(peer, wires, "stream")
        if last is not None:
            peer.cursor = last
            now = self._now()
            if now - self._cursor_saved_ms.get(peer.url, 0) >= _CURSOR_SAVE_MS:
                self._cursor_saved_ms[peer.url] = now
                await self._save(peer)

    async def _ingest(
        self,
        peer: Peer,
        wires: Sequence[bytes],
        path: str,
        *,
        later: list[bytes] | None = None,
    ) -> int:
        """Verify and store events from ``peer``; score it by what it sent.

        Events refused with a retryable code are no offence; those refused as
        ``body-required`` (a deleted target that came before its delete) or
        ``unknown-key-event`` (an event that came before the key event it names, spec
        0008 #nodes) are appended to ``later`` when given; otherwise the next
        reconciliation fetches them again (not an earlier one: a peer must not be able
        to make this node sync back to back by sending them).
        """
        results = await ingest_batch(
            wires,
            verifier=self.verifier,
            store=self.store,
            now_ms=self.config.now_ms,
            on_commit=self.hub.publish,
        )
        accepted = bad = 0
        codes: set[str] = set()
        now = self._now()
        images: list[bytes] = []
        for wire, result in zip(wires, results, strict=True):
            self.metrics.federated[(path, result.status)] += 1
            if result.status == "accepted":
                accepted += 1
                images += wire_image_hashes(wire)
            elif result.status == "rejected" and result.error is not None:
                codes.add(result.error.code)
                if result.error.retryable:
                    # Clocks differ, or a delete is still on its way: not an offence,
                    # and valid again later (spec 0005 #retryable).
                    if later is not None and result.error.code in _LATER_CODES:
                        later.append(wire)
                    continue
                eid = result.id if result.id is not None else _unverified_id(wire)
                if eid is not None:
                    self._remember_rejected(peer.url, eid, now)
                bad += 1
        if images:
            # Posts naming images came from this peer: ask it for them first.
            self.blobs.post_stored(images, peer.url)
        peer.events_received += accepted
        peer.events_rejected += bad
        if bad:
            peer.adjust(Score.BAD_EVENT)
            log.warning(
                "peer sent invalid events url=%s path=%s count=%d codes=%s",
                peer.url,
                path,
                bad,
                ",".join(sorted(codes)),
            )
        if bad and self.table.should_drop(peer, now):
            raise PeerBadResponseError(f"{peer.url} sent too many invalid events")
        return accepted

    def _remember_rejected(self, url: str, eid: bytes, now: int) -> None:
        key = (url, eid)
        self._rejected[key] = now
        self._rejected.move_to_end(key)
        while len(self._rejected) > _REJECTED_MEMORY:
            self._rejected.popitem(last=False)

    def _was_rejected(self, url: str, eid: bytes, now: int) -> bool:
        at = self._rejected.get((url, eid))
        return at is not None and now - at < _REJECTED_TTL_MS

    async def _greet(self, peer: Peer) -> None:
        """On a new connection: announce this node, and ask the peer for its peers."""
        if not self.config.federation.peer_exchange:
            return
        await self._announce(peer)
        await self.gossip_with(peer)

    async def _announce(self, peer: Peer) -> None:
        """Tell the peer where this node is, so that it subscribes back."""
        url = self.advertised_url
        if url is None or not self.config.federation.peer_exchange:
            return
        for attempt in range(_ANNOUNCE_RETRIES + 1):
            try:
                await fetch(
                    self.client,
                    "POST",
                    f"{peer.url}/v1/peers",
                    policy=self.policy,
                    content=json.dumps({"url": url}).encode(),
                    headers={"Content-Type": "application/json"},
                    max_bytes=16 * 1024,
                )
                return
            except PeerRejectedError as exc:
                # Announcements are rate limited per address (spec 0005
                # #announce-limits), and nodes may share one: wait, then try again.
                if exc.http_status != 429 or attempt == _ANNOUNCE_RETRIES:
                    log.debug("announce failed url=%s error=%s", peer.url, exc.remote_code)
                    return
                await self._pause(min(max(exc.retry_after or 1.0, 1.0), 60.0) * 1000)
                if self._stopping.is_set():
                    return
            except PeerError as exc:
                log.debug("announce failed url=%s error=%s", peer.url, exc.code)
                return

    # -- anti-entropy -----------------------------------------------------------------

    async def _sync_loop(self, peer: Peer) -> None:
        interval = self.config.federation.sync_interval_ms
        wanted = self._sync_wanted[peer.url]
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval * self._rng.uniform(0.8, 1.2) / 1000):
                    await wanted.wait()
            wanted.clear()
            # Live, or answering but refusing its stream (shed): reconcile either way,
            # so that shedding never causes permanent divergence (spec 0005).
            if peer.state is PeerState.LIVE or (peer.state is PeerState.BACKOFF and peer.reachable):
                await self.sync_once(peer)
                if self.table.should_drop(peer, self._now()):
                    await self._drop(peer)
                    return

    async def sync_once(self, peer: Peer) -> SyncOutcome:
        """Reconcile with ``peer``, fetch what this node lacks, offer what it lacks."""
        fed = self.config.federation
        outcome = SyncOutcome()
        try:
            storage = await self.snapshot.get()
            outcome = await reconcile_with(
                self.client,
                peer.url,
                storage,
                policy=self.policy,
                frame_size_limit=min(
                    fed.sync_frame_bytes, peer.frame_bytes or fed.sync_frame_bytes
                ),
            )
            now = self._now()
            need = [i for i in outcome.need if not self._was_rejected(peer.url, i, now)]
            outcome.fetched = await self._fetch(peer, need)
            outcome.offered = await self._offer(peer, outcome.have)
            try:
                outcome.repaired = await self._repair_bodies(peer)
            except PeerError as exc:
                # The reconciliation itself succeeded; the repair runs again next time.
                log.info("body repair failed url=%s error=%s", peer.url, exc.code)
            peer.succeeded(self._now(), Score.SYNCED)
            self.metrics.syncs["ok"] += 1
        except PeerRejectedError as exc:
            outcome.error = exc.remote_code
            self.metrics.syncs[exc.remote_code] += 1
            peer.adjust(Score.REJECTED)
            if exc.retry_after is not None:
                self._retry_sync_later(peer, exc.retry_after)
        except PeerError as exc:
            outcome.error = exc.code
            self.metrics.syncs[exc.code] += 1
            peer.adjust(
                Score.BAD_RESPONSE if isinstance(exc, PeerBadResponseError) else Score.UNREACHABLE
            )
            log.info("sync failed url=%s error=%s message=%s", peer.url, exc.code, exc.message)
        peer.last_sync = {**outcome.to_json(), "at_ms": self._now()}
        log.info(
            "sync url=%s rounds=%d sent=%d received=%d have=%d need=%d fetched=%d offered=%d "
            "ms=%d error=%s",
            peer.url,
            outcome.rounds,
            outcome.bytes_sent,
            outcome.bytes_received,
            len(outcome.have),
            len(outcome.need),
            outcome.fetched,
            outcome.offered,
            outcome.elapsed_ms,
            outcome.error,
        )
        return outcome

    def _retry_sync_later(self, peer: Peer, seconds: float) -> None:
        delay_ms = min(max(seconds * 1000, 1000), self.config.federation.sync_interval_ms)

        async def later() -> None:
            await self._pause(delay_ms)
            self.want_sync(peer.url)

        self._keep(asyncio.create_task(later()))

    async def _fetch(self, peer: Peer, ids: Sequence[bytes]) -> int:
        batch = self.config.federation.fetch_batch
        stored = 0
        # Deleted targets fetched in an earlier batch than their delete are refused
        # (`body-required`), events fetched before the key event they rely on are
        # refused (`unknown-key-event`): both are stored once the whole fetch is in.
        later: list[bytes] = []
        for i in range(0, len(ids), batch):
            part = ids[i : i + batch]
            for attempt in range(_FETCH_RETRIES + 1):
                try:
                    wires = await fetch_events(self.client, peer.url, part, policy=self.policy)
                except PeerRejectedError as exc:
                    if exc.http_status != 429 or attempt == _FETCH_RETRIES:
                        raise
                    await self._pause(min(max(exc.retry_after or 1.0, 0.1), 30.0) * 1000)
                    if self._stopping.is_set():
                        return stored
                    continue
                stored += await self._ingest(peer, wires, "sync", later=later)
                break
        if later:
            still: list[bytes] = []
            stored += await self._ingest(peer, later, "sync", later=still)
            # Still refused with the whole run in: this peer holds stripped copies that
            # no delete it offered explains, or events under a key event it does not
            # serve (a thief's rotation every node refused). Not fetched from it again
            # for a while (no penalty: an honest peer may hold what an older node left,
            # or have stored them before it knew better), so that no peer can make this
            # node verify the same events at every sync.
            now = self._now()
            for wire in still:
                eid = _unverified_id(wire)
                if eid is not None:
                    self._remember_rejected(peer.url, eid, now)
        return stored

    async def _repair_bodies(self, peer: Peer) -> int:
        """Ask ``peer`` for the bodies this node lacks (spec 0005 #body-repair).

        Reconciliation compares ids only, so a held event without its body that no
        deletion explains (left by an older node, or a body restored to a delete) is
        invisible to it. Each sync asks the peer for one bounded slice of them, in
        cursor order, and ingests the full copies it returns: ingest verifies them and
        fills the bodies in. Returns how many were completed.
        """
        after = self._repair_after.get(peer.url, 0)
        rows = await self.store.missing_bodies(after=after, limit=_REPAIR_IDS)
        if not rows:
            self._repair_after[peer.url] = 0
            return 0
        # The next sync continues after this slice, or starts over when it was the last.
        self._repair_after[peer.url] = rows[-1][0] if len(rows) == _REPAIR_IDS else 0
        ids = [eid for _, eid in rows]
        batch = self.config.federation.fetch_batch
        repaired = 0
        for i in range(0, len(ids), batch):
            part = ids[i : i + batch]
            wires = await fetch_events(self.client, peer.url, part, policy=self.policy)
            full = [w for w in wires if _has_body(w)]
            if full:
                repaired += await self._ingest(peer, full, "repair")
        if repaired:
            self.metrics.bodies_repaired += repaired
            log.info("bodies repaired url=%s count=%d", peer.url, repaired)
        return repaired

    async def _offer(self, peer: Peer, ids: Sequence[bytes]) -> int:
        fed = self.config.federation
        offered = 0
        for i in range(0, len(ids), fed.offer_batch):
            events = await self.store.get_events(ids[i : i + fed.offer_batch])
            chunk: list[bytes] = []
            size = 0
            for ev in events:
                wire = ev.wire
                if chunk and size + len(wire) > _OFFER_BYTES:
                    offered += await offer_missing(self.client, peer.url, chunk, policy=self.policy)
                    chunk, size = [], 0
                chunk.append(wire)
                size += len(wire)
            if chunk:
                offered += await offer_missing(self.client, peer.url, chunk, policy=self.policy)
        self.metrics.offered += offered
        return offered

    # -- peer exchange ----------------------------------------------------------------

    async def _gossip_loop(self) -> None:
        interval = self.config.federation.gossip_interval_ms
        while not self._stopping.is_set():
            await self._pause(interval * self._rng.uniform(0.8, 1.2))
            if self._stopping.is_set():
                return
            live = [p for p in self.table.all() if p.state is PeerState.LIVE]
            # Side by side: a peer that trickles its answer holds only its own gossip.
            await asyncio.gather(*(self.gossip_with(p) for p in live))

    async def gossip_with(self, peer: Peer) -> int:
        """Ask ``peer`` for its peers; consider the live ones, adding at most
        ``GOSSIP_NEW_PER_ROUND`` (spec 0005 #peer-eviction). Returns how many were added."""
        try:
            _, body = await fetch(
                self.client, "GET", f"{peer.url}/v1/peers", policy=self.policy, max_bytes=256 * 1024
            )
            doc = jsontext.loads(body)
        except PeerError as exc:
            # Spec 0005 §peers: a broken answer costs like any other, an outage less.
            bad = isinstance(exc, PeerBadResponseError | ForbiddenAddressError)
            peer.adjust(Score.BAD_RESPONSE if bad else Score.UNREACHABLE)
            log.info("gossip failed url=%s error=%s", peer.url, exc.code)
            return 0
        except ValueError:
            peer.adjust(Score.BAD_RESPONSE)
            log.info("gossip failed url=%s error=not-json", peer.url)
            return 0
        entries = doc.get("peers") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            peer.adjust(Score.BAD_RESPONSE)
            return 0
        added = 0
        for entry in entries[:_GOSSIP_TAKE]:
            if added >= GOSSIP_NEW_PER_ROUND:
                break  # one answer cannot flood the table; the rest, next round
            if not isinstance(entry, dict) or entry.get("state") != "live":
                continue
            url = entry.get("url")
            if not isinstance(url, str) or len(url) > 2048:
                continue
            try:
                if self.consider(url, via=peer.url, by_gossip=True) == "added":
                    added += 1
            except ValueError:
                continue
        return added


def _has_body(wire: bytes) -> bool:
    """Does ``wire`` carry a body (checked for real by ingest; this only skips the
    copies that cannot complete anything)?"""
    try:
        return decode_unverified(wire, allow_v2=True).body_bytes is not None
    except ProtocolError:
        return True  # let ingest reject it and score the peer


def _server_address(response: httpx.Response) -> str | None:
    """The IP address ``response`` came from: its connection is still open (kept alive
    in the pool) right after :func:`fetch` returns. None when that is unknown."""
    stream = response.extensions.get("network_stream")
    try:
        addr = stream.get_extra_info("server_addr") if stream is not None else None
    except OSError:  # the peer closed the connection already
        return None
    if isinstance(addr, tuple) and addr and isinstance(addr[0], str):
        return client_address(addr[0])
    return None


def _unverified_id(wire: bytes) -> bytes | None:
    """The id a rejected wire claims (its header's hash), if it decodes at all."""
    try:
        return decode_unverified(wire, allow_v2=True).id
    except ProtocolError:
        return None


def _frame_bytes(info: dict[str, Any]) -> int | None:
    """A peer's declared negentropy frame size limit, if sane (4 KiB .. 16 MiB)."""
    fed = info.get("federation")
    value = fed.get("sync_frame_bytes") if isinstance(fed, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 4096 <= value <= MAX_FRAME_BYTES:
        return value
    return None
