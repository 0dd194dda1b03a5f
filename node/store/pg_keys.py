"""Key state in the PostgreSQL write path: §8.5 checks on ingest, statuses after a batch.

Spec 0008 on the node side (#nodes), the same rules as :mod:`node.store.sqlite_keys`
(whose docstring explains them, including the events settled alone) with the decisions
taken by :mod:`node.store.keyplan`. What differs is the reading: there is no memo
between transactions (another process of the node may write between two of this
one's, so only what the transaction itself reads is true), and the book reads in bulk
instead: :meth:`PgKeyBook.preload` loads the key events and stored paths of every
``did:murmur`` author of the batch, and which of the batch's ``kev`` ids are held, in
three statements, before the first check. Everything the transaction then writes goes
into the book as it is written, so the checks are lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from node.store.keyplan import (
    Around,
    Path,
    alone_effects,
    head_epoch_only,
    plan_settle,
    split_ids,
    state_of,
)
from node.store.pg_effects import BODY_EFFECTS, recompute_profile, undo_body
from node.store.sqlite_effects import BatchStats
from protocol.encoding import decode
from protocol.events import Event
from protocol.keystate import KeyEvent, Link, check_event, input_of

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = ["Effects", "PgKeyBook"]


class Effects(Protocol):
    """Where the effects of events settled alone go: the write path's buffers."""

    async def effect(
        self, *, eid: bytes, author: str, kind: str, seq: int, ts: int, cursor: int,
        body: dict[str, Any],
    ) -> None: ...  # fmt: skip

    async def flush(self) -> None: ...


