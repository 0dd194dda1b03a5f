"""Reads kept between the pages of a long-running face, exact while no node changed.

``murmur web`` reads the same things page after page: the follow set, the feed, the
author logs that repair its gaps, counts, profiles, labels, account ages. A node's
answers to those reads depend only on what it stores, and every change to what it
stores takes a new stream cursor (spec 0004 #store-cursor, #stream-status: a stored
event, a filled body or a changed status all do). So a :class:`ReadCache` keeps each
node's answers together with the ``(node_id, cursor)`` its ``GET /v1/info`` gave,
and each page first asks every node for its ``/v1/info`` again (one request a node,
in parallel; :meth:`ReadCache.validate`): where the pair is unchanged, the node
stored nothing since, and its kept answers are exactly what it would answer now;
where it changed (or the node did not say), everything kept for it is dropped before
the page reads. A new post, label or follow therefore shows on the next page, as
without the cache (spec 0007 #web-read-cache).

An answer is kept only if no newer validation of its node began while it was asked
(an answer read across a change is never kept), only for read endpoints
(:data:`CACHED_PATHS`), only a ``200`` (or the ``404`` of an event asked by id),
and within :data:`MAX_ENTRIES` and :data:`MAX_BYTES` per node (least recently used
first out). A kept answer is the parsed JSON object, shared and never changed by
whoever reads it; the events in it are still checked by every read (verifying the
same bytes again is what :class:`VerifiedWires` spares).

:class:`VerifiedWires` keeps the events this process verified, keyed by their exact
wire bytes and network: the same bytes verify the same way (a signature over them and
the rules of spec 0002), and an event that passed stays valid later (only a ``ts``
too far in the future fails and later passes), so only successes are kept.

:data:`tally` counts, per page, the requests sent to nodes and the answers taken from
the cache (the web's ``Server-Timing``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from protocol.errors import ProtocolError, RemoteError
from protocol.events import Event

if TYPE_CHECKING:
    from client.api import NodeClient

__all__ = [
    "CACHED_PATHS",
    "KeptDoc",
    "MAX_BYTES",
    "MAX_ENTRIES",
    "MAX_VERIFIED",
    "Answer",
    "NodeAnswers",
    "ReadCache",
    "Tally",
    "VerifiedWires",
    "tally",
]

log = logging.getLogger("murmur.client.readcache")

#: Path prefixes of the reads whose answers are kept (never ``/v1/info``, the
#: validator, nor anything that writes).
CACHED_PATHS: Final = (
    "/v1/feed",
    "/v1/counts",
    "/v1/keys",
    "/v1/authors/",
    "/v1/followers/",
    "/v1/labels",
    "/v1/events",
    "/v1/threads/",
    "/v1/profiles",
)
#: The reads asked with a POST (a long author list, many ids).
_POST_READS: Final = ("/v1/feed", "/v1/counts", "/v1/keys", "/v1/stats", "/v1/authors/events")
#: Answers kept per node, and their bytes per node.
MAX_ENTRIES: Final = 4096
MAX_BYTES: Final = 32 * 1024 * 1024
#: Verified events kept by wire bytes.
MAX_VERIFIED: Final = 50_000

#: A request: method, path, query parameters, body.
Key = tuple[str, str, tuple[tuple[str, str], ...], bytes]


class KeptDoc(dict[str, Any]):
    """A kept answer's JSON object, with what the client parsed out of it (its lists of
    events, by key), so that a page reading it again decodes nothing twice."""

    __slots__ = ("parsed",)

    def __init__(self, doc: dict[str, Any]) -> None:
        super().__init__(doc)
        self.parsed: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Answer:
    """A kept answer: the JSON object a ``200`` carried (shared by every reader of
    it, so never changed), or the ``404`` of an event asked by id; its size in bytes."""

    doc: dict[str, Any] | RemoteError
    size: int


@dataclass(slots=True)
class Tally:
    """One page's requests to nodes and answers taken from the cache."""

    requests: int = 0
    cached: int = 0


#: The current page's tally (None outside a page: nothing is counted).
tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("murmur_tally", default=None)


