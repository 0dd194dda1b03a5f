"""Notifications: what others did with the reader's identity, merged from every node,
verified, checked to really concern the reader and moderated (spec 0007
#notifications).

Each node's ``GET /v1/notifications?did=`` is a hint. Every event it lists is verified
(signature; key state: a revoked, disputed or pending event of a did:murmur author is
never shown as its author's) and the client works out on its own, from verified events
only, why it concerns the reader, with the node's order of reasons (spec 0004
#notification-reasons): ``reply`` (the verified parent, or the root, is the reader's
event), ``quote`` (the quoted event is the reader's), ``mention`` (a mention facet
names the reader's did), ``like`` / ``repost`` (the target is the reader's event),
``follow`` (the subject is the reader and the follow is still its author's latest
follow/unfollow of the reader, :class:`~client.followers.FollowCheck`). Referenced
events are fetched by id from every node (bounded). An event that concerns the reader
for none of these is dropped and reported under the node that listed it
(``unexpected-event``); the reader's own events never notify. The lists of all nodes
are merged by event id (one notification per event) and paged newest first with one
cursor, item by item (:meth:`client.paging.MergedList.page`): the reader's filters
judge them (muted people do not notify), and hidden ones do not take places on the
page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from client.api import NodeClient, WireItem
from client.followers import FollowCheck, report_unexpected
from client.moderation.apply import Moderation
from client.moderation.pipeline import Verdict
from client.paging import MergedCursor, MergedList, Outcome
from client.reader import MAX_LOOKUPS, Reader
from client.views import View, profiles_of, references
from protocol import kinds
from protocol.errors import BadFieldError
from protocol.events import Event
from protocol.facets import mentioned_dids

__all__ = [
    "NOTIFICATIONS_LIST",
    "REASONS",
    "REASON_TEXT",
    "Notification",
    "NotificationPage",
    "Notifier",
    "reason_of",
]

#: Reasons, strongest first (spec 0004 #notification-reasons).
REASONS: Final = ("reply", "quote", "mention", "like", "repost", "follow")
#: Kinds that may notify.
NOTIFY_KINDS: Final = frozenset({kinds.POST, kinds.LIKE, kinds.REPOST, kinds.FOLLOW})
#: What each reason says, after the author's name (every face says it the same way).
REASON_TEXT: Final = {
    "reply": "replied to you",
    "quote": "quoted you",
    "mention": "mentioned you",
    "like": "liked your post",
    "repost": "reposted your post",
    "follow": "followed you",
}
#: The cursor list name of notifications.
NOTIFICATIONS_LIST: Final = "notifications"
#: Most notifications asked of a node in one request.
PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One verified event that concerns the reader, and why.

    ``subject`` is the reader's own event it is about (the post replied to, quoted,
    liked or reposted); None for a mention or a follow.
    """

    reason: str
    event: Event
    subject: Event | None


def _mine(events: dict[bytes, Event], eid: object, me: str) -> Event | None:
    target = events.get(eid) if isinstance(eid, bytes) else None
    return target if target is not None and target.author == me else None


def reason_of(
    e: Event, me: str, events: dict[bytes, Event], *, follow_current: bool
) -> tuple[str, Event | None] | None:
    """Why verified ``e`` concerns ``me``, from verified events only (``events``: the
    reader's merged, canonical ones), strongest reason first; None if it does not."""
    body = e.body
    if body is None or e.author == me:
        return None
    if e.kind == kinds.POST:
        reply = body.get("reply")
        if isinstance(reply, dict):
            for key in ("parent", "root"):
                target = _mine(events, reply.get(key), me)
                if target is not None:
                    return "reply", target
        quoted = _mine(events, body.get("quote"), me)
        if quoted is not None:
            return "quote", quoted
        try:
            if me in mentioned_dids(body):
                return "mention", None
        except BadFieldError:  # never for a verified post; a reader still does not crash
            return None
    elif e.kind in (kinds.LIKE, kinds.REPOST):
        target = _mine(events, body.get("target"), me)
        if target is not None:
            return e.kind, target
    elif e.kind == kinds.FOLLOW and body.get("subject") == me and follow_current:
        return "follow", None
    return None


def _targets(e: Event) -> list[bytes]:
    """The events ``e`` may concern the reader through."""
    body = e.body or {}
    out: list[bytes] = []
    if e.kind == kinds.POST:
        reply = body.get("reply")
        if isinstance(reply, dict):
            out += [v for v in (reply.get("parent"), reply.get("root")) if isinstance(v, bytes)]
        if isinstance(body.get("quote"), bytes):
            out.append(body["quote"])
    elif e.kind in (kinds.LIKE, kinds.REPOST) and isinstance(body.get("target"), bytes):
        out.append(body["target"])
    return out