class PgKeyBook:
    """The key events of the authors one write transaction touches (see module doc)."""

    def __init__(self, conn: Conn, base: int, next_cursor: Any, effects: Effects) -> None:
        self._conn = conn
        self._effects = effects
        #: The highest cursor before this transaction: an event at or below it whose
        #: status changes moves to a new cursor (spec 0004 #stream-status).
        self._base = base
        self._next_cursor = next_cursor
        self._keys: dict[str, dict[bytes, KeyEvent]] = {}
        self._paths: dict[str, Path] = {}
        #: Of the ids a check may ask about (the batch's kevs), those held.
        self._held: set[bytes] = set()
        self._touched: set[str] = set()
        #: Per author, head-epoch events settled alone: cursor, body, ts as stored.
        self._fast: dict[str, list[tuple[Link, int, dict[str, Any] | None, int]]] = {}

    async def preload(self, events: Sequence[Event]) -> None:
        """Read what the checks of the v2 ``events`` need, in three statements."""
        v2 = [ev for ev in events if ev.key is not None]
        if not v2:
            return
        c = self._conn
        authors = sorted({ev.author for ev in v2})
        self._keys = {a: {} for a in authors}
        for r in await c.fetch(
            "SELECT author, id, seq, prev, kev, kind, key, signing, next, recovery "
            "FROM key_events WHERE author = ANY($1::text[])",
            authors,
        ):
            self._keys[r[0]][r[1]] = KeyEvent(
                id=r[1], seq=r[2], prev=r[3], kev=r[4], kind=r[5], key=r[6],
                state=state_of(r[7], r[8], r[9]),
            )  # fmt: skip
        self._paths = dict.fromkeys(authors)
        for r in await c.fetch(
            "SELECT author, path, contenders FROM key_paths WHERE author = ANY($1::text[])",
            authors,
        ):
            self._paths[r[0]] = (list(split_ids(r[1])), list(split_ids(r[2])))
        kevs = list({ev.kev for ev in v2 if ev.kev is not None})
        if kevs:
            self._held = {
                bytes(r[0])
                for r in await c.fetch("SELECT id FROM events WHERE id = ANY($1::bytea[])", kevs)
            }

    def stored(self, eid: bytes) -> None:
        """The transaction stored ``eid`` (a later check may name it as kev)."""
        self._held.add(eid)

    def check(self, ev: Event) -> KeyEvent | Link:
        """§8.5 steps 1-4 for the v2 event ``ev``; raise its rejection (a
        ``ProtocolError``). The decoder ran step 1's did check and the signature."""
        keys = self._keys.setdefault(ev.author, {})
        item = input_of(ev, keys, not_key_events=self._held)
        check_event(item, keys, not_key_events=self._held)
        return item

    def settles_alone(self, author: str, item: KeyEvent | Link, around: Around) -> bool:
        """Is ``item`` settled by itself (stored canonical)? See sqlite_keys.KeyBook."""
        return (
            not isinstance(item, KeyEvent)
            and author not in self._touched
            and head_epoch_only(self._paths.get(author), item, around)
        )

    async def add(
        self,
        author: str,
        item: KeyEvent | Link,
        *,
        cursor: int,
        body: dict[str, Any] | None,
        ts: int,
        alone: bool,
    ) -> None:
        """``item`` was stored at ``cursor`` (canonical if ``alone``, else pending)."""
        if not isinstance(item, KeyEvent):
            if alone:
                self._fast.setdefault(author, []).append((item, cursor, body, ts))
            else:
                self._touched.add(author)
            return
        self._touched.add(author)
        self._paths[author] = None  # until the settle: nothing is settled alone
        state = item.state
        await self._conn.execute(
            "INSERT INTO key_events (id, author, seq, prev, kev, kind, key, signing, next, "
            "recovery) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
            item.id, author, item.seq, item.prev, item.kev, item.kind, item.key,
            state.signing, state.next, b"".join(state.recovery),
        )  # fmt: skip
        self._keys.setdefault(author, {})[item.id] = item

    async def settle(self, stats: BatchStats) -> None:
        """Resolve every author touched since the last call."""
        touched, self._touched = sorted(self._touched), set()
        fast, self._fast = self._fast, {}
        for author, links in sorted(fast.items()):
            await self._settle_alone(author, links, stats)
        if touched:
            # Resolution undoes effects event by event, reading the indexes: write what
            # is buffered first. The effects it applies are buffered again, after the
            # author's undoing; what another author's undoing reads (its own events'
            # references, follow pairs and tombstones) they never touch, and counts add.
            await self._effects.flush()
        for author in touched:
            await self._settle(author, stats)

    async def _settle_alone(
        self,
        author: str,
        links: list[tuple[Link, int, dict[str, Any] | None, int]],
        stats: BatchStats,
    ) -> None:
        effects, profile = alone_effects(links, BODY_EFFECTS)
        for link, cursor, body, ts in effects:
            assert body is not None  # noqa: S101 - alone_effects keeps bodied entries only
            await self._effects.effect(
                eid=link.id, author=author, kind=link.kind, seq=link.seq, ts=ts,
                cursor=cursor, body=body,
            )  # fmt: skip
        if profile:
            await recompute_profile(self._conn, author)

    async def _settle(self, author: str, stats: BatchStats) -> None:
        c = self._conn
        rows = list(
            await c.fetch(
                "SELECT id, seq, prev, kev, key, kind, status, revoked_by, cursor FROM events "
                "WHERE author = $1",
                author,
            )
        )
        plan = plan_settle(
            self._keys.get(author, {}).values(), rows,
            base=self._base, body_effects=BODY_EFFECTS,
        )  # fmt: skip
        await c.execute(
            "INSERT INTO key_paths (author, path, contenders) VALUES ($1,$2,$3) "
            "ON CONFLICT (author) DO UPDATE SET path = excluded.path, "
            "contenders = excluded.contenders",
            author, b"".join(plan.path), b"".join(plan.contenders),
        )  # fmt: skip
        self._paths[author] = (plan.path, plan.contenders)
        moved = [(eid, new, by, self._next_cursor()) for eid, new, by, up in plan.changed if up]
        kept = [(eid, new, by) for eid, new, by, up in plan.changed if not up]
        stats.moved += len(moved)
        if moved:
            # Streamed before with another status: again, at a new cursor (spec 0004
            # #stream-status), before any index that keeps cursors learns the state.
            await c.execute(
                "UPDATE events e SET status = u.status, revoked_by = u.by, cursor = u.cursor "
                "FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bigint[]) "
                "AS u(id, status, by, cursor) WHERE e.id = u.id",
                *map(list, zip(*moved, strict=True)),
            )  # fmt: skip
        if kept:
            await c.execute(
                "UPDATE events e SET status = u.status, revoked_by = u.by "
                "FROM unnest($1::bytea[], $2::text[], $3::bytea[]) AS u(id, status, by) "
                "WHERE e.id = u.id",
                *map(list, zip(*kept, strict=True)),
            )  # fmt: skip
        if not plan.flips:
            return
        for eid, kind in plan.undo:
            body = await c.fetchval("SELECT body FROM events WHERE id = $1", eid)
            decoded = None if body is None else decode(body)
            if isinstance(decoded, dict):
                await undo_body(c, eid=eid, author=author, kind=kind, body=decoded, stats=stats)
        held = {
            bytes(r[0]): r
            for r in await c.fetch(
                "SELECT id, cursor, ts, body FROM events WHERE id = ANY($1::bytea[]) "
                "AND body IS NOT NULL",
                [eid for eid, _, _ in plan.apply],
            )
        }
        for eid, kind, seq in plan.apply:
            row = held.get(eid)
            if row is not None:
                await self._effects.effect(
                    eid=eid, author=author, kind=kind, seq=seq, ts=row["ts"],
                    cursor=row["cursor"], body=decode(row["body"]),
                )  # fmt: skip
        await recompute_profile(c, author)
