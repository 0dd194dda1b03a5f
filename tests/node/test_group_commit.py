"""Group commit (spec 0004 #group-commit): batches that arrive while a write is in
progress share the next transaction; each caller gets exactly its own results, only
after that transaction committed; a lone batch is written at once; a failed shared
transaction never fails another caller's batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from node.state import STORE
from node.store.base import WriteResult
from node.store.group import GroupCommit
from node.store.sqlite import SqliteStore
from protocol.events import Event, decode_event
from tests.node.conftest import T0, Clock, Node, new_author


class _FakeStore:
    """An ``apply`` that records its calls and can be held open or made to fail."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.poison: object | None = None

    async def apply(self, events: Sequence[Any]) -> list[WriteResult]:
        self.calls.append(list(events))
        await self.gate.wait()
        if self.poison is not None and self.poison in events:
            raise RuntimeError("disk on fire")
        return [WriteResult(status="accepted", cursor=hash(e) & 0xFFFF) for e in events]


async def _until(cond: Any) -> None:
    """Yield to the other tasks until ``cond()`` holds (deadline: 5 s)."""
    async with asyncio.timeout(5):
        while not cond():  # noqa: ASYNC110 - other tasks' state, bounded by the deadline
            await asyncio.sleep(0)


async def test_batches_arriving_during_a_write_share_the_next_transaction() -> None:
    fake = _FakeStore()
    group = GroupCommit(fake.apply)  # type: ignore[arg-type]
    fake.gate.clear()
    first = asyncio.create_task(group.submit(["a"]))  # type: ignore[list-item]
    await _until(lambda: len(fake.calls) == 1)  # a lone batch is written at once
    later = [asyncio.create_task(group.submit([f"b{i}", f"c{i}"])) for i in range(5)]  # type: ignore[list-item]
    await _until(lambda: len(group._queue) == 5)
    assert not first.done()  # nothing is answered before its transaction committed
    fake.gate.set()
    results = await asyncio.gather(first, *later)
    assert fake.calls == [["a"], [x for i in range(5) for x in (f"b{i}", f"c{i}")]]
    assert (group.transactions, group.batches) == (2, 6)
    for i, got in enumerate(results[1:]):
        assert [r.cursor for r in got] == [hash(f"b{i}") & 0xFFFF, hash(f"c{i}") & 0xFFFF]


async def test_a_group_is_bounded_in_events() -> None:
    fake = _FakeStore()
    group = GroupCommit(fake.apply, max_events=4)  # type: ignore[arg-type]
    fake.gate.clear()
    first = asyncio.create_task(group.submit(["a"]))  # type: ignore[list-item]
    await _until(lambda: len(fake.calls) == 1)
    later = [asyncio.create_task(group.submit(["x", "y", "z"])) for _ in range(3)]  # type: ignore[list-item]
    big = asyncio.create_task(group.submit(list("0123456789")))  # type: ignore[arg-type]
    await _until(lambda: len(group._queue) == 4)
    fake.gate.set()
    await asyncio.gather(first, *later, big)
    assert [len(c) for c in fake.calls] == [1, 3, 3, 3, 10]  # alone when too big


async def test_a_failed_shared_transaction_fails_only_its_own_batch() -> None:
    fake = _FakeStore()
    group = GroupCommit(fake.apply)  # type: ignore[arg-type]
    fake.gate.clear()
    first = asyncio.create_task(group.submit(["a"]))  # type: ignore[list-item]
    await _until(lambda: len(fake.calls) == 1)
    fake.poison = "bad"
    good1 = asyncio.create_task(group.submit(["g1"]))  # type: ignore[list-item]
    bad = asyncio.create_task(group.submit(["bad"]))  # type: ignore[list-item]
    good2 = asyncio.create_task(group.submit(["g2"]))  # type: ignore[list-item]
    await _until(lambda: len(group._queue) == 3)
    fake.gate.set()
    assert [r.status for r in await good1] == ["accepted"]
    assert [r.status for r in await good2] == ["accepted"]
    with pytest.raises(RuntimeError, match="disk on fire"):
        await bad
    await first
    assert fake.calls[1] == ["g1", "bad", "g2"] and fake.calls[2:] == [["g1"], ["bad"], ["g2"]]


