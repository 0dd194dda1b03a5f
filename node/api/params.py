"""Strict parsing of path and query parameters into values or ``BadRequestError``.

Every client mistake in a URL becomes a 400 with a message naming the parameter
(spec 0004 §errors); nothing here can raise anything else.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.limits import read_json
from protocol import limits as plimits
from protocol.errors import BadRequestError, InvalidDidError
from protocol.identity import did_method

__all__ = [
    "AUTHORS_BODY",
    "authors_body",
    "did_param",
    "event_id_param",
    "int_param",
    "kind_list",
    "limit_param",
    "list_param",
    "key_cursor",
    "pair_cursor",
    "parse_key_cursor",
    "parse_pair_cursor",
]

_MAX_INT = 2**63 - 1

#: The body of the POST reads that name many authors (#keys-batch, #stats-batch).
AUTHORS_BODY = '{"authors": [did]}'


async def authors_body(
    request: web.Request, what: str, *, max_bytes: int, max_authors: int, timeout_s: float
) -> tuple[str, ...]:
    """The dids of a ``{"authors": [did]}`` body (no other keys, at most
    ``max_authors``); ``what`` names the body in errors."""
    doc = await read_json(request, max_bytes=max_bytes, timeout_s=timeout_s, shape=AUTHORS_BODY)
    if not isinstance(doc, dict) or set(doc) != {"authors"}:
        raise BadRequestError(f"{what} body is {AUTHORS_BODY}, no other keys")
    authors = did_list(json_list(doc, "authors", max_items=max_authors))
    assert authors is not None  # noqa: S101 - the key is present
    return authors


def int_param(
    request: web.Request, name: str, default: int | None, *, lo: int = 0, hi: int = _MAX_INT
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise BadRequestError(f"{name} must be a non-negative integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadRequestError(f"{name} must be in [{lo}, {hi}]")
    return value


def limit_param(request: web.Request, default: int, max_page: int) -> int:
    value = int_param(request, "limit", default, lo=1)
    assert value is not None  # noqa: S101 - default is an int
    return min(value, max_page)


def list_param(request: web.Request, name: str, *, max_items: int) -> tuple[str, ...] | None:
    """Comma-separated and/or repeated values, deduplicated in order; None if absent."""
    raw = request.query.getall(name, [])
    if not raw:
        return None
    out: dict[str, None] = {}  # ordered and deduplicated in O(1) an item
    for chunk in raw:
        for item in chunk.split(","):
            item = item.strip()
            if item and item not in out:
                out[item] = None
                if len(out) > max_items:
                    raise BadRequestError(f"{name} has more than {max_items} values")
    if not out:
        raise BadRequestError(f"{name} is empty")
    return tuple(out)


_HEX = frozenset("0123456789abcdefABCDEF")


def event_id_param(raw: str, name: str = "id") -> bytes:
    if len(raw) != 64 or not _HEX.issuperset(raw):
        raise BadRequestError(f"{name} must be a 64-character hex event id")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a 64-character hex event id") from None


def did_param(raw: str, name: str = "did") -> str:
    """A did that parses strictly: a ``did:key`` (spec 0001) or a ``did:murmur`` (spec
    0008 #did-murmur). Bodies may name either, so readers ask about either; until v2
    events are accepted a ``did:murmur`` simply matches nothing."""
    try:
        did_method(raw)
    except InvalidDidError as exc:
        raise InvalidDidError(f"{name}: {exc.message}") from None
    return raw


def did_list(values: tuple[str, ...] | None, name: str = "authors") -> tuple[str, ...] | None:
    """Each value checked as a did (:func:`did_param`); None stays None."""
    return None if values is None else tuple(did_param(v, name) for v in values)


#: Most kinds in one query.
MAX_KINDS = 32


def check_kinds(kinds: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Kind names within the protocol's length bound; None stays None."""
    if kinds is not None and any(len(k.encode()) > plimits.MAX_KIND_BYTES for k in kinds):
        raise BadRequestError("kinds: a kind is at most 64 bytes")
    return kinds


def kind_list(request: web.Request) -> tuple[str, ...] | None:
    return check_kinds(list_param(request, "kinds", max_items=MAX_KINDS))


def json_list(doc: dict[str, Any], name: str, *, max_items: int) -> tuple[str, ...] | None:
    """A JSON body's list of strings, deduplicated in order (the body form of
    :func:`list_param`); None if absent."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequestError(f"{name} must be a list of strings")
    unique = tuple(dict.fromkeys(value))
    if not unique:
        raise BadRequestError(f"{name} is empty")
    if len(unique) > max_items:
        raise BadRequestError(f"{name} has more than {max_items} values")
    return unique


#: Largest cursor or timestamp a query can carry: SQLite's signed 64-bit integer.
MAX_CURSOR = 2**63 - 1


def pair_cursor(ts: int, cursor: int) -> str:
    """An opaque page cursor for lists ordered by ``(ts, cursor)``."""
    return f"{ts}.{cursor}"


def parse_pair_cursor(raw: str | None, name: str) -> tuple[int, int] | None:
    if raw is None or raw == "":
        return None
    ts, sep, cur = raw.partition(".")
    if (
        not sep
        or not ts.isascii()
        or not ts.isdigit()
        or len(ts) > 19
        or not cur.isascii()
        or not cur.isdigit()
        or len(cur) > 19
    ):
        raise BadRequestError(f"{name} is not a cursor returned by this node")
    ts_value, cursor = int(ts), int(cur)
    if ts_value > MAX_CURSOR or cursor > MAX_CURSOR:  # SQLite integers are 64-bit
        raise BadRequestError(f"{name} is not a cursor returned by this node")
    return ts_value, cursor


def key_cursor(seq: int, eid: bytes) -> str:
    """An opaque page cursor for key events ordered by ``(seq, id)`` (spec 0004
    #author-keys)."""
    return f"{seq}.{eid.hex()}"


def parse_key_cursor(raw: str | None, name: str) -> tuple[int, bytes] | None:
    if raw is None or raw == "":
        return None
    seq, sep, eid = raw.partition(".")
    if not sep or not seq.isascii() or not seq.isdigit() or len(seq) > 19:
        raise BadRequestError(f"{name} is not a cursor returned by this node")
    value = int(seq)
    if value > MAX_CURSOR:
        raise BadRequestError(f"{name} is not a cursor returned by this node")
    return value, event_id_param(eid, name)