@dataclass(slots=True)
class NotificationPage:
    """One page: the shown notifications (newest first), the hidden ones, the cursor
    of the next page, and what rendering needs."""

    shown: list[Notification]
    hidden: list[Notification]
    next: MergedCursor | None
    verdicts: dict[bytes, Verdict] = field(default_factory=dict)
    profiles: dict[str, Event] = field(default_factory=dict)
    related: dict[bytes, Event] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Notifier:
    """Pages of ``me``'s notifications over one reader (see the module doc).

    ``reasons`` keeps only some reasons (the node's ``kinds``); ``moderation`` is the
    reader's filters (None: unfiltered); ``keep(e)`` false skips an item without
    counting it (``--unread`` skips read ones).
    """

    def __init__(
        self,
        reader: Reader,
        me: str,
        *,
        reasons: Sequence[str] = REASONS,
        moderation: Moderation | None = None,
        keep: Callable[[Event], bool] | None = None,
    ) -> None:
        self.reader = reader
        self.me = me
        self.reasons = tuple(r for r in REASONS if r in set(reasons))
        self.moderation = moderation
        self.keep = keep
        self.follows = FollowCheck(reader)
        self.found: dict[bytes, Notification] = {}
        self.verdicts: dict[bytes, Verdict] = {}
        self.profiles: dict[str, Event] = {}
        self._profiled: set[str] = set()
        self.warnings: list[str] = []
        self._list: MergedList | None = None

    async def _fetch(
        self, node: NodeClient, before: str | None, size: int
    ) -> tuple[list[WireItem], str | None]:
        asked = None if self.reasons == REASONS else self.reasons
        rows, nxt = await node.notifications(self.me, kinds=asked, before=before, limit=size)
        return [item for _, item in rows], nxt

    async def page(
        self,
        *,
        limit: int,
        cursor: MergedCursor | None = None,
        stop: Callable[[Event], bool] | None = None,
    ) -> NotificationPage:
        """The next ``limit`` shown notifications after ``cursor``; ``stop(e)`` true
        ends the list at ``e`` (``--unread``: everything older is read)."""
        lst = MergedList(
            self.reader,
            NOTIFICATIONS_LIST,
            self._fetch,
            lambda e: e.kind in NOTIFY_KINDS,
            cursor=cursor,
            page=PAGE_SIZE,
        )
        self._list = lst
        paged = await lst.page(limit, self._judge, stop=stop)
        shown = [self.found[e.id] for e, o in paged.walked if o is Outcome.SHOW]
        hidden = [self.found[e.id] for e, o in paged.walked if o is Outcome.HIDE]
        related: dict[bytes, Event] = {}
        for n in [*shown, *hidden]:
            for eid in references(n.event):
                if eid in self.reader.events:
                    related[eid] = self.reader.events[eid]
        return NotificationPage(
            shown=shown,
            hidden=hidden,
            next=paged.next,
            verdicts={
                n.event.id: self.verdicts[n.event.id]
                for n in [*shown, *hidden]
                if n.event.id in self.verdicts
            },
            profiles=dict(self.profiles),
            related=related,
            warnings=list(dict.fromkeys(self.warnings)),
        )

    async def check(self, batch: Sequence[Event]) -> list[Notification | None]:
        """Each event's notification, from verified events only, or None (reported
        under the nodes that served it unless it is the reader's own)."""
        wanted = [t for e in batch for t in _targets(e) if t not in self.reader.events]
        wanted = list(dict.fromkeys(wanted))
        for i in range(0, len(wanted), MAX_LOOKUPS):
            await self.reader.lookup(wanted[i : i + MAX_LOOKUPS])
        follows = [
            e
            for e in batch
            if e.kind == kinds.FOLLOW and e.body is not None and e.body.get("subject") == self.me
        ]
        current = await self.follows.current(follows) if follows else set()
        events = self.reader.events
        deleted = self.reader.deleted_ids()
        out: list[Notification | None] = []
        for e in batch:
            held = events.get(e.id)
            found = None
            if held is not None and e.id not in deleted:
                found = reason_of(held, self.me, events, follow_current=e.id in current)
            if found is None or found[0] not in self.reasons:
                if found is None and e.author != self.me and held is not None:
                    served = self._list.served_by.get(e.id, set()) if self._list else set()
                    report_unexpected(self.reader, served, e, _why_not(e, self.me))
                out.append(None)
                continue
            assert held is not None  # noqa: S101 - found only for a held event
            n = Notification(reason=found[0], event=held, subject=found[1])
            self.found[e.id] = n
            out.append(n)
        return out

    async def _judge(self, batch: list[Event]) -> list[Outcome]:
        checked = await self.check(batch)
        kept = [n for n in checked if n is not None and (self.keep is None or self.keep(n.event))]
        await self._profiles_of(n.event for n in kept)
        if self.moderation is not None and kept:
            related = {
                eid: self.reader.events[eid]
                for n in kept
                for eid in references(n.event)
                if eid in self.reader.events
            }
            view = View(
                items=[n.event for n in kept],
                report=self.reader.report,
                related=related,
                profiles=self.profiles,
            )
            moderated = await self.moderation.judge(view)
            self.verdicts.update(moderated.verdicts)
            self.warnings += moderated.warnings
        kept_ids = {n.event.id for n in kept}
        outcomes: list[Outcome] = []
        for e in batch:
            if e.id not in kept_ids:
                outcomes.append(Outcome.SKIP)
            elif self.verdicts.get(e.id) is not None and self.verdicts[e.id].hidden:
                outcomes.append(Outcome.HIDE)
            else:
                outcomes.append(Outcome.SHOW)
        return outcomes

    async def _profiles_of(self, events: Iterable[Event]) -> None:
        """Profiles of the notifications' authors and mentioned people (names, filters)."""
        dids: set[str] = {self.me}
        for e in events:
            dids.add(e.author)
            if e.kind == kinds.POST and e.body is not None:
                try:
                    dids.update(mentioned_dids(e.body))
                except BadFieldError:
                    pass
        fresh = dids - self._profiled
        if fresh:
            self.profiles.update(await profiles_of(self.reader, fresh))
            self._profiled |= fresh


def _why_not(e: Event, me: str) -> str:
    if e.kind == kinds.FOLLOW:
        return f"not a current follow of {me}"
    if e.kind in (kinds.LIKE, kinds.REPOST):
        return f"its target is not a verified event of {me}"
    return f"neither replies to, quotes nor mentions {me}"
