"""One node served by several processes on one PostgreSQL database (spec 0004
#store-processes).

Every process of the node opens a :class:`ProcessGroup` beside its store:

- **Live streams.** After each commit that stored something, the writing process sends
  ``NOTIFY murmur_stream`` on the batch's own connection, carrying its token, the new top
  cursor and the batch's counts. Every other process LISTENs on a dedicated connection:
  it adds the counts to its store's :meth:`counts` and publishes the cursor to its
  :class:`~node.stream.StreamHub`, whose subscribers then read the store above their
  last cursor. A notification lost (the writer killed between its commit and its
  NOTIFY, the listening connection dropped) is caught by a cheap check of
  ``stream_head.top`` every :data:`BACKSTOP_S`: late, never missed. Then (and after the
  listening connection is opened again) the counts are read from the database again
  (:meth:`ProcessGroup.reload_counts`), exactly: what was missed is in the snapshot.
- **Peers.** A process that is not the leader and learns a new peer (an announcement)
  saves it and sends ``NOTIFY murmur_peers``; the leader reads the peer table again and
  starts the loops of the new ones, at most once per :data:`PEERS_RELOAD_S` however
  many notifications arrive (each was an announcement its process's limits admitted).
- **Federation.** Exactly one process runs the federation loops: the one holding the
  session advisory lock :data:`LEADER_LOCK` on a dedicated connection. The others wait
  for it (``pg_advisory_lock``); PostgreSQL releases a session lock when its connection
  ends, which a killed process's does at once, and grants it to a waiter. A leader
  checks its lock connection every :data:`LEADER_RETRY_S` and stops its loops when it
  fails (the lock may be someone else's by then).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
from typing import Any, Final

import asyncpg

from node.federation.manager import Federation
from node.metrics import Metrics
from node.store.pg_write import Conn
from node.store.postgres import PostgresStore
from node.store.sqlite_effects import BatchStats
from node.stream import StreamHub

__all__ = [
    "BACKSTOP_S",
    "CHANNEL",
    "LEADER_LOCK",
    "LEADER_RETRY_S",
    "PEERS_CHANNEL",
    "PEERS_RELOAD_S",
    "ProcessGroup",
]

log = logging.getLogger("murmur.node.cluster")

#: The NOTIFY channel of committed batches.
CHANNEL: Final = "murmur_stream"
#: The NOTIFY channel of peers saved by a process that does not run the federation.
PEERS_CHANNEL: Final = "murmur_peers"
#: Least seconds between two reloads of the peer table by the leader (notifications
#: arriving meanwhile are coalesced into the next one).
PEERS_RELOAD_S: Final = 0.5
#: The ``application_name`` of this process's own connections, as pg_stat_activity
#: shows them (``{role} {pid}``).
_APP_NAME: Final = "murmur {} {}"
#: The session advisory lock key of the federation leader ("murmurfd" as an int64).
LEADER_LOCK: Final = int.from_bytes(b"murmurfd", "big") >> 1
#: Seconds between a leader's checks that its lock connection is alive, and before a
#: failed lock connection is opened again.
LEADER_RETRY_S: Final = 1.0
#: Seconds between checks of ``stream_head.top`` behind the notifications.
BACKSTOP_S: Final = 5.0
#: Errors of a PostgreSQL connection that a retry may cure.
_PG_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def _payload(token: str, stats: BatchStats) -> str:
    return (
        f"{token} {stats.top_cursor} {stats.events} {stats.new_authors} "
        f"{stats.deleted} {stats.forked_authors}"
    )


def _parse(payload: str) -> tuple[str, BatchStats] | None:
    parts = payload.split()
    if len(parts) != 6 or not all(p.isdigit() for p in parts[1:]):
        return None
    stats = BatchStats()
    top, events, authors, deleted, forked = map(int, parts[1:])
    stats.top_cursor, stats.events, stats.new_authors = top, events, authors
    stats.deleted, stats.forked_authors = deleted, forked
    return parts[0], stats


def _zero(stats: BatchStats) -> None:
    """No count changes left to absorb in ``stats`` (its cursor stays)."""
    stats.events = stats.new_authors = stats.deleted = stats.forked_authors = 0


class ProcessGroup:
    """This process's link to the node's other processes on one PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        store: PostgresStore,
        hub: StreamHub,
        federation: Federation,
        metrics: Metrics,
    ) -> None:
        self._url = url
        self._store = store
        self._hub = hub
        self._fed = federation
        #: Tells this process's notifications from the others' (own batches are
        #: counted by the store and published by the ingest path already).
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._listener: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.notifications = 0
        #: Reloads of the counts from the database (listen reconnects, missed commits).
        self.count_reloads = 0
        #: This process's last batches (their stats are absorbed by the store after
        #: the NOTIFY: see :meth:`reload_counts`), and every batch heard of while the
        #: counts are being read (None when they are not).
        self._recent_own: collections.deque[BatchStats] = collections.deque(maxlen=64)
        self._heard: list[tuple[bool, BatchStats]] | None = None
        #: Batches at or below this cursor are in the counts read last.
        self._floor = 0
        self._peers_changed = asyncio.Event()
        metrics.gauge(
            "murmur_federation_leader",
            "1 when this process runs the node's federation (one process at a time).",
            lambda: int(federation.leading),
        )
        metrics.counter(
            "murmur_cluster_notifications_total",
            "Commits of the node's other processes heard through LISTEN/NOTIFY.",
            lambda: self.notifications,
        )
        metrics.counter(
            "murmur_cluster_count_reloads_total",
            "Reads of the counts from the database after commits went unheard (the "
            "listening connection was down, a writer died before its NOTIFY).",
            lambda: self.count_reloads,
        )

    async def start(self) -> None:
        """Listen, publish own commits, and contend for the federation lock."""
        self._store.after_commit = self._notify
        self._fed.on_peer_saved = self._peer_saved
        await self._listen()
        # Commits between the store's opening and the LISTEN went unheard.
        await self._catch_up()
        self._tasks = [
            asyncio.create_task(self._lead_loop(), name="murmur-leader"),
            asyncio.create_task(self._backstop_loop(), name="murmur-backstop"),
            asyncio.create_task(self._peers_loop(), name="murmur-peers"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._store.after_commit = None
        self._fed.on_peer_saved = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._listener is not None:
            with contextlib.suppress(*_PG_ERRORS):
                await self._listener.close()
            self._listener = None

    # -- live streams -----------------------------------------------------------------

    async def _notify(self, conn: Conn, stats: BatchStats) -> None:
        payload = _payload(self.token, stats)
        # The store absorbs these stats once this returns: reload_counts may zero them.
        if stats.top_cursor <= self._floor:
            _zero(stats)  # committed before the counts were read, and counted there
        else:
            self._recent_own.append(stats)
            if self._heard is not None:
                self._heard.append((True, stats))
        try:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        except _PG_ERRORS as exc:
            # Committed already: the backstop check tells the others, a little later.
            log.warning("notify failed cursor=%d error=%s", stats.top_cursor, exc)

    async def _connect(self, role: str) -> Any:
        return await asyncpg.connect(
            self._url, server_settings={"application_name": _APP_NAME.format(role, os.getpid())}
        )

    async def _listen(self) -> None:
        conn = await self._connect("listen")
        await conn.add_listener(CHANNEL, self._on_notify)
        await conn.add_listener(PEERS_CHANNEL, self._on_peers)
        self._listener = conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        parsed = _parse(str(payload))
        if parsed is None:
            log.warning("notification ignored payload=%r", str(payload)[:100])
            return
        token, stats = parsed
        if token == self.token:
            return
        self.notifications += 1
        if self._heard is not None:
            self._heard.append((False, stats))
        if stats.top_cursor > self._floor:  # else: in the counts read last already
            self._store.absorb(stats)
        self._hub.publish(stats.top_cursor)

    async def reload_counts(self) -> None:
        """Read the store's counts from the database again: after notifications were
        missed (the listening connection was down, a writer died before its NOTIFY).

        Exact under concurrent commits: the counts and ``stream_head.top`` (T) come
        from one snapshot, and cursors are given in commit order, so a batch is in the
        snapshot iff its top cursor is at most T. Batches heard of while reading with
        a higher one are added; this process's batches whose stats the store has not
        absorbed yet are zeroed (their counts are either in the snapshot or added
        here); later notifications at or below T are not counted again.
        """
        heard: list[tuple[bool, BatchStats]] = []
        self._heard = heard
        candidates = list(self._recent_own)
        try:
            async with self._store.pool.acquire() as conn:
                fresh = await PostgresStore._load_counts(conn)
        finally:
            self._heard = None
        # From here to the absorb below nothing awaits: no batch is absorbed between.
        top = fresh.cursor
        seen: set[int] = set()
        extra = BatchStats()
        for own, stats in [*((True, s) for s in candidates), *heard]:
            if id(stats) in seen:
                continue
            seen.add(id(stats))
            if stats.top_cursor > top:
                extra.events += stats.events
                extra.new_authors += stats.new_authors
                extra.deleted += stats.deleted
                extra.forked_authors += stats.forked_authors
            if own:
                _zero(stats)
        self._recent_own.clear()
        now = self._store.counts()
        delta = BatchStats()
        delta.events = fresh.events + extra.events - now.events
        delta.new_authors = fresh.authors + extra.new_authors - now.authors
        delta.deleted = fresh.deleted + extra.deleted - now.deleted
        delta.forked_authors = fresh.forked_authors + extra.forked_authors - now.forked_authors
        delta.top_cursor = top
        self._store.absorb(delta)
        self._floor = max(self._floor, top)
        self.count_reloads += 1
        log.info(
            "counts reloaded events=%d cursor=%d drift=%d",
            self._store.counts().events, self._store.counts().cursor, delta.events,
        )  # fmt: skip
        self._hub.publish(self._store.counts().cursor)

    async def _catch_up(self) -> None:
        """Reload the counts if ``stream_head`` moved past what this process heard."""
        top = await self._store.pool.fetchval("SELECT top FROM stream_head")
        if top is not None and top > self._store.counts().cursor:
            await self.reload_counts()

    async def _backstop_loop(self) -> None:
        #: A top seen above the counts at the previous check: a commit not heard of
        #: for a whole period (its writer died before its NOTIFY) when still above.
        suspect = 0
        while True:
            await asyncio.sleep(BACKSTOP_S)  # a period, not a synchronisation
            try:
                if self._listener is None or self._listener.is_closed():
                    log.warning("listen connection lost; reconnecting")
                    self._listener = None
                    await self._listen()
                    # Whatever was committed while it was down went unheard.
                    await self.reload_counts()
                    suspect = 0
                    continue
                top = await self._store.pool.fetchval("SELECT top FROM stream_head")
                if top is None:
                    continue
                if top > self._hub.cursor:
                    self._hub.publish(top)  # streams read the store above their cursor
                if suspect > self._store.counts().cursor:
                    # Not a NOTIFY in flight (it would have come within the period).
                    await self.reload_counts()
                    suspect = 0
                else:
                    suspect = top if top > self._store.counts().cursor else 0
            except _PG_ERRORS as exc:
                log.warning("stream head check failed error=%s", exc)

    # -- peers ------------------------------------------------------------------------

    async def _peer_saved(self) -> None:
        """This process (not the leader) saved a new peer: tell the leader."""
        try:
            await self._store.pool.execute(
                "SELECT pg_notify($1, $2)", PEERS_CHANNEL, self.token
            )
        except _PG_ERRORS as exc:
            # Saved: the leader takes it at the latest when leadership next changes.
            log.warning("peer notify failed error=%s", exc)

    def _on_peers(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if str(payload) != self.token and self._fed.leading:
            self._peers_changed.set()

    async def _peers_loop(self) -> None:
        """The leader takes the peers other processes saved: one reload of the peer
        table for any number of notifications, at most one per PEERS_RELOAD_S."""
        while True:
            await self._peers_changed.wait()
            self._peers_changed.clear()
            try:
                added = await self._fed.adopt_peers()
            except _PG_ERRORS as exc:
                log.warning("peer reload failed error=%s", exc)
            else:
                if added:
                    log.info("peers adopted count=%d", added)
            await asyncio.sleep(PEERS_RELOAD_S)  # a rate limit, not a synchronisation

    # -- federation leader ------------------------------------------------------------

    async def _lead_loop(self) -> None:
        while True:
            conn: Any = None
            try:
                conn = await self._connect("leader")
                # Waits while another process holds it: PostgreSQL grants it the moment
                # the holder's connection ends (its process killed, too).
                await conn.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK)
                log.info("federation lock taken pid=%d", os.getpid())
                await self._fed.lead()
                while True:  # hold it; a dead connection means the lock is gone
                    await asyncio.sleep(LEADER_RETRY_S)
                    await conn.fetchval("SELECT 1")
            except _PG_ERRORS as exc:
                log.warning("federation lock connection failed error=%s", exc)
            finally:
                if self._fed.leading and not self._stopping:
                    await self._fed.follow()
                if conn is not None:
                    with contextlib.suppress(*_PG_ERRORS):
                        await conn.close()
            await asyncio.sleep(LEADER_RETRY_S)
