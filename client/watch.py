"""Following the reader's nodes live: ``murmur timeline --watch`` and ``murmur
notifications --watch`` (spec 0007 #watch, #notifications-watch).

:class:`NodeStreams` holds one ``GET /v1/stream`` per node (spec 0004 #stream) from
the cursor each node had when the watch began (:func:`start_cursors`, read with
``/v1/info`` *before* the page shown first, so nothing that arrives in between is
missed; a node that gave none starts at its head), with one reconnect policy
(spec 0007 #watch-reconnect): a stream that delivered and ended cleanly (a node ends
every stream after a lifetime) is opened again at once from the last cursor it
delivered; any other end is a failure, retried after a delay that doubles from
:data:`BACKOFF_MIN_S` to :data:`BACKOFF_MAX_S` — for ever, since a node that restarts
comes back — and a node whose stream failed :data:`DOWN_AFTER` times in a row is
reported down (``on_status(url, why)``), then back (``on_status(url, None)``) once
its stream answers again. Memory is bounded: at most :data:`MAX_QUEUE` streamed
events wait (a stream waits when they do), handed on in batches of at most
:data:`MAX_BATCH`.

Two watches read those batches:

- :class:`TimelineWatch`: every event is verified by a fresh reader (signature, key
  state) and must be a post or repost of a followed author that no held delete
  removed; the new ones are one small view (references, profiles, counts) for the
  caller to moderate and print;
- :class:`NotificationWatch`: a streamed event that could concern the reader wakes a
  refresh — at most two a second — that reads the notifications again through the
  same :class:`~client.notifications.Notifier` (verified, checked, moderated),
  keeping only events that arrived during the watch and were not shown yet, down to
  the oldest ``ts`` among the new arrivals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final

from client.api import NodeClient, WireItem
from client.labeler.sse import SseParser, stream_event
from client.notifications import Notification, NotificationPage, Notifier
from client.paging import key_of
from client.reader import Reader
from client.views import TIMELINE_KINDS, View, _finish
from protocol import kinds
from protocol.errors import BadFieldError, ProtocolError
from protocol.events import Event, decode_event
from protocol.facets import mentioned_dids

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "DOWN_AFTER",
    "NodeStreams",
    "NotificationWatch",
    "StatusCallback",
    "TimelineWatch",
    "could_notify",
    "start_cursors",
]

log = logging.getLogger("murmur.client.watch")

#: Reconnect delay after a failure, doubling from min to max.
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
#: Failed streams in a row after which a node is reported down (about 4 s of retries).
DOWN_AFTER: Final = 3
#: A stream silent this long is dead (a node heartbeats every 15 s by default).
STREAM_IDLE_S: Final = 45.0
#: Events received and not yet handed on; a stream waits when it is full.
MAX_QUEUE: Final = 1000
#: Events handed on (verified, shown) together.
MAX_BATCH: Final = 200
#: Ids remembered as shown by a timeline watch; beyond it the oldest half is forgotten.
MAX_SEEN: Final = 100_000
#: Followed authors named in the stream request; more, and the stream carries every
#: author's events and the watch keeps the followed ones (a long query string is
#: refused by many servers).
MAX_STREAM_AUTHORS: Final = 50
#: Ids of streamed notification candidates remembered (the newest).
MAX_ARRIVALS: Final = 10_000
#: Notifications read per refresh, and the shortest time between two refreshes.
REFRESH_LIMIT: Final = 50
REFRESH_MIN_S: Final = 0.5
_TIMELINE_STREAM_KINDS: Final = (kinds.POST, kinds.REPOST, kinds.DELETE)
_NOTIFY_STREAM_KINDS: Final = (kinds.POST, kinds.LIKE, kinds.REPOST, kinds.FOLLOW)

#: ``on_status(url, why)``: a node is down (``why``), or back (None).
StatusCallback = Callable[[str, str | None], None]


async def start_cursors(nodes: Sequence[NodeClient]) -> dict[str, int | None]:
    """Each node's current stream cursor (``/v1/info``); None where it failed: that
    stream starts at the node's head when it opens."""

    async def one(node: NodeClient) -> int | None:
        try:
            info = await asyncio.wait_for(node.info(), timeout=node.timeout)
        except (TimeoutError, ProtocolError) as exc:
            log.info("no start cursor url=%s error=%s", node.url, exc)
            return None
        cursor = info.get("cursor")
        ok = isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0
        return cursor if ok else None

    found = await asyncio.gather(*(one(n) for n in nodes))
    return {n.url: c for n, c in zip(nodes, found, strict=True)}


