"""The storage interface every node backend implements (spec 0004 §store).

Handlers and the ingest pipeline only see :class:`Store`; SQLite is the default
backend and a PostgreSQL one can follow without touching them. The contract that
matters most: :meth:`Store.apply_batch` applies a whole batch in one transaction and
returns only after it committed, so a result of ``accepted`` is durable. Every stored
event gets a node-local ``cursor``: strictly increasing in commit order, never reused,
the position used by the live stream.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Literal

from protocol.blobs import BlobInfo
from protocol.embeds import EmbedImage
from protocol.encoding import encode_bins
from protocol.errors import ProtocolError
from protocol.events import Event
from protocol.feeds import Reacted
from protocol.negentropy_storage import NegentropyStorage

if TYPE_CHECKING:
    from node.coalesce import Coalescer
    from node.store.group import GroupCommit

__all__ = [
    "AuthorStats",
    "BLOB_AUTHOR_BYTES",
    "BlobTotals",
    "HeldBlob",
    "ChainRow",
    "Counts",
    "EventCounts",
    "FeedQuery",
    "KeyHistory",
    "LabelRow",
    "NOTIFICATION_REASONS",
    "Notification",
    "PeerRecord",
    "ProfileRow",
    "REACTION_KINDS",
    "SEARCH_KEY_LOW_BITS",
    "SearchPage",
    "SearchQuery",
    "Store",
    "StoredEvent",
    "WriteResult",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """One stored event: its header fields, exact signed bytes and stream cursor.

    ``body`` is ``None`` when the node holds only the header (dropped by a deletion,
    or received without its body). ``deleted`` is true when a deletion by the author
    dropped it: the body is then never stored again (unless that deletion is revoked,
    spec 0008 #revoked-delete). ``status`` is ``canonical`` for every v1 event; for a
    ``did:murmur`` author's event it is what spec 0008 #status decides (``revoked``,
    ``disputed``, ``pending``), and ``revoked_by`` the key event that revoked it.
    """

    cursor: int
    id: bytes
    author: str
    seq: int
    prev: bytes | None
    ts: int
    kind: str
    header: bytes
    sig: bytes
    body: bytes | None
    deleted: bool
    status: str = "canonical"
    revoked_by: bytes | None = None

    @property
    def wire(self) -> bytes:
        """The wire form ``[header, sig, body | nil]``: what clients verify."""
        return encode_bins([self.header, self.sig, self.body])


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainRow:
    """The chain fields of one event, for :func:`protocol.chain.analyze_chain`."""

    author: str
    seq: int
    prev: bytes | None
    id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyHistory:
    """Every held key event of one ``did:murmur`` author (spec 0008 #nodes), with the
    canonical path and, when it stops at a tie, the contenders, as last resolved."""

    author: str
    events: list[StoredEvent]
    path: list[bytes]
    contenders: list[bytes]
    #: The path stops at a tie (``contenders`` may then be empty on a page), at
    #: ``point`` (the path's last key event; None for tied geneses).
    disputed: bool = False
    point: bytes | None = None
    #: ``events`` is one page: more key events follow, after the last one (spec 0004
    #: #author-keys). ``path`` and ``contenders`` then list those of this page only.
    more: bool = False

    @classmethod
    def page(
        cls, author: str, events: list[StoredEvent], contenders: Sequence[bytes],
        point: bytes | None, *, more: bool,
    ) -> KeyHistory:  # fmt: skip
        """A page of key events read in ``(seq, id)`` order, ``contenders`` as stored for
        the author: the canonical key events among them are exactly the path (spec 0008
        §8.7), the contenders those of the page."""
        ids = {e.id for e in events}
        return cls(
            author=author,
            events=events,
            path=[e.id for e in events if e.status == "canonical"],
            contenders=[k for k in contenders if k in ids],
            disputed=bool(contenders),
            point=point,
            more=more,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    """The outcome of one event of a batch, in batch order."""

    status: Literal["accepted", "duplicate", "rejected"]
    cursor: int | None = None
    error: ProtocolError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedQuery:
    """Newest-first events of some authors (all when ``authors`` is None)."""

    authors: tuple[str, ...] | None
    kinds: tuple[str, ...] | None
    #: Exclusive upper bound ``(ts, cursor)``; None starts at the newest event.
    before: tuple[int, int] | None
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    """Post search (spec 0004 #search): posts containing every word of ``words``
    (from :func:`node.search_terms.query_words`), or tagged ``tag`` (normalized by
    :func:`node.search_terms.query_tag`); exactly one of the two is set."""

    words: tuple[str, ...] = ()
    tag: str | None = None
    #: Exclusive bound: the ``next`` of the previous page; None starts at the newest.
    before: int | None
    limit: int


#: Low bits of a post's search key below its ``ts`` (both backends, spec 0004
#: #search-order): ``SearchQuery.before = ts << SEARCH_KEY_LOW_BITS`` starts a page at
#: the posts of ``ts - 1`` and older.
SEARCH_KEY_LOW_BITS: Final = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    """Matching posts, newest first by ``ts``; ``next`` is the ``before`` of the next
    page (None when this one is the last)."""

    events: list[StoredEvent]
    next: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelRow:
    labeler: str
    subject: str
    val: str
    neg: bool
    exp: int | None
    event: StoredEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileRow:
    author: str
    name: str
    bio: str
    event: StoredEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRecord:
    """What a node remembers of one peer across restarts (spec 0005 §peers).

    ``cursor`` is the peer's stream cursor up to which everything it sent has been
    committed here (None: never subscribed, start from the peer's present).
    ``source`` is ``"static"`` (configuration) or ``"gossip"`` (learnt from a peer).
    """

    url: str
    source: str
    node_id: str | None = None
    cursor: int | None = None
    score: float = 0.0
    failures: int = 0
    last_ok_ms: int | None = None
    added_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    events: int
    authors: int
    deleted: int
    forked_authors: int
    cursor: int


#: Notification reasons, strongest first: an event notifies each recipient once, with
#: the first of these that applies (spec 0004 #notification-reasons).
NOTIFICATION_REASONS: Final = ("reply", "quote", "mention", "like", "repost", "follow")
#: What is counted and listed per event (spec 0004 #counts, #reactions).
REACTION_KINDS: Final = ("like", "repost", "reply", "quote")
#: Most ids one shared ``settled_ids`` read asks for (a batch's worth).
_SETTLED_PER_READ: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A counting event that notifies a recipient, and why (spec 0004 #notifications)."""

    reason: str
    event: StoredEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class EventCounts:
    """What this node holds referencing one event (spec 0004 #counts)."""

    likes: int = 0
    reposts: int = 0
    replies: int = 0
    quotes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorStats:
    """Follow counts and first-seen facts of one author (spec 0004 #author-stats).

    ``first_ts`` is the smallest ``ts`` of the author's held events (signed, but the
    author chooses it); ``first_seen_ms`` when this node stored its first event of the
    author (the node's clock: not the author's to choose, but node-local)."""

    author: str
    followers: int
    following: int
    first_ts: int | None
    first_seen_ms: int | None


#: Default of ``limits.blob_author_bytes``: most held blob bytes one author's posts
#: may keep on a node (spec 0004 #blob-keep).
BLOB_AUTHOR_BYTES: Final = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobTotals:
    """The blobs a store holds (spec 0004 #blob-keep): ``held`` ones (a stored post
    references them) and their bytes, and the bytes of ``pending`` uploads (none yet)."""

    held: int = 0
    held_bytes: int = 0
    pending_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldBlob:
    """A blob the node serves: its bytes and their (sniffed = claimed) type."""

    mime: str
    data: bytes


class Store(abc.ABC):
    """Durable event storage. All methods are coroutines; implementations must not
    block the event loop."""

    #: The backend's name, as ``/v1/info`` gives it (``sqlite``, ``postgresql``).
    backend: ClassVar[str]

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the write in progress (if any) and release every resource."""

    #: Concurrent batches' shared transactions (made at the first write).
    _group: GroupCommit | None = None

    async def apply_batch(
        self,
        events: Sequence[Event],
        then: Callable[[list[WriteResult]], None] | None = None,
    ) -> list[WriteResult]:
        """Store verified events; return their results once the transaction holding
        them committed. Batches written concurrently share transactions (group commit,
        :mod:`node.store.group`, spec 0004 #group-commit). ``then`` is called with the
        results right after the commit, even if the caller was cancelled meanwhile."""
        if not events:
            return []
        return await self._group_commit().submit(events, then)

    def _group_commit(self) -> GroupCommit:
        if self._group is None:
            from node.store.group import GroupCommit

            self._group = GroupCommit(self._apply_batch)
        return self._group

    def write_coming(self) -> contextlib.AbstractContextManager[None]:
        """Around a batch's verification, before :meth:`apply_batch`: the transaction
        about to start may wait a moment to take it too (spec 0004 #group-commit)."""
        return self._group_commit().coming()

    def write_groups(self) -> tuple[int, int]:
        """Write transactions run and the batches they carried."""
        g = self._group
        return (0, 0) if g is None else (g.transactions, g.batches)

    @abc.abstractmethod
    async def _apply_batch(self, events: Sequence[Event]) -> list[WriteResult]:
        """Store verified events in ONE transaction; return after it committed.

        A post whose ``embed`` names images records a blob reference per image, and
        keeps a pending upload of it that matches the claim (within the author's
        quota, :attr:`blob_author_bytes`); an event losing its body drops its
        references, and the bytes of a blob left without any (spec 0004 #blob-keep).
        """

    # -- blobs (spec 0004 #blobs) ------------------------------------------------------

    #: Most held blob bytes the posts of one author keep (``limits.blob_author_bytes``,
    #: set by the app): beyond it a post is stored, its new images' bytes are not.
    blob_author_bytes: int = BLOB_AUTHOR_BYTES
    #: Blobs whose bytes were dropped, by reason (``grace``, ``deleted``,
    #: ``author-quota``), by this process since it started (``/metrics``).
    blob_drops: dict[str, int]

    @abc.abstractmethod
    def blob_totals(self) -> BlobTotals:
        """The blobs held and pending, as of this process's last blob write (no I/O)."""

    @abc.abstractmethod
    async def put_upload(
        self, digest: bytes, info: BlobInfo, data: bytes, *, now_ms: int, max_pending: int
    ) -> bool:
        """Take uploaded bytes (``info`` = their :func:`protocol.blobs.sniff`, ``digest``
        their hash) in one transaction: held at once if a stored post's claim matches
        them (and its author's quota allows), else pending from ``now_ms`` (a pending
        upload sent again starts its grace period again). Returns whether the blob is
        held. Raises ``UnavailableError`` when new pending bytes would bring the node's
        total above ``max_pending`` (spec 0004 #blob-upload)."""

    @abc.abstractmethod
    async def get_blob(self, digest: bytes) -> HeldBlob | None:
        """The blob's bytes if a stored, undeleted post references it and they are held;
        None otherwise (a pending upload is never served, spec 0004 #blob-serve)."""

    @abc.abstractmethod
    async def sweep_blobs(self, *, received_before_ms: int, limit: int) -> int:
        """Drop at most ``limit`` pending uploads received before the given time (their
        grace period is over); return how many were dropped."""

    @abc.abstractmethod
    async def missing_blobs(
        self, limit: int, *, after: bytes = b""
    ) -> list[tuple[bytes, EmbedImage]]:
        """At most ``limit`` blobs a stored post references whose bytes are not held,
        in hash order after ``after`` (a cursor: the last hash of the previous page),
        each with one claim made of it (``alt`` empty): what the federation asks peers
        for (spec 0005 #blob-fetch)."""

    @abc.abstractmethod
    async def put_fetched_blob(self, digest: bytes, data: bytes) -> bool:
        """Keep bytes fetched from a peer: held if they verify against a stored claim
        of ``digest`` (:func:`protocol.blobs.verify_blob`, 0003 #blob-hash) within its
        author's quota; otherwise nothing is stored. Returns whether they are held."""

    @abc.abstractmethod
    async def blob_ref_count(self, digest: bytes) -> int:
        """How many stored posts reference ``digest`` (tests and diagnostics)."""

    @abc.abstractmethod
    async def blob_bytes_stored(self, digest: bytes) -> bool:
        """Whether any bytes of ``digest`` are stored, held or pending."""

    @abc.abstractmethod
    async def get_event(self, eid: bytes) -> StoredEvent | None: ...

    @abc.abstractmethod
    async def author_events(
        self, author: str, *, from_seq: int, to_seq: int | None, limit: int
    ) -> list[StoredEvent]:
        """Events of ``author`` with ``from_seq <= seq <= to_seq``, by seq ascending."""

    @abc.abstractmethod
    async def author_chain(self, author: str, *, limit: int) -> list[ChainRow]: ...

    @abc.abstractmethod
    async def forked(self, author: str) -> bool: ...

    @abc.abstractmethod
    async def feed(self, query: FeedQuery) -> list[StoredEvent]: ...

    @abc.abstractmethod
    async def thread(
        self, root: bytes, *, after: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        """Replies whose ``reply.root`` is ``root``, oldest first, after ``(ts, cursor)``."""

    @abc.abstractmethod
    async def labels(
        self, *, subject: str | None, labeler: str | None, after: int, limit: int
    ) -> list[LabelRow]:
        """Labels by subject and/or labeler, in cursor order after ``after``."""

    @abc.abstractmethod
    async def profiles(self, query: str, *, limit: int) -> list[ProfileRow]:
        """Latest profile per author whose name contains ``query`` (case-insensitive)."""

    @abc.abstractmethod
    async def search(self, query: SearchQuery) -> SearchPage:
        """Canonical, undeleted posts held with their body that match ``query``
        (spec 0004 #search), newest first by ``ts``."""

    @abc.abstractmethod
    async def events_after(
        self,
        cursor: int,
        *,
        limit: int,
        kinds: tuple[str, ...] | None = None,
        authors: tuple[str, ...] | None = None,
    ) -> list[StoredEvent]:
        """Events stored after ``cursor``, in cursor order (the live stream)."""

    @abc.abstractmethod
    async def key_history(
        self, author: str, *, after: tuple[int, bytes] | None = None, limit: int
    ) -> KeyHistory | None:
        """One page of ``author``'s held key events: at most ``limit`` of them, by
        ``(seq, id)`` after ``after``, with the fork choice restricted to the page
        (``more`` when others follow); None when the node holds none (spec 0004
        #author-keys)."""

    @abc.abstractmethod
    async def key_histories(
        self, authors: Sequence[str], *, max_events: int
    ) -> tuple[dict[str, KeyHistory], list[str]]:
        """The whole key history of each of ``authors`` that has held key events, read
        together, in at most ``max_events`` key events in all (spec 0004 #keys-batch):
        the histories that fit, and (in request order) the authors whose history did
        not, which are never read in full. Authors with none are left out of both."""

    async def key_tips(self, authors: Sequence[str]) -> dict[str, list[bytes]]:
        """The key-event tips of each of ``authors`` with held key events (spec 0004
        #feed-key-tips): the last key event of the canonical path as last resolved,
        then the contenders of its dispute. Stores override it with one indexed
        query; this form reads the histories (an author that does not fit is left out).
        """
        histories, _ = await self.key_histories(authors, max_events=2000)
        return {a: [*h.path[-1:], *h.contenders] for a, h in histories.items()}

    @abc.abstractmethod
    async def get_events(self, ids: Sequence[bytes]) -> list[StoredEvent]:
        """The stored events among ``ids`` (any order; unknown ids are left out)."""

    @abc.abstractmethod
    async def events_by_id_prefix(self, prefix: str, *, limit: int) -> list[StoredEvent]:
        """At most ``limit`` stored events whose hex id starts with ``prefix`` (lowercase
        hex, 1 to 64 characters), ascending by id: one range scan of the id index
        (spec 0004 #events-by-prefix)."""

    async def held_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``ids`` are stored at all (any form, any status): the lookup that
        lets ingest answer ``unknown-key-event`` before a signature check (spec 0004
        #ingest-v2). Stores override it with an index-only query."""
        return {e.id for e in await self.get_events(ids)}

    #: Concurrent ``settled_ids`` asks' shared reads (made at the first one).
    _settled: Coalescer[bytes, bool] | None = None

    async def settled_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``ids`` are stored in a form no copy can change: with their body,
        or deleted. A held body-less event that no deletion explains is not settled:
        a full copy may still complete it (spec 0004 #body-fill).

        Ingest asks this of every request before anything else, so concurrent asks
        share reads (:mod:`node.coalesce`): one read per request would cost a thread
        hand-off per posted event."""
        if not ids:
            return set()
        if self._settled is None:
            from node.coalesce import Coalescer

            async def read(asked: list[bytes]) -> list[bool]:
                held = await self._settled_ids(asked)
                return [i in held for i in asked]

            self._settled = Coalescer(read, max_inflight=2, max_items=_SETTLED_PER_READ)
        answers = await self._settled.run(ids)
        return {i for i, held in zip(ids, answers, strict=True) if held}

    @abc.abstractmethod
    async def _settled_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        """:meth:`settled_ids`, in one read."""

    @abc.abstractmethod
    async def missing_bodies(self, *, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``(cursor, id)`` of held events without a body that no deletion explains,
        cursor above ``after``, in cursor order: what the repair step asks peers for."""

    @abc.abstractmethod
    async def sync_storage(self) -> NegentropyStorage:
        """Every stored event as a negentropy item ``(ts, id)`` (spec 0005), sealed,
        built without holding a Python object per event (about 44 bytes an event)."""

    @abc.abstractmethod
    async def node_id(self) -> str:
        """This node's random, persistent id (created on first use)."""

    @abc.abstractmethod
    async def load_peers(self) -> list[PeerRecord]: ...

    @abc.abstractmethod
    async def save_peer(self, peer: PeerRecord) -> None:
        """Insert or replace the record of ``peer.url``."""

    @abc.abstractmethod
    async def delete_peer(self, url: str) -> None: ...

    @abc.abstractmethod
    def counts(self) -> Counts:
        """Cheap counters kept in memory (no I/O)."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise if the store cannot serve (used by ``/health``)."""

    # -- social indexes (spec 0004 #social) --------------------------------------------

    @abc.abstractmethod
    async def notifications(
        self,
        recipient: str,
        *,
        reasons: Sequence[str],
        before: tuple[int, int] | None,
        limit: int,
    ) -> list[Notification]:
        """Counting events that notify ``recipient`` for one of ``reasons``, newest
        first by ``(ts, cursor)`` below ``before``."""

    @abc.abstractmethod
    async def followers(
        self, subject: str, *, before: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        """The follow events of ``subject``'s current followers, newest first."""

    @abc.abstractmethod
    async def reactions(
        self, target: bytes, kind: str, *, before: tuple[int, int] | None, limit: int
    ) -> list[StoredEvent]:
        """Counting events of ``kind`` (like, repost, reply, quote) referencing
        ``target``, newest first."""

    @abc.abstractmethod
    async def event_counts(self, ids: Sequence[bytes]) -> dict[bytes, EventCounts]:
        """The counts of each of ``ids`` (every id present, zeros when unreferenced)."""

    @abc.abstractmethod
    async def author_stats(self, authors: Sequence[str]) -> dict[str, AuthorStats]:
        """Follow counts and first-seen facts of each of ``authors`` (every one present)."""

    @abc.abstractmethod
    async def top_reacted(self, *, since_ts: int, until_ts: int, limit: int) -> list[Reacted]:
        """The targets most liked and reposted by the counting ``like`` and ``repost``
        events with ``since_ts <= ts < until_ts`` (spec 0004 #reacted): distinct authors
        per target and kind, most likes + reposts first, then by id; at most ``limit``.
        One range of the ``(kind, ts)`` index: the work is the window's reactions, not
        the store's. The targets need not be held."""
