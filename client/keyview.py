"""Which events of a ``did:murmur`` author are really theirs (spec 0008 §8.6–§8.7, #clients).

A v2 event proves only that the key in its header signed it; whether that key was the
author's at that point of the chain is decided by the author's key events. For every
``did:murmur`` author a read touches, :class:`KeyTracker` fetches ``/keys`` from
every node (once per read: all of the read's authors in one ``POST /v1/keys``, spec
0004 #keys-batch), takes the union with whatever else the nodes served,
runs :func:`protocol.keystate.resolve` over every verified event of the author held,
and keeps only the **canonical** ones in the reader's merged events: revoked,
disputed and pending events are moved to :attr:`KeyTracker.excluded` with their
status, ``revoked_by`` and reason, so no view, profile, follow set, delete or label
ever counts them as the author's. When an event's epoch was ended by a later key
event and the ``prev`` walk that decides it stops at a gap, the missing seqs are
asked of every node (bounded) and the author resolved again.

A node whose ``/keys`` lacks a valid key event that another node served is reported
as withholding it (0008 #clients).

A feed answer names the key-event tips of its page's did:murmur authors (spec 0004
#feed-key-tips). For such an author, the tracker first takes the key events the
home's cache keeps (:meth:`client.keycache.KeyCache.key_event_wires`, verified before)
and resolves; when every node that served the author's events named tips, and they
are exactly the tips of that resolution, and no held event names a key event not
held, ``/keys`` is not asked for the author (0007 #key-status). Tips decide nothing:
a node naming others (newer, older, made up) only has the author's ``/keys`` asked of
every node, as without tips, where what it lacks is reported as withheld.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from client.keycache import known_key_event
from protocol.errors import ProtocolError
from protocol.events import Event
from protocol.identity import did_method
from protocol.keystate import (
    KEY_EVENT_KINDS,
    KeyEvent,
    Link,
    Resolution,
    Status,
    key_event_of,
    link_of,
    resolve,
)

if TYPE_CHECKING:
    from client.api import NodeClient, WireItem
    from client.reader import Reader

__all__ = ["Excluded", "KeyHistory", "KeyTracker", "is_murmur"]

#: Seqs asked per author per read to decide statuses (prev walks across gaps).
MAX_WALK_SEQS = 500


def is_murmur(did: str) -> bool:
    try:
        return did_method(did) == "murmur"
    except ProtocolError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Excluded:
    """An event of a did:murmur author that is not shown as theirs, and why."""

    event: Event
    status: Status
    revoked_by: bytes | None
    #: The §8.5 code behind the status, when a rule (not a key event) decided it.
    reason: str | None
    #: The key event ``revoked_by`` names, when it is held.
    revoked_by_event: Event | None = None

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "author": e.author,
            "id": e.id_hex,
            "seq": e.seq,
            "kind": e.kind,
            "status": self.status.value,
            "revoked_by": None if self.revoked_by is None else self.revoked_by.hex(),
            "reason": self.reason,
        }

    def why(self) -> str:
        """One sentence for people: why this event is not shown as its author's."""
        by = self.revoked_by_event
        if self.status is Status.REVOKED:
            if by is not None:
                what = {"rotate": "rotation", "recover": "recovery"}.get(by.kind, by.kind)
                return (
                    f"revoked by the author's {what} {by.id_hex[:12]} (seq {by.seq}): signed "
                    f"with their key, but not on the chain that {what} names as theirs "
                    "(a stolen key?)"
                )
            return {
                "bad-kev": "revoked: it breaks the author's key chain (bad-kev)",
                "unauthorized-key": "revoked: signed by a key that was not the author's "
                "signing key at that point (unauthorized-key)",
                "bad-field": "revoked: a key event that breaks the new-key rules (bad-field)",
            }.get(self.reason or "", "revoked: it relies on a revoked key event")
        if self.status is Status.DISPUTED:
            return (
                "disputed: the author's key history has two key events of equal rank; "
                "not shown until the owner settles it with a recovery"
            )
        if self.reason == "unknown-key-event":
            return "pending: it names a key event no node served (unknown-key-event)"
        return "pending: a gap in the chain hides whether the author's later key event endorses it"


@dataclass(slots=True)
class KeyHistory:
    """One author's key events as held, and the resolution over everything held."""

    did: str
    key_events: dict[bytes, Event]
    resolution: Resolution
    status: dict[bytes, Status]
    errors: dict[bytes, str]
    #: Node url → ids of key events its ``/keys`` served (nodes that answered only).
    served: dict[str, set[bytes]] = field(default_factory=dict)

    def valid_key_events(self) -> set[bytes]:
        """Key events every node should hold: valid by §8.5 against the held set."""
        return {
            i
            for i in self.key_events
            if i not in self.errors and self.status.get(i) is not Status.PENDING
        }


