"""What a post gives to search, and how a search query is read (spec 0004 #search).

Pure functions shared by every store: the SQLite store feeds their output to FTS5
(:mod:`node.store.sqlite_search`), a PostgreSQL store would feed it to its own index.

A post contributes its ``text`` and its tags (``tags`` and the ``tag`` of each facet of
type ``tag``, spec 0003 #post, #facets) to the words searched, and its tags, normalized,
to the tag index. Both are computed from the body alone, deterministically: the SQLite
index is contentless, and removing a post from it needs exactly the text it was given.
Bodies were validated on ingest, but one stored before a field was specified (facets)
may hold anything under that key, so every field is read defensively.

A query is never handed to a search engine as syntax. :func:`query_words` keeps only
letters, digits and marks, splits on everything else and bounds the result; the store
quotes each word. So ``NEAR(``, ``"``, ``*``, ``AND`` or a NUL are separators or plain
words, never operators, and a query cannot fail to parse.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any, Final

from protocol.errors import BadRequestError
from protocol.limits import MAX_TAG_BYTES

__all__ = [
    "MAX_INDEXED_TAGS",
    "MAX_QUERY_BYTES",
    "MAX_QUERY_WORDS",
    "MAX_WORD_BYTES",
    "normalize_tag",
    "post_tags",
    "post_words",
    "query_tag",
    "query_words",
]

#: Longest ``q``, in UTF-8 bytes (spec 0004 #search-query).
MAX_QUERY_BYTES: Final = 256
#: Most distinct words in one query; each must be in every result.
MAX_QUERY_WORDS: Final = 8
#: Longest word of a query, in UTF-8 bytes.
MAX_WORD_BYTES: Final = 64
#: Most distinct tags of one post that enter the tag index (16 ``tags`` and 32 facets
#: could name 48).
MAX_INDEXED_TAGS: Final = 32


def _is_word_char(ch: str) -> bool:
    """Letters, digits, marks and private-use characters: what FTS5's unicode61
    tokenizer keeps (it splits on the rest)."""
    cat = unicodedata.category(ch)
    return cat[0] in "LNM" or cat == "Co"


#: A word of ASCII text: letters and digits are the only ASCII characters of the
#: categories :func:`_is_word_char` keeps (no ASCII character is a mark or private use).
_ASCII_WORD: Final = re.compile(r"[A-Za-z0-9]+")


def _words(text: str) -> Iterator[str]:
    if text.isascii():
        # The same words, without a category lookup per character (a hot path: every
        # post stored on PostgreSQL is cut here).
        yield from _ASCII_WORD.findall(text)
        return
    word: list[str] = []
    for ch in text:
        if _is_word_char(ch):
            word.append(ch)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)


def normalize_tag(tag: str) -> str:
    """The form tags are compared in: one leading ``#`` dropped, NFKC, case-folded
    (Unicode default case folding), surrounding white space dropped; so ``#Café``,
    ``café`` and ``CAFÉ`` are one tag."""
    return unicodedata.normalize("NFKC", tag.removeprefix("#")).casefold().strip()


def _raw_tags(body: dict[str, Any]) -> Iterator[str]:
    tags = body.get("tags")
    if isinstance(tags, list):
        yield from (t for t in tags if isinstance(t, str))
    facets = body.get("facets")
    if isinstance(facets, list):
        for facet in facets:
            if isinstance(facet, dict) and facet.get("type") == "tag":
                tag = facet.get("tag")
                if isinstance(tag, str) and len(tag.encode("utf-8")) <= MAX_TAG_BYTES:
                    yield tag


def post_tags(body: dict[str, Any]) -> list[str]:
    """The post's distinct normalized tags, in body order (``tags`` first), at most
    :data:`MAX_INDEXED_TAGS`."""
    out: dict[str, None] = {}
    for raw in _raw_tags(body):
        tag = normalize_tag(raw)
        if tag:
            out[tag] = None
            if len(out) == MAX_INDEXED_TAGS:
                break
    return list(out)


def post_words(body: dict[str, Any]) -> str:
    """The text full-text search sees: the post's text, then its tags (as written)."""
    text = body.get("text")
    parts = [text] if isinstance(text, str) else []
    parts += list(dict.fromkeys(_raw_tags(body)))[:MAX_INDEXED_TAGS]
    return "\n".join(parts)


def query_words(q: str) -> tuple[str, ...]:
    """The words of a full-text query (spec 0004 #search-query), or ``bad-request``:
    empty, over :data:`MAX_QUERY_BYTES`, more than :data:`MAX_QUERY_WORDS` distinct
    words, or a word over :data:`MAX_WORD_BYTES`."""
    if len(q.encode("utf-8", "surrogatepass")) > MAX_QUERY_BYTES:
        raise BadRequestError(f"q is longer than {MAX_QUERY_BYTES} bytes")
    words = tuple(dict.fromkeys(_words(q)))
    if not words:
        raise BadRequestError("q has no word to search (letters or digits)")
    if len(words) > MAX_QUERY_WORDS:
        raise BadRequestError(f"q has more than {MAX_QUERY_WORDS} words")
    for word in words:
        if len(word.encode("utf-8", "surrogatepass")) > MAX_WORD_BYTES:
            raise BadRequestError(f"a word of q is longer than {MAX_WORD_BYTES} bytes")
    return words


def query_tag(raw: str) -> str:
    """A ``tag`` parameter (surrounding spaces ignored) in its compared form, or
    ``bad-request``: empty, or longer than a tag may be."""
    raw = raw.strip()
    try:
        size = len(raw.removeprefix("#").encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no stored tag has one
        raise BadRequestError("tag is not valid UTF-8") from None
    tag = normalize_tag(raw)
    if not tag or size > MAX_TAG_BYTES:
        raise BadRequestError(f"tag must be 1 to {MAX_TAG_BYTES} bytes (without '#')")
    return tag
