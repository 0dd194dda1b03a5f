"""Group commit: concurrent batches share one write transaction (spec 0004 #group-commit).

One event per request is how every user's post arrives, and a transaction a request
costs a durable commit (an fsync) a request. :class:`GroupCommit` queues the batches
that arrive while a write is in progress and applies all of them, as one batch, in the
next transaction; each caller gets back exactly its own events' results once that
transaction has committed. Nothing waits on purpose: a batch arriving at an idle store
is written at once, so a lone post is not delayed, and under load the groups grow by
themselves to what arrived during one commit (bounded by :data:`MAX_GROUP_EVENTS`).

The write path already answers each event of a batch on its own (a duplicate or a
refused event never affects another), so merging batches changes no result except
what order makes true anyway: of two concurrent copies of one event, one is
``accepted`` and the other ``duplicate``. If the shared transaction fails, each batch
of the group is tried again alone, so one caller's failure never becomes another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from node.store.base import WriteResult
from protocol.events import Event

__all__ = ["COMMIT_DELAY_S", "MAX_GROUP_EVENTS", "GroupCommit"]

log = logging.getLogger("murmur.node.store")

#: Longest a transaction waits for batches still on their way to it (being verified):
#: PostgreSQL's ``commit_delay``, taken only when such batches exist (its
#: ``commit_siblings``), so a lone post never waits.
COMMIT_DELAY_S: Final = 0.001
#: Most events one shared transaction takes (a batch bigger than this goes alone):
#: bounds a transaction's size, so that no caller's wait grows without limit.
MAX_GROUP_EVENTS: Final = 2000


#: Called with a batch's results once its transaction committed, by the writer: it
#: runs even when the caller has stopped waiting.
Then = Callable[[list[WriteResult]], None]


@dataclass(slots=True)
class _Waiting:
    events: Sequence[Event]
    then: Then | None = None
    done: asyncio.Future[list[WriteResult]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """Applies queued batches through ``apply`` (one transaction per call), a group of
    them at a time, one call at a time."""

    def __init__(
        self,
        apply: Callable[[Sequence[Event]], Awaitable[list[WriteResult]]],
        *,
        max_events: int = MAX_GROUP_EVENTS,
        max_delay_s: float = COMMIT_DELAY_S,
    ) -> None:
        self._apply = apply
        self._max_events = max_events
        self._max_delay_s = max_delay_s
        self._queue: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None
        #: Batches on their way (between ``coming`` and their submission).
        self._coming = 0
        self._changed: asyncio.Event | None = None
        #: Transactions run and batches they carried (``/metrics``, tests).
        self.transactions = 0
        self.batches = 0

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Around the work before a batch's :meth:`submit` (its verification): while
        such batches exist, the next transaction waits for them, at most
        ``max_delay_s`` (spec 0004 #group-commit)."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1
            self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _wait_for_company(self) -> None:
        """Before a transaction: while batches are on their way and the group has room,
        wait for them, until ``max_delay_s`` has passed."""
        if self._coming <= 0 or self._max_delay_s <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_delay_s
        changed = self._changed = self._changed or asyncio.Event()
        while self._coming > 0 and sum(len(w.events) for w in self._queue) < self._max_events:
            changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                return

    async def submit(self, events: Sequence[Event], then: Then | None = None) -> list[WriteResult]:
        """The results of ``events``, once the transaction holding them committed;
        ``then`` is called with them at that moment, even if the caller gave up."""
        waiting = _Waiting(events, then)
        self._queue.append(waiting)
        self._wake()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        # Shielded: a caller that gives up does not cancel the group's write.
        return await asyncio.shield(waiting.done)

    def _take(self) -> list[_Waiting]:
        group = [self._queue.popleft()]
        total = len(group[0].events)
        while self._queue and total + len(self._queue[0].events) <= self._max_events:
            nxt = self._queue.popleft()
            group.append(nxt)
            total += len(nxt.events)
        return group

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            # Cancelled (the loop is closing): nobody waits for ever.
            while self._queue:
                _settle(self._queue.popleft(), RuntimeError("the store is closing"))

    async def _drain_queue(self) -> None:
        while self._queue:
            await self._wait_for_company()
            group = self._take()
            self.transactions += 1
            self.batches += len(group)
            try:
                results = await self._apply([ev for w in group for ev in w.events])
            except Exception as exc:  # handed to the callers, never lost
                if len(group) == 1:
                    _settle(group[0], exc)
                    continue
                log.warning("group write failed batches=%d: each alone", len(group))
                for w in group:
                    self.transactions += 1
                    try:
                        _settle(w, await self._apply(w.events))
                    except Exception as alone:  # this caller's failure alone
                        _settle(w, alone)
                continue
            start = 0
            for w in group:
                _settle(w, results[start : start + len(w.events)])
                start += len(w.events)


def _settle(waiting: _Waiting, outcome: list[WriteResult] | Exception) -> None:
    if waiting.done.done():
        return
    if isinstance(outcome, Exception):
        waiting.done.set_exception(outcome)
        return
    waiting.done.set_result(outcome)
    if waiting.then is not None:
        try:
            waiting.then(outcome)
        except Exception:  # a listener's bug must not stop the writer
            log.exception("after-commit callback failed")