class KeyTracker:
    """Key state of the did:murmur authors of one read (owned by a :class:`Reader`)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        #: Every verified event of each did:murmur author, shown or not.
        self.held: dict[str, dict[bytes, Event]] = {}
        self.excluded: dict[bytes, Excluded] = {}
        self.histories: dict[str, KeyHistory] = {}
        self._dirty: set[str] = set()
        self._asked: set[str] = set()
        self._walked: dict[str, int] = {}
        #: did → node url → ids of the key events its ``/keys`` served.
        self._served: dict[str, dict[str, set[bytes]]] = {}
        #: node url → did → key-event tips its feed answers named (None: a feed
        #: answer without tips, an older node).
        self._tips: dict[str, dict[str, frozenset[bytes]] | None] = {}
        self._busy = False

    def offer_tips(self, url: str, tips: dict[str, frozenset[bytes]] | None) -> None:
        """A feed answer of the node at ``url`` named ``tips`` (spec 0004
        #feed-key-tips); a later page's tips for an author add to the earlier ones."""
        if tips is None or (url in self._tips and self._tips[url] is None):
            self._tips[url] = None
            return
        held = self._tips.setdefault(url, {})
        assert held is not None  # noqa: S101 - set above
        for did, ids in tips.items():
            held[did] = held.get(did, frozenset()) | ids

    def note(self, event: Event) -> None:
        """A verified v2 event was merged (called by :meth:`Reader.add`)."""
        self.held.setdefault(event.author, {})[event.id] = event
        self._dirty.add(event.author)

    async def settle(self, extra: Iterable[str] = ()) -> None:
        """Resolve every author with new events (and ``extra`` did:murmur dids)."""
        self._dirty.update(d for d in extra if is_murmur(d))
        if self._busy:
            return
        self._busy = True
        try:
            while self._dirty:
                dids = sorted(self._dirty)
                self._dirty.clear()
                todo = [d for d in dids if d not in self._asked]
                settled = self._from_home(todo)
                await self._fetch_keys([d for d in todo if d not in settled])
                self._dirty.difference_update(dids)  # what /keys added is resolved below
                for did in dids:
                    if did not in settled:
                        self._resolve(did)
                for did in dids:
                    await self._walk_gaps(did)
        finally:
            self._busy = False
            if self.reader.keycache is not None:
                self.reader.keycache.flush()

    def _from_home(self, dids: list[str]) -> set[str]:
        """Of ``dids``, those resolved from the key events the home keeps, whose tips
        every node that served their events named, exactly (no ``/keys`` needed)."""
        cache = self.reader.keycache
        named = {d for tips in self._tips.values() if tips for d in tips}
        wanted = [d for d in dids if d in named]
        if cache is None or not wanted:
            return set()
        wires = cache.key_event_wires(wanted)
        out: set[str] = set()
        for did in wanted:
            events = self.held.setdefault(did, {})
            for wire in wires.get(did, ()):
                e = known_key_event(cache, wire, self.reader.net)
                if e is not None and e.author == did:
                    events.setdefault(e.id, e)
            self._resolve(did)
            if self._tips_agree(did):
                out.add(did)
        return out

    def _tips_agree(self, did: str) -> bool:
        history = self.histories[did]
        if "unknown-key-event" in history.errors.values():
            return False  # an event names a key event not held: ask the nodes
        res = history.resolution
        mine = frozenset((*res.path[-1:], *res.contenders))
        ids = self.held.get(did, {})
        agreed = False
        for report in self.reader.report.nodes:
            if not report.ok:
                continue
            tips = self._tips.get(report.url)
            theirs = None if tips is None else tips.get(did)
            if theirs is None:
                if any(i in report.served for i in ids):
                    return False  # it served the author's events and named no tips
                continue
            if theirs != mine:
                return False
            agreed = True
        return agreed

    async def _fetch_keys(self, dids: list[str]) -> None:
        if not dids:
            return
        self._asked.update(dids)
        served: dict[str, dict[str, set[bytes]]] = {d: {} for d in dids}

        async def take(node: NodeClient, did: str, items: list[WireItem]) -> None:
            await self.reader.preverify(items)  # at once, unless the batch's were already
            ids: set[bytes] = set()
            for item in items:
                e = self.reader.add(node.url, item, _key_event_of_author(did))
                if e is not None:
                    ids.add(e.id)
            served[did][node.url] = ids

        async def one(node: NodeClient) -> None:
            # One POST /v1/keys per as many dids as the node takes (its /v1/info
            # max_feed_authors, spec 0004 #keys-batch); the single-author GET, paged,
            # for what it deferred, or for all on an older node.
            single: list[str] = []
            size = await node.max_authors() if len(dids) > 1 else 1
            for at in range(0, len(dids), size):
                chunk = dids[at : at + size]
                batch = await node.keys_batch(chunk)
                if batch is None:
                    single = dids
                    break
                deferred = set(batch.deferred)
                # The whole answer verified together, over the CPUs (not author by author).
                await self.reader.preverify([i for items in batch.keys.values() for i in items])
                for did in chunk:
                    if did in deferred:
                        single.append(did)
                    else:
                        await take(node, did, batch.keys.get(did, []))
            for did in single:
                await take(node, did, await node.author_keys(did))

        await self.reader.each(one)
        for did, by_node in served.items():
            self._served[did] = by_node

    def _resolve(self, did: str) -> None:
        events = self.held.get(did, {})
        built, errors, unbuilt = _build(events)
        links: list[Link] = [link_of(e) for e in events.values() if e.kind not in KEY_EVENT_KINDS]
        res = resolve(built.values(), links)
        status = dict(res.status)
        errors.update(res.errors)
        for i, e in unbuilt.items():  # a kev up the chain never became a built key event
            kev = None if e.kev is None else events.get(e.kev)
            known = kev is not None and kev.kind not in KEY_EVENT_KINDS
            status[i] = Status.REVOKED if known else Status.PENDING
            errors[i] = "bad-kev" if known else "unknown-key-event"
        for i in errors:
            if i in events and i not in status:
                status[i] = Status.REVOKED
        history = KeyHistory(
            did=did,
            key_events={i: e for i, e in events.items() if e.kind in KEY_EVENT_KINDS},
            resolution=res,
            status=status,
            errors=errors,
            served=self._served.get(did, {}),
        )
        self.histories[did] = history
        self._place(events, history)
        self._report_withheld(history)

    def _place(self, events: dict[bytes, Event], history: KeyHistory) -> None:
        shown = self.reader.events
        for i, e in events.items():
            st = history.status.get(i, Status.PENDING)
            if st is Status.CANONICAL:
                self.excluded.pop(i, None)
                shown[i] = e
            else:
                shown.pop(i, None)
                by = history.resolution.revoked_by.get(i)
                self.excluded[i] = Excluded(
                    event=e,
                    status=st,
                    revoked_by=by,
                    reason=history.errors.get(i),
                    revoked_by_event=None if by is None else history.key_events.get(by),
                )

    def _report_withheld(self, history: KeyHistory) -> None:
        valid = history.valid_key_events()
        for url, ids in history.served.items():
            report = self.reader.report.node(url)
            if not report.ok:
                continue
            already = {e.id for e in report.withheld}
            for i in sorted(valid - ids - already, key=lambda i: history.key_events[i].seq):
                report.withheld.append(history.key_events[i])

    async def _walk_gaps(self, did: str) -> None:
        """Ask for the seqs a pending event's epoch walk stopped at (bounded)."""
        history = self.histories.get(did)
        budget = MAX_WALK_SEQS - self._walked.get(did, 0)
        if history is None or budget <= 0:
            return
        path = history.resolution.path
        ends: dict[bytes, list[bytes]] = {}
        for n, k in enumerate(path[:-1]):
            ends[k] = [path[n + 1]]
        if path and history.resolution.contenders:
            ends[path[-1]] = list(history.resolution.contenders)
        ranges: list[tuple[int, int]] = []
        for i, st in history.status.items():
            e = self.held[did][i]
            if st is not Status.PENDING or i in history.errors or e.kev not in ends:
                continue
            for end in ends[e.kev]:
                top = history.key_events.get(end)
                if top is not None and e.seq < top.seq:
                    ranges.append((e.seq, top.seq - 1))
        if not ranges:
            return
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        hi = min(hi, lo + budget - 1)
        self._walked[did] = self._walked.get(did, 0) + hi - lo + 1
        before = len(self.held.get(did, {}))
        await self.reader.fetch_log(did, from_seq=lo, to_seq=hi, max_pages=2)
        if len(self.held.get(did, {})) != before:
            self._dirty.add(did)


#: Key events built from the same key events (ids, and whether each has its body)
#: by this process: :func:`protocol.keystate.key_event_of` is a pure function of them.
_BUILT: dict[frozenset[tuple[bytes, bool]], tuple[dict[bytes, KeyEvent], dict[bytes, str]]] = {}
MAX_BUILT = 10_000


def _build(
    events: dict[bytes, Event],
) -> tuple[dict[bytes, KeyEvent], dict[bytes, str], dict[bytes, Event]]:
    """The key events among ``events`` built (parents first: a rotate keeps its kev's
    recovery list), the §8.5 codes of those that fail, and those whose kev chain
    never reached a built one; kept per exact set of key events for the process."""
    keyed = {i: e for i, e in events.items() if e.kind in KEY_EVENT_KINDS}
    memo_key = frozenset((i, e.body is not None) for i, e in keyed.items())
    kept = _BUILT.get(memo_key)
    if kept is not None:
        done = kept[0].keys() | kept[1].keys()
        return kept[0], dict(kept[1]), {i: e for i, e in keyed.items() if i not in done}
    built: dict[bytes, KeyEvent] = {}
    errors: dict[bytes, str] = {}
    unbuilt = dict(keyed)
    progress = True
    while progress and unbuilt:
        progress = False
        for i, e in list(unbuilt.items()):
            if e.kev is None or e.kev in built:
                del unbuilt[i]
                progress = True
                try:
                    built[i] = key_event_of(e, built)
                except ProtocolError as exc:
                    errors[i] = exc.code
    _BUILT[memo_key] = (built, dict(errors))
    if len(_BUILT) > MAX_BUILT:
        del _BUILT[next(iter(_BUILT))]
    return built, errors, unbuilt


def _key_event_of_author(did: str) -> Callable[[Event], bool]:
    def accept(e: Event) -> bool:
        return e.author == did and e.kind in KEY_EVENT_KINDS

    return accept
