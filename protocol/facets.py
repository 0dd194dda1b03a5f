"""Facets of a post: byte ranges of its text that mention, link or tag (spec 0003 #facets).

A ``post`` body may carry ``facets``, an array of at most :data:`MAX_FACETS` maps. Each
names a ``type`` and a range ``[start, end)`` of the UTF-8 bytes of ``text``; the
three types this version knows add one field each:

- ``mention`` → ``did``: the range mentions that identity (a did:key or a did:murmur,
  parsed as :func:`protocol.identity.did_method` does);
- ``link`` → ``uri``: the range links an ``http://`` or ``https://`` URI;
- ``tag`` → ``tag``: the range is a hashtag, the tag without its ``#``.

Offsets are bytes, not characters, so every implementation counts them alike; both
ends fall on UTF-8 character boundaries, so a range never splits a character. Facets
of known types never overlap one another (a reader can cut the text into pieces
without choosing between two facets); a facet of a type this version does not know
is ignored, may overlap anything, and still needs a ``str`` ``type`` and a valid range
(every reader must be able to skip it the same way). A known-type facet with a bad
field makes the whole body invalid (``bad-field``), like any other malformed field.

Checking is O(facets) after one encoding of ``text``: a boundary test is one byte
lookup, the did parse is bounded by ``MAX_DID_BYTES``, the URI test is one linear
regular-expression pass of at most ``MAX_URI_BYTES``, and the overlap test sorts at
most 32 ranges.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.errors import BadFieldError, InvalidDidError
from protocol.identity import did_method
from protocol.limits import MAX_FACET_TYPE_BYTES, MAX_FACETS, MAX_TAG_BYTES, MAX_URI_BYTES

__all__ = [
    "FACET_VALUE_KEYS",
    "LINK",
    "MENTION",
    "TAG",
    "Facet",
    "mentioned_dids",
    "post_facets",
    "validate_facets",
]

MENTION: Final = "mention"
LINK: Final = "link"
TAG: Final = "tag"
#: The field each known type adds, and so the known types themselves.
FACET_VALUE_KEYS: Final[Mapping[str, str]] = {MENTION: "did", LINK: "uri", TAG: "tag"}

#: ``http://`` or ``https://`` (lowercase, as written by every encoder), then at least
#: one character; no C0 or C1 control, space or DEL anywhere (RFC 3986 has no raw
#: whitespace or control in a URI). One character class, so matching is linear.
_URI_RE = re.compile(r"https?://[^\x00-\x20\x7f-\x9f]+")
#: The same rule for an ASCII URI, as bytes to delete: ``bytes.translate`` is a C loop,
#: several times faster than the regular expression over a 2 KiB URI.
_NOT_IN_ASCII_URI = bytes(range(0x21)) + b"\x7f"


def _uri_ok(uri: str) -> bool:
    """``uri`` matches :data:`_URI_RE` (the ASCII common case without it)."""
    if not uri.isascii():
        return _URI_RE.fullmatch(uri) is not None
    data = uri.encode("ascii")
    scheme = 8 if data.startswith(b"https://") else 7 if data.startswith(b"http://") else 0
    return 0 < scheme < len(data) and len(data.translate(None, _NOT_IN_ASCII_URI)) == len(data)


def _value_problem(kind: str, value: object) -> str | None:
    """Why ``value`` is not a valid value of a known facet type, or None."""
    if not isinstance(value, str):
        return "must be a string"
    if kind == MENTION:
        try:
            did_method(value)
        except InvalidDidError as exc:
            return exc.message
        return None
    size = len(value.encode("utf-8"))
    if kind == LINK:
        if size > MAX_URI_BYTES:
            return f"is longer than {MAX_URI_BYTES} bytes"
        if not _uri_ok(value):
            return "must be an http:// or https:// URI without spaces or control characters"
        return None
    if not 0 < size <= MAX_TAG_BYTES:
        return f"must be 1 to {MAX_TAG_BYTES} bytes"
    if value.startswith("#"):
        return "is written without its leading '#'"
    return None


def _offset(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Facet:
    """A facet of a known type: ``[start, end)`` of the text's UTF-8 bytes and the
    type's value (the ``did``, ``uri`` or ``tag``). Checked on construction, but for
    the character boundaries, which need the text (:func:`validate_facets`)."""

    type: str
    start: int
    end: int
    value: str

    def __post_init__(self) -> None:
        key = FACET_VALUE_KEYS.get(self.type)
        if key is None:
            raise BadFieldError(
                f"facet type {self.type!r} is not one of {sorted(FACET_VALUE_KEYS)}"
            )
        start, end = _offset(self.start), _offset(self.end)
        if start is None or end is None or not 0 <= start < end:
            raise BadFieldError("a facet's start and end must be integers, 0 <= start < end")
        problem = _value_problem(self.type, self.value)
        if problem is not None:
            raise BadFieldError(f"facet {key} {problem}")

    @property
    def key(self) -> str:
        """The name of the value's field: ``did``, ``uri`` or ``tag``."""
        return FACET_VALUE_KEYS[self.type]

    def to_map(self) -> dict[str, Any]:
        """The wire form (a map of the body's ``facets`` array)."""
        return {"type": self.type, "start": self.start, "end": self.end, self.key: self.value}


