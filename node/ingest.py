"""Ingest: parse a batch, verify it off the event loop, store it, report per event.

``POST /v1/events`` carries a batch of wire events (spec 0004 §ingest). The pipeline:

1. :func:`parse_batch` turns the request body (canonical msgpack array of ``bin``, or
   JSON ``{"events": [base64, ...]}``) into a list of wire byte strings, refusing the
   batch as a whole only when the container itself is wrong;
2. events already held are answered ``duplicate``, and v2 events whose ``kev`` names
   nothing held ``unknown-key-event``, each from one index lookup, unverified;
   :class:`node.verify.Verifier` runs :func:`protocol.events.decode_event` (size,
   decode, fields, network, clock, body hash, signature) in worker processes or
   threads, coalescing concurrent requests, so the loop stays responsive; each event
   is either an :class:`Event` or its ``ProtocolError``;
3. the store applies the valid events in one transaction and returns after commit;
4. results come back in batch order: ``accepted``, ``duplicate`` or ``rejected`` with
   the stable error code. Only then is anything acknowledged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from node.store.base import Store, WriteResult
from node.verify import Verifier, Wire
from protocol import jsontext
from protocol.encoding import DecodeLimits, decode
from protocol.errors import (
    BadRequestError,
    EncodingError,
    MalformedError,
    PayloadTooLargeError,
    ProtocolError,
    TooLargeError,
    UnknownKeyEventError,
    UnsupportedMediaTypeError,
)
from protocol.events import Event, claimed_id_kev

__all__ = [
    "JSON_TYPE",
    "MSGPACK_TYPES",
    "IngestResult",
    "ingest_batch",
    "parse_batch",
]

JSON_TYPE = "application/json"
#: ``application/msgpack`` is the registered-in-practice name; the vnd form is accepted.
MSGPACK_TYPES = ("application/msgpack", "application/vnd.murmur+msgpack", "application/x-msgpack")


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """The outcome of one event of a batch, as sent to the client."""

    id: bytes | None
    status: str
    error: ProtocolError | None = None
    cursor: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": None if self.id is None else self.id.hex()}
        out["status"] = self.status
        if self.error is not None:
            out["error"] = self.error.code
            out["message"] = self.error.message
        return out


def _parse_msgpack(body: bytes, max_batch: int, max_bytes: int) -> list[Wire]:
    limits = DecodeLimits(
        max_bytes=max_bytes, max_depth=1, max_str=max_bytes, max_bin=max_bytes, max_items=max_batch
    )
    try:
        value = decode(body, limits=limits)
    except TooLargeError as exc:
        raise PayloadTooLargeError(f"batch exceeds a limit: {exc.message}") from None
    except EncodingError as exc:
        raise BadRequestError(f"batch is not a canonical msgpack array: {exc.message}") from None
    if not isinstance(value, list):
        raise BadRequestError("a batch is a msgpack array of bin (one wire event each)")
    out: list[Wire] = []
    for item in value:
        if isinstance(item, bytes):
            out.append(item)
        else:
            out.append(MalformedError("each batch item must be bin (one wire event)"))
    return out


def _parse_json(body: bytes, max_batch: int) -> list[Wire]:
    try:
        doc = jsontext.loads(body)
    except ValueError as exc:  # bad UTF-8 and hostile nesting are ValueErrors too
        raise BadRequestError(f"body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise BadRequestError('JSON batch must be {"events": [base64 wire event, ...]}')
    items: list[Any] = doc["events"]
    if len(items) > max_batch:
        raise PayloadTooLargeError(f"batch has {len(items)} events; the limit is {max_batch}")
    out: list[Wire] = []
    for item in items:
        if not isinstance(item, str):
            out.append(MalformedError("each JSON batch item must be a base64 string"))
            continue
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            out.append(MalformedError("batch item is not valid base64"))
    return out


def parse_batch(content_type: str, body: bytes, *, max_batch: int, max_bytes: int) -> list[Wire]:
    """The wire events of a request body, or raise a request-level ``ProtocolError``."""
    if content_type in MSGPACK_TYPES:
        return _parse_msgpack(body, max_batch, max_bytes)
    if content_type == JSON_TYPE:
        return _parse_json(body, max_batch)
    raise UnsupportedMediaTypeError(
        f"ingest takes {MSGPACK_TYPES[0]} or {JSON_TYPE}, not {content_type or 'no type'!r}"
    )


async def _unknown_key_events(
    claimed: Sequence[bytes | None],
    kevs: Sequence[bytes | None],
    held: set[bytes],
    store: Store,
) -> dict[int, ProtocolError]:
    """The batch positions of v2 events whose ``kev`` names nothing held, nor any
    event of this batch: ``unknown-key-event`` (spec 0008 §8.5 step 2), answered from
    one index lookup *before* their signature is checked (0004 #ingest-v2), so that a
    stranger's flood of events under made-up key events costs no verification. The
    answer is retryable and nothing is stored, so the held set is what the full check
    would give; when the key event arrives, the same bytes are verified in full.
    A ``kev`` naming a held event (of any kind or author) takes the full path, which
    says ``bad-kev`` when it is not the author's key event.
    """
    claims = {n: kev for n, kev in enumerate(kevs) if kev is not None and claimed[n] not in held}
    if not claims:
        return {}
    in_batch = {i for i in claimed if i is not None}
    asked = {k for k in claims.values() if k not in in_batch and k not in held}
    known = await store.held_ids(list(asked)) if asked else set()
    return {
        n: UnknownKeyEventError(
            f"kev {kev.hex()} names no key event this node holds (spec 0008 #validity)"
        )
        for n, kev in claims.items()
        if kev in asked and kev not in known
    }


async def ingest_batch(
    wires: Sequence[Wire],
    *,
    verifier: Verifier,
    store: Store,
    now_ms: Callable[[], int],
    on_commit: Callable[[int], None] = lambda cursor: None,
) -> list[IngestResult]:
    """Verify, store (one transaction, after commit) and report each event in order.

    ``on_commit`` is called with the highest new cursor after a commit that stored
    something (the stream hub's ``publish``).
    """
    # Events already held are answered `duplicate` before anything is verified: peers
    # offer, replay and re-send what a node has (after restarts, from every side), and
    # a signature check costs far more than an index lookup. Holding the id with its
    # body (or deleted) means nothing a copy carries could be new; a held event that
    # lacks its body is verified again, since a full copy completes it (spec 0004
    # #body-fill) -- otherwise a stripped copy, sent first, would suppress the body.
    # One decode of each wire's outer form gives both claims (id, kev): on the loop.
    with store.write_coming():
        claims = [
            (None, None) if isinstance(w, ProtocolError) else claimed_id_kev(w) for w in wires
        ]
        claimed = [c[0] for c in claims]
        held = await store.settled_ids([i for i in claimed if i is not None])
        unknown = await _unknown_key_events(claimed, [c[1] for c in claims], held, store)
        fresh = [
            w
            for n, (w, i) in enumerate(zip(wires, claimed, strict=True))
            if (i is None or i not in held) and n not in unknown
        ]
        verified = iter(await verifier.verify(fresh, now_ms()) if fresh else [])
        checked: list[Event | ProtocolError | bytes] = [
            i if i is not None and i in held else unknown[n] if n in unknown else next(verified)
            for n, i in enumerate(claimed)
        ]
    valid = [item for item in checked if isinstance(item, Event)]

    def committed(written: list[WriteResult]) -> None:
        top = max((w.cursor for w in written if w.cursor is not None), default=0)
        if top:
            # Held events whose status changed moved above the new ones (spec 0004
            # #stream-status): the store's cursor has the highest.
            on_commit(max(top, store.counts().cursor))

    # If the request is cancelled (deadline, client gone) once the write has started,
    # the commit still completes and ``committed`` still tells subscribers; only the
    # acknowledgement is lost, and a retry is then a harmless duplicate.
    written = await store.apply_batch(valid, committed)
    stored = iter(written)
    results: list[IngestResult] = []
    for n, item in enumerate(checked):
        if isinstance(item, ProtocolError):
            # An unknown kev is named, as the store names its rejections; a wire that
            # failed its checks has no id to trust.
            eid = claimed[n] if n in unknown else None
            results.append(IngestResult(id=eid, status="rejected", error=item))
            continue
        if isinstance(item, bytes):  # held already: not verified again
            results.append(IngestResult(id=item, status="duplicate"))
            continue
        w = next(stored)
        results.append(IngestResult(id=item.id, status=w.status, error=w.error, cursor=w.cursor))
    return results
