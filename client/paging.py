"""Lists merged from several nodes and paged with one cursor (spec 0007 #merged-pages,
#paging): the timeline, search, tags, who reacted, notifications and followers.

Each node pages its own list newest first with its own opaque cursor, and nodes hold
different sets, so no one node's cursor says where a merged page ended. A
:class:`MergedList` reads pages from every node, verifies what each serves through
the :class:`~client.reader.Reader` (signature, key state), merges by id and orders
newest first by ``(ts, seq, id)`` (the order of every view). It only offers events
from the **complete region**: a node not read to its end has served every event of
its own with a ``ts`` above the ``ts`` of the last event it served, so at or below the
highest such ``ts`` among those nodes another event could still come; events there
wait, and the nodes holding the region back are read further, a page at a time,
within a page budget. When that budget is spent and nothing above that ``ts`` is left
to offer, the events *at* it are offered too (never older ones): a run of equal
timestamps longer than the budget then still moves on, and the cursor's passed ids
keep its other events for the next page. While complete events remain the page ends
with them instead (it may be short), since a node out of budget may hold more events
at that ``ts`` that go before these.

Two ways to take a page, one merge and one cursor:

- a **window** (:meth:`MergedList.fill`, :meth:`MergedList.events`): a view reads the
  ``n`` newest complete events and, when the reader's filters hid some, a longer
  window on the same list (spec 0007 #limit-after-moderation);
- **item by item** (:meth:`MergedList.page`): a ``judge`` says of each merged item, in
  order, whether it is shown, hidden by the filters or skipped (not of the list), and
  the page ends after ``limit`` shown ones; hidden and skipped items take no place.

The cursor (:class:`MergedCursor`, ``m1.`` + base64url JSON) holds the **boundary** —
the ``ts`` of the last item the page took and the ids taken at that ``ts`` (every item
newer than it was shown, hidden, or is not of the list) — and, for each node (a hash
of its URL), where to read again: the start of the first page it served that holds an
event not passed (or its ``next`` when it served none; *done* when it was read to its
end). The next page asks each node from there and drops what the boundary passed, so
no item is skipped or repeated whatever each node holds. A node cursor is only ever
sent back to the node that made it. A node missing from a cursor (added since) is read
from its top. A node that fails keeps the position it was given; what only it holds
above the new boundary is then not shown (it is reported as failed).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import enum
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from client.api import NodeClient, WireItem
from client.reader import Reader
from protocol.errors import BadRequestError
from protocol.events import Event

__all__ = [
    "DONE",
    "MAX_NODE_PAGES",
    "Boundary",
    "Judge",
    "Key",
    "MergedCursor",
    "MergedList",
    "Outcome",
    "PageFetch",
    "Paged",
    "boundary_after",
    "key_of",
    "node_key",
    "parse_before",
    "passed",
]

#: Node pages read per node for one page of a list (a bound against floods and liars).
MAX_NODE_PAGES: Final = 10
#: Hex characters of an id kept in a boundary (64 bits: ties are a handful of ids).
BOUNDARY_ID_HEX: Final = 16
#: Most ids one boundary remembers (ties on one millisecond beyond this repeat items).
MAX_BOUNDARY_IDS: Final = 500
#: Longest cursor text accepted (a few nodes' cursors and a boundary).
MAX_CURSOR_CHARS: Final = 16_384
_VERSION: Final = "m1"
#: A node position meaning "read to its end".
DONE: Final = ""

#: ``(ts, seq, id)``: the newest-first order of every list, descending.
Key = tuple[int, int, bytes]


def key_of(e: Event) -> Key:
    return (e.ts, e.seq, e.id)


def node_key(url: str) -> str:
    """A node's short name in a cursor (its URL need not be spelled out)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def _short(eid: bytes) -> str:
    return eid.hex()[:BOUNDARY_ID_HEX]


# -- the cursor -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Boundary:
    """The last item a page passed: its ``ts`` and the ids at that ``ts`` passed."""

    ts: int
    ids: frozenset[str]

    def passed(self, e: Event) -> bool:
        return e.ts > self.ts or (e.ts == self.ts and _short(e.id) in self.ids)


def passed(boundary: Boundary | None, e: Event) -> bool:
    return boundary is not None and boundary.passed(e)


def boundary_after(taken: Sequence[Event], old: Boundary | None) -> Boundary | None:
    """The boundary after a page that took ``taken`` (in order) from below ``old``."""
    if not taken:
        return old
    ts = taken[-1].ts
    ids = {_short(e.id) for e in taken if e.ts == ts}
    if old is not None and old.ts == ts:
        ids |= old.ids
    return Boundary(ts=ts, ids=frozenset(sorted(ids)[:MAX_BOUNDARY_IDS]))


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
            f"--cursor is not a cursor printed by this list ({list_name}): copy it from "
            "the 'more:' line (or the 'cursor' field) of the page before"
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


