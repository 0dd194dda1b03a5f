"""Following a did:key's move to a did:murmur (spec 0008 #move).

A did:key can sign a v1 ``move`` event ``{"to": did:murmur}``; the new identity's
genesis names the did:key back in ``from``. A reader who follows the did:key follows
the new did too, but only when both sides hold: the did:key's log, as every node
serves it (all branches), holds exactly one distinct ``move`` target, and that
target's genesis (from its ``/keys``) names the did:key in ``from``. Otherwise the move
is **contested** (several targets: the owner and a thief holding the seed disagree)
or **unconfirmed** (the target does not name it back, or no node serves its genesis):
nobody is followed for it, and the read report says why.

Bounded work: one feed request (``kinds=move``, the followed did:keys) to every node,
then one author-log fetch per did:key that has a move (moves a node left out of its
feed, on any branch), then one ``/keys`` per target.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from client.reader import MAX_FEED_PAGES, PAGE, Reader
from protocol import kinds
from protocol.errors import ProtocolError
from protocol.events import Event
from protocol.identity import did_method

__all__ = ["Move", "resolve_moves"]

MoveStatus = Literal["confirmed", "contested", "unconfirmed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """What the nodes say about one did:key's move."""

    source: str
    #: Every distinct ``to`` of the source's ``move`` events, sorted.
    targets: tuple[str, ...]
    events: tuple[Event, ...]
    status: MoveStatus
    reason: str

    @property
    def target(self) -> str | None:
        """The did to follow along: only for a confirmed move."""
        return self.targets[0] if self.status == "confirmed" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": list(self.targets),
            "status": self.status,
            "reason": self.reason,
            "events": [e.id_hex for e in sorted(self.events, key=lambda e: (e.seq, e.id))],
        }


def _is_did_key(did: str) -> bool:
    try:
        return did_method(did) == "key"
    except ProtocolError:
        return False


async def resolve_moves(reader: Reader, dids: Iterable[str]) -> dict[str, Move]:
    """The moves of the did:keys among ``dids`` (those with a ``move`` event), checked
    and recorded in ``reader.report.moves``."""
    keys = sorted({d for d in dids if _is_did_key(d)})
    if not keys:
        return {}
    await reader.fetch_feed(authors=keys, kinds_=[kinds.MOVE], limit=PAGE, max_pages=MAX_FEED_PAGES)
    wanted = set(keys)
    moved = sorted(
        {e.author for e in reader.events.values() if e.kind == kinds.MOVE and e.author in wanted}
    )
    for did in moved:  # every branch, and moves a node's feed left out
        await reader.fetch_log(did)
    events = {
        did: tuple(
            e
            for e in reader.events.values()
            if e.author == did and e.kind == kinds.MOVE and e.body is not None
        )
        for did in moved
    }
    targets = {
        did: tuple(sorted({str(e.body["to"]) for e in evs if e.body}))
        for did, evs in events.items()
    }
    await reader.keys.settle(t for ts in targets.values() if len(ts) == 1 for t in ts)
    out: dict[str, Move] = {}
    for did in moved:
        status, reason = _judge(reader, did, targets[did])
        out[did] = Move(
            source=did, targets=targets[did], events=events[did], status=status, reason=reason
        )
    reader.report.moves.update(out)
    return out


def _judge(reader: Reader, source: str, targets: tuple[str, ...]) -> tuple[MoveStatus, str]:
    if len(targets) != 1:
        return (
            "contested",
            f"it signed moves to {len(targets)} different identities (a stolen key?); "
            "none is followed",
        )
    (target,) = targets
    history = reader.keys.histories.get(target)
    geneses = (
        []
        if history is None
        else [e for e in history.key_events.values() if e.kind == kinds.GENESIS]
    )
    if not geneses:
        return "unconfirmed", f"no node serves the genesis of {target}; not followed"
    if not any((e.body or {}).get("from") == source for e in geneses):
        return (
            "unconfirmed",
            f"the genesis of {target} does not name it in 'from'; not followed",
        )
    return "confirmed", f"its move to {target} is named back by that identity's genesis"