def count(*, cached: bool) -> None:
    t = tally.get()
    if t is not None:
        if cached:
            t.cached += 1
        else:
            t.requests += 1


def cacheable(method: str, path: str) -> bool:
    if method == "GET":
        return path.startswith(CACHED_PATHS)
    # The POST reads: a feed, counts, key histories.
    return method == "POST" and path in _POST_READS


class NodeAnswers:
    """One node's kept answers, valid for one ``(node_id, cursor)``."""

    def __init__(self, url: str) -> None:
        self.url = url
        #: ``(node_id, cursor)`` of the last validation; None: nothing is served.
        self.snapshot: tuple[str, int] | None = None
        #: Bumped by every validation that changed the snapshot.
        self.generation = 0
        self._entries: OrderedDict[Key, Answer] = OrderedDict()
        self._bytes = 0

        #: The node's stream cursor at the last validation (the page's start), even
        #: when it named no ``node_id`` (then nothing is kept).
        self.cursor: int | None = None

    def validate(self, node_id: str | None, cursor: int | None) -> None:
        snapshot = None if node_id is None or cursor is None else (node_id, cursor)
        if snapshot is None or snapshot != self.snapshot:
            if self._entries:
                log.debug("cache dropped url=%s entries=%d", self.url, len(self._entries))
            self._entries.clear()
            self._bytes = 0
            self.generation += 1
        self.snapshot, self.cursor = snapshot, cursor

    def get(self, key: Key) -> Answer | None:
        if self.snapshot is None:
            return None
        answer = self._entries.get(key)
        if answer is not None:
            self._entries.move_to_end(key)
        return answer

    def put(self, generation: int, key: Key, answer: Answer) -> None:
        """Keep ``answer`` if it was asked under the current snapshot (``generation``)."""
        if self.snapshot is None or generation != self.generation:
            return
        if answer.size > MAX_BYTES // 4:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = answer
        self._bytes += answer.size
        while len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size

    def __len__(self) -> int:
        return len(self._entries)


class VerifiedWires:
    """Events verified by this process, by (network, exact wire bytes); bounded."""

    def __init__(self, limit: int = MAX_VERIFIED) -> None:
        self._limit = limit
        self._events: OrderedDict[tuple[str, bytes], Event] = OrderedDict()

    def get(self, net: str, wire: bytes) -> Event | None:
        return self._events.get((net, wire))

    def keep(self, net: str, wire: bytes, result: Event | ProtocolError) -> None:
        if isinstance(result, Event):
            self._events[(net, wire)] = result
            if len(self._events) > self._limit:
                self._events.popitem(last=False)


class ReadCache:
    """Every node's kept answers and the verified events, for one face's process."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeAnswers] = {}
        self.verified = VerifiedWires()

    def node(self, url: str) -> NodeAnswers:
        answers = self._nodes.get(url)
        if answers is None:
            answers = self._nodes[url] = NodeAnswers(url)
        return answers

    async def validate(self, nodes: Sequence[NodeClient]) -> None:
        """Ask every node its ``/v1/info`` at once; keep each node's answers only if
        its ``(node_id, cursor)`` is unchanged. A node that fails (or answers without
        them) has its answers dropped and none kept until it says again."""

        async def one(node: NodeClient) -> tuple[str | None, int | None]:
            try:
                info = await asyncio.wait_for(node.info(), timeout=node.timeout)
            except (TimeoutError, ProtocolError) as exc:
                log.info("cache not validated url=%s error=%s", node.url, exc)
                return None, None
            node_id, cursor = info.get("node_id"), info.get("cursor")
            ok = isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0
            return (node_id if isinstance(node_id, str) else None), (cursor if ok else None)

        found = await asyncio.gather(*(one(n) for n in nodes))
        for node, (node_id, cursor) in zip(nodes, found, strict=True):
            self.node(node.url).validate(node_id, cursor)

    def cursors(self, urls: Sequence[str]) -> dict[str, int | None]:
        """Each node's stream cursor at its last validation (None where it failed)."""
        return {u: self.node(u).cursor for u in urls}
