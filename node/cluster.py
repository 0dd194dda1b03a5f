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
  ``stream_head.top`` every :data:`BACKSTOP_S`: late, never missed.
- **Federation.** Exactly one process runs the federation loops: the one holding the
  session advisory lock :data:`LEADER_LOCK` on a dedicated connection. The others wait
  for it (``pg_advisory_lock``); PostgreSQL releases a session lock when its connection
  ends, which a killed process's does at once, and grants it to a waiter. A leader
  checks its lock connection every :data:`LEADER_RETRY_S` and stops its loops when it
  fails (the lock may be someone else's by then).
"""

from __future__ import annotations

import asyncio
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

__all__ = ["BACKSTOP_S", "CHANNEL", "LEADER_LOCK", "LEADER_RETRY_S", "ProcessGroup"]

log = logging.getLogger("murmur.node.cluster")

#: The NOTIFY channel of committed batches.
CHANNEL: Final = "murmur_stream"
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

    async def start(self) -> None:
        """Listen, publish own commits, and contend for the federation lock."""
        self._store.after_commit = self._notify
        await self._listen()
        self._tasks = [
            asyncio.create_task(self._lead_loop(), name="murmur-leader"),
            asyncio.create_task(self._backstop_loop(), name="murmur-backstop"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._store.after_commit = None
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
        try:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _payload(self.token, stats))
        except _PG_ERRORS as exc:
            # Committed already: the backstop check tells the others, a little later.
            log.warning("notify failed cursor=%d error=%s", stats.top_cursor, exc)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._url)
        await conn.add_listener(CHANNEL, self._on_notify)
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
        self._store.absorb(stats)
        self._hub.publish(stats.top_cursor)

    async def _backstop_loop(self) -> None:
        while True:
            await asyncio.sleep(BACKSTOP_S)  # a period, not a synchronisation
            try:
                if self._listener is None or self._listener.is_closed():
                    log.warning("listen connection lost; reconnecting")
                    self._listener = None
                    await self._listen()
                top = await self._store.pool.fetchval("SELECT top FROM stream_head")
            except _PG_ERRORS as exc:
                log.warning("stream head check failed error=%s", exc)
                continue
            if top is not None and top > self._hub.cursor:
                stats = BatchStats()
                stats.top_cursor = top
                self._store.absorb(stats)
                self._hub.publish(top)

    # -- federation leader ------------------------------------------------------------

    async def _lead_loop(self) -> None:
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._url)
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
