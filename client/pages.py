"""Newest-first lists merged from every node and paged with one cursor (spec 0007
#merged-pages).

Each node pages a list (notifications, followers) newest first by ``(ts, its own
order)`` with its own opaque cursor, and nodes hold different sets. A
:class:`MergedPager` reads every node lazily, verifies what each serves through the
:class:`~client.reader.Reader` (signature, key state), and merges by ``(ts, id)``
descending: an item is taken only once every node that may still hold a newer one has
been read past it (a k-way merge whose inputs are fetched page by page). A ``judge``
callback says of each item, in order, whether it is shown, hidden or skipped; the page
ends after ``limit`` shown items.

The cursor for the next page (:class:`MergedCursor`) records, per node, where to read
again — the node cursor of the first page of that node holding an item not passed yet,
so nothing is skipped even when one node's page was only partly used — and the
**boundary**: the ``ts`` of the last item passed and the ids at that ``ts`` already
passed, so an item whose ``ts`` ties with the boundary is neither repeated nor lost.
Node cursors never mix: each is only ever sent back to the node that made it. Every
loop is bounded: at most :data:`MAX_NODE_PAGES` pages per node per call.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from client.api import NodeClient, WireItem
from client.reader import Reader
from protocol.errors import BadRequestError
from protocol.events import Event

__all__ = [
    "MAX_NODE_PAGES",
    "Boundary",
    "FetchPage",
    "MergedCursor",
    "MergedPager",
    "Outcome",
    "Paged",
    "node_key",
]

#: Node pages read per node per merged page (a bound against floods and liars).
MAX_NODE_PAGES = 10
#: Hex characters of an id kept in a boundary (64 bits: ties are a handful of ids).
BOUNDARY_ID_HEX = 16
#: Most ids one boundary remembers (ties on one millisecond beyond this repeat items).
MAX_BOUNDARY_IDS = 500
#: Longest cursor text accepted (a few nodes' cursors and a boundary).
MAX_CURSOR_CHARS = 16_384
_VERSION = "m1"
#: A node position meaning "read to its end".
DONE = ""

#: ``fetch(node, before, limit)``: one page of a node's list and its ``next``.
FetchPage = Callable[[NodeClient, str | None, int], Awaitable[tuple[list[WireItem], str | None]]]


class Outcome(enum.Enum):
    """What a page does with one merged item."""

    SHOW = "show"
    HIDE = "hide"  # by the reader's filters: counted in the summary
    SKIP = "skip"  # not part of the list (not about the reader, stale, read...)


def node_key(url: str) -> str:
    """A node's short name in a cursor (its URL need not be spelled out)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def _short(eid: bytes) -> str:
    return eid.hex()[:BOUNDARY_ID_HEX]


@dataclass(frozen=True, slots=True)
class Boundary:
    """The last item a page passed: its ``ts`` and the ids at that ``ts`` passed."""

    ts: int
    ids: frozenset[str]

    def passed(self, e: Event) -> bool:
        return e.ts > self.ts or (e.ts == self.ts and _short(e.id) in self.ids)


def _passed(boundary: Boundary | None, e: Event) -> bool:
    return boundary is not None and boundary.passed(e)