class NodeStreams:
    """Every node's live stream of ``kinds`` (of ``authors`` when given), with one
    reconnect policy (see the module doc)."""

    def __init__(
        self,
        nodes: Sequence[NodeClient],
        *,
        kinds_: Sequence[str],
        authors: Sequence[str] | None = None,
        on_status: StatusCallback | None = None,
        idle_s: float = STREAM_IDLE_S,
        down_after: int = DOWN_AFTER,
    ) -> None:
        self.nodes = list(nodes)
        self.kinds = ",".join(kinds_)
        self.authors = None if authors is None else ",".join(authors)
        self.on_status = on_status
        self.idle_s = idle_s
        self.down_after = down_after
        #: The last cursor each node's stream delivered (None: not known yet).
        self.cursors: dict[str, int | None] = {}
        #: Nodes reported down: url → the last failure.
        self.down: dict[str, str] = {}
        #: Set once every node's stream answered or was reported down.
        self.ready = asyncio.Event()
        self._answered: set[str] = set()

    async def batches(
        self, starts: Mapping[str, int | None]
    ) -> AsyncGenerator[list[tuple[str, bytes]], None]:
        """``(url, wire)`` of each streamed event, in batches, until closed (use
        ``contextlib.aclosing``: closing stops every stream)."""
        self.cursors = {n.url: starts.get(n.url) for n in self.nodes}
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(MAX_QUEUE)
        tasks = [asyncio.create_task(self._follow(n, queue)) for n in self.nodes]
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                yield batch
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _params(self, cursor: int | None) -> list[tuple[str, str | int]]:
        params: list[tuple[str, str | int]] = [("kinds", self.kinds)]
        if self.authors is not None:
            params.append(("authors", self.authors))
        if cursor is not None:
            params.append(("cursor", cursor))
        return params

    async def _follow(self, node: NodeClient, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        url = node.url
        failures, delay = 0, BACKOFF_MIN_S
        while True:
            parser = SseParser()
            progressed = closed = False
            why: str | None = None
            try:
                async for chunk in node.stream_chunks(
                    self._params(self.cursors.get(url)), idle_s=self.idle_s
                ):
                    self._up(url)
                    for message in parser.feed(chunk):
                        if message.event != "event":
                            continue
                        wire, cursor = stream_event(message)
                        last = self.cursors.get(url)
                        if last is None or cursor > last:
                            self.cursors[url] = cursor
                            progressed = True
                            failures, delay = 0, BACKOFF_MIN_S
                            await queue.put((url, wire))
                    self._note_start(url, parser.comments)
                    closed |= any(c.startswith("closing reason=") for c in parser.comments)
                    parser.comments.clear()
            except ProtocolError as exc:
                why = f"{exc.code}: {exc.message}"
            else:
                if not (progressed or closed):
                    why = "the stream ended without a word"
            if why is None:
                failures, delay = 0, BACKOFF_MIN_S
                if progressed:
                    continue  # a clean end (the stream's lifetime): resume at once
            else:
                failures += 1
                log.warning("watch: stream failed url=%s failures=%d why=%s", url, failures, why)
                if failures >= self.down_after:
                    self._down(url, why)
            # A backoff before reconnecting, not synchronisation.
            await asyncio.sleep(delay)
            if why is not None:
                delay = min(delay * 2, BACKOFF_MAX_S)

    def _up(self, url: str) -> None:
        if url in self.down:
            del self.down[url]
            log.info("watch: node back url=%s", url)
            if self.on_status is not None:
                self.on_status(url, None)
        self._answered.add(url)
        self._check_ready()

    def _down(self, url: str, why: str) -> None:
        first = url not in self.down
        self.down[url] = why
        self._answered.discard(url)
        if first:
            log.warning("watch: node down url=%s why=%s", url, why)
            if self.on_status is not None:
                self.on_status(url, why)
        self._check_ready()

    def _check_ready(self) -> None:
        if self._answered | set(self.down) >= {n.url for n in self.nodes}:
            self.ready.set()

    def _note_start(self, url: str, comments: list[str]) -> None:
        """A stream opened at the node's head says where (``: cursor=N``): resume there."""
        if self.cursors.get(url) is not None:
            return
        for c in comments:
            if c.startswith("cursor="):
                with contextlib.suppress(ValueError):
                    self.cursors[url] = int(c.removeprefix("cursor="))


# -- the timeline -------------------------------------------------------------------------


class TimelineWatch:
    """New timeline items of ``me`` (who follows ``follows``) from ``reader``'s nodes
    (each batch is verified by a new reader over the same nodes and key cache)."""

    def __init__(
        self,
        reader: Reader,
        me: str,
        follows: Iterable[str],
        *,
        starts: Mapping[str, int | None],
        seen: Iterable[str] = (),
        on_status: StatusCallback | None = None,
    ) -> None:
        self.reader = reader
        self.authors = sorted(set(follows) | {me})
        self._wanted = set(self.authors)
        self.starts = dict(starts)
        self._seen: dict[str, None] = dict.fromkeys(seen)
        self.streams = NodeStreams(
            reader.nodes,
            kinds_=_TIMELINE_STREAM_KINDS,
            authors=self.authors if len(self.authors) <= MAX_STREAM_AUTHORS else None,
            on_status=on_status,
        )

    async def views(self) -> AsyncGenerator[View, None]:
        """Views of new items, as they come, until closed."""
        async with contextlib.aclosing(self.streams.batches(self.starts)) as batches:
            async for batch in batches:
                view = await self.take(batch)
                if view.items:
                    yield view

    async def take(self, batch: Sequence[tuple[str, bytes]]) -> View:
        """Verify a batch of streamed events; the view of the new items among them,
        oldest first (the newest ends up last, as in a log)."""
        # A fresh read per batch: a node that failed once is asked again next time, and
        # nothing accumulates over a long watch.
        base = self.reader
        reader = Reader(base.nodes, net=base.net, timeout=base.timeout, keycache=base.keycache)
        added: list[Event] = []
        await reader.preverify([WireItem(wire=w, claimed_id=None) for _, w in batch])
        for url, wire in batch:
            e = reader.add(url, WireItem(wire=wire, claimed_id=None))
            if e is not None and e.author in self._wanted and e.kind in _TIMELINE_STREAM_KINDS:
                added.append(e)
        await reader.keys.settle()
        deleted = reader.deleted_ids()
        new: list[Event] = []
        for e in sorted({e.id: e for e in added}.values(), key=key_of):
            held = reader.events.get(e.id)  # gone: not its author's (key state)
            if held is None or held.kind not in TIMELINE_KINDS or held.body is None:
                continue
            if held.id in deleted or held.id_hex in self._seen:
                continue
            self._seen[held.id_hex] = None
            new.append(held)
        if len(self._seen) > MAX_SEEN:
            self._seen = dict.fromkeys(list(self._seen)[MAX_SEEN // 2 :])
        return await _finish(reader, new)


# -- notifications --------------------------------------------------------------------------

#: ``make(keep)``: a Notifier on a fresh read of the nodes that keeps what ``keep`` says.
MakeNotifier = Callable[[Callable[[Event], bool]], Notifier]


def could_notify(e: Event, me: str) -> bool:
    """Might verified ``e`` concern ``me``? (Cheap: the refresh checks for real.)"""
    if e.author == me or e.body is None:
        return False
    if e.kind == kinds.FOLLOW:
        return e.body.get("subject") == me
    if e.kind in (kinds.LIKE, kinds.REPOST):
        return True
    if e.kind != kinds.POST:
        return False
    if isinstance(e.body.get("reply"), dict) or isinstance(e.body.get("quote"), bytes):
        return True
    try:
        return me in mentioned_dids(e.body)
    except BadFieldError:
        return False


class NotificationWatch:
    """Follows every node's stream and reports new notifications (see the module doc).

    ``on_new(new, page)`` gets the new shown notifications and the refresh's page
    (whose ``hidden`` the filters hid); ``shown`` are the ids shown already; the watch
    ends after ``max_new`` new notifications (None: when cancelled).
    """

    def __init__(
        self,
        nodes: Sequence[NodeClient],
        me: str,
        make: MakeNotifier,
        on_new: Callable[[list[Notification], NotificationPage], Awaitable[None]],
        *,
        net: str,
        shown: Iterable[bytes] = (),
        max_new: int | None = None,
        on_status: StatusCallback | None = None,
    ) -> None:
        self.me = me
        self.make = make
        self.on_new = on_new
        self.net = net
        self.shown: set[bytes] = set(shown)
        self.max_new = max_new
        self.arrived: OrderedDict[bytes, int] = OrderedDict()
        self.new_count = 0
        self.streams = NodeStreams(nodes, kinds_=_NOTIFY_STREAM_KINDS, on_status=on_status)
        self._since: int | None = None

    @property
    def ready(self) -> asyncio.Event:
        """Set once every node's stream answered (or was reported down)."""
        return self.streams.ready

    def _arrive(self, wire: bytes) -> None:
        try:
            e = decode_event(wire, net=self.net, allow_v2=True)
        except ProtocolError:
            return  # the refresh would drop it too; nothing to wake for
        if not could_notify(e, self.me) or e.id in self.shown:
            return
        self.arrived[e.id] = e.ts
        self.arrived.move_to_end(e.id)
        while len(self.arrived) > MAX_ARRIVALS:
            self.arrived.popitem(last=False)
        self._since = e.ts if self._since is None else min(self._since, e.ts)

    async def _refresh(self) -> None:
        """Read the notifications again down to the oldest new arrival; retried (at
        most twice a second) while the read fails."""
        since, self._since = self._since, None

        def keep(e: Event) -> bool:
            return e.id in self.arrived and e.id not in self.shown

        while True:
            try:
                stop = lambda e: since is not None and e.ts < since  # noqa: E731
                page = await self.make(keep).page(limit=REFRESH_LIMIT, stop=stop)
                break
            except ProtocolError as exc:
                log.warning("watch: refresh failed code=%s", exc.code)
                await asyncio.sleep(REFRESH_MIN_S)  # a retry pace, not synchronisation
        new = [n for n in reversed(page.shown) if n.event.id not in self.shown]
        if self.max_new is not None:
            new = new[: max(0, self.max_new - self.new_count)]
        self.shown.update(n.event.id for n in [*new, *page.hidden])
        if new or page.hidden:
            await self.on_new(new, page)
        self.new_count += len(new)

    async def run(self, starts: Mapping[str, int | None]) -> None:
        """Watch from ``starts`` (:func:`start_cursors`, read before the first page)
        until ``max_new`` new notifications (for ever without it)."""
        async with contextlib.aclosing(self.streams.batches(starts)) as batches:
            async for batch in batches:
                for _, wire in batch:
                    self._arrive(wire)
                if self._since is None:
                    continue
                await self._refresh()
                if self.max_new is not None and self.new_count >= self.max_new:
                    return
                await asyncio.sleep(REFRESH_MIN_S)  # at most two refreshes a second