def parse_before(text: str, list_name: str) -> MergedCursor:
    """``--before WHEN``: a date (``2024-05-01``), a UTC date and time
    (``2024-05-01T12:30``, ``...:SS``, ``Z`` optional) or unix seconds; the list
    starts with the events older than that."""
    raw = text.strip()
    ms: int | None = None
    if raw.isascii() and raw.isdigit() and len(raw) <= 12:
        ms = int(raw) * 1000
    else:
        for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
            try:
                parsed = time.strptime(raw.removesuffix("Z"), fmt)
            except ValueError:
                continue
            ms = calendar.timegm(parsed) * 1000
            break
    if ms is None:
        raise BadRequestError(
            f"--before {text!r} is not a date (2024-05-01), a UTC time "
            "(2024-05-01T12:30) or unix seconds"
        )
    # Passed: everything at or after ms (ts > ms - 1).
    return MergedCursor(list=list_name, nodes={}, boundary=Boundary(ts=ms - 1, ids=frozenset()))


# -- item by item -----------------------------------------------------------------------


class Outcome(enum.Enum):
    """What a page does with one merged item."""

    SHOW = "show"
    HIDE = "hide"  # by the reader's filters: counted in the summary
    SKIP = "skip"  # not part of the list (not about the reader, stale, read...)


#: ``judge(items)``: each item's outcome, in order (called on consecutive runs).
Judge = Callable[[list[Event]], Awaitable[list[Outcome]]]


@dataclass(slots=True)
class Paged:
    """One page taken item by item: every item passed, in order, with its outcome,
    and the cursor of the next page (None on the last)."""

    walked: list[tuple[Event, Outcome]]
    next: MergedCursor | None

    @property
    def shown(self) -> list[Event]:
        return [e for e, o in self.walked if o is Outcome.SHOW]

    @property
    def hidden(self) -> list[Event]:
        return [e for e, o in self.walked if o is Outcome.HIDE]


# -- the merge --------------------------------------------------------------------------

#: One node page: ``(items, next)`` read from ``before`` (None: the top), at most
#: ``limit`` events.
PageFetch = Callable[[NodeClient, str | None, int], Awaitable[tuple[list[WireItem], str | None]]]


@dataclass(slots=True)
class _Page:
    start: str | None
    events: list[Event]
    next: str | None


@dataclass(slots=True)
class _NodeState:
    start: str | None
    done: bool = False
    failed: bool = False
    pages: list[_Page] = field(default_factory=list)
    #: ``ts`` of the last event of the last page read: every event of this node above
    #: it was served.
    last_ts: int | None = None


_UNREAD: Final = 2**63


def _last(s: _NodeState) -> int:
    return _UNREAD if s.last_ts is None else s.last_ts