@dataclass(frozen=True, slots=True)
class MergedCursor:
    """Where the next merged page starts: per node key a node cursor (:data:`DONE`:
    read to its end; a node not named starts from its newest), and the boundary.
    ``list`` names the list, so a cursor of one list is refused by another."""

    list: str
    nodes: Mapping[str, str]
    boundary: Boundary | None

    def encode(self) -> str:
        doc: dict[str, object] = {"l": self.list, "n": dict(sorted(self.nodes.items()))}
        if self.boundary is not None:
            doc["b"] = [self.boundary.ts, sorted(self.boundary.ids)]
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return _VERSION + "." + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, list_name: str) -> MergedCursor:
        """The cursor ``text`` printed by an earlier page of ``list_name``; raises
        ``BadRequestError`` for anything else."""
        bad = BadRequestError(
            f"{text[:40]!r} is not a cursor printed by this list; pass the 'next' "
            "cursor of the previous page unchanged"
        )
        version, _, payload = text.strip().partition(".")
        if version != _VERSION or not payload or len(text) > MAX_CURSOR_CHARS:
            raise bad
        try:
            doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (binascii.Error, ValueError):
            raise bad from None
        if not isinstance(doc, dict) or doc.get("l") != list_name:
            raise bad
        nodes = doc.get("n")
        if not isinstance(nodes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 256 for k, v in nodes.items()
        ):
            raise bad
        boundary = None
        if "b" in doc:
            raw = doc["b"]
            if (
                not isinstance(raw, list)
                or len(raw) != 2
                or not isinstance(raw[0], int)
                or isinstance(raw[0], bool)
                or not isinstance(raw[1], list)
                or len(raw[1]) > MAX_BOUNDARY_IDS
                or not all(isinstance(i, str) and len(i) == BOUNDARY_ID_HEX for i in raw[1])
            ):
                raise bad
            boundary = Boundary(ts=raw[0], ids=frozenset(raw[1]))
        return cls(list=list_name, nodes=nodes, boundary=boundary)


@dataclass(slots=True)
class _Page:
    before: str | None  # the node cursor this page was read with (None: the newest)
    keys: list[Event]  # its verified events
    next: str | None


@dataclass(slots=True)
class _Source:
    url: str
    start: str | None
    pages: list[_Page] = field(default_factory=list)
    failed: bool = False

    @property
    def done(self) -> bool:
        return bool(self.pages) and self.pages[-1].next is None

    @property
    def read_from(self) -> str | None:
        return self.pages[-1].next if self.pages else self.start

    def horizon(self) -> float:
        """Every item of this node not read yet has a ``ts`` at most this."""
        if self.done:
            return -math.inf
        if not self.pages or not self.pages[-1].keys:
            return math.inf  # nothing known of what comes next
        return min(e.ts for e in self.pages[-1].keys)

    def position(self, boundary: Boundary | None, walkable: Callable[[Event], bool]) -> str | None:
        """Where to read again for the page after ``boundary`` (None: from the newest):
        the first page holding a ``walkable`` item not passed yet."""
        for page in self.pages:
            if any(walkable(e) and not _passed(boundary, e) for e in page.keys):
                return page.before
        if self.done:
            return DONE
        return self.read_from


@dataclass(slots=True)
class Paged:
    """One merged page: every item passed, in order, with its outcome, and the cursor
    of the next page (None when every node was read to its end)."""

    walked: list[tuple[Event, Outcome]]
    next: MergedCursor | None

    @property
    def shown(self) -> list[Event]:
        return [e for e, o in self.walked if o is Outcome.SHOW]