def validate_facets(text: str, facets: object) -> None:
    """Raise ``BadFieldError`` unless ``facets`` is a valid ``facets`` field for a post
    whose text is ``text`` (spec 0003 #facets)."""
    if not isinstance(facets, list):
        raise BadFieldError("body.facets must be a list")
    if len(facets) > MAX_FACETS:
        raise BadFieldError(f"body.facets has more than {MAX_FACETS} items")
    data = text.encode("utf-8")
    size = len(data)
    known: list[tuple[int, int]] = []
    for i, facet in enumerate(facets):
        where = f"body.facets[{i}]"
        if not isinstance(facet, dict):
            raise BadFieldError(f"{where} must be a map")
        kind = facet.get("type")
        if not isinstance(kind, str) or not 0 < len(kind.encode("utf-8")) <= MAX_FACET_TYPE_BYTES:
            raise BadFieldError(
                f"{where}.type must be a string of 1 to {MAX_FACET_TYPE_BYTES} bytes"
            )
        start, end = _offset(facet.get("start")), _offset(facet.get("end"))
        if start is None or end is None:
            raise BadFieldError(f"{where}.start and .end must be integers")
        if not 0 <= start < end <= size:
            raise BadFieldError(
                f"{where}: need 0 <= start < end <= {size} (bytes of text), got [{start}, {end})"
            )
        # A UTF-8 continuation byte is 0b10xxxxxx: a range may neither start on one nor
        # end just before one.
        if data[start] & 0xC0 == 0x80 or (end < size and data[end] & 0xC0 == 0x80):
            raise BadFieldError(f"{where}: start and end must fall on UTF-8 character boundaries")
        key = FACET_VALUE_KEYS.get(kind)
        if key is None:
            continue  # an unknown type: readers ignore it, whatever else it carries
        if key not in facet:
            raise BadFieldError(f"{where}.{key} is required for a {kind} facet")
        problem = _value_problem(kind, facet[key])
        if problem is not None:
            raise BadFieldError(f"{where}.{key} {problem}")
        known.append((start, end))
    known.sort()
    for (_, end_a), (start_b, _) in itertools.pairwise(known):
        if start_b < end_a:
            raise BadFieldError("body.facets: facets of known types must not overlap")


def post_facets(body: Mapping[str, Any]) -> list[Facet]:
    """The known-type facets of a post body, in text order; unknown types are left out.

    The body must be a valid ``post`` body (every verified event's is); the facets are
    checked again all the same, so a caller with an unchecked map gets ``BadFieldError``
    rather than a wrong range. A body without ``facets`` has none.
    """
    if "facets" not in body:
        return []
    text, raw = body.get("text"), body["facets"]
    if not isinstance(text, str):
        raise BadFieldError("body.text is required")
    validate_facets(text, raw)
    out = [
        Facet(type=f["type"], start=f["start"], end=f["end"], value=f[key])
        for f in raw
        if (key := FACET_VALUE_KEYS.get(f["type"])) is not None
    ]
    out.sort(key=lambda f: f.start)
    return out


def mentioned_dids(body: Mapping[str, Any]) -> list[str]:
    """The dids a valid post body mentions through facets, each once, in text order."""
    return list(dict.fromkeys(f.value for f in post_facets(body) if f.type == MENTION))
