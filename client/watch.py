"""Following the reader's nodes live: new posts of the people followed as they come
(spec 0007 #watch).

:class:`TimelineWatch` holds one ``GET /v1/stream`` per node (spec 0004 #stream),
asking for posts, reposts and deletes of the followed authors from the cursor each
node had when the watch began (read with ``/v1/info`` before the page shown first,
so nothing posted in between is missed; ids already shown are not shown again). A
stream that fails or ends (nodes end streams after a lifetime) is opened again from
the last cursor it delivered, after a backoff that doubles from
:data:`BACKOFF_MIN_S` to :data:`BACKOFF_MAX_S` (back to the minimum once a stream
delivered, or ended cleanly). Every event is verified through the reader (signature,
key state) and must be a post or repost of a followed author that no held delete
removed; the batches that come together are one small view (references, profiles,
counts) for the caller to moderate and print. Memory is bounded: at most
:data:`MAX_QUEUE` events wait, and the ids remembered are capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Final

from client.api import NodeClient, WireItem
from client.labeler.sse import SseParser, stream_event
from client.paging import key_of
from client.reader import Reader
from client.views import TIMELINE_KINDS, View, _finish
from protocol import kinds
from protocol.errors import ProtocolError
from protocol.events import Event

__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "TimelineWatch"]

log = logging.getLogger("murmur.client.watch")

BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
#: A stream silent this long is dead (a node heartbeats every 15 s by default).
STREAM_IDLE_S: Final = 45.0
#: Events received and not yet verified; a stream waits when it is full.
MAX_QUEUE: Final = 1000
#: Events verified and shown together.
MAX_BATCH: Final = 200
#: Ids remembered as shown; beyond it the oldest half is forgotten.
MAX_SEEN: Final = 100_000
#: Followed authors named in the stream request; more, and the stream carries every
#: author's events and the watch keeps the followed ones (a long query string is
#: refused by many servers).
MAX_STREAM_AUTHORS: Final = 50
_KINDS: Final = (kinds.POST, kinds.REPOST, kinds.DELETE)


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
    ) -> None:
        self.reader = reader
        self.authors = sorted(set(follows) | {me})
        self._wanted = set(self.authors)
        self.cursors: dict[str, int | None] = dict(starts)
        self._seen: dict[str, None] = dict.fromkeys(seen)
        #: Stream failures per node url (the last error code), for reports.
        self.failures: dict[str, str] = {}

    @staticmethod
    async def start_cursors(nodes: Sequence[NodeClient]) -> dict[str, int | None]:
        """Each node's current stream cursor (``/v1/info``); None where it failed:
        that stream starts at the node's head when it opens."""

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

    async def views(self) -> AsyncIterator[View]:
        """Views of new items, as they come, until cancelled."""
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(MAX_QUEUE)
        tasks = [asyncio.create_task(self._follow(n, queue)) for n in self.reader.nodes]
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                view = await self.take(batch)
                if view.items:
                    yield view
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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
            if e is not None and e.author in self._wanted and e.kind in _KINDS:
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

    def _params(self, cursor: int | None) -> list[tuple[str, str | int]]:
        params: list[tuple[str, str | int]] = [("kinds", ",".join(_KINDS))]
        if len(self.authors) <= MAX_STREAM_AUTHORS:
            params.append(("authors", ",".join(self.authors)))
        if cursor is not None:
            params.append(("cursor", cursor))
        return params

    async def _follow(self, node: NodeClient, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        delay = BACKOFF_MIN_S
        while True:
            clean = False
            parser = SseParser()
            try:
                async for chunk in node.stream_chunks(
                    self._params(self.cursors.get(node.url)), idle_s=STREAM_IDLE_S
                ):
                    for message in parser.feed(chunk):
                        if message.event != "event":
                            continue
                        wire, cursor = stream_event(message)
                        last = self.cursors.get(node.url)
                        if last is None or cursor > last:
                            self.cursors[node.url] = cursor
                            await queue.put((node.url, wire))
                            delay = BACKOFF_MIN_S
                    self._note_start(node.url, parser.comments)
                    parser.comments.clear()
                clean = True  # the node ended the stream (its lifetime): resume now
            except ProtocolError as exc:
                self.failures[node.url] = exc.code
                log.warning("stream failed url=%s code=%s", node.url, exc.code)
            if clean:
                delay = BACKOFF_MIN_S
            await asyncio.sleep(delay)  # backoff before reconnecting, not synchronisation
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _note_start(self, url: str, comments: list[str]) -> None:
        """A stream opened at the node's head says where (``: cursor=N``): resume there."""
        if self.cursors.get(url) is not None:
            return
        for c in comments:
            if c.startswith("cursor="):
                with contextlib.suppress(ValueError):
                    self.cursors[url] = int(c.removeprefix("cursor="))
