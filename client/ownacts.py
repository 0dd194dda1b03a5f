"""What an identity already did, so that a command does not sign it again
(spec 0007 #no-duplicates).

Likes, reposts, follows and deletes are state, not messages: a second like of the
same post, a follow of someone already followed or a second delete of one event is a
new signed event every node stores and every reader must discount. Before signing
one, the CLI asks what holds already, from two sources:

- the reader's nodes: the identity's own events of those kinds, through the feed
  (newest first, at most ``MAX_FEED_PAGES`` pages a node), verified and merged like
  any read, its own ``delete`` events applied (spec 0003 §3.8), follows resolved by
  the latest follow or unfollow per subject (§3.6, :func:`client.views.follow_set`);
  so it holds on a second machine too;
- this home's outbox (a rotatable identity, spec 0007 #own-chain): events signed but
  not stored by any node yet, which go out before the next event.

Past the feed bound an old like is not seen, and two commands racing on two machines
can both sign: then the duplicate is what readers discount anyway (§3.5). The same
holds for a node the check went on without: the CLI's reader is cut like head
discovery (:class:`client.fanout.Cut`, spec 0007 #slow-lookups), so the check is of
the nodes that answered, and the command names the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from client.ownchain import OwnChain
from client.reader import MAX_FEED_PAGES, PAGE, Reader, latest_by_seq
from client.views import follow_set
from protocol import kinds
from protocol.events import Event

__all__ = ["OwnActs", "own_acts"]


@dataclass(slots=True)
class OwnActs:
    """The identity's standing events of the kinds asked, and what it deleted."""

    #: Not deleted, from the nodes and the unsent outbox, oldest first.
    events: list[Event] = field(default_factory=list)
    #: Targets of the identity's own deletes (nodes and unsent outbox).
    deleted: set[bytes] = field(default_factory=set)
    #: Subjects followed (only when follows were asked).
    following: set[str] = field(default_factory=set)
    #: The identity's latest profile, read with the rest (for its name, spec 0007
    #: #own-name); None when none is held or only follows were asked.
    profile: Event | None = None

    def acting_on(self, kind: str, target: bytes) -> Event | None:
        """The latest standing ``kind`` event (``like``, ``repost``) of ``target``."""
        found = [
            e
            for e in self.events
            if e.kind == kind and e.body is not None and e.body.get("target") == target
        ]
        return found[-1] if found else None


def _unsent(chain: OwnChain | None) -> list[Event]:
    if chain is None or not chain.exists():
        return []
    return chain.unpublished()


async def own_acts(
    reader: Reader,
    me: str,
    kinds_: Sequence[str],
    *,
    chain: OwnChain | None = None,
    follows: Iterable[str] | None = None,
) -> OwnActs:
    """``me``'s standing events of ``kinds_`` and its deletes (nodes and outbox).

    With ``follow`` among ``kinds_``, ``following`` is filled (the follow set, then the
    unsent follows and unfollows in chain order on top); ``follows``: the follow set
    the caller read already with this reader (a page's), not read again.
    """
    unsent = _unsent(chain)
    deleted = {
        e.body["target"] for e in unsent if e.kind == kinds.DELETE and e.body is not None
    }
    acts = OwnActs()
    wanted = [k for k in kinds_ if k not in (kinds.FOLLOW, kinds.UNFOLLOW)]
    if wanted or kinds.DELETE in kinds_:
        await reader.fetch_feed(
            authors=[me],
            kinds_=list(dict.fromkeys([*wanted, kinds.DELETE, kinds.PROFILE])),
            limit=PAGE,
            max_pages=MAX_FEED_PAGES,
        )
        deleted |= {
            e.body["target"]
            for e in reader.of_author(me)
            if e.kind == kinds.DELETE and e.body is not None
        }
        held = [
            e
            for e in reader.of_author(me)
            if e.kind in wanted and e.body is not None and e.id not in deleted
        ]
        pending = [e for e in unsent if e.kind in wanted and e.id not in deleted]
        acts.events = sorted({e.id: e for e in [*held, *pending]}.values(), key=lambda e: e.seq)
        acts.profile = latest_by_seq(
            e
            for e in reader.of_author(me)
            if e.kind == kinds.PROFILE and e.body is not None and e.id not in deleted
        )
    acts.deleted = deleted
    if kinds.FOLLOW in kinds_:
        following = set(await follow_set(reader, me, mark=False) if follows is None else follows)
        for e in unsent:
            if e.body is None or e.id in deleted:
                continue
            if e.kind == kinds.FOLLOW:
                following.add(e.body["subject"])
            elif e.kind == kinds.UNFOLLOW:
                following.discard(e.body["subject"])
        acts.following = following
    return acts
