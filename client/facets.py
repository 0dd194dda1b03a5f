"""Facets of a post, as a client writes and reads them (spec 0003 #facets, 0007 #facets).

Writing: :func:`parse_text` finds, in the text a person typed, what a post's facets
mark — ``@alias`` (resolved by the caller: the reader's petnames, then local identity
names), ``@did:key:…`` / ``@did:murmur:…``, ``http(s)://`` URLs and ``#hashtags`` — and
:func:`fill_post` adds them to a post body being built, hashtags also to ``tags``. An
``@word`` nobody resolves stays plain text and yields a note for the user.

Reading: :func:`segments` cuts a text into plain pieces and faceted pieces, so a front
end can show each facet as what it *names* (a mention as the reader's own name for its
did) rather than as the author's text. It trusts no offset: a facet out of range, off
a character boundary or overlapping an earlier one is left out, so any map a peer
hands it yields pieces that join back into the exact text.

Pure: strings (and verified events) in, strings out; the resolver is a plain callable.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import kinds
from protocol.errors import BadFieldError, InvalidDidError
from protocol.events import Event
from protocol.facets import LINK, MENTION, TAG, Facet, post_facets
from protocol.identity import did_method
from protocol.limits import MAX_FACETS, MAX_TAG_BYTES, MAX_TAGS, MAX_URI_BYTES

__all__ = [
    "Parsed",
    "Segment",
    "facets_of",
    "fill_post",
    "merge_tags",
    "parse_text",
    "post_segments",
    "segments",
]

#: A name after ``@``: the petname alphabet (client/config.py), which includes the
#: local identity names (client/keystore.py).
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DID_RE = re.compile(r"did:(?:key|murmur):[A-Za-z0-9]+")
_SCHEMES = ("https://", "http://")
#: Characters that, written just before ``@`` or ``#``, make it part of a word (an
#: e-mail address, a path, an HTML entity), not a mention or a hashtag.
_GLUE = frozenset("_.-+@#&/\\=:")
#: Trailing characters that end a sentence rather than a URL.
_URL_TRAILING = frozenset(".,;:!?'\"…")
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}
_JOINERS = frozenset("\u200c\u200d")
#: Categories that end a URL: controls, format characters (bidi, zero-width),
#: surrogates, line and paragraph separators.
_NOT_IN_URL = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))

Resolver = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class Parsed:
    """What :func:`parse_text` found: facets in text order (at most ``MAX_FACETS``),
    the hashtags (each once, compared case-insensitively, first spelling kept), and
    notes for the user about what was left as plain text."""

    facets: list[Facet] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a post's text: plain (``facet`` None) or the range of one facet."""

    text: str
    facet: Facet | None = None


# -- writing --------------------------------------------------------------------------


def _glued(text: str, i: int) -> bool:
    """True if the character before ``i`` makes position ``i`` part of a word."""
    if i == 0:
        return False
    prev = text[i - 1]
    return prev.isalnum() or prev in _GLUE or _is_mark(prev)


def _ends_word(text: str, j: int) -> bool:
    """True if a name may end before ``j`` (the next character does not continue it)."""
    return j >= len(text) or not (text[j].isalnum() or text[j] in "_@")


def _url_end(text: str, i: int) -> int:
    """Where a URL starting at ``i`` ends: at whitespace, a control or format character
    or ``<>"``; then without sentence punctuation or an unmatched closing bracket."""
    j = i
    while j < len(text):
        ch = text[j]
        if ch.isspace() or ch in '<>"' or unicodedata.category(ch) in _NOT_IN_URL:
            break
        j += 1
    while j > i:
        last = text[j - 1]
        opener = _CLOSERS.get(last)
        if last in _URL_TRAILING or (
            opener is not None and text.count(opener, i, j) < text.count(last, i, j)
        ):
            j -= 1
        else:
            break
    return j


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")


def _is_tag_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or _is_mark(ch)


def _tag_end(text: str, i: int) -> int:
    """Where a hashtag's name starting at ``i`` ends: letters, digits, ``_`` and marks,
    and a zero-width (non-)joiner between two of them (Persian, Indic scripts)."""
    j = i
    while j < len(text):
        ch = text[j]
        if _is_tag_char(ch) or (
            ch in _JOINERS and j > i and j + 1 < len(text) and _is_tag_char(text[j + 1])
        ):
            j += 1
        else:
            break
    return j


def _resolve_word(word: str, resolve: Resolver) -> tuple[str, str] | None:
    """The (name, did) an ``@word`` mentions, trying the word without trailing ``.``,
    ``-`` or ``_`` too (``@bob.`` at the end of a sentence)."""
    for name in dict.fromkeys((word, word.rstrip("._-"))):
        if name:
            did = resolve(name)
            if did is not None:
                return name, did
    return None


