"""Short event ids: the prefix the views print, resolved as git resolves a short hash.

A command that takes an event id accepts the full 64 hex characters (used as they
are, nothing asked) or a prefix of at least :data:`MIN_PREFIX` of them, like the 12
the views print (spec 0007 #short-ids). A prefix is resolved against every node the
reader uses (``GET /v1/events?id_prefix=``, spec 0004 #events-by-prefix), each served
event verified like any read, plus the ids this home signed itself: the union must
hold exactly one id. None is ``unknown-id``; several is ``ambiguous-id``, with the
candidates in the message. A node that cannot answer the query (older than it) is
named in the ``unknown-id`` message, never taken for "nothing there".

Under a reader with a cut (the reads before signing, spec 0007 #slow-lookups) a node
that has not answered once the others did is not waited for: the union is taken over
the nodes that answered, and the ones cut are named (in the ``unknown-id`` message,
and by the command's output when the prefix resolved).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from client.api import NodeClient
from client.errors import AmbiguousIdError, UnknownIdError
from client.ownchain import OwnChain
from client.reader import Reader
from protocol.errors import BadRequestError, RemoteError
from protocol.events import Event

__all__ = ["MIN_PREFIX", "EventRef", "parse_event_ref", "resolve_event_id", "sent_ids"]

log = logging.getLogger("murmur.client.shortids")

#: Shortest prefix a node resolves (spec 0004 #events-by-prefix: ``MIN_ID_PREFIX``).
MIN_PREFIX = 8
_FULL = 64
_HEX = frozenset("0123456789abcdef")

#: A full id (bytes) or a lowercase hex prefix still to resolve (str).
EventRef = bytes | str


def parse_event_ref(text: str) -> EventRef:
    """A full id, or a prefix of :data:`MIN_PREFIX` to 63 hex characters (either case);
    ``bad-request`` otherwise, before anything is read or signed."""
    cleaned = text.strip().lower()
    if MIN_PREFIX <= len(cleaned) <= _FULL and _HEX.issuperset(cleaned):
        return bytes.fromhex(cleaned) if len(cleaned) == _FULL else cleaned
    raise BadRequestError(
        f"{text!r} is not an event id: give the id as the views print it (at least "
        f"{MIN_PREFIX} of its hex characters, e.g. 1a2b3c4d5e6f) or all 64 (--json)"
    )


def sent_ids(home: Path, did: str, prefix: str) -> set[bytes]:
    """Ids starting with ``prefix`` among the events this home signed as ``did`` and
    still keeps (a rotatable identity's outbox and its copies of sent events, spec 0007
    #own-chain): its own events count even where no node holds them yet."""
    chain = OwnChain(home, did)
    if not chain.exists():
        return set()
    out = {e.id for e in chain.events() if e.id.hex().startswith(prefix)}
    if chain.archive_dir.is_dir():
        for path in chain.archive_dir.glob(f"*-{prefix}*.wire"):
            eid = path.stem.rpartition("-")[2]
            if len(eid) == _FULL and _HEX.issuperset(eid):
                out.add(bytes.fromhex(eid))
    return out


def _describe(eid: bytes, event: Event | None) -> str:
    if event is None:
        return f"{eid.hex()} (signed here)"
    return f"{eid.hex()} ({event.kind} by {event.author}, seq {event.seq})"


async def resolve_event_id(
    reader: Reader, ref: EventRef, *, local: Iterable[bytes] = ()
) -> bytes:
    """The one event id ``ref`` names; a full id is returned as it is.

    Every node of ``reader`` is asked at once; what they serve is verified and merged
    into the reader (so a later lookup of the id asks nobody again). ``local`` are ids
    the caller knows without a node (:func:`sent_ids`). Fails with
    ``no-node-answered`` when no node answered and nothing local matched.
    """
    if isinstance(ref, bytes):
        return ref
    prefix = ref
    unsupported: list[str] = []

    async def one(node: NodeClient) -> None:
        try:
            items = await node.events_by_prefix(prefix)
        except RemoteError as exc:
            if exc.status not in (400, 404, 405):
                raise
            # A node older than the query: it answered, but cannot resolve short ids.
            log.info("node cannot resolve short ids url=%s code=%s", node.url, exc.code)
            unsupported.append(node.url)
            return
        await reader.preverify(items)
        for item in items:
            reader.add(node.url, item, lambda e: e.id_hex.startswith(prefix))

    await reader.each(one)
    found = {eid for eid in reader.events if eid.hex().startswith(prefix)}
    found |= {eid for eid in local if eid.hex().startswith(prefix)}
    if not found:
        reader.report.require_answer()
        older = (
            f" ({', '.join(unsupported)} cannot look up short ids: give the full id)"
            if unsupported
            else ""
        )
        silent = [f"{n.url}: {n.error.code}" for n in reader.report.nodes if n.error is not None]
        unasked = (
            f" (not consulted, it may hold one: {'; '.join(silent)})" if silent else ""
        )
        raise UnknownIdError(
            f"no event id starts with {prefix} on the configured nodes{older}{unasked}"
        )
    if len(found) > 1:
        ordered = sorted(found)
        raise AmbiguousIdError(
            f"{prefix} is ambiguous: it starts {len(ordered)} event ids: "
            + "; ".join(_describe(eid, reader.events.get(eid)) for eid in ordered)
            + ". Give more of the id.",
            candidates=[eid.hex() for eid in ordered],
        )
    (eid,) = found
    return eid