async def test_concurrent_posts_on_a_real_store_share_commits(tmp_path: Path, clock: Clock) -> None:
    """64 one-event batches at once on SQLite: every event accepted under its own
    cursor, readable after the store is reopened, in fewer transactions than batches."""
    authors = [new_author(clock) for _ in range(8)]
    events: list[Event] = [
        decode_event(a.post(f"group {i}").wire, now_ms=T0) for i in range(8) for a in authors
    ]
    store = SqliteStore(tmp_path, now_ms=clock)
    await store.open()
    try:
        results = await asyncio.gather(*(store.apply_batch([ev]) for ev in events))
        transactions, batches = store.write_groups()
    finally:
        await store.close()
    assert [r.status for (r,) in results] == ["accepted"] * len(events)
    assert len({r.cursor for (r,) in results}) == len(events)
    assert batches == len(events) and transactions < batches
    again = SqliteStore(tmp_path, now_ms=clock)
    await again.open()
    try:
        held = await again.get_events([ev.id for ev in events])
        assert {e.id: e.cursor for e in held} == {
            ev.id: r.cursor for ev, (r,) in zip(events, results, strict=True)
        }
    finally:
        await again.close()


async def test_one_event_posts_at_once_share_commits_on_the_node(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP: 8 clients (one address's share of the admission gate) post one event
    each while a write is in progress; the 7 that arrive during it share the next
    transaction, all are accepted, and /metrics counts 2 transactions for 8 batches."""
    store = node.app[STORE]
    real = store._apply_batch
    calls = 0

    async def first_write_waits(events: Sequence[Event]) -> list[WriteResult]:
        nonlocal calls
        calls += 1
        if calls == 1:  # the others arrive while this write is in progress
            await _until(lambda: store._group is not None and len(store._group._queue) == 7)
        return await real(events)

    monkeypatch.setattr(store, "_apply_batch", first_write_waits)
    authors = [new_author(node.clock) for _ in range(8)]
    first = asyncio.create_task(node.ingest(authors[0].post("first")))
    await _until(lambda: calls == 1)
    rest = [asyncio.create_task(node.ingest(a.post("at once"))) for a in authors[1:]]
    answers = await asyncio.gather(first, *rest)
    assert [doc["accepted"] for doc in answers] == [1] * 8
    text = (await node.http.get("/metrics")).text
    value = {
        line.split()[0]: int(float(line.split()[1]))
        for line in text.splitlines()
        if line.startswith("murmur_write_")
    }
    assert (value["murmur_write_transactions_total"], value["murmur_write_batches_total"]) == (2, 8)


async def test_a_transaction_waits_briefly_for_batches_still_being_verified() -> None:
    """commit_delay with commit_siblings: a batch submitted while another is still on
    its way (inside ``coming``) waits for it, so both share one transaction."""
    fake = _FakeStore()
    group = GroupCommit(fake.apply, max_delay_s=30.0)
    with group.coming():  # a second batch is being verified
        first = asyncio.create_task(group.submit(["a"]))  # type: ignore[list-item]
        await _until(lambda: group._changed is not None)  # the writer waits for company
        assert fake.calls == []
        second = asyncio.create_task(group.submit(["b"]))  # type: ignore[list-item]
        await _until(lambda: len(group._queue) == 2)
    await asyncio.gather(first, second)
    assert fake.calls == [["a", "b"]] and group.transactions == 1


async def test_a_batch_verified_in_vain_ends_the_wait() -> None:
    """A batch that never comes (all of it refused or duplicate) releases the writer at
    once, long before the delay, and a lone batch never waits at all."""
    fake = _FakeStore()
    group = GroupCommit(fake.apply, max_delay_s=30.0)
    assert await group.submit(["alone"]) == [  # type: ignore[list-item]
        WriteResult(status="accepted", cursor=hash("alone") & 0xFFFF)
    ]
    with group.coming():
        waiting = asyncio.create_task(group.submit(["a"]))  # type: ignore[list-item]
        await _until(lambda: group._changed is not None)
        assert len(fake.calls) == 1
    async with asyncio.timeout(5):  # not the 30 s delay
        await waiting
    assert fake.calls == [["alone"], ["a"]]