class MergedList:
    """One merged list over a reader's nodes, from ``cursor`` (None: the newest).

    ``fetch`` reads one node page; ``accept`` says which verified events belong to
    the list (others a node serves are reported as unexpected). At most
    ``max_pages`` pages of at most ``page`` events are read from each node for this
    page of the list.
    """

    def __init__(
        self,
        reader: Reader,
        list_name: str,
        fetch: PageFetch,
        accept: Callable[[Event], bool],
        *,
        cursor: MergedCursor | None = None,
        page: int = 100,
        max_pages: int = MAX_NODE_PAGES,
    ) -> None:
        if cursor is not None and cursor.list != list_name:
            raise BadRequestError(f"--cursor is for {cursor.list}, not {list_name}")
        self.reader = reader
        self.list_name = list_name
        self._fetch = fetch
        self._accept = accept
        self.boundary = None if cursor is None else cursor.boundary
        self._page = page
        self._max_pages = max_pages
        self._incoming: dict[str, str] = {} if cursor is None else dict(cursor.nodes)
        self._states: dict[str, _NodeState] = {}
        for node in reader.nodes:
            position = self._incoming.get(node_key(node.url))
            state = _NodeState(start=position or None, done=position == DONE)
            self._states[node.url] = state
        self._events: dict[bytes, Event] = {}
        #: The nodes that served each event (to report the ones a list should not hold).
        self.served_by: dict[bytes, set[str]] = {}
        #: The nodes holding the region back are out of page budget and nothing above
        #: the horizon is left: the items at it are offered (spec 0007 #merged-pages).
        self._stuck = False

    # -- reading ------------------------------------------------------------------

    def admits(self, e: Event) -> bool:
        """Not passed by an earlier page."""
        return not passed(self.boundary, e)

    def horizon(self) -> int | None:
        """Events with a ``ts`` above this are all here (None: every node is read)."""
        open_ = [_last(s) for s in self._states.values() if not s.done and not s.failed]
        return max(open_) if open_ else None

    def complete(self, e: Event) -> bool:
        h = self.horizon()
        return self.admits(e) and (h is None or e.ts > h or (self._stuck and e.ts == h))

    def events(self) -> list[Event]:
        """The merged events of the complete region, newest first: the reader's copy
        (a body that came later is there; an event its author's key state does not
        show as theirs is not, spec 0008 §8.7)."""
        held = (self.reader.events[i] for i in self._events if i in self.reader.events)
        return sorted((e for e in held if self.complete(e)), key=key_of, reverse=True)

    @property
    def more(self) -> bool:
        """Some node may hold more than was read."""
        return any(not s.done and not s.failed for s in self._states.values())

    def vouched(self, url: str, e: Event) -> bool:
        """Did ``url`` promise ``e`` by how far it was read (spec 0007 #withheld)?"""
        s = self._states.get(url)
        if s is None or s.failed or (not s.pages and not s.done):
            return False
        return self.admits(e) and (s.done or s.last_ts is None or e.ts > s.last_ts)

    async def fill(self, want: int) -> None:
        """Read until ``want`` events are in the complete region, every node is read
        to its end (or failed), or the page budget is spent."""
        while True:
            for url, s in self._states.items():
                if not self.reader.report.node(url).ok:
                    s.failed = True  # it failed earlier in this read: not waited for
            readable = [
                url
                for url, s in self._states.items()
                if not s.done and not s.failed and len(s.pages) < self._max_pages
            ]
            unread = any(not self._states[u].pages for u in readable)
            if not readable or (len(self.events()) >= want and not unread):
                break
            h = self.horizon()
            # The nodes that hold the region back (and those not read yet).
            limiting = {u for u in readable if _last(self._states[u]) == h}
            if not limiting:
                break  # the region is held back by nodes out of page budget
            size = min(self._page, max(want, 20))
            await self.reader.each(functools.partial(self._one, limiting=limiting, size=size))
        h = self.horizon()
        # Items at the horizon are offered only when nothing above it is left to take:
        # a node out of budget may hold more items at that ``ts``, which go (ts, seq,
        # id) before some of those here, so offering them while the page could take
        # complete items instead would put the list out of order across pages.
        self._stuck = (
            h is not None
            and not any(
                _last(s) == h and len(s.pages) < self._max_pages
                for s in self._states.values()
                if not s.done and not s.failed
            )
            and not any(
                e.ts > h and self.admits(e) and i in self.reader.events
                for i, e in self._events.items()
            )
        )

    async def _one(self, node: NodeClient, *, limiting: set[str], size: int) -> None:
        if node.url not in limiting:
            return
        s = self._states[node.url]
        start = s.pages[-1].next if s.pages else s.start
        items, nxt = await self._fetch(node, start, size)
        await self.reader.preverify(items)
        served: list[Event] = []
        for item in items:
            e = self.reader.add(node.url, item, self._accept)
            if e is None:
                continue
            served.append(e)
            self.served_by.setdefault(e.id, set()).add(node.url)
            s.last_ts = e.ts if s.last_ts is None else min(s.last_ts, e.ts)
            if self.admits(e):
                self._events.setdefault(e.id, e)
        s.pages.append(_Page(start=start, events=served, next=nxt))
        if nxt is None or not items:
            s.done = True  # read to its end (an empty page naming a next one counts)
        elif s.last_ts is None:
            # A page of nothing usable (all invalid or not of the list, reported): the
            # node vouches for nothing, and is not waited for.
            s.failed = True

    async def page(
        self, limit: int, judge: Judge, *, stop: Callable[[Event], bool] | None = None
    ) -> Paged:
        """The next ``limit`` shown items, taken item by item: ``judge`` says of each
        merged item, in order, whether it is shown, hidden or skipped (only as many
        are judged as could still be shown); ``stop(e)`` true ends the list before
        ``e`` (nothing older is wanted: no cursor then)."""
        walked: list[tuple[Event, Outcome]] = []
        judged: set[bytes] = set()
        shown, stopped = 0, False
        while shown < limit and not stopped:
            await self.fill(len(judged) + limit - shown)
            batch = [e for e in self.events() if e.id not in judged][: limit - shown]
            if stop is not None:
                cut = next((i for i, e in enumerate(batch) if stop(e)), None)
                if cut is not None:
                    batch, stopped = batch[:cut], True
            if not batch:
                break  # every node read to its end, or out of page budget
            for e, outcome in zip(batch, await judge(batch), strict=True):
                judged.add(e.id)
                walked.append((e, outcome))
                shown += outcome is Outcome.SHOW
        nxt = None if stopped else self.next_cursor([e for e, _ in walked])
        return Paged(walked=walked, next=nxt)

    # -- the next page --------------------------------------------------------------

    def next_cursor(self, taken: Sequence[Event]) -> MergedCursor | None:
        """The cursor after a page that took ``taken`` (its items in order, shown or
        hidden); None when nothing is left."""
        boundary = boundary_after(taken, self.boundary)
        left = any(not passed(boundary, e) for e in self.events())
        if not left and not self.more:
            return None
        nodes: dict[str, str] = {}
        for node in self.reader.nodes:
            key, s = node_key(node.url), self._states[node.url]
            if s.failed or (not s.pages and not s.done):
                # Not read this time: it resumes where it was asked to start.
                if key in self._incoming:
                    nodes[key] = self._incoming[key]
                continue
            resume: str | None = DONE if s.done else s.pages[-1].next
            for p in s.pages:
                if any(not passed(boundary, e) for e in p.events):
                    resume = p.start
                    break
            if resume is not None:
                nodes[key] = resume
        return MergedCursor(list=self.list_name, nodes=nodes, boundary=boundary)
