"""What the list pages share: a moderated view turned into rows a template draws.

A :class:`Row` is one item and what the reader's moderation made of it (spec 0006):
``shown``, ``badged`` (shown with notes), ``warned`` (collapsed behind its warning,
opened with a native ``<details>``), ``hidden`` (a one-line "hidden: why" row naming
the filter, who decided, and the rule and term in the reason, with a "show anyway"
link) or ``revealed`` (hidden, shown because the reader asked with ``?show=ID``).
A :class:`Listing` is the rows plus what drawing them needs: names, referenced events,
counts, the read's report as lines (failed nodes, withheld and invalid events, gaps,
forks, moderation warnings) and :class:`Mine`, what the reader did to those posts
(:func:`own_state`: one bounded read a page, so each post offers Like or Unlike, Repost
or Unrepost, spec 0007 #web-own-state).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from client.counts import FIGURES, MAX_COUNT, Counts
from client.moderation.apply import Moderated
from client.moderation.core import Action, Decision, SourceKind
from client.moderation.pipeline import Verdict
from client.ownacts import own_acts
from client.ownchain import OwnChain
from client.reader import Reader
from client.reportlines import ReportLine, report_lines
from client.session import Session
from client.textsafety import safe_line
from client.views import View
from client.web.context import WEB
from client.web.media import Images, post_images_view
from client.web.render import Names, source_text
from client.web.timing import phase
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.events import Event

__all__ = [
    "SHOW_PARAM",
    "Listing",
    "Mine",
    "Row",
    "Why",
    "counted_id",
    "listing",
    "own_state",
    "revealed_ids",
    "setting_anchor",
]

#: The query parameter of "show anyway" (repeatable): an event id, 64 hex.
SHOW_PARAM: Final = "show"
#: Items one URL may ask to reveal.
MAX_SHOW: Final = 50
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LANG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}")
#: A labeler decision's reason names the label (client.moderation.builtins.Labelers).
_LABELED = re.compile(r'labeled "([a-z0-9-]{1,128})"\Z')
_SINGULAR = {"likes": "like", "reposts": "repost", "replies": "reply", "quotes": "quote"}


@dataclass(frozen=True, slots=True)
class Why:
    """One moderation decision, for people: what, why, which filter, who decided."""

    action: str
    reason: str
    filter: str
    source: str
    source_kind: str
    via: str | None
    setting_href: str | None

    @classmethod
    def of(cls, d: Decision, names: Names, setting_href: str | None) -> Why:
        return cls(
            action=d.action.value,
            reason=safe_line(d.reason),
            filter=safe_line(d.filter),
            source=source_text(d.source, names),
            source_kind=d.source_kind.value,
            via=None if d.via is None else safe_line(d.via),
            setting_href=setting_href,
        )


@dataclass(slots=True)
class Row:
    """One item of a list page and what moderation made of it."""

    event: Event
    state: str
    why: Why | None = None
    #: Every decision on the item (the winner first is ``why``); badges on a shown item.
    notes: list[Why] = field(default_factory=list)
    depth: int = 0
    show_href: str = ""
    #: The item asked for (a thread's focus).
    focus: bool = False


@dataclass(frozen=True, slots=True)
class Mine:
    """What the reader's own standing events say about a page (spec 0007
    #web-own-state): the posts they like and repost (of those on the page), whom they
    follow. Read from their nodes and their home's unsent outbox, as
    :mod:`client.ownacts` does before an action signs."""

    liked: frozenset[bytes] = frozenset()
    reposted: frozenset[bytes] = frozenset()
    following: frozenset[str] = frozenset()


async def own_state(
    reads: Session,
    reader: Reader,
    me: str | None,
    events: Iterable[Event],
    *,
    follows: Collection[str] | None = None,
) -> Mine:
    """``me``'s likes and reposts of the posts among ``events`` (a repost's target),
    and with ``follows`` (the follow set the page read with ``reader``) whom they
    follow once their unsent follows and unfollows are on top.

    One read a page whatever its size: ``me``'s own likes, reposts and deletes through
    the feed (bounded like every own-acts check, ``client.reader.MAX_FEED_PAGES``),
    kept between pages by the read cache; nothing is read without an identity or a
    post. Past that bound an old like shows as "Like", as the check before signing
    misses it too (spec 0007 #no-duplicates: readers discount the duplicate)."""
    subjects = {counted_id(e) for e in events}
    if not me or (not subjects and follows is None):
        return Mine(following=frozenset(follows or ()))
    asked = [kinds.LIKE, kinds.REPOST] if subjects else []
    if follows is not None:
        asked.append(kinds.FOLLOW)
    stored = reads.stored_identity()
    chain = OwnChain(reads.home, me) if stored.rotatable and stored.did == me else None
    with phase("own"):
        acts = await own_acts(reader, me, asked, chain=chain, follows=follows)
    standing = {
        (e.kind, e.body["target"])
        for e in acts.events
        if e.body is not None and isinstance(e.body.get("target"), bytes)
    }
    return Mine(
        liked=frozenset(s for s in subjects if (kinds.LIKE, s) in standing),
        reposted=frozenset(s for s in subjects if (kinds.REPOST, s) in standing),
        following=frozenset(acts.following),
    )


@dataclass(slots=True)
class Listing:
    rows: list[Row]
    names: Names
    related: dict[bytes, Event]
    counts: dict[bytes, Counts]
    report: list[ReportLine]
    hidden: int = 0
    warnings: list[str] = field(default_factory=list)
    #: The reader's likes and reposts of these posts (:func:`own_state`); None: not
    #: read, and the post offers both of each.
    mine: Mine | None = None
    #: Why the images of a drawn post are blurred (the moderation's warning), by id.
    blurs: dict[bytes, str] = field(default_factory=dict)

    def images(self, e: Event) -> Images:
        """``e``'s images, blurred if it is self-labelled sensitive or the reader's
        moderation warned about it (spec 0007 #web-images)."""
        return post_images_view(e, warned=self.blurs.get(e.id, ""))

    def counts_of(self, e: Event) -> list[tuple[str, str, str]]:
        """``(figure, number, label)`` for each non-zero figure of the item's counts."""
        c = self.counts.get(counted_id(e))
        if c is None:
            return []
        out = []
        for f in FIGURES:
            n = c.get(f)
            if n:
                shown = f"{n}+" if n >= MAX_COUNT else str(n)
                out.append((f, shown, _SINGULAR[f] if n == 1 else f))
        return out

    def target(self, e: Event) -> Event | None:
        """A repost's target, if it was read."""
        t = (e.body or {}).get("target") if e.kind == kinds.REPOST else None
        return self.related.get(t) if isinstance(t, bytes) else None

    def parent(self, e: Event) -> tuple[bytes, Event | None] | None:
        """A reply's parent id and event (None when no node served it)."""
        reply = (e.body or {}).get("reply") if e.kind == kinds.POST else None
        if not isinstance(reply, dict) or not isinstance(reply.get("parent"), bytes):
            return None
        return reply["parent"], self.related.get(reply["parent"])

    def quoted(self, e: Event) -> tuple[bytes, Event | None] | None:
        q = (e.body or {}).get("quote") if e.kind == kinds.POST else None
        if not isinstance(q, bytes):
            return None
        return q, self.related.get(q)

    def snippet(self, e: Event | None, limit: int = 80) -> str:
        if e is None:
            return "(not available)"
        if e.body is None:
            return "(deleted)"
        raw = e.body.get("text")
        text = " ".join(safe_line(raw).split()) if isinstance(raw, str) else ""
        return text if len(text) <= limit else text[: limit - 1] + "…"

    @staticmethod
    def warnings_of(e: Event) -> list[str]:
        """The author's own content warnings (``warn``)."""
        warn = (e.body or {}).get("warn")
        return [safe_line(w) for w in warn if isinstance(w, str)] if isinstance(warn, list) else []

    @staticmethod
    def lang(e: Event) -> str | None:
        """The post's first language, when it is a well-formed tag (for ``lang=``)."""
        langs = (e.body or {}).get("langs")
        first = langs[0] if isinstance(langs, list) and langs else None
        return first if isinstance(first, str) and _LANG.fullmatch(first) else None

    def counts_differ(self, e: Event) -> bool:
        c = self.counts.get(counted_id(e))
        return c is not None and c.differ


def counted_id(e: Event) -> bytes:
    """The event whose counts an item shows: a repost shows its target's."""
    if e.kind == kinds.REPOST and e.body is not None and isinstance(e.body.get("target"), bytes):
        target: bytes = e.body["target"]
        return target
    return e.id


def revealed_ids(request: web.Request) -> set[bytes]:
    """The ids ``?show=`` asks to reveal; a malformed one is a ``bad-request``."""
    values = request.query.getall(SHOW_PARAM, [])
    if len(values) > MAX_SHOW:
        raise BadRequestError(f"at most {MAX_SHOW} items can be shown anyway at once")
    out: set[bytes] = set()
    for v in values:
        if not _HEX64.fullmatch(v):
            raise BadRequestError("show= takes an event id (64 lowercase hex)")
        out.add(bytes.fromhex(v))
    return out


def setting_anchor(d: Decision) -> str:
    """The id of the moderation page's control behind ``d``: a labeler's decision is
    that label's action (``label-DID-VALUE``), any other the filter's settings
    (``filter-NAME``)."""
    if d.source_kind is SourceKind.LABELER:
        m = _LABELED.search(d.reason)
        if m is not None:
            return f"label-{d.source}-{m.group(1)}"
    return f"filter-{d.filter}"


def _setting_href(request: web.Request, d: Decision) -> str | None:
    """Where the setting behind ``d`` is changed, once the moderation page exists."""
    resource = request.app.router.named_resources().get("moderation")
    if resource is None:
        return None
    return f"{resource.url_for().path}#{setting_anchor(d)}"


def _row(
    request: web.Request, e: Event, verdict: Verdict | None, names: Names, reveal: set[bytes]
) -> Row:
    final = None if verdict is None else verdict.final
    if final is None or final.action is Action.ALLOW:
        return Row(event=e, state="shown")
    why = Why.of(final, names, _setting_href(request, final))
    notes = (
        [Why.of(d, names, _setting_href(request, d)) for d in verdict.decisions] if verdict else []
    )
    show = request.rel_url.extend_query({SHOW_PARAM: e.id_hex})
    row = Row(event=e, state="shown", why=why, notes=notes, show_href=f"{show}#p-{e.id_hex}")
    if final.action is Action.HIDE:
        row.state = "revealed" if e.id in reveal else "hidden"
    elif final.action is Action.WARN:
        row.state = "revealed" if e.id in reveal else "warned"
    else:
        row.state = "badged"
    return row


def listing(
    request: web.Request,
    view: View,
    mod: Moderated | None,
    names: Names,
    *,
    items: Iterable[Event] | None = None,
    depths: Mapping[bytes, int] | None = None,
    focus: bytes | None = None,
    mine: Mine | None = None,
) -> Listing:
    """``view``'s items (or ``items``, in that order) as rows, hidden ones included;
    ``mine``: the reader's own acts on them (:func:`own_state`)."""
    reveal = revealed_ids(request)
    rows = []
    for e in view.items if items is None else items:
        verdict = None if mod is None else mod.verdicts.get(e.id)
        row = _row(request, e, verdict, names, reveal)
        row.depth = 0 if depths is None else depths.get(e.id, 1)
        row.focus = e.id == focus
        rows.append(row)
    related = view.related
    blurs = _drawn_images(request, rows, related)
    warnings = [] if mod is None else [safe_line(w) for w in dict.fromkeys(mod.warnings)]
    return Listing(
        rows=rows,
        names=names,
        related=view.related,
        counts=view.counts,
        report=report_lines(view.report, names, counts_failed=view.counts_failed),
        hidden=sum(r.state == "hidden" for r in rows),
        warnings=warnings,
        mine=mine,
        blurs=blurs,
    )


def _drawn_images(
    request: web.Request, rows: Iterable[Row], related: Mapping[bytes, Event]
) -> dict[bytes, str]:
    """Remember the images of the posts the rows draw (``/media/`` serves only those,
    spec 0007 #web-images) and say which are blurred by a moderation warning: a warned
    item, or a hidden one shown because the reader asked."""
    drawn: list[Event] = []
    blurs: dict[bytes, str] = {}
    for row in rows:
        if row.state == "hidden":
            continue
        e = row.event
        t = (e.body or {}).get("target") if e.kind == kinds.REPOST else None
        target = related.get(t) if isinstance(t, bytes) else None
        events = [e] if target is None else [e, target]
        drawn += [x for x in events if x.images]
        if row.state in ("warned", "revealed") and row.why is not None:
            for x in events:
                blurs[x.id] = row.why.reason
    if drawn:  # a page without pictures leaves the known images as they are
        request.app[WEB].media.drawn(drawn)
    return blurs
