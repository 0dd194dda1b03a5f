"""What an event's body changes besides its own row, and how to undo it (PostgreSQL).

The twin of :mod:`node.store.sqlite_effects` (whose docstring says what each effect
is): the label index, the latest profile of each author, the social indexes and post
search, and a ``delete``'s tombstone with the dropped body of its target (spec 0004
§deletion). Applied when an event is stored (v1) or becomes canonical (v2, spec 0008
#status), undone when a v2 event stops being canonical (0008 #revoked-delete).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from node.store.pg_blobs import add_blob_refs, drop_blob_refs
from node.store.pg_search import index_post, unindex_post
from node.store.pg_social import SOCIAL_KINDS, remove_social
from node.store.pg_social_bulk import add_social
from node.store.sqlite_effects import BatchStats, _label_subject, _profile_fields
from protocol import kinds
from protocol.encoding import decode

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = [
    "BODY_EFFECTS",
    "apply_body",
    "drop_body",
    "recompute_profile",
    "rowcount",
    "set_profile",
    "undo_body",
]

#: The kinds whose body changes more than the events table.
BODY_EFFECTS: Final = frozenset({kinds.LABEL, kinds.PROFILE, kinds.DELETE}) | SOCIAL_KINDS


def rowcount(status: str) -> int:
    """The row count of an asyncpg command tag (``UPDATE 1``, ``INSERT 0 1``)."""
    return int(status.rsplit(" ", 1)[-1])


async def set_profile(c: Conn, author: str, eid: bytes, seq: int, body: dict[str, Any]) -> None:
    name, bio = _profile_fields(body)
    await c.execute(
        "INSERT INTO profiles (author, id, seq, name, name_lower, bio) "
        "VALUES ($1,$2,$3,$4,$5,$6) "
        "ON CONFLICT (author) DO UPDATE SET id = excluded.id, seq = excluded.seq, "
        "name = excluded.name, name_lower = excluded.name_lower, bio = excluded.bio "
        "WHERE excluded.seq > profiles.seq "
        "OR (excluded.seq = profiles.seq AND excluded.id > profiles.id)",
        author, eid, seq, name, name.lower(), bio,
    )  # fmt: skip


async def recompute_profile(c: Conn, author: str) -> None:
    """The author's latest profile among its canonical events with a body."""
    await c.execute("DELETE FROM profiles WHERE author = $1", author)
    row = await c.fetchrow(
        "SELECT id, seq, body FROM events WHERE author = $1 AND kind = $2 "
        "AND body IS NOT NULL AND status = 'canonical' ORDER BY seq DESC, id DESC LIMIT 1",
        author, kinds.PROFILE,
    )  # fmt: skip
    if row is not None:
        await set_profile(c, author, row["id"], row["seq"], decode(row["body"]))


async def drop_body(c: Conn, target: bytes, author: str, stats: BatchStats) -> None:
    """Drop the body of ``target`` (by ``author``) and everything derived from it."""
    done = await c.execute(
        "UPDATE events SET body = NULL, deleted = true, reply_root = NULL, "
        "reply_parent = NULL WHERE id = $1 AND author = $2 AND NOT deleted",
        target, author,
    )  # fmt: skip
    stats.deleted += rowcount(done)
    await c.execute("DELETE FROM labels WHERE id = $1", target)
    await remove_social(c, target)
    await unindex_post(c, target)
    await drop_blob_refs(c, target, stats)
    current = await c.fetchval("SELECT id FROM profiles WHERE author = $1", author)
    if current == target:
        await recompute_profile(c, author)


async def apply_body(
    c: Conn,
    *,
    eid: bytes,
    author: str,
    kind: str,
    seq: int,
    ts: int,
    cursor: int,
    body: dict[str, Any],
    stats: BatchStats,
) -> None:
    """Apply the effects of one counting event's body (``kind`` in BODY_EFFECTS)."""
    if kind == kinds.LABEL:
        exp = body.get("exp")
        await c.execute(
            "INSERT INTO labels (id, cursor, labeler, subject, val, neg, exp) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
            eid, cursor, author, _label_subject(body["subject"]), body["val"],
            body.get("neg") is True, exp if isinstance(exp, int) else None,
        )  # fmt: skip
    elif kind == kinds.PROFILE:
        await set_profile(c, author, eid, seq, body)
    elif kind in SOCIAL_KINDS:
        await add_social(
            c, eid=eid, author=author, kind=kind, seq=seq, ts=ts, cursor=cursor, body=body
        )
        if kind == kinds.POST:
            await index_post(c, eid=eid, ts=ts, cursor=cursor, body=body)
            if "embed" in body:
                await add_blob_refs(c, eid, author, body, stats)
    elif kind == kinds.DELETE:
        target: bytes = body["target"]
        held = await c.fetchrow("SELECT kind, author FROM events WHERE id = $1", target)
        if held is not None and held["kind"] == kinds.DELETE:
            return  # a delete of a delete has no effect (spec 0003 #delete-of-delete)
        if held is not None and held["kind"] in kinds.KEY_EVENT_KINDS and held["author"] == author:
            return  # a key event's body is never dropped (spec 0008 #key-event-body)
        if held is not None and held["author"] != author:
            return  # another author's event: stored, no effect (spec 0004 #not-author)
        await c.execute(
            "INSERT INTO tombstones (target, author, delete_id) VALUES ($1,$2,$3) "
            "ON CONFLICT DO NOTHING",
            target, author, eid,
        )  # fmt: skip
        await drop_body(c, target, author, stats)


async def _undo_delete(
    c: Conn, eid: bytes, author: str, body: dict[str, Any], stats: BatchStats
) -> None:
    """A delete that stopped counting (0008 #revoked-delete): its target is deleted no
    more, unless another canonical delete of the author names it too. The target's body
    stays NULL: the row becomes a missing body that a peer's copy completes."""
    target: bytes = body["target"]
    gone = await c.execute(
        "DELETE FROM tombstones WHERE target = $1 AND author = $2 AND delete_id = $3",
        target, author, eid,
    )  # fmt: skip
    if not rowcount(gone):
        return  # it had no effect (delete of a delete, or another delete's tombstone)
    others = await c.fetch(
        "SELECT id, body FROM events WHERE author = $1 AND kind = $2 "
        "AND status = 'canonical' AND body IS NOT NULL AND id != $3",
        author, kinds.DELETE, eid,
    )  # fmt: skip
    for other_id, other_body in others:
        if decode(other_body).get("target") == target:
            await c.execute(
                "INSERT INTO tombstones (target, author, delete_id) VALUES ($1,$2,$3) "
                "ON CONFLICT DO NOTHING",
                target, author, other_id,
            )  # fmt: skip
            return
    done = await c.execute(
        "UPDATE events SET deleted = false WHERE id = $1 AND author = $2 AND deleted",
        target, author,
    )  # fmt: skip
    stats.deleted -= rowcount(done)


async def undo_body(
    c: Conn, *, eid: bytes, author: str, kind: str, body: dict[str, Any], stats: BatchStats
) -> None:
    """Undo :func:`apply_body` for an event that stopped counting. A profile's undoing
    is the caller's :func:`recompute_profile` once every change is in."""
    if kind == kinds.LABEL:
        await c.execute("DELETE FROM labels WHERE id = $1", eid)
    elif kind in SOCIAL_KINDS:
        await remove_social(c, eid)
        if kind == kinds.POST:
            await unindex_post(c, eid)
            await drop_blob_refs(c, eid, stats)
    elif kind == kinds.DELETE:
        await _undo_delete(c, eid, author, body, stats)
