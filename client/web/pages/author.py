"""An author page: ``GET /author/{did}`` (as ``murmur author`` and ``profile show``).

The profile (latest verified ``profile``), the labels the reader's subscribed labelers
put on the author, the state of their log (events held, verified chain head, gaps and
forks; for a ``did:murmur``, events not shown as theirs for their key state, spec
0008), follower and following figures, then their posts and reposts from the whole
verified log, moderated in the author context and paged by boundary (``?cursor=``).
A Follow or Unfollow button (``POST /follow``, never on yourself) from whom the reader
follows (their signed follows, as ``murmur following``, and the unsent ones of their
outbox); ``?done=TICKET`` shows what a follow or unfollow just did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from client.followers import SocialStats, social_stats
from client.keyview import is_murmur
from client.moderation.apply import active_labels
from client.moderation.config import ModerationConfig
from client.moderation.core import ViewContext
from client.paging import MergedCursor
from client.reader import Reader
from client.textsafety import safe_line
from client.views import AuthorPages, author_list, follow_set
from client.web.context import WEB, render
from client.web.pages.common import listing, own_state
from client.web.pages.compose import held_outcome, needs_passphrase
from client.web.render import Names, source_text
from protocol import kinds
from protocol.chain import analyze_chain
from protocol.identity import did_method

__all__ = ["setup"]

PAGE_ITEMS: Final = 30

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class AuthorLabel:
    """A label on the author by a subscribed labeler, and what the reader does with it."""

    val: str
    labeler: str
    action: str | None


def _author_labels(
    reader: Reader, config: ModerationConfig, did: str, names: Names
) -> list[AuthorLabel]:
    subs = {s.did: s for s in config.labelers}
    deleted = reader.deleted_ids()
    events = (
        e
        for e in reader.events.values()
        if e.kind == kinds.LABEL and e.author in subs and e.id not in deleted
    )
    labels = active_labels(events, now_ms=int(time.time() * 1000)).get(did, [])
    out = []
    for label in sorted(labels, key=lambda x: (x.labeler, x.val)):
        action = subs[label.labeler].action_for(label.val)
        out.append(
            AuthorLabel(
                val=safe_line(label.val),
                labeler=source_text(label.labeler, names),
                action=None if action is None else action.value,
            )
        )
    return out


@routes.get("/author/{did}", name="author")
async def author(request: web.Request) -> web.Response:
    reads = request.app[WEB].reads
    did = request.match_info["did"]
    did_method(did)  # invalid-did (400) for anything else
    me = reads.me() or ""
    raw = request.query.get("cursor")
    after = None if not raw else MergedCursor.decode(raw, author_list(did)).boundary
    async with reads.reader() as reader:
        pages = AuthorPages(reader, did, after=after)
        follows = frozenset(await follow_set(reader, me, mark=False)) if me else frozenset()
        view, mod = await reads.page(
            reader, pages.build, PAGE_ITEMS, viewer=me, context=ViewContext.AUTHOR, follows=follows
        )
        mine = await own_state(reads, reader, me, view.items, follows=follows)
        stats: SocialStats = await social_stats(reader, did)
        log_events = reader.of_author(did)
        names = Names(reads.config, reads.profiles_with_own(view.profiles))
        labels = _author_labels(reader, ModerationConfig.load(reads.home), did, names)
    chain = analyze_chain(log_events)
    nxt = pages.next_cursor(view)
    profile = view.profiles.get(did)
    body = profile.body if profile is not None and profile.body is not None else {}
    bio = body.get("bio")
    excluded = [x for x in view.report.excluded.values() if x.event.author == did]
    return render(
        request,
        "author.html",
        title=names.display(did),
        did=did,
        names=names,
        bio=bio if isinstance(bio, str) else None,
        has_profile=profile is not None,
        stats=stats,
        labels=labels,
        chain=chain,
        events=len(log_events),
        rotatable=is_murmur(did),
        excluded=len(excluded),
        following=did in mine.following,
        can_follow=bool(me) and did != me,
        needs_passphrase=bool(me) and needs_passphrase(request.app[WEB]),
        outcome=held_outcome(request, request.query.get("done", "")[:64]),
        lst=listing(request, view, mod, names, mine=mine),
        next_cursor=None if nxt is None else nxt.encode(),
    )


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
