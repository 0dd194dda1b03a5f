"""The peer table: every peer a node knows, its state and its score (spec 0005 §peers).

A peer is known by its *origin* URL (scheme, host, port; see
:func:`node.federation.outbound.peer_origin`). It enters the table from the
configuration (``static``: never dropped), from another peer's list or an announcement
(``gossip``: dropped once it looks dead or misbehaves). The table is bounded by
``max_peers``; static peers always fit, and a newcomer replaces the oldest gossip
peer that never worked, so dead announced URLs cannot keep working peers out.

Scores run from :data:`SCORE_MIN` to :data:`SCORE_MAX`: working connections and
successful syncs raise a peer's score a little, failures lower it, and garbage,
forgeries and refused addresses lower it a lot. ``GET /v1/peers`` shows the table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Final

from node.store.base import PeerRecord

__all__ = [
    "DROP_AFTER_FAILURES",
    "DROP_SCORE",
    "GOSSIP_GRACE_MS",
    "GOSSIP_NEW_PER_ROUND",
    "SCORE_MAX",
    "SCORE_MIN",
    "UNTRIED_PROBES",
    "Peer",
    "PeerState",
    "PeerTable",
    "Score",
]

SCORE_MIN: Final = -100.0
SCORE_MAX: Final = 100.0
#: A gossip peer at or below this score is dropped.
DROP_SCORE: Final = -50.0
#: A gossip peer that failed this many times in a row, with no success for the
#: table's ``drop_silence_ms``, is dropped.
DROP_AFTER_FAILURES: Final = 8
#: Probes of gossip peers that never worked run at most this many at once: the URLs
#: of announcements and gossip are named by anyone (spec 0005 #peer-eviction).
UNTRIED_PROBES: Final = 4
#: A URL learnt by gossip may replace an untried peer only once that peer's first
#: probe has finished, or this long after it was added: a live hostile peer must not
#: push out, by naming dead URLs, a newcomer announced a moment ago (spec 0005
#: #peer-eviction).
GOSSIP_GRACE_MS: Final = 300_000
#: At most this many new URLs are added from one peer's gossip answer (one round).
GOSSIP_NEW_PER_ROUND: Final = 2


class Score(float, enum.Enum):
    """How much each outcome moves a peer's score."""

    CONNECTED = 5.0
    SYNCED = 2.0
    UNREACHABLE = -5.0
    REJECTED = -2.0
    BAD_RESPONSE = -20.0
    BAD_EVENT = -10.0
    FORBIDDEN = -100.0


class PeerState(enum.StrEnum):
    """Where a peer's subscription is."""

    NEW = "new"  # known, not contacted yet
    CONNECTING = "connecting"  # probing it or opening its stream
    LIVE = "live"  # its live stream is open
    BACKOFF = "backoff"  # the last attempt failed; waiting to retry
    SELF = "self"  # it is this node (same node id): never subscribed to
    DUPLICATE = "duplicate"  # same node as another peer already subscribed to
    REFUSED = "refused"  # its address is not allowed (private, loopback, ...)


@dataclass(slots=True, kw_only=True)
class Peer:
    """One peer's runtime state; :meth:`record` is what survives a restart."""

    url: str
    source: str
    state: PeerState = PeerState.NEW
    node_id: str | None = None
    cursor: int | None = None
    score: float = 0.0
    failures: int = 0
    last_ok_ms: int | None = None
    added_ms: int = 0
    last_error: str | None = None
    next_attempt_ms: int | None = None
    events_received: int = 0
    events_rejected: int = 0
    last_sync: dict[str, Any] | None = field(default=None)
    #: The peer's negentropy frame size limit, from its ``/v1/info`` (runtime only).
    frame_bytes: int | None = None
    #: Its last probe (``/v1/info``) succeeded, and nothing since says it is down.
    reachable: bool = False
    #: The IP address this node's last successful probe of it connected to (runtime
    #: only): streams from there count as this peer's (spec 0004 §stream-slots).
    address: str | None = None

    @classmethod
    def from_record(cls, rec: PeerRecord) -> Peer:
        return cls(**{f.name: getattr(rec, f.name) for f in fields(PeerRecord)})

    def record(self) -> PeerRecord:
        return PeerRecord(**{f.name: getattr(self, f.name) for f in fields(PeerRecord)})

    def adjust(self, delta: float) -> None:
        self.score = min(SCORE_MAX, max(SCORE_MIN, self.score + delta))

    def succeeded(self, now_ms: int, delta: float) -> None:
        """Credit a working exchange (a stream opened, a sync ran). The failure count
        is left alone: it drives the stream's reconnect backoff, which only
        :meth:`recovered` (the stream proved itself) starts over."""
        self.last_ok_ms = now_ms
        self.adjust(delta)

    def recovered(self) -> None:
        """Its stream delivered well-formed data: the reconnect backoff starts over."""
        self.failures = 0
        self.last_error = None

    def failed(self, error: str, delta: float) -> None:
        self.failures += 1
        self.last_error = error
        self.adjust(delta)

    def to_json(self) -> dict[str, Any]:
        """The ``GET /v1/peers`` form (spec 0005 §peers)."""
        return {
            "url": self.url,
            "state": self.state.value,
            "score": round(self.score, 2),
            "source": self.source,
            "node_id": self.node_id,
            "cursor": self.cursor,
            "failures": self.failures,
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "next_attempt_ms": self.next_attempt_ms,
            "events_received": self.events_received,
            "events_rejected": self.events_rejected,
            "last_sync": self.last_sync,
        }