def parse_text(text: str, resolve: Resolver) -> Parsed:
    """The facets and hashtags of ``text``; ``resolve`` maps a name written after ``@``
    to a did, or None when it names nobody the writer knows."""
    found: list[tuple[int, int, str, str]] = []  # (start char, end char, type, value)
    notes: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "h" and text.startswith(_SCHEMES, i) and not _glued(text, i):
            j = _url_end(text, i)
            uri = text[i:j]
            if len(uri.encode("utf-8")) > MAX_URI_BYTES:
                notes.append(f"a link of more than {MAX_URI_BYTES} bytes is left as plain text")
                i = j
                continue
            if not uri.endswith("//"):
                found.append((i, j, LINK, uri))
                i = j
                continue
        elif ch == "@" and not _glued(text, i):
            did_match = _DID_RE.match(text, i + 1)
            if did_match is not None and _ends_word(text, did_match.end()):
                did = did_match.group()
                try:
                    did_method(did)
                except InvalidDidError:
                    notes.append(f"@{did[:40]} is not a valid did; left as plain text")
                else:
                    found.append((i, did_match.end(), MENTION, did))
                i = did_match.end()
                continue
            word_match = _WORD_RE.match(text, i + 1)
            if word_match is not None:
                hit = _resolve_word(word_match.group(), resolve)
                end = i + 1 + len(hit[0]) if hit is not None else word_match.end()
                if hit is not None and _ends_word(text, end):
                    found.append((i, end, MENTION, hit[1]))
                elif _ends_word(text, word_match.end()):
                    word = word_match.group().rstrip("._-") or word_match.group()
                    notes.append(
                        f"@{word} is not one of your petnames or identities; left as plain "
                        f"text (name someone with: murmur follow DID --alias {word})"
                    )
                i = end
                continue
        elif ch == "#" and not _glued(text, i):
            j = _tag_end(text, i + 1)
            tag = text[i + 1 : j]
            if tag and not tag.isdigit() and not _is_mark(tag[0]) and _ends_word(text, j):
                if len(tag.encode("utf-8")) <= MAX_TAG_BYTES:
                    found.append((i, j, TAG, tag))
                else:
                    notes.append(f"#{tag[:20]}… is longer than {MAX_TAG_BYTES} bytes; not a tag")
                i = j
                continue
        i += 1
    if len(found) > MAX_FACETS:
        notes.append(
            f"only the first {MAX_FACETS} mentions, links and hashtags are marked "
            f"({len(found)} found)"
        )
        found = found[:MAX_FACETS]
    return Parsed(
        facets=_to_facets(text, found),
        tags=merge_tags([], (v for _, _, kind, v in found if kind == TAG), limit=None)[0],
        notes=notes,
    )


def _to_facets(text: str, found: Iterable[tuple[int, int, str, str]]) -> list[Facet]:
    """Character ranges to facets with UTF-8 byte ranges (one pass over the text)."""
    offsets = [0] * (len(text) + 1)
    for k, ch in enumerate(text):
        offsets[k + 1] = offsets[k] + len(ch.encode("utf-8", "surrogatepass"))
    return [
        Facet(type=kind, start=offsets[a], end=offsets[b], value=value)
        for a, b, kind, value in found
    ]


def merge_tags(
    tags: Sequence[str], more: Iterable[str], *, limit: int | None = MAX_TAGS
) -> tuple[list[str], list[str]]:
    """``tags`` then ``more``, each tag once (compared case-insensitively, the first
    spelling kept), at most ``limit``; returns the tags and those left out."""
    out: list[str] = []
    seen: set[str] = set()
    dropped: list[str] = []
    for tag in [*tags, *more]:
        key = tag.casefold()
        if key in seen:
            continue
        seen.add(key)
        if limit is not None and len(out) >= limit:
            dropped.append(tag)
        else:
            out.append(tag)
    return out, dropped


def fill_post(body: dict[str, Any], resolve: Resolver) -> list[str]:
    """Add the facets of ``body["text"]`` to a post body being built, and its hashtags
    to ``body["tags"]`` (within ``MAX_TAGS``); returns notes for the user."""
    text = body.get("text")
    if not isinstance(text, str):
        raise BadFieldError("body.text is required")
    parsed = parse_text(text, resolve)
    notes = list(parsed.notes)
    if parsed.facets:
        body["facets"] = [f.to_map() for f in parsed.facets]
    if parsed.tags:
        tags, dropped = merge_tags(list(body.get("tags", [])), parsed.tags)
        body["tags"] = tags
        if dropped:
            notes.append(
                f"a post carries at most {MAX_TAGS} tags; not listed in tags: "
                + " ".join(f"#{t}" for t in dropped)
            )
    return notes


# -- reading --------------------------------------------------------------------------


def segments(text: str, facets: Iterable[Facet]) -> list[Segment]:
    """``text`` cut into plain pieces and the ranges of ``facets``, in text order.

    The pieces always join back into ``text``. A facet out of range, with an end not
    after its start, off a UTF-8 character boundary, or overlapping an earlier one
    (by ``start``) is left out: its bytes stay in the plain pieces around it.
    """
    data = text.encode("utf-8", "surrogatepass")
    size = len(data)

    def boundary(k: int) -> bool:
        return k == size or (0 <= k < size and data[k] & 0xC0 != 0x80)

    out: list[Segment] = []
    pos = 0
    for f in sorted(facets, key=lambda f: (f.start, f.end)):
        if not (pos <= f.start < f.end <= size and boundary(f.start) and boundary(f.end)):
            continue
        if f.start > pos:
            out.append(Segment(_decode(data[pos : f.start])))
        out.append(Segment(_decode(data[f.start : f.end]), f))
        pos = f.end
    if pos < size or not out:
        out.append(Segment(_decode(data[pos:])))
    return out


def facets_of(e: Event) -> list[Facet]:
    """The known-type facets of a post, in text order; none for any other kind."""
    if e.kind != kinds.POST or e.body is None:
        return []
    try:
        return post_facets(e.body)
    except BadFieldError:  # never for a verified event; a renderer still does not crash
        return []


def post_segments(e: Event) -> list[Segment]:
    """A post's text cut by its facets (:func:`segments`); a deleted one is ``""``."""
    raw = (e.body or {}).get("text")
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    return segments(text, facets_of(e))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")
