"""Post search on PostgreSQL: word and tag arrays under GIN indexes (spec 0004 #search).

A post is indexed while it is canonical, holds its body and is not deleted, exactly as
on SQLite (:mod:`node.store.sqlite_search`): the write path calls :func:`index_post`
from the post's body effects and :func:`unindex_post` when it stops counting.

Why arrays and not ``tsvector``: the words a post gives and a query asks for are cut by
the shared pure functions of :mod:`node.search_terms` (runs of letters, digits and
marks) and folded here in Python (:func:`fold`: diacritics dropped, case-folded), so
PostgreSQL only compares whole words. Its text-search parser would cut differently
(``a.b`` as a host name, ``x-y`` as three tokens, e-mail addresses whole), and
``unaccent`` is an extension the node's database user may not be allowed to create.
``words @> query`` on a GIN index finds the posts holding every word.

Results are newest first by ``key``: ``ts`` in the high bits and the low 20 bits of
the cursor below, as on SQLite, so ``next`` is an integer on both backends. Two posts
of one millisecond whose cursors agree in those bits take the next free key below
(chosen by the insert itself: writers are serialized, spec 0004 #store-cursor).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from node.search_terms import _words, post_tags, post_words
from protocol import kinds
from protocol.encoding import decode

if TYPE_CHECKING:
    from node.store.pg_write import Conn

__all__ = [
    "SCHEMA",
    "IndexArgs",
    "backfill_search",
    "fold",
    "index_args",
    "index_post",
    "index_posts",
    "search_keys",
    "unindex_post",
]

log = logging.getLogger("murmur.node.store")

SCHEMA: Final = [
    """CREATE TABLE post_search (
        key BIGINT PRIMARY KEY,
        id BYTEA NOT NULL UNIQUE,
        words TEXT[] NOT NULL,
        tags TEXT[] NOT NULL
    )""",
    "CREATE INDEX post_search_words ON post_search USING gin (words)",
    "CREATE INDEX post_search_tags ON post_search USING gin (tags)",
]

_LOW_BITS: Final = 20
_LOW_MASK: Final = (1 << _LOW_BITS) - 1
_MAX_KEY_TS: Final = (1 << (63 - _LOW_BITS)) - 1
#: Free keys tried below the natural one before a post is left out of search.
_KEY_TRIES: Final = 64
_TOP: Final = (1 << 63) - 1


def fold(word: str) -> str:
    """The compared form of a word: decomposed, combining marks dropped, case-folded
    (``Café`` and ``CAFE`` are one word), recomposed."""
    if word.isascii():
        return word.lower()  # the same fold: ASCII has no marks, and casefolds to lower
    bare = "".join(ch for ch in unicodedata.normalize("NFD", word) if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare.casefold())


def folded_words(text: str) -> list[str]:
    """The distinct folded words of ``text`` (empty folds left out)."""
    return [w for w in dict.fromkeys(fold(w) for w in _words(text)) if w]


#: A post under a free key (a query that searched free keys in SQL planned a scan of
#: the table once prepared: keys are chosen in Python, writers being serialized).
_INDEX: Final = (
    "INSERT INTO post_search (key, id, words, tags) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING"
)
#: The arguments of indexing one post: natural key, id, words, tags.
IndexArgs: TypeAlias = tuple[int, bytes, list[str], list[str]]


def index_args(*, eid: bytes, ts: int, cursor: int, body: dict[str, Any]) -> IndexArgs | None:
    """What indexing the post ``eid`` stored at ``cursor`` inserts (None: nothing any
    query could find)."""
    words = folded_words(post_words(body))
    tags = post_tags(body)
    if not words and not tags:
        return None
    natural = (min(ts, _MAX_KEY_TS) << _LOW_BITS) | (cursor & _LOW_MASK)
    return natural, eid, words, tags


async def index_post(c: Conn, *, eid: bytes, ts: int, cursor: int, body: dict[str, Any]) -> None:
    """Index the post ``eid`` stored at ``cursor`` (a no-op if it already is)."""
    args = index_args(eid=eid, ts=ts, cursor=cursor, body=body)
    if args is not None:
        await index_posts(c, [args])


async def index_posts(c: Conn, rows: Sequence[IndexArgs]) -> None:
    """Index several posts: one read finds which are indexed already and which natural
    keys are taken, one binary COPY writes the others under their natural keys, and a
    post whose key was taken (rare) gets the highest free key of the
    :data:`_KEY_TRIES` below. Writers are serialized (spec 0004 #store-cursor): nobody
    takes a key in between."""
    if not rows:
        return
    held = await c.fetch(
        "SELECT key, id FROM post_search WHERE key = ANY($1::bigint[]) OR id = ANY($2::bytea[])",
        [r[0] for r in rows], [r[1] for r in rows],
    )  # fmt: skip
    keys = {int(k) for k, _ in held}
    done = {bytes(i) for _, i in held}
    fresh: list[IndexArgs] = []
    later: list[IndexArgs] = []
    for row in rows:
        if row[1] in done:
            continue
        done.add(row[1])
        if row[0] in keys:
            later.append(row)
        else:
            keys.add(row[0])
            fresh.append(row)
    if fresh:
        await c.copy_records_to_table(
            "post_search", records=fresh, columns=("key", "id", "words", "tags")
        )
    for row in later:
        await _index_below(c, row)


async def _index_below(c: Conn, args: IndexArgs) -> None:
    natural, eid, words, tags = args
    low = max(natural - _KEY_TRIES + 1, 0)
    taken = {
        int(r[0])
        for r in await c.fetch(
            "SELECT key FROM post_search WHERE key BETWEEN $1 AND $2", low, natural
        )
    }
    free = next((k for k in range(natural, low - 1, -1) if k not in taken), None)
    if free is None:
        log.warning("search key space full id=%s: post not indexed", eid.hex())
        return
    await c.execute(_INDEX, free, eid, words, tags)


async def unindex_post(c: Conn, eid: bytes) -> None:
    """Take ``eid`` out of search, if it is in."""
    await c.execute("DELETE FROM post_search WHERE id = $1", eid)


async def backfill_search(c: Conn) -> None:
    """Index the posts already held (a migration step, inside its transaction)."""
    last = 0
    while True:
        rows = await c.fetch(
            "SELECT cursor, id, ts, body FROM events WHERE cursor > $1 AND kind = $2 "
            "AND status = 'canonical' AND NOT deleted AND body IS NOT NULL "
            "ORDER BY cursor LIMIT 2048",
            last, kinds.POST,
        )  # fmt: skip
        if not rows:
            return
        last = rows[-1]["cursor"]
        for cursor, eid, ts, raw in rows:
            body = decode(raw)
            if isinstance(body, dict):
                await index_post(c, eid=eid, ts=ts, cursor=cursor, body=body)


async def search_keys(
    c: Conn, *, words: Sequence[str], tag: str | None, before: int | None, limit: int
) -> list[tuple[int, bytes]]:
    """``(key, id)`` of the indexed posts holding every word (or the normalized
    ``tag``), newest first, below ``before``."""
    top = _TOP if before is None else before
    if tag is not None:
        rows = await c.fetch(
            "SELECT key, id FROM post_search WHERE tags @> ARRAY[$1::text] AND key < $2 "
            "ORDER BY key DESC LIMIT $3",
            tag, top, limit,
        )  # fmt: skip
    else:
        folded = list(dict.fromkeys(fold(w) for w in words))
        rows = await c.fetch(
            "SELECT key, id FROM post_search WHERE words @> $1::text[] AND key < $2 "
            "ORDER BY key DESC LIMIT $3",
            folded, top, limit,
        )  # fmt: skip
    return [(int(r[0]), bytes(r[1])) for r in rows]
