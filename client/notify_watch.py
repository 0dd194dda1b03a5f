"""``murmur notifications --watch``: new notifications as they reach the reader's nodes
(spec 0007 #notifications-watch).

Each node's live stream (``GET /v1/stream``, spec 0004 #stream) is followed from the
cursor its ``/v1/info`` gave *before* the first page was read, so nothing that arrives
in between is missed (what the page showed is not shown again). A streamed event that
could concern the reader (a post that replies, quotes or mentions them, any like or
repost, a follow of them; never the reader's own) wakes a refresh: the notifications
are read again from every node through the same :class:`~client.notifications.Notifier`
(verified, checked, moderated), keeping only events that arrived on a stream during
the watch and were not shown yet, down to the oldest ``ts`` among the new arrivals.
The node's index decides what is worth a look; the client's checks decide what is
shown. Streams reconnect: at once, by cursor, after a clean end (a node ends every
stream after its lifetime); after a failure with a doubling delay, and a node whose
stream failed :data:`MAX_STREAM_FAILURES` times in a row is given up (reported). The
watch ends when every stream was given up, after ``max_new`` notifications, or on
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from client.api import NodeClient
from client.errors import BadResponseError, NodeUnreachableError
from client.labeler.sse import SseParser, stream_event
from client.notifications import Notification, NotificationPage, Notifier
from protocol import kinds
from protocol.errors import BadFieldError, ProtocolError
from protocol.events import Event, decode_event
from protocol.facets import mentioned_dids

__all__ = [
    "MAX_ARRIVALS",
    "MAX_STREAM_FAILURES",
    "Watcher",
    "could_notify",
]

log = logging.getLogger("murmur.client.notify_watch")

#: Kinds asked of the stream.
STREAM_KINDS: Final = (kinds.POST, kinds.LIKE, kinds.REPOST, kinds.FOLLOW)
#: Consecutive failed streams of one node before it is given up.
MAX_STREAM_FAILURES: Final = 8
#: Reconnect delay after a failure, doubling from min to max.
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
#: A stream silent this long is dead (a live node heartbeats every 15 s).
STREAM_IDLE_S: Final = 60.0
#: Ids of streamed candidates remembered (the newest).
MAX_ARRIVALS: Final = 10_000
#: Notifications read per refresh, and the shortest time between two refreshes.
REFRESH_LIMIT: Final = 50
REFRESH_MIN_S: Final = 0.5

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


def _older_than(since: int | None) -> Callable[[Event], bool]:
    """A refresh's end: nothing older than the oldest new arrival can be new."""
    return lambda e: since is not None and e.ts < since


async def head_cursors(nodes: Sequence[NodeClient]) -> dict[str, int]:
    """Each node's current stream cursor (``/v1/info``); a node that fails is left out."""

    async def one(node: NodeClient) -> tuple[str, int | None]:
        try:
            cursor = (await node.info()).get("cursor")
        except ProtocolError as exc:
            log.warning("watch: no cursor url=%s code=%s", node.url, exc.code)
            return node.url, None
        ok = isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0
        return node.url, cursor if ok else None

    found = await asyncio.gather(*(one(n) for n in nodes))
    return {url: c for url, c in found if c is not None}


