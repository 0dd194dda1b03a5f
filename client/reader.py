"""Multi-node verified reading: fetch concurrently, verify, merge, repair, report.

A :class:`Reader` asks every node the same question at once, each under its own
deadline (a node that times out is skipped for the rest of the read, so a slow node
costs one timeout, not one per phase). Every event is checked with
``protocol.events.decode_event`` from its ``wire`` bytes alone (a key event whose
exact bytes this home verified before skips only its signature check:
:mod:`client.keycache`); what fails is dropped and listed under the node that served
it. Verified events are merged by id (a copy with a body beats a header-only one).
Events of a ``did:murmur`` author (v2) stay in the merged set only while their
author's key state says they are canonical
(:mod:`client.keyview`, spec 0008 §8.7). Per author, ``protocol.chain.analyze_chain``
finds the seqs that must exist between the ones held; those gaps are asked of every
node through the author-log endpoint (bounded rounds, bounded seqs). Finally each view
says which merged events each node *should* have served, and what it did not serve is
that node's ``withheld`` list. Spec: specs/0007-client.md §read.

A reader given a :class:`~client.fanout.Cut` (the reads a command makes before it
signs) does not wait for a slow node once enough others answered: each fan-out ends
``grace`` seconds after ``quorum`` nodes answered, and a node still silent then is
cut (``node-timeout``) and not asked again by that read; :meth:`Reader.find` ends at
the first node that serves the verified event (spec 0007 #slow-lookups).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from client.api import DEFAULT_TIMEOUT_S, MAX_IDS_REQUEST, NodeClient, WireItem
from client.errors import NodeTimeoutError, NoNodeAnsweredError, NoNodesError
from client.fanout import Cut, until_quorum
from client.keycache import KeyCache, verify_cached, verify_cached_sync
from client.keyview import Excluded, KeyTracker
from client.readcache import VerifiedWires
from client.textsafety import safe_line
from protocol import kinds
from protocol.chain import analyze_chain
from protocol.errors import ProtocolError, RemoteError
from protocol.events import DEFAULT_NETWORK, Event

if TYPE_CHECKING:
    from client.moves import Move

__all__ = [
    "MAX_FEED_PAGES",
    "MAX_LABELS",
    "MAX_LOG_PAGES",
    "MAX_REPAIR_ROUNDS",
    "MAX_REPAIR_SEQS",
    "NodeReport",
    "ReadReport",
    "Reader",
    "latest_by_seq",
    "reply_root",
]

log = logging.getLogger("murmur.client.reader")

#: Bounds on every loop of a read (spec 0007 §bounds).
MAX_LOG_PAGES = 20
MAX_FEED_PAGES = 10
MAX_THREAD_PAGES = 10
MAX_REPAIR_ROUNDS = 2
MAX_REPAIR_SEQS = 500
#: Ranges in one ``POST /v1/authors/events`` (spec 0004 #author-ranges).
MAX_BATCH_RANGES = 200
#: Batch requests one node answers in one repair round (each serves up to PAGE events).
MAX_BATCH_PAGES = 16
MAX_LOOKUPS = 100
MAX_FEED_AUTHORS = 500  # spec 0004 default max_feed_authors
MAX_LABELS = 2000  # label events read per labeler per node
PAGE = 500


@dataclass(slots=True)
class NodeReport:
    """What one node did during a read."""

    url: str
    error: ProtocolError | None = None
    #: True once the node completed at least one request of the read (spec 0007 #no-answer).
    answered: bool = False
    served: set[bytes] = field(default_factory=set)
    #: Ids of the served events that came without their body (spec 0007 #withheld-body).
    bodyless: set[bytes] = field(default_factory=set)
    withheld: list[Event] = field(default_factory=list)
    invalid: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "error": None
            if self.error is None
            else {"code": self.error.code, "message": self.error.message},
            "served": len(self.served),
            "withheld": [
                {"author": e.author, "seq": e.seq, "id": e.id_hex, "kind": e.kind}
                for e in sorted(self.withheld, key=lambda e: (e.author, e.seq, e.id))
            ],
            "invalid": self.invalid,
        }


@dataclass(slots=True)
class ReadReport:
    """Per-node reports plus what the merged chains say (unrepaired gaps, forks)."""

    nodes: list[NodeReport]
    gaps: list[dict[str, Any]] = field(default_factory=list)
    forks: list[dict[str, Any]] = field(default_factory=list)
    #: Events of did:murmur authors not shown as theirs: revoked, disputed or pending
    #: by their key state (spec 0008 §8.7), with why. Shared with the read's tracker.
    excluded: dict[bytes, Excluded] = field(default_factory=dict)
    #: Moves of followed did:keys, by the did:key (spec 0008 #move, :mod:`client.moves`).
    moves: dict[str, Move] = field(default_factory=dict)
    #: Gaps the repair filled: ``{"author", "seqs", "by"}`` (the nodes that served the
    #: missing events; spec 0007 #repair).
    repaired: list[dict[str, Any]] = field(default_factory=list)

    def require_answer(self) -> None:
        """Raise ``NoNodeAnsweredError`` if nodes were asked and none answered any request.

        Spec 0007 #no-answer: an empty view from nodes that all failed would read as "there
        is nothing", so the read fails instead; one answering node is enough to go on (the
        others are reported).
        """
        failed = [n for n in self.nodes if n.error is not None]
        if not failed or any(n.answered for n in self.nodes):
            return
        # Each node's words on one line: a node's message is not the client's to print.
        reasons = "; ".join(
            f"{n.error.code}: {safe_line(n.error.message)}" for n in failed if n.error
        )
        raise NoNodeAnsweredError(
            f"no node answered the read ({len(failed)} tried): {reasons}. Check the node "
            "URLs and that the nodes are up"
        )

    def node(self, url: str) -> NodeReport:
        for n in self.nodes:
            if n.url == url:
                return n
        raise KeyError(url)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_json() for n in self.nodes],
            "gaps": self.gaps,
            "forks": self.forks,
            "moves": [self.moves[d].to_json() for d in sorted(self.moves)],
            "excluded": [
                x.to_json()
                for x in sorted(
                    self.excluded.values(), key=lambda x: (x.event.author, x.event.seq, x.event.id)
                )
            ],
        }


def latest_by_seq(events: Iterable[Event]) -> Event | None:
    """Spec 0003 §3.1 "latest": highest seq, then greatest id."""
    best: Event | None = None
    for e in events:
        if best is None or (e.seq, e.id) > (best.seq, best.id):
            best = e
    return best


class MergedEvents(dict[bytes, Event]):
    """The merged events by id, also indexed by author (:meth:`Reader.of_author` is
    asked for every author of a page, often: a scan each time was a page's largest
    cost in ``murmur bench web``). Only ``[]=``, ``del`` and ``pop`` change it."""

    def __init__(self) -> None:
        super().__init__()
        self.by_author: dict[str, dict[bytes, Event]] = {}

    def __setitem__(self, key: bytes, value: Event) -> None:
        old = self.get(key)
        if old is not None and old.author != value.author:
            self.by_author[old.author].pop(key, None)
        super().__setitem__(key, value)
        self.by_author.setdefault(value.author, {})[key] = value

    def __delitem__(self, key: bytes) -> None:
        event = self[key]
        super().__delitem__(key)
        self.by_author.get(event.author, {}).pop(key, None)

    def pop(self, key: bytes, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        event = self[key]
        del self[key]
        return event

    def _unsupported(self, *args: object, **kwargs: object) -> Any:
        raise TypeError("MergedEvents changes only by []=, del and pop")

    update = setdefault = popitem = clear = __ior__ = _unsupported


class Reader:
    """One read session over a set of nodes; holds the merged, verified events."""

    def __init__(
        self,
        nodes: Sequence[NodeClient],
        *,
        net: str = DEFAULT_NETWORK,
        timeout: float = DEFAULT_TIMEOUT_S,
        keycache: KeyCache | None = None,
        cut: Cut | None = None,
        verified: VerifiedWires | None = None,
    ) -> None:
        if not nodes:
            raise NoNodesError("no node configured: add one with 'murmur nodes add URL'")
        self.nodes = list(nodes)
        self.net = net
        self.timeout = timeout
        self.events = MergedEvents()
        self.report = ReadReport(nodes=[NodeReport(url=n.url) for n in self.nodes])
        self._verified: dict[bytes, Event | ProtocolError] = {}
        #: Events this process verified before, by exact wire bytes (a long-running
        #: face, :mod:`client.readcache`): not verified again.
        self.verified = verified
        #: Key events verified by earlier reads of this home (spec 0007 #key-status).
        self.keycache = keycache
        #: Key state of the did:murmur authors read (spec 0008 #clients).
        self.keys = KeyTracker(self)
        self.report.excluded = self.keys.excluded
        #: When fan-outs go on without slow nodes (spec 0007 #slow-lookups); None:
        #: every node is waited for up to the timeout.
        self.cut = cut

    # -- merging ------------------------------------------------------------------

    async def preverify(self, items: Sequence[WireItem]) -> None:
        """Verify a page's new events together, over the CPUs, before :meth:`add`
        merges them one by one (which then finds them verified)."""
        fresh = list(
            {
                i.wire
                for i in items
                if i.wire is not None and i.wire not in self._verified and not self._known(i.wire)
            }
        )
        if len(fresh) > 1 or (fresh and self.keycache is not None):
            checked = await verify_cached(fresh, self.keycache, net=self.net)
            for wire, result in zip(fresh, checked, strict=True):
                self._verified[wire] = result
                if self.verified is not None:
                    self.verified.keep(self.net, wire, result)

    def _known(self, wire: bytes) -> bool:
        """Whether this process verified ``wire`` before (then it is taken as verified)."""
        if self.verified is None:
            return False
        event = self.verified.get(self.net, wire)
        if event is None:
            return False
        self._verified[wire] = event
        return True

    def add(
        self, url: str, item: WireItem, accept: Callable[[Event], bool] | None = None
    ) -> Event | None:
        """Verify ``item`` served by ``url``; merge it if valid and ``accept``-ed."""
        report = self.report.node(url)
        if item.wire is None:
            report.invalid.append(
                {
                    "id": item.claimed_id,
                    "code": "malformed",
                    "message": "the event has no usable wire bytes",
                }
            )
            return None
        cached = self._verified.get(item.wire)
        if cached is None and self._known(item.wire):
            cached = self._verified[item.wire]
        if cached is None:
            (cached,) = verify_cached_sync([item.wire], self.keycache, net=self.net)
            self._verified[item.wire] = cached
            if self.verified is not None:
                self.verified.keep(self.net, item.wire, cached)
        if isinstance(cached, ProtocolError):
            report.invalid.append(
                {"id": item.claimed_id, "code": cached.code, "message": cached.message}
            )
            return None
        event = cached
        if accept is not None and not accept(event):
            report.invalid.append(
                {
                    "id": event.id_hex,
                    "code": "unexpected-event",
                    "message": "the node served an event the query excludes",
                }
            )
            return None
        report.served.add(event.id)
        if event.body is None:
            report.bodyless.add(event.id)
        held = self.events.get(event.id)
        if held is None or (held.body is None and event.body is not None):
            self.events[event.id] = event
        merged = self.events[event.id]
        if merged.key is not None:  # v2: the key state decides if it is the author's
            self.keys.note(merged)
        return merged

    def of_author(self, did: str) -> list[Event]:
        return list(self.events.by_author.get(did, {}).values())

    def deleted_ids(self) -> set[bytes]:
        """Targets of held, verified deletes by their own author (spec 0003 §3.8)."""
        out: set[bytes] = set()
        for d in self.events.values():
            if d.kind != kinds.DELETE or d.body is None:
                continue
            target = self.events.get(d.body["target"])
            if target is None or target.author == d.author:
                if target is not None and target.kind == kinds.DELETE:
                    continue  # a delete of a delete has no effect
                out.add(d.body["target"])
        return out

    # -- fan-out ------------------------------------------------------------------

    async def each(
        self, fn: Callable[[NodeClient], Awaitable[None]], *, only: Container[str] | None = None
    ) -> None:
        """Run ``fn`` on every healthy node (whose url is in ``only``, if given) at
        once, each within the timeout (with a :attr:`cut`, until it says to stop)."""
        if self.cut is not None:
            nodes = [
                n
                for n in self.nodes
                if self.report.node(n.url).ok and (only is None or n.url in only)
            ]
            await self._each_cut(fn, nodes, self.cut)
            await self.keys.settle()
            return

        async def run(node: NodeClient) -> None:
            report = self.report.node(node.url)
            try:
                await asyncio.wait_for(fn(node), timeout=self.timeout)
                report.answered = True
            except TimeoutError:
                report.error = NodeTimeoutError(
                    f"{node.url} did not answer within {self.timeout:g} s", url=node.url
                )
            except ProtocolError as exc:
                report.error = exc
            if report.error is not None:
                log.info("node failed url=%s code=%s", node.url, report.error.code)

        await asyncio.gather(
            *(
                run(n)
                for n in self.nodes
                if self.report.node(n.url).ok and (only is None or n.url in only)
            )
        )
        # Whatever came in, a did:murmur author's events count only once their key
        # state says they are canonical (spec 0008 §8.7).
        await self.keys.settle()

    async def _each_cut(
        self, fn: Callable[[NodeClient], Awaitable[None]], nodes: list[NodeClient], cut: Cut
    ) -> None:
        """:meth:`each` under ``cut``: the nodes still silent ``cut.grace`` after
        ``cut.quorum`` of them answered are cut and reported (spec 0007 #slow-lookups)."""

        async def call(node: NodeClient) -> bool:
            await fn(node)
            return True

        loop = asyncio.get_running_loop()
        quorum = max(1, min(cut.quorum, len(nodes)))
        results, met = await until_quorum(
            {n.url: call(n) for n in nodes},
            quorum=quorum,
            ok=bool,
            deadline=loop.time() + self.timeout,
            grace=cut.grace,
        )
        for node in nodes:
            self._settle_node(node.url, results[node.url], met=met, quorum=quorum, cut=cut)

    def _settle_node(
        self, url: str, result: object, *, met: bool, quorum: int, cut: Cut | None
    ) -> None:
        """Record one node's part in a cut fan-out: answered, its error, or cut."""
        report = self.report.node(url)
        if isinstance(result, ProtocolError):
            report.error = result
        elif result is not None:
            report.answered = True
            return
        elif met and cut is not None:
            report.error = NodeTimeoutError(
                f"{url} did not answer within {cut.grace:g} s of {quorum} other node(s) "
                "answering; not consulted",
                url=url,
            )
        else:
            report.error = NodeTimeoutError(
                f"{url} did not answer within {self.timeout:g} s", url=url
            )
        log.info("node failed url=%s code=%s", url, report.error.code)

    # -- author logs and gap repair ------------------------------------------------

    async def fetch_log(
        self,
        did: str,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        max_pages: int = MAX_LOG_PAGES,
    ) -> None:
        """Fetch ``did``'s log in ``[from_seq, to_seq]`` from every node."""

        def accept(e: Event) -> bool:
            return e.author == did and e.seq >= from_seq and (to_seq is None or e.seq <= to_seq)

        async def one(node: NodeClient) -> None:
            start: int | None = from_seq
            for _ in range(max_pages):
                assert start is not None  # noqa: S101 - loop invariant
                items, start = await node.author_events(
                    did, from_seq=start, to_seq=to_seq, limit=PAGE
                )
                await self.preverify(items)
                for item in items:
                    self.add(node.url, item, accept)
                if start is None or (to_seq is not None and start > to_seq):
                    return

        await self.each(one)

    async def _ranges_of(self, node: NodeClient, ranges: list[tuple[str, int, int]]) -> None:
        """Ask ``node`` for every seq range ``(did, first, last)``: batched (``POST
        /v1/authors/events``, spec 0004 #author-ranges), each range followed for at most
        2 pages of its own as :meth:`fetch_log` would; range by range with the author
        log endpoint on a node without the batch."""
        todo = [(d, a, b, 0) for d, a, b in ranges]
        for _ in range(MAX_BATCH_PAGES):
            if not todo:
                return
            chunk, todo = todo[:MAX_BATCH_RANGES], todo[MAX_BATCH_RANGES:]
            logs = await node.author_ranges([(d, a, b) for d, a, b, _ in chunk], limit=PAGE)
            if logs is None:  # an older node: one author log request a range
                for d, a, b, _ in [*chunk, *todo]:
                    await self._log_of(node, d, a, b, max_pages=2)
                return
            items = [item for lg in logs for item in lg.items]
            await self.preverify(items)
            progress = False
            for (did, first, last, pages), lg in zip(chunk, logs, strict=True):

                def accept(e: Event, did: str = did, first: int = first, last: int = last) -> bool:
                    return e.author == did and first <= e.seq <= last

                for item in lg.items:
                    self.add(node.url, item, accept)
                nxt = lg.next_from_seq
                if lg.items:
                    progress, pages = True, pages + 1
                if nxt is not None and nxt <= last and pages < 2:
                    todo.append((did, max(nxt, first), last, pages))
            if not progress and todo and all(r in chunk for r in todo):
                return  # the node served nothing of what is left: stop asking it

    async def _log_of(
        self, node: NodeClient, did: str, first: int, last: int | None, *, max_pages: int
    ) -> None:
        def accept(e: Event) -> bool:
            return e.author == did and e.seq >= first and (last is None or e.seq <= last)

        start: int | None = first
        for _ in range(max_pages):
            assert start is not None  # noqa: S101 - loop invariant
            items, start = await node.author_events(did, from_seq=start, to_seq=last, limit=PAGE)
            await self.preverify(items)
            for item in items:
                self.add(node.url, item, accept)
            if start is None or (last is not None and start > last):
                return

    async def repair_all(self, lows: dict[str, int]) -> None:
        """:meth:`repair` of many authors at once (each above its ``low``): every round
        asks each node for the gaps of all of them in batched requests (spec 0007
        #repair-batch), not one author log request per author and node. The same
        bounds: at most 2 rounds and 500 seqs per author; an author whose round found
        nothing new is not asked again."""
        active = dict(lows)
        for _ in range(MAX_REPAIR_ROUNDS):
            gaps_of: dict[str, list[tuple[int, int]]] = {}
            ranges: list[tuple[str, int, int]] = []
            for did, low in sorted(active.items()):
                gaps = self._gaps(did, low)
                if not gaps:
                    continue
                gaps_of[did] = gaps
                ranges += [(did, first, last) for first, last in _within_budget(gaps)]
            if not ranges:
                return
            held = set(self.events)
            counts = {did: len(self.of_author(did)) for did in gaps_of}
            log.debug("repair authors=%d ranges=%d", len(gaps_of), len(ranges))

            async def one(node: NodeClient, ranges: list[tuple[str, int, int]] = ranges) -> None:
                await self._ranges_of(node, ranges)

            await self.each(one)
            active = {}
            for did, gaps in gaps_of.items():
                self._note_repair(did, gaps, held)
                if len(self.of_author(did)) != counts[did]:
                    active[did] = lows[did]

    async def repair(self, did: str, *, low: int = 1) -> None:
        """Ask every node for the seqs missing from ``did``'s chain above ``low``."""
        for _ in range(MAX_REPAIR_ROUNDS):
            gaps = self._gaps(did, low)
            if not gaps:
                return
            before = len(self.events)
            held = set(self.events)
            for first, last in _within_budget(gaps):
                log.debug("repair author=%s seqs=%d-%d", did, first, last)
                await self.fetch_log(did, from_seq=first, to_seq=last, max_pages=2)
            self._note_repair(did, gaps, held)
            if len(self.events) == before:
                return

    def _note_repair(self, did: str, gaps: list[tuple[int, int]], held: set[bytes]) -> None:
        """Record the events of ``did`` in ``gaps`` that the repair brought in."""
        filled = [
            e
            for i, e in self.events.items()
            if i not in held and e.author == did and any(a <= e.seq <= b for a, b in gaps)
        ]
        if filled:
            by = [n.url for n in self.report.nodes if any(e.id in n.served for e in filled)]
            seqs = sorted({e.seq for e in filled})
            self.report.repaired.append({"author": did, "seqs": seqs, "by": by})

    def _gaps(self, did: str, low: int) -> list[tuple[int, int]]:
        chain = analyze_chain(self.of_author(did))
        return [(max(a, low), b) for a, b in chain.gaps if b >= low]

    def check_chains(self, authors: Iterable[str], *, low: dict[str, int] | None = None) -> None:
        """Record unrepaired gaps, forks and broken links of ``authors`` in the report
        (replacing what an earlier, shorter window of this read recorded for them)."""
        checked = set(authors)
        self.report.gaps = [g for g in self.report.gaps if g["author"] not in checked]
        self.report.forks = [f for f in self.report.forks if f["author"] not in checked]
        for did in sorted(checked):
            floor = (low or {}).get(did, 1)
            chain = analyze_chain(self.of_author(did))
            for first, last in self._gaps(did, floor):
                self.report.gaps.append({"author": did, "first": first, "last": last})
            for seq, ids in chain.forks:
                self.report.forks.append({"author": did, "seq": seq, "ids": [i.hex() for i in ids]})
            for seq in chain.broken_links:
                if not any(f["author"] == did and f["seq"] == seq for f in self.report.forks):
                    self.report.forks.append(
                        {"author": did, "seq": seq, "ids": [], "broken_link": True}
                    )

    def mark_withheld(self, shown: Iterable[Event], expected: Callable[[str, Event], bool]) -> None:
        """For each healthy node: the ``shown`` events it should have served but did not.

        Serving an event without its body counts as withholding it unless a held,
        verified delete by its author explains the missing body (spec 0007
        #withheld-body): anyone can strip a body, so nothing else does.
        """
        shown = list(shown)
        deleted = self.deleted_ids()
        for report in self.report.nodes:
            if not report.ok:
                continue
            already = {e.id for e in report.withheld}
            for e in shown:
                if e.id in already or not expected(report.url, e):
                    continue
                stripped = e.id in report.bodyless and e.id not in deleted
                if e.id not in report.served or stripped:
                    report.withheld.append(e)
                    already.add(e.id)

    def stripped(self, events: Iterable[Event]) -> list[Event]:
        """Of ``events``, those held without a body that no held deletion explains."""
        deleted = self.deleted_ids()
        return [e for e in events if e.body is None and e.id not in deleted]

    # -- feeds --------------------------------------------------------------------

    async def fetch_feed(
        self,
        *,
        authors: Sequence[str],
        kinds_: Sequence[str],
        limit: int,
        max_pages: int = 1,
    ) -> dict[str, int | None]:
        """Feed pages from every node; returns per node the oldest ``ts`` it vouched for.

        ``None`` means the node's feed was read to its end: it should have served every
        matching event. An int ``t`` means it stopped early: it vouches for ``ts > t``.
        """
        if len(authors) > MAX_FEED_AUTHORS:
            log.warning("feed truncated to %d of %d authors", MAX_FEED_AUTHORS, len(authors))
            authors = list(authors)[:MAX_FEED_AUTHORS]
        wanted_authors, wanted_kinds = set(authors), set(kinds_)
        horizon: dict[str, int | None] = {}

        def accept(e: Event) -> bool:
            return e.author in wanted_authors and e.kind in wanted_kinds

        async def one(node: NodeClient) -> None:
            before: str | None = None
            oldest: int | None = None
            for _ in range(max_pages):
                page = await node.feed_page(
                    authors=authors, kinds=kinds_, limit=limit, before=before
                )
                items, before = page.items, page.next
                self.keys.offer_tips(node.url, page.key_tips)  # spec 0004 #feed-key-tips
                await self.preverify(items)
                for item in items:
                    e = self.add(node.url, item, accept)
                    if e is not None:
                        oldest = e.ts if oldest is None else min(oldest, e.ts)
                if before is None:
                    horizon[node.url] = None
                    return
            horizon[node.url] = oldest if oldest is not None else 0

        await self.each(one)
        return horizon

    # -- lookups ------------------------------------------------------------------

    async def lookup(self, ids: Iterable[bytes], *, limit: int = MAX_LOOKUPS) -> dict[bytes, Event]:
        """Events by id from every node (at most ``limit`` not yet held), verified.

        Each node is asked ``GET /v1/events?ids=`` for 100 ids a request (spec 0004
        #events-by-id): a page's referenced events are one request a node, not one
        each. A node without that form (an older one: 400, 404 or 405) is asked id by
        id. An event a node serves that was not asked for is dropped."""
        ids = list(dict.fromkeys(ids))
        wanted = [i for i in ids if i not in self.events][:limit]
        if wanted:
            asked = set(wanted)

            def accept(e: Event) -> bool:
                return e.id in asked

            async def one(node: NodeClient) -> None:
                by_ids = True  # until the node says it has no ?ids= (then id by id)
                for at in range(0, len(wanted), MAX_IDS_REQUEST):
                    chunk = wanted[at : at + MAX_IDS_REQUEST]
                    items: list[WireItem] = []
                    if by_ids:
                        try:
                            items = await node.events_by_ids(chunk)
                        except RemoteError as exc:
                            if exc.status not in (400, 404, 405):
                                raise
                            by_ids = False
                    if not by_ids:
                        found = await asyncio.gather(*(node.get_event(i.hex()) for i in chunk))
                        items = [item for item in found if item is not None]
                    await self.preverify(items)
                    for item in items:
                        self.add(node.url, item, accept)

            await self.each(one)
        return {i: self.events[i] for i in ids if i in self.events}

    async def find(self, eid: bytes) -> Event | None:
        """The event ``eid``, verified, asked of every healthy node at once.

        The first node that serves it verified and whole ends the lookup: the others
        are cancelled (not failed: they were not needed). A node that does not hold it,
        or serves something that fails verification, does not end it while another may
        still hold it: it ends once every node answered, at the timeout, or, with a
        :attr:`cut`, ``grace`` after ``quorum`` nodes answered; the nodes cut then are
        reported (spec 0007 #slow-lookups). A copy without its body is returned only
        if no node served the whole event.
        """
        held = self.events.get(eid)
        if held is not None and held.body is not None:
            return held
        nodes = [n for n in self.nodes if self.report.node(n.url).ok]

        async def get(node: NodeClient) -> bool:
            item = await node.get_event(eid.hex())
            if item is None:
                return False
            await self.preverify([item])
            found = self.add(node.url, item, lambda e: e.id == eid)
            return found is not None and found.body is not None

        loop = asyncio.get_running_loop()
        cut = self.cut
        quorum = len(nodes) if cut is None else max(1, min(cut.quorum, len(nodes)))
        results, met = await until_quorum(
            {n.url: get(n) for n in nodes},
            quorum=quorum,
            ok=lambda _: True,
            enough=bool,
            deadline=loop.time() + self.timeout,
            grace=0.0 if cut is None else cut.grace,
        )
        whole = eid in self.events and self.events[eid].body is not None
        for node in nodes:
            if results[node.url] is None and whole:
                continue  # cancelled: another node had served it
            self._settle_node(node.url, results[node.url], met=met, quorum=quorum, cut=cut)
        await self.keys.settle()
        return self.events.get(eid)

    # -- labels -------------------------------------------------------------------

    async def fetch_labels(self, labeler: str, *, max_labels: int = MAX_LABELS) -> list[str]:
        """``labeler``'s ``label`` events from every node, verified like any event.

        Reads at most ``max_labels`` per node (storage order, oldest first); returns the
        urls of the nodes that had more.
        """

        def accept(e: Event) -> bool:
            return e.author == labeler and e.kind == kinds.LABEL

        truncated: list[str] = []

        async def one(node: NodeClient) -> None:
            after: str | None = None
            read = 0
            while read < max_labels:
                items, after = await node.labels_page(
                    labeler=labeler, after=after, limit=min(PAGE, max_labels - read)
                )
                await self.preverify(items)
                for item in items:
                    self.add(node.url, item, accept)
                read += len(items)
                if after is None or not items:
                    return
            truncated.append(node.url)

        await self.each(one)
        return truncated

    # -- threads and profile search -------------------------------------------------

    async def fetch_thread(self, root: bytes) -> None:
        """The root and every reply whose ``reply.root`` is ``root``, from every node."""

        def accept(e: Event) -> bool:
            return e.id == root or reply_root(e) == root

        async def one(node: NodeClient) -> None:
            after: str | None = None
            for _ in range(MAX_THREAD_PAGES):
                root_item, items, after = await node.thread(root.hex(), limit=PAGE, after=after)
                if root_item is not None:
                    self.add(node.url, root_item, accept)
                for item in items:
                    self.add(node.url, item, accept)
                if after is None:
                    return

        await self.each(one)

    async def search_profiles(self, q: str, *, limit: int) -> None:
        """Profiles whose name contains ``q``, from every node (names checked later)."""

        async def one(node: NodeClient) -> None:
            for item in await node.profiles(q, limit=limit):
                self.add(node.url, item, lambda e: e.kind == kinds.PROFILE)

        await self.each(one)


def reply_root(e: Event) -> bytes | None:
    """``body.reply.root`` of a post, or None."""
    if e.kind != kinds.POST or e.body is None or not isinstance(e.body.get("reply"), dict):
        return None
    root = e.body["reply"]["root"]
    return root if isinstance(root, bytes) else None


def _within_budget(gaps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The first :data:`MAX_REPAIR_SEQS` seqs of ``gaps`` (inclusive ranges, in order):
    what one repair round asks for of one author."""
    out: list[tuple[int, int]] = []
    budget = MAX_REPAIR_SEQS
    for first, last in gaps:
        if budget <= 0:
            break
        last = min(last, first + budget - 1)
        budget -= last - first + 1
        out.append((first, last))
    return out