class PeerTable:
    """The bounded set of known peers, by origin URL."""

    def __init__(self, *, max_peers: int, drop_silence_ms: int) -> None:
        self.max_peers = max_peers
        self.drop_silence_ms = drop_silence_ms
        self._peers: dict[str, Peer] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, url: object) -> bool:
        return url in self._peers

    def get(self, url: str) -> Peer | None:
        return self._peers.get(url)

    def all(self) -> list[Peer]:
        return list(self._peers.values())

    def add(self, peer: Peer) -> bool:
        """Add ``peer`` unless its URL is known or (for a non-static peer) the table is full."""
        if peer.url in self._peers:
            return False
        if peer.source != "static" and len(self._peers) >= self.max_peers:
            return False
        self._peers[peer.url] = peer
        return True

    def untried_victim(self, *, by_gossip_at_ms: int | None = None) -> Peer | None:
        """The peer a newcomer may replace in a full table (spec 0005 #peer-eviction):
        the oldest gossip peer that never worked (no stream opened, no sync completed).
        Static peers, and peers that ever worked, are never replaced this way. For a
        URL learnt by gossip at ``by_gossip_at_ms``, only a peer whose first probe has
        finished, or that was added ``GOSSIP_GRACE_MS`` before, may be replaced."""
        untried = [
            p
            for p in self._peers.values()
            if p.source != "static"
            and p.last_ok_ms is None
            and (
                by_gossip_at_ms is None
                or _probed(p)
                or by_gossip_at_ms - p.added_ms >= GOSSIP_GRACE_MS
            )
        ]
        # On a tie, the first added (``min`` keeps the first of equal keys).
        return min(untried, key=lambda p: p.added_ms, default=None)

    def working_at(self, address: str) -> int:
        """How many working peers this node reaches at IP ``address``: probed with
        success, and not this node itself, a twin or a refused address."""
        return sum(
            1
            for p in self._peers.values()
            if p.address == address
            and p.reachable
            and p.state not in (PeerState.SELF, PeerState.DUPLICATE, PeerState.REFUSED)
        )

    def remove(self, url: str) -> None:
        self._peers.pop(url, None)

    def same_node(self, peer: Peer, node_id: str) -> Peer | None:
        """Another peer with ``node_id`` that is connected or connecting, if any."""
        for other in self._peers.values():
            if (
                other is not peer
                and other.node_id == node_id
                and other.state in (PeerState.LIVE, PeerState.CONNECTING)
            ):
                return other
        return None

    def should_drop(self, peer: Peer, now_ms: int) -> bool:
        """A gossip peer that misbehaved or stayed dead too long; never a static one."""
        if peer.source == "static":
            return False
        if peer.score <= DROP_SCORE:
            return True
        silent_since = peer.last_ok_ms if peer.last_ok_ms is not None else peer.added_ms
        return peer.failures >= DROP_AFTER_FAILURES and now_ms - silent_since > self.drop_silence_ms

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in sorted(self._peers.values(), key=lambda p: p.url)]


def _probed(peer: Peer) -> bool:
    """Has a probe of ``peer`` finished? Every outcome leaves a mark: a failure is
    counted, a success makes it reachable, itself or a twin."""
    return (
        peer.failures > 0
        or peer.reachable
        or peer.state in (PeerState.SELF, PeerState.DUPLICATE, PeerState.REFUSED)
    )