class Watcher:
    """Follows every node's stream and reports new notifications (see the module doc).

    ``on_new(new, page)`` gets the new shown notifications and the refresh's page
    (whose ``hidden`` the filters hid); ``shown`` are the ids shown already.
    """

    def __init__(
        self,
        nodes: Sequence[NodeClient],
        me: str,
        make: MakeNotifier,
        on_new: Callable[[list[Notification], NotificationPage], Awaitable[None]],
        *,
        net: str,
        shown: set[bytes] | None = None,
        max_new: int | None = None,
        idle_s: float = STREAM_IDLE_S,
        max_failures: int = MAX_STREAM_FAILURES,
    ) -> None:
        self.nodes = list(nodes)
        self.me = me
        self.make = make
        self.on_new = on_new
        self.net = net
        self.shown: set[bytes] = set(shown or ())
        self.max_new = max_new
        self.idle_s = idle_s
        self.max_failures = max_failures
        self.arrived: OrderedDict[bytes, int] = OrderedDict()
        self.new_count = 0
        self.gave_up: dict[str, str] = {}
        #: Set once every node's stream answered (or was given up): for tests and
        #: callers that want to know the watch is live.
        self.ready = asyncio.Event()
        self._connected: set[str] = set()
        self._wake = asyncio.Event()
        self._since: int | None = None
        self._done = asyncio.Event()

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
        self._wake.set()

    def _connected_to(self, url: str) -> None:
        self._connected.add(url)
        if self._connected | set(self.gave_up) >= {n.url for n in self.nodes}:
            self.ready.set()

    async def _follow(self, node: NodeClient, cursor: int) -> None:
        failures, delay = 0, BACKOFF_MIN_S
        params_kinds = ",".join(STREAM_KINDS)
        while failures < self.max_failures:
            parser = SseParser()
            progressed = closed = False
            try:
                params: list[tuple[str, str | int]] = [("cursor", cursor), ("kinds", params_kinds)]
                async for chunk in node.stream_chunks(params, idle_s=self.idle_s):
                    self._connected_to(node.url)
                    for message in parser.feed(chunk):
                        if message.event != "event":
                            continue
                        wire, at = stream_event(message)
                        cursor = max(cursor, at)
                        progressed = True
                        self._arrive(wire)
                    closed |= any(c.startswith("closing reason=") for c in parser.comments)
                    parser.comments.clear()
            except (ProtocolError, BadResponseError) as exc:
                failures += 1
                log.warning(
                    "watch: stream failed url=%s code=%s failures=%d", node.url, exc.code, failures
                )
                self.gave_up[node.url] = exc.message
            else:
                if progressed or closed:
                    failures, delay = 0, BACKOFF_MIN_S
                    self.gave_up.pop(node.url, None)
                    continue  # a clean end: resume at once, by cursor
                failures += 1  # ended without a word: as bad as a failure
                self.gave_up[node.url] = "the stream ended at once"
            if failures >= self.max_failures:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
        self._connected.discard(node.url)
        self._connected_to(node.url)  # counted as given up
        log.warning("watch: gave up url=%s", node.url)

    async def _refresh(self) -> None:
        while not self._done.is_set():
            await self._wake.wait()
            self._wake.clear()
            since, self._since = self._since, None

            def keep(e: Event) -> bool:
                return e.id in self.arrived and e.id not in self.shown

            try:
                page = await self.make(keep).page(limit=REFRESH_LIMIT, stop=_older_than(since))
            except ProtocolError as exc:
                log.warning("watch: refresh failed code=%s", exc.code)
                await asyncio.sleep(REFRESH_MIN_S)
                self._wake.set()  # try again
                continue
            new = [n for n in reversed(page.shown) if n.event.id not in self.shown]
            if self.max_new is not None:
                new = new[: max(0, self.max_new - self.new_count)]
            self.shown.update(n.event.id for n in [*new, *page.hidden])
            if new or page.hidden:
                await self.on_new(new, page)
            self.new_count += len(new)
            if self.max_new is not None and self.new_count >= self.max_new:
                self._done.set()
                return
            await asyncio.sleep(REFRESH_MIN_S)

    async def run(self, cursors: dict[str, int]) -> None:
        """Watch from ``cursors`` (:func:`head_cursors`, read before the first page)
        until ``max_new`` new notifications, or raise ``node-unreachable`` when every
        stream was given up."""
        followed = [n for n in self.nodes if n.url in cursors]
        for n in self.nodes:
            if n.url not in cursors:
                self.gave_up[n.url] = "no stream cursor"
        if not followed:
            raise NodeUnreachableError("no node can be watched: none gave its stream cursor")
        streams = [asyncio.create_task(self._follow(n, cursors[n.url])) for n in followed]
        refresher = asyncio.create_task(self._refresh())
        all_streams = asyncio.gather(*streams)
        done_waiter = asyncio.create_task(self._done.wait())
        try:
            waited: set[asyncio.Future[Any]] = {done_waiter, all_streams, refresher}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            failed = refresher.exception() if refresher.done() else None
            if failed is not None:
                raise failed
            if not self._done.is_set():
                raise NodeUnreachableError(
                    "every node's stream failed: "
                    + "; ".join(f"{u}: {m}" for u, m in sorted(self.gave_up.items()))
                )
        finally:
            for task in [*streams, refresher, done_waiter]:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*streams, refresher, done_waiter, return_exceptions=True)
