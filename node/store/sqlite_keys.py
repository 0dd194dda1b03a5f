"""Key state in the SQLite write path: §8.5 checks on ingest, statuses after a batch.

Spec 0008 on the node side (#nodes). A :class:`KeyBook` lives for one write
transaction. For each v2 event the write path asks :meth:`KeyBook.check`, which runs
:func:`protocol.keystate.check_event` against the author's held key events — loaded
once per author from the ``key_events`` table, so the check is a lookup, never another
signature — and raises the §8.5 rejection (``unknown-key-event`` retryable;
``bad-kev``, ``unauthorized-key``, ``bad-field``, ``invalid-did`` final). A key event
that passes is recorded (:meth:`KeyBook.add`) before the rest of the batch is checked.

After the batch, :meth:`KeyBook.settle` re-runs :func:`protocol.keystate.resolve` over
each touched author's key events and chain links (no body is read), writes the statuses
and ``revoked_by`` that changed (an event stored before this batch then moves to a new
cursor, so that stream subscribers see it again: spec 0004 #stream-status), and moves
the body effects with them
(:mod:`node.store.sqlite_effects`): an event counts in the label index, the profile
and deletions exactly while it is canonical (0008 #status).

The common case does not pay for that. An ordinary event that names the head of the
author's stored canonical path (no dispute), continues its ``prev`` as §8.5 step 5
says (or its ``prev`` is not held), and has no held child yet is canonical, and
changes no other event's status: ``resolve`` would say exactly that (the head's epoch
is canonical "as usual"; only the continuity of its children, and the epochs before
the head, could depend on it, and stored events never name an unheld ``kev``). Such
events are settled alone, in constant time; any other event of an author, or any key
event, makes the whole author resolve again. Without this, each event of an author
with a long chain would cost a pass over the whole chain, on the single writer.

Nor does it read the key tables again for every batch: a :class:`KeyMemo`, kept by the
store's writer between transactions, holds the key events and stored path of the
authors written lately, exactly as committed (what a transaction writes goes into it as
it is written; a transaction that rolls back empties it). So the check of an ordinary
event of a known author is a dictionary lookup (issue #15: no slower than did:key).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from node.store.keyplan import (
    MEMO_AUTHORS,
    PENDING,
    Around,
    KeyMemo,
    Path,
    alone_effects,
    head_epoch_only,
    plan_settle,
    split_ids,
    state_of,
)
from node.store.sqlite_effects import (
    BODY_EFFECTS,
    BatchStats,
    apply_body,
    recompute_profile,
    undo_body,
)
from protocol.encoding import decode
from protocol.events import Event
from protocol.keystate import KeyEvent, Link, check_event, input_of

__all__ = [
    "MEMO_AUTHORS",
    "PENDING",
    "Around",
    "KeyBook",
    "KeyMemo",
    "key_contenders",
    "key_path",
]


class _HeldIds:
    """``kev in held``: is that id stored at all? A ``kev`` naming a held event that is
    not one of the author's key events is ``bad-kev``, not ``unknown-key-event``."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __contains__(self, eid: object) -> bool:
        row = self._conn.execute("SELECT 1 FROM events WHERE id = ?", (eid,)).fetchone()
        return row is not None


def load_key_events(conn: sqlite3.Connection, author: str) -> dict[bytes, KeyEvent]:
    """The author's held key events (each passed §8.5 steps 1-4 when stored)."""
    rows = conn.execute(
        "SELECT id, seq, prev, kev, kind, key, signing, next, recovery FROM key_events "
        "WHERE author = ?",
        (author,),
    ).fetchall()
    return {
        r[0]: KeyEvent(
            id=r[0], seq=r[1], prev=r[2], kev=r[3], kind=r[4], key=r[5],
            state=state_of(r[6], r[7], r[8]),
        )
        for r in rows
    }


def key_path(conn: sqlite3.Connection, author: str) -> Path:
    """The stored canonical path and contenders of ``author`` (None: no key events)."""
    row = conn.execute(
        "SELECT path, contenders FROM key_paths WHERE author = ?", (author,)
    ).fetchone()
    if row is None:
        return None
    return list(split_ids(row[0])), list(split_ids(row[1]))


