"""A process's counts read again from the database while commits go on
(:meth:`node.cluster.ProcessGroup.reload_counts`, spec 0004 #store-processes): never a
batch counted twice or lost, whether it committed before or after the read's snapshot,
and whether the store absorbed it before or after the read."""

from __future__ import annotations

import asyncio
import types
from typing import Any

from node.cluster import CHANNEL, ProcessGroup, _payload
from node.metrics import Metrics
from node.store.postgres import PostgresStore
from node.store.sqlite_effects import BatchStats
from node.stream import StreamHub
from protocol.events import Event, decode_event
from tests.node.conftest import T0, Clock, new_author

#: Rounds; writer tasks, batches each (a round), events a batch.
_ROUNDS = 12
_WRITERS, _BATCHES, _PER_BATCH = 3, 4, 4
#: Seconds between a commit and its absorb (the store's, a notification's): the reads
#: of the counts land inside these gaps, where a naive read counts twice or loses.
_LAG_S = 0.005


def _verified(ev: Event) -> Event:
    return decode_event(ev.wire, now_ms=T0)


async def test_reloads_amid_commits_leave_the_counts_exact(pg_url: str, clock: Clock) -> None:
    """Writers on this process's store and on another process's (a second store on
    the same database, its notifications delivered a little after its commits) commit
    while this process's counts are read again; once the writes are done, the counts
    equal a fresh read of the database. Round after round, so that each read meets
    commits in every stage."""
    mine = PostgresStore(pg_url, now_ms=clock, pool_size=4)
    other = PostgresStore(pg_url, now_ms=clock, pool_size=2)
    await mine.open()
    await other.open()
    fed: Any = types.SimpleNamespace(leading=False)
    hub = StreamHub(max_subscribers=1)
    group = ProcessGroup(pg_url, store=mine, hub=hub, federation=fed, metrics=Metrics())
    committed = asyncio.Event()

    async def notify(conn: Any, stats: BatchStats) -> None:
        await group._notify(conn, stats)  # as start() sets it, without the listener
        committed.set()
        await asyncio.sleep(_LAG_S)  # widens the gap between a commit and its absorb

    async def heard(conn: Any, stats: BatchStats) -> None:
        payload = _payload("other", stats)
        await asyncio.sleep(_LAG_S)  # delivered later than the commit, as a NOTIFY is
        group._on_notify(None, 0, CHANNEL, payload)

    mine.after_commit = notify
    other.after_commit = heard
    authors = [new_author(clock) for _ in range(_WRITERS + 1)]

    async def write(store: PostgresStore, n: int, author: Any) -> None:
        for b in range(n):
            posts = [_verified(author.post(f"{b}.{i}")) for i in range(_PER_BATCH)]
            if b % 2:
                posts.append(_verified(author.sign("delete", {"target": posts[0].id})))
            results = await store.apply_batch(posts)
            assert {r.status for r in results} == {"accepted"}

    async def reload_amid_commits() -> None:
        await committed.wait()  # writes are in flight now
        await group.reload_counts()

    try:
        for _ in range(_ROUNDS):
            committed.clear()
            await asyncio.gather(
                reload_amid_commits(),
                *(write(mine, _BATCHES, a) for a in authors[:-1]),
                write(other, _BATCHES, authors[-1]),
            )
            async with mine.pool.acquire() as conn:
                truth = await PostgresStore._load_counts(conn)
            assert mine.counts() == truth
        assert truth.deleted > 0
        assert group.count_reloads == _ROUNDS
    finally:
        await mine.close()
        await other.close()
