"""Key-history reads of the PostgreSQL store (spec 0004 #keys, #keys-batch).

One author's page of key events, the whole histories of many authors in three
statements, and the feed's key tips, each as the SQLite store answers them: the
canonical key events are exactly the author's path (spec 0008 §8.7), the contenders
those of the page. The caller holds a repeatable-read transaction, so that a page, its
statuses and its contenders agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from node.store.base import KeyHistory, StoredEvent
from node.store.keyplan import split_ids
from node.store.pg_rows import COLS, row

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = ["key_histories", "key_page", "whole_histories"]


async def key_histories(
    c: Conn, authors: Sequence[str], max_events: int
) -> tuple[dict[str, KeyHistory], list[str]]:
    """Whole key histories of ``authors`` within ``max_events`` key events in all; an
    author whose history is longer than what is left is deferred without being read
    (spec 0004 #keys-batch)."""
    deferred: list[str] = []
    budget = max_events
    # Index-only counts of at most budget + 1 entries each, in one round trip: an
    # author with a huge history is deferred without being read.
    counts = await c.fetch(
        "SELECT u.a, (SELECT count(*) FROM (SELECT 1 FROM key_events "
        'WHERE author = u.a COLLATE "C" LIMIT $2) AS k) '
        "FROM unnest($1::text[]) WITH ORDINALITY AS u(a, n) ORDER BY u.n",
        list(dict.fromkeys(authors)), budget + 1,
    )  # fmt: skip
    read: list[str] = []
    for author, n in counts:
        if n == 0:
            continue
        if n > budget:
            deferred.append(author)
            continue
        budget -= n
        read.append(author)
    return (await whole_histories(c, read) if read else {}), deferred


async def whole_histories(c: Conn, authors: list[str]) -> dict[str, KeyHistory]:
    """The whole key histories of ``authors`` (as :func:`key_page` with no limit),
    in three round trips whatever their number."""
    paths = {
        r[0]: list(split_ids(r[1]))
        for r in await c.fetch(
            "SELECT author, contenders FROM key_paths WHERE author = ANY($1::text[])",
            authors,
        )
    }
    rows = await c.fetch(
        f"SELECT {COLS} FROM events WHERE id IN "  # noqa: S608 - constant SQL + placeholders
        "(SELECT id FROM key_events WHERE author = ANY($1::text[])) "
        "ORDER BY author, seq, id",
        [a for a in authors if a in paths],
    )  # fmt: skip
    by_author: dict[str, list[StoredEvent]] = {}
    for r in rows:
        ev = row(r)
        by_author.setdefault(ev.author, []).append(ev)
    firsts = [k[0] for k in paths.values() if k]
    points = (
        {
            bytes(i): kev
            for i, kev in await c.fetch(
                "SELECT id, kev FROM key_events WHERE id = ANY($1::bytea[])", firsts
            )
        }
        if firsts
        else {}
    )
    out: dict[str, KeyHistory] = {}
    for author in authors:
        contenders = paths.get(author)
        if contenders is None:
            continue
        point = points.get(contenders[0]) if contenders else None
        out[author] = KeyHistory.page(
            author, by_author.get(author, []), contenders, point, more=False
        )
    return out


async def key_page(
    c: Conn, author: str, after: tuple[int, bytes] | None, limit: int
) -> KeyHistory | None:
    """At most ``limit`` key events of ``author`` after ``(seq, id)`` ``after``, by
    ``(seq, id)``, with the path and contenders among them (as the SQLite store's
    ``_key_page``: the canonical key events are exactly the path, spec 0008 §8.7)."""
    blob = await c.fetchval("SELECT contenders FROM key_paths WHERE author = $1", author)
    if blob is None:
        return None
    contenders = list(split_ids(blob))
    seq, eid = after if after is not None else (0, b"")
    rows = await c.fetch(
        f"SELECT {COLS} FROM events WHERE id IN "  # noqa: S608 - constant SQL + placeholders
        "(SELECT id FROM key_events WHERE author = $1 AND (seq, id) > ($2, $3) "
        "ORDER BY seq, id LIMIT $4) ORDER BY seq, id",
        author, seq, eid, limit + 1,
    )  # fmt: skip
    point = None
    if contenders:
        point = await c.fetchval("SELECT kev FROM key_events WHERE id = $1", contenders[0])
    events = [row(r) for r in rows[:limit]]
    return KeyHistory.page(author, events, contenders, point, more=len(rows) > limit)
