"""Response rendering: the JSON form of events and JSON/msgpack negotiation.

Every event in a response carries ``wire``, its exact signed bytes (base64 in JSON,
``bin`` in msgpack): that is what clients verify. The other fields are a convenience
decoded from the same bytes; in them byte strings (ids inside bodies) are lowercase
hex (spec 0004 §event-json). A msgpack response has the same structure as the JSON one
except that ``wire`` is ``bin``. Errors are always JSON.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from node.store.base import StoredEvent
from protocol.encoding import decode, encode
from protocol.errors import BadRequestError

__all__ = [
    "MSGPACK_RESPONSE_TYPE",
    "event_json",
    "json_friendly",
    "respond",
    "wants_msgpack",
]

MSGPACK_RESPONSE_TYPE = "application/msgpack"
_MSGPACK_ACCEPT = ("application/msgpack", "application/vnd.murmur+msgpack", "application/x-msgpack")


def wants_msgpack(request: web.Request) -> bool:
    """``?format=msgpack`` or an ``Accept`` naming msgpack before JSON; else JSON."""
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("json", "msgpack"):
            raise BadRequestError("format must be json or msgpack")
        return fmt == "msgpack"
    accept = request.headers.get("Accept", "").lower()
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip()
        if media in _MSGPACK_ACCEPT:
            return True
        if media in ("application/json", "*/*", "application/*"):
            return False
    return False


def json_friendly(value: Any) -> Any:
    """A decoded canonical value with every byte string turned into lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: json_friendly(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_friendly(v) for v in value]
    return value


def event_json(ev: StoredEvent, *, net: str, binary: bool = False) -> dict[str, Any]:
    """The response form of one stored event (``binary``: ``wire`` as bytes)."""
    wire = ev.wire
    return {
        "id": ev.id.hex(),
        "cursor": ev.cursor,
        "author": ev.author,
        "seq": ev.seq,
        "prev": None if ev.prev is None else ev.prev.hex(),
        "ts": ev.ts,
        "kind": ev.kind,
        "net": net,
        "body": None if ev.body is None else json_friendly(decode(ev.body)),
        "deleted": ev.deleted,
        "status": ev.status,
        "revoked_by": None if ev.revoked_by is None else ev.revoked_by.hex(),
        "wire": wire if binary else base64.b64encode(wire).decode("ascii"),
    }


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def respond(
    request: web.Request, obj: dict[str, Any], *, binary: bool | None = None, status: int = 200
) -> web.Response:
    """Serialize ``obj`` as negotiated. ``binary`` overrides negotiation when given."""
    as_msgpack = wants_msgpack(request) if binary is None else binary
    if as_msgpack:
        return web.Response(body=encode(obj), status=status, content_type=MSGPACK_RESPONSE_TYPE)
    return web.json_response(obj, status=status, dumps=_dumps)