def key_contenders(conn: sqlite3.Connection, author: str) -> list[bytes] | None:
    """The stored contenders of ``author``'s dispute (empty: none; None: no key
    events), without splitting the whole path (spec 0004 #author-keys pages)."""
    row = conn.execute("SELECT contenders FROM key_paths WHERE author = ?", (author,)).fetchone()
    if row is None:
        return None
    return list(split_ids(row[0]))


class KeyBook:
    """The key events of the authors a write transaction touches (see module doc)."""

    __slots__ = ("_base", "_columns", "_conn", "_fast", "_held", "_keys", "_paths", "_touched")

    def __init__(self, conn: sqlite3.Connection, memo: KeyMemo | None = None) -> None:
        self._conn = conn
        #: The highest cursor before this transaction: an event at or below it whose
        #: status changes moves to a new cursor (spec 0004 #stream-status).
        self._base: int = conn.execute("SELECT coalesce(max(cursor), 0) FROM events").fetchone()[0]
        self._columns: str | None = None
        self._held = _HeldIds(conn)
        memo = KeyMemo() if memo is None else memo
        self._keys = memo.keys
        #: Authors to resolve in full at the next settle.
        self._touched: set[str] = set()
        #: Per author, head-epoch events settled alone (see the module doc), each with
        #: the cursor and body it was stored with.
        self._fast: dict[str, list[tuple[Link, int, dict[str, Any] | None]]] = {}
        self._paths = memo.paths

    def _of(self, author: str) -> dict[bytes, KeyEvent]:
        keys = self._keys.get(author)
        if keys is None:
            keys = self._keys[author] = load_key_events(self._conn, author)
        return keys

    def check(self, ev: Event) -> KeyEvent | Link:
        """§8.5 steps 1-4 for the v2 event ``ev``; raise its rejection (a
        ``ProtocolError``). The decoder ran step 1's did check and the signature."""
        keys = self._of(ev.author)
        item = input_of(ev, keys, not_key_events=self._held)
        check_event(item, keys, not_key_events=self._held)
        return item

    def settles_alone(self, author: str, item: KeyEvent | Link, around: Around) -> bool:
        """Before ``item`` is stored: is it settled by itself (see the module doc)? It
        is then stored canonical, and :meth:`add` must be told so. ``around`` is what
        the store holds next to it (:data:`Around`)."""
        return (
            not isinstance(item, KeyEvent)
            and author not in self._touched
            and self._head_epoch_only(author, item, around)
        )

    def add(
        self,
        author: str,
        item: KeyEvent | Link,
        *,
        cursor: int,
        body: dict[str, Any] | None,
        alone: bool,
    ) -> None:
        """``item`` was stored at ``cursor`` with ``body`` (None: stored without one),
        canonical if ``alone`` (:meth:`settles_alone` said so), else pending: remember a
        key event, and resolve ``author`` later."""
        if not isinstance(item, KeyEvent):
            if alone:
                self._fast.setdefault(author, []).append((item, cursor, body))
            else:
                self._touched.add(author)
            return
        self._touched.add(author)
        self._paths.pop(author, None)
        state = item.state
        self._conn.execute(
            "INSERT OR IGNORE INTO key_events (id, author, seq, prev, kev, kind, key, "
            "signing, next, recovery) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                item.id, author, item.seq, item.prev, item.kev, item.kind, item.key,
                state.signing, state.next, b"".join(state.recovery),
            ),
        )
        self._of(author)[item.id] = item

    def _head_epoch_only(self, author: str, link: Link, around: Around) -> bool:
        """Is ``link`` settled by itself: canonical, changing no other status?"""
        if author not in self._paths:
            self._paths[author] = key_path(self._conn, author)
        return head_epoch_only(self._paths[author], link, around)

    def settle(self, stats: BatchStats) -> None:
        """Resolve every author touched since the last call (see module doc)."""
        touched, self._touched = sorted(self._touched), set()
        fast, self._fast = self._fast, {}
        # Events stored canonical get their effects first; an author touched since is
        # then resolved in full like any other, and an event whose status that changes
        # is undone there as an event that was canonical before the batch would be.
        for author, links in sorted(fast.items()):
            self._settle_alone(author, links, stats)
        for author in touched:
            self._settle(author, stats)

    def _settle_alone(
        self,
        author: str,
        links: list[tuple[Link, int, dict[str, Any] | None]],
        stats: BatchStats,
    ) -> None:
        """Head-epoch events, stored canonical: their body effects (as :meth:`_settle`
        applies them to an event that became canonical)."""
        conn = self._conn
        effects, profile = alone_effects(links, BODY_EFFECTS)
        for link, cursor, body in effects:
            assert body is not None  # noqa: S101 - alone_effects keeps bodied entries only
            apply_body(
                conn, eid=link.id, author=author, kind=link.kind, seq=link.seq,
                cursor=cursor, body=body, stats=stats,
            )  # fmt: skip
        if profile:
            recompute_profile(conn, author)

    def _move(self, eid: bytes, stats: BatchStats) -> None:
        """Give the held event ``eid`` a new cursor, every column kept (search keys and
        whatever other indexes add), so that the live stream carries it again with its
        new status (spec 0004 #stream-status), as a completed body is (#body-fill)."""
        conn = self._conn
        if self._columns is None:
            names = [r[1] for r in conn.execute("PRAGMA table_info(events)") if r[1] != "cursor"]
            self._columns = ", ".join(names)
        cols = self._columns
        row = conn.execute(
            f"SELECT {cols} FROM events WHERE id = ?", (eid,)  # noqa: S608 - column names
        ).fetchone()
        conn.execute("DELETE FROM events WHERE id = ?", (eid,))
        cursor = conn.execute(
            f"INSERT INTO events ({cols}) VALUES ({','.join('?' * len(row))})",  # noqa: S608
            row,
        ).lastrowid
        stats.moved += 1
        stats.top_cursor = max(stats.top_cursor, cursor or 0)

    def _settle(self, author: str, stats: BatchStats) -> None:
        conn = self._conn
        rows = conn.execute(
            "SELECT id, seq, prev, kev, key, kind, status, revoked_by, cursor FROM events "
            "WHERE author = ?",
            (author,),
        ).fetchall()
        plan = plan_settle(
            self._of(author).values(), rows, base=self._base, body_effects=BODY_EFFECTS
        )
        conn.execute(
            "INSERT OR REPLACE INTO key_paths (author, path, contenders) VALUES (?,?,?)",
            (author, b"".join(plan.path), b"".join(plan.contenders)),
        )
        self._paths[author] = (plan.path, plan.contenders)
        for eid, new, by, streamed in plan.changed:
            conn.execute(
                "UPDATE events SET status = ?, revoked_by = ? WHERE id = ?", (new, by, eid)
            )
            if streamed:
                # Streamed before with another status: again, before any index that
                # keeps cursors (labels, social, search) learns the new state.
                self._move(eid, stats)
        if not plan.flips:
            return
        for eid, kind in plan.undo:
            body = _body(conn, eid)
            if body is not None:
                undo_body(conn, eid=eid, author=author, kind=kind, body=body, stats=stats)
        for eid, kind, seq in plan.apply:
            row = conn.execute(
                "SELECT cursor, body FROM events WHERE id = ? AND body IS NOT NULL", (eid,)
            ).fetchone()
            if row is not None:
                apply_body(
                    conn, eid=eid, author=author, kind=kind, seq=seq, cursor=row[0],
                    body=decode(row[1]), stats=stats,
                )
        recompute_profile(conn, author)


def _body(conn: sqlite3.Connection, eid: bytes) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM events WHERE id = ?", (eid,)).fetchone()
    if row is None or row[0] is None:
        return None
    body = decode(row[0])
    return body if isinstance(body, dict) else None
