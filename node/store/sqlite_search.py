"""Post search in SQLite: an FTS5 full-text index and a tag index (spec 0004 #search).

A post is **indexed** while it is canonical, holds its body and is not deleted (the
same posts the feed shows, less ``pending`` ones). The write path's body effects
(:mod:`node.store.sqlite_effects`) call :func:`index_post` when a post starts to count
(stored, its body filled in, its status turned canonical) and :func:`unindex_post`
when it stops (deleted, revoked, disputed); both are idempotent, keyed on the
``events.search_key`` column, which is set exactly while the post is indexed.

``search_key`` is the post's place in search results: ``ts`` in the high bits and the
low :data:`_LOW_BITS` of its cursor below, so ``ORDER BY key DESC`` is newest first by
``ts`` (spec 0004 #search-order), and the full-text index can walk its rowids (the
keys) from the top and stop after one page, however many posts match. Two posts of
the same millisecond whose cursors agree in those bits (a million apart) take the next
free key below.

The full-text table ``post_text`` is **contentless** (``content=''``): it holds the
inverted index only, not a second copy of the text (the events table has the body).
Removing a row from it needs the very text it was given, which
:func:`node.search_terms.post_words` recomputes from the body; so a post is unindexed
*before* its body is dropped. ``columnsize=0`` drops the per-row size table (no
ranking is done). The tokenizer is ``unicode61 remove_diacritics 2``: words are runs of
letters and digits, compared case-folded and without diacritics; no prefix index.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from node.search_terms import post_tags, post_words
from protocol import kinds
from protocol.encoding import decode

__all__ = [
    "SCHEMA",
    "backfill_search",
    "index_post",
    "match_expression",
    "search_keys",
    "tag_keys",
    "unindex_post",
]

log = logging.getLogger("murmur.node.store")

#: Statements of the schema migration that adds search (part of ``_V5``, which then
#: runs :func:`backfill_search`).
SCHEMA: Final = [
    # Set while the post is indexed (see the module doc); NULL for every other event.
    "ALTER TABLE events ADD COLUMN search_key INTEGER",
    "CREATE UNIQUE INDEX events_search_key ON events (search_key) "
    "WHERE search_key IS NOT NULL",
    "CREATE VIRTUAL TABLE post_text USING fts5(text, content='', columnsize=0, "
    "tokenize='unicode61 remove_diacritics 2')",
    # Normalized tags (node.search_terms.normalize_tag) of indexed posts.
    """CREATE TABLE post_tags (
        tag TEXT NOT NULL,
        key INTEGER NOT NULL,
        PRIMARY KEY (tag, key)
    ) WITHOUT ROWID""",
]

_LOW_BITS: Final = 20
_LOW_MASK: Final = (1 << _LOW_BITS) - 1
#: ``ts`` above this (the year 2248) share the top key range; nodes refuse events from
#: the future anyway.
_MAX_KEY_TS: Final = (1 << (63 - _LOW_BITS)) - 1
#: Free keys tried below the natural one before a post is left out of search.
_KEY_TRIES: Final = 64


def _key(ts: int, cursor: int) -> int:
    return (min(ts, _MAX_KEY_TS) << _LOW_BITS) | (cursor & _LOW_MASK)


def index_post(conn: sqlite3.Connection, cursor: int, body: dict[str, Any]) -> None:
    """Index the post stored at ``cursor`` with ``body`` (a no-op if it already is)."""
    row = conn.execute(
        "SELECT ts, search_key FROM events WHERE cursor = ?", (cursor,)
    ).fetchone()
    if row is None or row[1] is not None:
        return
    text = post_words(body)
    tags = post_tags(body)
    if not text.strip() and not tags:
        return  # nothing any query could find
    natural = _key(row[0], cursor)
    for key in range(natural, max(natural - _KEY_TRIES, -1), -1):
        try:
            conn.execute("UPDATE events SET search_key = ? WHERE cursor = ?", (key, cursor))
        except sqlite3.IntegrityError:
            continue  # taken by a post of the same millisecond
        break
    else:
        log.warning("search key space full ts=%d cursor=%d: post not indexed", row[0], cursor)
        return
    conn.execute("INSERT INTO post_text (rowid, text) VALUES (?, ?)", (key, text))
    conn.executemany(
        "INSERT OR IGNORE INTO post_tags (tag, key) VALUES (?, ?)", [(t, key) for t in tags]
    )


def unindex_post(conn: sqlite3.Connection, eid: bytes, author: str) -> None:
    """Take the event ``eid`` of ``author`` out of search, if it is in; call it while
    its body is still held (see the module doc)."""
    row = conn.execute(
        "SELECT search_key, body FROM events WHERE id = ? AND author = ? "
        "AND search_key IS NOT NULL",
        (eid, author),
    ).fetchone()
    if row is None:
        return
    key, raw = row
    body = decode(raw)
    # The contentless table's 'delete' command: the same text as was inserted.
    conn.execute(
        "INSERT INTO post_text (post_text, rowid, text) VALUES ('delete', ?, ?)",
        (key, post_words(body)),
    )
    conn.executemany(
        "DELETE FROM post_tags WHERE tag = ? AND key = ?", [(t, key) for t in post_tags(body)]
    )
    conn.execute("UPDATE events SET search_key = NULL WHERE id = ?", (eid,))


def backfill_search(conn: sqlite3.Connection) -> None:
    """Index the posts already held (the v5 migration, inside its transaction)."""
    last = 0
    while True:
        rows = conn.execute(
            "SELECT cursor, body FROM events WHERE cursor > ? AND kind = ? "
            "AND status = 'canonical' AND deleted = 0 AND body IS NOT NULL "
            "ORDER BY cursor LIMIT 2048",
            (last, kinds.POST),
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        for cursor, raw in rows:
            body = decode(raw)
            if isinstance(body, dict):
                index_post(conn, cursor, body)


def match_expression(words: Sequence[str]) -> str:
    """An FTS5 query that every word must match, each a quoted string: words hold only
    letters, digits and marks (:func:`node.search_terms.query_words`), so they carry no
    quote or operator; quotes inside are doubled all the same."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def search_keys(
    conn: sqlite3.Connection, words: Sequence[str], before: int | None, limit: int
) -> list[int]:
    """Keys of the indexed posts matching every word, newest first, below ``before``."""
    rows = conn.execute(
        "SELECT rowid FROM post_text WHERE post_text MATCH ? AND rowid < ? "
        "ORDER BY rowid DESC LIMIT ?",
        (match_expression(words), (1 << 63) - 1 if before is None else before, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]


def tag_keys(conn: sqlite3.Connection, tag: str, before: int | None, limit: int) -> list[int]:
    """Keys of the indexed posts with the normalized ``tag``, newest first."""
    rows = conn.execute(
        "SELECT key FROM post_tags WHERE tag = ? AND key < ? ORDER BY key DESC LIMIT ?",
        (tag, (1 << 63) - 1 if before is None else before, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]
