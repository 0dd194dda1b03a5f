"""Key state for any store's write path: what does not depend on the database.

Spec 0008 on the node side (#nodes). Both write paths (:mod:`node.store.sqlite_keys`
on SQLite, :mod:`node.store.pg_keys` on PostgreSQL) run the §8.5 checks with
:mod:`protocol.keystate` and resolve the touched authors after each phase of a batch;
they differ only in how they read and write the tables. The decisions live here, once:
the order a batch is applied in (:func:`batch_phases`), whether an event is settled
alone (:func:`head_epoch_only`, the fast path the SQLite module's docstring explains),
and what a resolution changes (:func:`plan_settle`: the new path, the statuses and
``revoked_by`` that moved, the events whose body effects flip, in the order to apply
them). :class:`KeyMemo` is the SQLite writer's cache between transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from protocol import kinds
from protocol.events import Event
from protocol.keystate import KeyEvent, KeyState, Link, resolve

__all__ = [
    "alone_effects",
    "CANONICAL",
    "MEMO_AUTHORS",
    "PENDING",
    "Around",
    "KeyMemo",
    "Path",
    "Settlement",
    "batch_phases",
    "head_epoch_only",
    "plan_settle",
    "split_ids",
    "state_of",
]

#: The status a v2 event is stored with until the settle decides it: not canonical, so
#: no body effect is applied before then. (An event settled alone is stored canonical.)
PENDING: Final = "pending"
#: The status whose events count in indexes, profiles and deletions (spec 0008 #status).
CANONICAL: Final = "canonical"
KEY_LEN: Final = 32
#: Authors a :class:`KeyMemo` keeps (a few KeyEvents each: ~1 KB an author).
MEMO_AUTHORS: Final = 4096

#: The stored canonical path and contenders of an author (None: no key events).
Path = tuple[list[bytes], list[bytes]] | None
#: Of a v2 event about to be stored: the kind and kev of the author's event at its
#: ``prev`` (kind None: not held), and whether an event naming it as ``prev`` is held.
Around = tuple[str | None, bytes | None, bool]


def state_of(signing: bytes, next_: bytes, recovery: bytes) -> KeyState:
    """The :class:`KeyState` of a ``key_events`` row (recovery: 1-3 keys, concatenated)."""
    return KeyState(signing=signing, next=next_, recovery=split_ids(recovery))


def split_ids(blob: bytes) -> tuple[bytes, ...]:
    """Concatenated 32-byte ids (or keys), split."""
    blob = bytes(blob)
    return tuple(blob[i : i + KEY_LEN] for i in range(0, len(blob), KEY_LEN))


def batch_phases(events: Sequence[Event]) -> tuple[list[int], list[int]]:
    """The order a batch is applied in, as two phases of indexes into ``events``.

    Key events first, by seq (a key event's kev is below it): the events of the batch
    that rely on them are then checked with them held (spec 0008 #nodes). Then the
    other events with a body; a body-less event is judged once the batch's deletes are
    applied (and, for v2 authors, once their statuses are known), in the second phase.
    """
    keyed = [
        i for i, ev in enumerate(events) if ev.kind in kinds.KEY_EVENT_KINDS and ev.key is not None
    ]
    keyed.sort(key=lambda i: events[i].seq)
    first = set(keyed)
    bodied = keyed + [
        i for i, ev in enumerate(events) if ev.body_bytes is not None and i not in first
    ]
    bodiless = [i for i, ev in enumerate(events) if ev.body_bytes is None and i not in first]
    return bodied, bodiless


_Entry = TypeVar("_Entry", bound=tuple[Any, ...])


def alone_effects(
    links: Iterable[_Entry], body_effects: frozenset[str]
) -> tuple[list[_Entry], bool]:
    """Of the entries of events settled alone (each ``(link, cursor, body, ...)``), those
    whose body effects apply, in ``(seq, id)`` order, bodies as stored in this batch (no
    event has changed them since); and whether a profile is among them (the caller then
    recomputes the author's latest profile instead)."""
    out: list[_Entry] = []
    profile = False
    for entry in sorted(links, key=lambda e: (e[0].seq, e[0].id)):
        kind = entry[0].kind
        if kind not in body_effects:
            continue
        if kind == kinds.PROFILE:
            profile = True
        elif entry[2] is not None:
            out.append(entry)
    return out, profile


def head_epoch_only(known: Path, link: Link, around: Around) -> bool:
    """Is ``link`` settled by itself: canonical, changing no other status? ``known`` is
    its author's stored path (see :mod:`node.store.sqlite_keys` for why this holds)."""
    if known is None or not known[0] or known[1] or link.kev != known[0][-1]:
        return False
    prev_kind, prev_kev, child = around
    if prev_kind is not None:
        expected = link.prev if prev_kind in kinds.KEY_EVENT_KINDS else prev_kev
        if link.kev != expected:
            return False
    return not child


#: A held event of the author being resolved: id, seq, prev, kev, key, kind, status,
#: revoked_by, cursor (the columns both stores read for it).
Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Settlement:
    """What resolving one author changes (:func:`plan_settle`)."""

    path: list[bytes]
    contenders: list[bytes]
    #: Events whose status or revoked_by changed: id, new status, revoked_by, and
    #: whether it was streamed before (its cursor is at or below the batch's base, so it
    #: moves to a new cursor: spec 0004 #stream-status).
    changed: list[tuple[bytes, str, bytes | None, bool]]
    #: Events with body effects that stop counting, in (seq, id) order: undo these first.
    undo: list[tuple[bytes, str]]
    #: Events with body effects that start counting, in (seq, id) order, profiles left out
    #: (the caller recomputes the profile): apply these after the undos.
    apply: list[tuple[bytes, str, int]]
    #: Any body effect flips (then the profile is recomputed too).
    flips: bool


def plan_settle(
    keys: Iterable[KeyEvent], rows: Sequence[Row], *, base: int, body_effects: frozenset[str]
) -> Settlement:
    """Resolve an author's held events (spec 0008 §8.6-§8.7) against what is stored."""
    links = [
        Link(id=r[0], seq=r[1], prev=r[2], kev=r[3], kind=r[5], key=r[4])
        for r in rows
        if r[5] not in kinds.KEY_EVENT_KINDS
    ]
    res = resolve(keys, links)
    changed: list[tuple[bytes, str, bytes | None, bool]] = []
    flipped: list[tuple[int, bytes, str, bool]] = []  # seq, id, kind, now canonical
    for eid, seq, _, _, _, kind, old, old_by, cursor in rows:
        new = res.status[eid].value
        by = res.revoked_by.get(eid)
        if new == old and by == old_by:
            continue
        changed.append((eid, new, by, cursor <= base))
        if (old == CANONICAL) != (new == CANONICAL) and kind in body_effects:
            flipped.append((seq, eid, kind, new == CANONICAL))
    flipped.sort()
    # Undo first, then apply: a delete that lost and one that won may name one target.
    return Settlement(
        path=list(res.path),
        contenders=list(res.contenders),
        changed=changed,
        undo=[(eid, kind) for _, eid, kind, now in flipped if not now],
        apply=[
            (eid, kind, seq) for seq, eid, kind, now in flipped if now and kind != kinds.PROFILE
        ],
        flips=bool(flipped),
    )


class KeyMemo:
    """Key events and stored paths of recent authors, between write transactions.

    Owned by the SQLite store's single writer. Holds what the tables hold once the
    current transaction commits: the key book loads into it and adds to it as it
    writes, and :func:`node.store.sqlite_write.apply_batch_sync` calls :meth:`clear`
    when a transaction rolls back and :meth:`trim` after a commit (oldest authors go
    first). (Not used on PostgreSQL: another process may write between transactions.)
    """

    __slots__ = ("keys", "max_authors", "paths")

    def __init__(self, max_authors: int = MEMO_AUTHORS) -> None:
        self.max_authors = max_authors
        self.keys: dict[str, dict[bytes, KeyEvent]] = {}
        self.paths: dict[str, Path] = {}

    def clear(self) -> None:
        self.keys.clear()
        self.paths.clear()

    def trim(self) -> None:
        for table in (self.keys, self.paths):
            for author in list(table)[: max(0, len(table) - self.max_authors)]:
                del table[author]
