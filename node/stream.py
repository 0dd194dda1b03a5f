"""The live stream: Server-Sent Events of newly stored events (spec 0004 §stream).

``GET /v1/stream?cursor=N`` sends every event stored after cursor ``N``, in cursor
order, then new ones as they commit. Each SSE message has ``id: <cursor>``, so a
client (or a browser ``EventSource``) resumes after a disconnect with ``Last-Event-ID``
and gets exactly what it missed: at-least-once, no gaps, because the single writer
commits cursors in order and the hub is told only after commit.

Backpressure without unbounded memory: a subscriber does not get a queue. Its handler
reads pages of events from the store at the pace its socket drains; a write that
blocks longer than ``stream_write_timeout_ms`` disconnects it and it resumes by cursor.

Slots without starvation (spec 0004 §stream-slots): the hub bounds streams per client
address, keeps a reserve of slots for the addresses of this node's working peers,
evicts the oldest stream of the heaviest address when a newcomer finds no slot, and
every stream is closed cleanly after at most ``stream_max_lifetime_ms``, so no idle
slot is held forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from node.api.params import MAX_CURSOR
from node.limits import client_address
from protocol.errors import BadRequestError, RateLimitedError, UnavailableError

if TYPE_CHECKING:
    from node.store.base import StoredEvent

__all__ = [
    "PAGE",
    "STREAM_RETRY_AFTER_S",
    "StreamHub",
    "Subscription",
    "client_address",  # defined in node.limits: one key for every per-address limit
    "parse_start_cursor",
    "sse_frame",
]

log = logging.getLogger("murmur.node.stream")

#: Events read from the store per page while catching up.
PAGE = 256


#: ``Retry-After`` (seconds) of a stream refused because its address holds its share.
STREAM_RETRY_AFTER_S = 5


@dataclass(eq=False, slots=True, kw_only=True)
class Subscription:
    """One open stream: its client address, its pool, and how it may be told to end."""

    address: str
    #: It holds one of the slots reserved for peers (spec 0004 §stream-slots).
    reserved: bool
    #: Order of joining; the oldest stream of an address is evicted first.
    serial: int
    #: Set by the hub: another address needed the slot (the handler ends the stream).
    evicted: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class StreamHub:
    """Tells waiting subscribers that the store's cursor moved; holds no events.

    It also hands out the stream slots (spec 0004 §stream-slots): ``max_subscribers``
    in all, of which ``peer_reserve`` only streams from a working peer's address may
    take, at most one per working peer there (a peer needs one stream); every other
    stream of an address is a general one, at most ``max_per_address`` of them. When
    the general slots are all taken, a newcomer evicts the oldest general stream of
    the address holding the most of them, if that address holds at least two more
    than the newcomer; otherwise it is refused. Addresses are :func:`client_address`
    keys (an IPv6 /64 is one).
    """

    def __init__(
        self, *, max_subscribers: int, max_per_address: int = 8, peer_reserve: int = 0
    ) -> None:
        self.max_subscribers = max_subscribers
        self.max_per_address = max_per_address
        self.peer_reserve = min(peer_reserve, max_subscribers // 2)
        self.general_slots = max_subscribers - self.peer_reserve
        self.cursor = 0
        self.closing = False
        #: Streams open now, in each pool.
        self.general = 0
        self.reserved = 0
        #: Streams evicted since start.
        self.evictions = 0
        self._by_address: dict[str, list[Subscription]] = {}
        self._serial = 0

    @property
    def subscribers(self) -> int:
        return self.general + self.reserved

    def publish(self, cursor: int) -> None:
        """Called after a commit with the highest cursor it stored."""
        if cursor > self.cursor:
            self.cursor = cursor
            self._wake_all()

    def close(self) -> None:
        """Ask every subscriber to finish (node shutdown)."""
        self.closing = True
        self._wake_all()

    def _wake_all(self) -> None:
        for subs in self._by_address.values():
            for sub in subs:
                sub.wake.set()

    async def wait(self, sub: Subscription, after: int, timeout_s: float) -> bool:
        """Wait until the cursor passes ``after``, the hub closes or ``sub`` is evicted;
        False on timeout."""
        if self.cursor > after or self.closing or sub.evicted:
            return True
        sub.wake.clear()  # no await since the check: no wake-up can be lost
        try:
            async with asyncio.timeout(timeout_s):
                await sub.wake.wait()
        except TimeoutError:
            return False
        return True

    def join(self, address: str, *, peers: int = 0) -> Subscription:
        """A slot for a stream from ``address`` (a :func:`client_address` key), where
        ``peers`` working peers of this node are; ``RateLimitedError`` (429) past the
        address's share, ``UnavailableError`` (503) when no slot is left."""
        if self.closing:
            raise UnavailableError("node is shutting down")
        mine = self._by_address.get(address, [])
        reserved_here = sum(1 for s in mine if s.reserved)
        general_here = len(mine) - reserved_here
        # One reserved slot per working peer at most: a peer needs one stream, and
        # reserved slots are never evicted, so an address that got into the table
        # (a trivial fake node answers /v1/info) must not take more of them.
        if reserved_here < peers and self.reserved < self.peer_reserve:
            reserved = True
        elif general_here >= self.max_per_address:
            raise RateLimitedError(
                f"{len(mine)} streams open from this address (at most"
                f" {self.max_per_address} besides one per working peer there)",
                retry_after=STREAM_RETRY_AFTER_S,
            )
        elif self.general < self.general_slots:
            reserved = False
        else:
            victim = self._heaviest_oldest(general_here)
            if victim is None:
                raise UnavailableError("too many stream subscribers; retry later")
            self._evict(victim)
            reserved = False
        self._serial += 1
        sub = Subscription(address=address, reserved=reserved, serial=self._serial)
        self._by_address.setdefault(address, []).append(sub)
        if reserved:
            self.reserved += 1
        else:
            self.general += 1
        return sub

    def leave(self, sub: Subscription) -> None:
        """Give back ``sub``'s slot (a no-op when it was evicted: already given back)."""
        if sub.evicted:
            return
        subs = self._by_address.get(sub.address, [])
        if sub in subs:
            subs.remove(sub)
            if not subs:
                del self._by_address[sub.address]
            if sub.reserved:
                self.reserved -= 1
            else:
                self.general -= 1

    def _heaviest_oldest(self, newcomer_holds: int) -> Subscription | None:
        """The oldest general-pool stream of the address holding the most of them (the
        oldest such stream on a tie), if it holds at least two more than the newcomer
        holds general slots."""
        best: list[Subscription] = []
        for subs in self._by_address.values():
            general = [s for s in subs if not s.reserved]
            if len(general) > len(best) or (
                general and len(general) == len(best) and general[0].serial < best[0].serial
            ):
                best = general
        if len(best) < newcomer_holds + 2:
            return None
        return best[0]

    def _evict(self, sub: Subscription) -> None:
        self.leave(sub)
        sub.evicted = True
        sub.wake.set()
        self.evictions += 1
        log.info("stream evicted address=%s", sub.address)


def parse_start_cursor(request: web.Request, live: int) -> int:
    """``Last-Event-ID`` (a reconnect) wins over ``?cursor``; neither means "from now"."""
    raw = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if raw is None or raw.strip() == "":
        raw, name = request.query.get("cursor"), "cursor"
    if raw is None or raw == "":
        return live
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_CURSOR:
        raise BadRequestError(f"{name} must be a non-negative integer cursor")
    return int(raw)


def sse_frame(ev: StoredEvent, event_obj: dict[str, object]) -> bytes:
    """One SSE message: ``id`` is the cursor, ``data`` the event's JSON form."""
    data = json.dumps({"cursor": ev.cursor, "event": event_obj}, separators=(",", ":"))
    return f"id: {ev.cursor}\nevent: event\ndata: {data}\n\n".encode()