class MergedPager:
    """Pages of one list merged from every node of ``reader`` (see the module doc).

    ``accept`` is the query's check of a verified event (another kind is dropped as
    ``unexpected-event`` under the node that served it).
    """

    def __init__(
        self,
        reader: Reader,
        list_name: str,
        fetch: FetchPage,
        *,
        accept: Callable[[Event], bool],
        page_size: int = 100,
        max_pages: int = MAX_NODE_PAGES,
    ) -> None:
        self.reader = reader
        self.list = list_name
        self.fetch = fetch
        self.accept = accept
        self.page_size = page_size
        self.max_pages = max_pages
        #: Node urls that served each event (for reports).
        self.served_by: dict[bytes, set[str]] = {}

    async def _read(self, sources: Sequence[_Source]) -> None:
        by_url = {s.url: s for s in sources}

        async def one(node: NodeClient) -> None:
            source = by_url[node.url]
            before = source.read_from
            items, nxt = await self.fetch(node, before, self.page_size)
            await self.reader.preverify(items)
            keys: list[Event] = []
            for item in items:
                e = self.reader.add(node.url, item, self.accept)
                if e is not None:
                    keys.append(e)
                    self.served_by.setdefault(e.id, set()).add(node.url)
            source.pages.append(_Page(before=before, keys=keys, next=nxt))

        await self.reader.each(one, only=by_url)
        for s in sources:
            if not self.reader.report.node(s.url).ok:
                s.failed = True

    async def page(
        self,
        *,
        limit: int,
        cursor: MergedCursor | None,
        judge: Callable[[list[Event]], Awaitable[list[Outcome]]],
        stop: Callable[[Event], bool] | None = None,
    ) -> Paged:
        """The next ``limit`` shown items after ``cursor``. ``judge`` decides each
        item's outcome (called on consecutive runs of items, in order); ``stop(e)``
        true ends the list at ``e`` (nothing older is wanted)."""
        positions = dict(cursor.nodes) if cursor is not None else {}
        boundary = cursor.boundary if cursor is not None else None
        sources: list[_Source] = []
        for node in self.reader.nodes:
            if not self.reader.report.node(node.url).ok:
                continue
            pos = positions.get(node_key(node.url))
            source = _Source(url=node.url, start=pos or None)
            if pos == DONE:
                source.pages.append(_Page(before=None, keys=[], next=None))
            sources.append(source)
        await self._read([s for s in sources if not s.done])
        walked: list[tuple[Event, Outcome]] = []
        seen: set[bytes] = set()
        shown, stopped, full = 0, False, False
        while not (stopped or full):
            live = [s for s in sources if not s.failed]
            horizon = max((s.horizon() for s in live), default=-math.inf)
            pool = {e.id for s in sources for p in s.pages for e in p.keys}
            order = sorted(
                (
                    self.reader.events[i]
                    for i in pool
                    if i in self.reader.events and i not in seen  # canonical, not passed
                ),
                key=lambda e: (e.ts, e.id),
                reverse=True,
            )
            safe = [e for e in order if e.ts > horizon and not _passed(boundary, e)]
            if safe:
                batch = safe[: max(1, limit - shown)]
                for e, outcome in zip(batch, await judge(batch), strict=True):
                    if stop is not None and stop(e):
                        stopped = True
                        break
                    seen.add(e.id)
                    walked.append((e, outcome))
                    shown += outcome is Outcome.SHOW
                    if shown >= limit:
                        full = True
                        break
                continue
            # Nothing can be taken yet: read further the nodes that hold it back.
            behind = [s for s in live if s.horizon() == horizon and not s.done]
            if not behind:
                break  # every node read to its end
            for s in behind:
                if len(s.pages) >= self.max_pages and s.horizon() == math.inf:
                    s.failed = True  # pages of nothing valid: leave it, the cursor skips them
            readable = [s for s in behind if not s.failed and len(s.pages) < self.max_pages]
            if not readable:
                if any(not s.failed for s in behind):
                    break  # bounded: this page ends here, the cursor goes on
                continue
            await self._read(readable)
        return Paged(walked=walked, next=self._next(sources, boundary, walked, stopped))

    def _next(
        self,
        sources: list[_Source],
        boundary: Boundary | None,
        walked: list[tuple[Event, Outcome]],
        stopped: bool,
    ) -> MergedCursor | None:
        if walked:
            last = walked[-1][0]
            ids = {_short(e.id) for e, _ in walked if e.ts == last.ts}
            if boundary is not None and boundary.ts == last.ts:
                ids |= boundary.ids
            boundary = Boundary(ts=last.ts, ids=frozenset(sorted(ids)[:MAX_BOUNDARY_IDS]))
        nodes: dict[str, str] = {}
        for s in sources:
            pos = s.position(boundary, lambda e: e.id in self.reader.events)
            if pos is not None:
                nodes[node_key(s.url)] = pos
        if stopped:
            return None
        if all(nodes.get(node_key(s.url)) == DONE for s in sources if not s.failed):
            return None  # every node that answered was read to its end
        return MergedCursor(list=self.list, nodes=nodes, boundary=boundary)
