"""Coalescing: concurrent requests' small pieces of work share one hand-off.

Where events come one per request, every worker hand-off (a thread wake-up, a process
round trip, a database read) costs more than the event's own work. A
:class:`Coalescer` runs at most ``max_inflight`` jobs at a time; what is submitted
while they run waits, and goes out together in the next job (up to ``max_items``).
Nothing waits on purpose: with a free slot, a submission is sent at once, so a lone
request is never held back; under load the jobs grow by themselves to what arrived
during one job. Each submission gets back exactly its own items' results, in order.

:class:`node.store.group.GroupCommit` is the same idea for write transactions, with a
transaction's failure isolation added.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

log = logging.getLogger("murmur.node")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    items: Sequence[T]
    done: asyncio.Future[list[R]]


class Coalescer(Generic[T, R]):
    """Runs ``run`` (one result per item, in order) over what was submitted, a job at
    a time per free slot. A job's failure fails the submissions it carried, and only
    them; a submission cancelled while it waits is dropped from its job."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_inflight: int,
        max_items: int,
    ) -> None:
        if max_inflight < 1 or max_items < 1:
            raise ValueError("max_inflight and max_items must be at least 1")
        self._run = run
        self._max_inflight = max_inflight
        self._max_items = max_items
        self._queue: deque[_Waiting[T, R]] = deque()
        self._inflight = 0
        #: Jobs run (``/metrics``, tests): fewer than submissions when they coalesced.
        self.jobs = 0

    def submit(self, items: Sequence[T]) -> asyncio.Future[list[R]]:
        """A future of ``items``' results. Cancelling it withdraws them if not yet sent."""
        waiting: _Waiting[T, R] = _Waiting(items, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._pump()
        return waiting.done

    async def run(self, items: Sequence[T]) -> list[R]:
        """:meth:`submit` and wait. With a slot free and nothing waiting (no load), the
        job runs in the caller's own task: no task of its own, no hand-off back."""
        if self._queue or self._inflight >= self._max_inflight:
            return await self.submit(items)
        self._inflight += 1
        self.jobs += 1
        try:
            return await self._run(list(items))
        finally:
            self._inflight -= 1
            self._pump()

    def fail_waiting(self, exc: BaseException) -> None:
        """Fail every submission not yet sent (the owner is stopping)."""
        while self._queue:
            waiting = self._queue.popleft()
            if not waiting.done.done():
                waiting.done.set_exception(exc)

    def _pump(self) -> None:
        while self._queue and self._inflight < self._max_inflight:
            job: list[_Waiting[T, R]] = []
            items: list[T] = []
            while self._queue:
                waiting = self._queue[0]
                if waiting.done.done():  # withdrawn while it waited
                    self._queue.popleft()
                    continue
                if job and len(items) + len(waiting.items) > self._max_items:
                    break
                self._queue.popleft()
                job.append(waiting)
                items.extend(waiting.items)
            if not job:
                return
            self._inflight += 1
            self.jobs += 1
            task = asyncio.ensure_future(self._run(items))
            task.add_done_callback(partial(self._finished, job))

    def _finished(self, job: list[_Waiting[T, R]], task: asyncio.Future[list[R]]) -> None:
        self._inflight -= 1
        if task.cancelled():
            for waiting in job:
                waiting.done.cancel()
        elif (exc := task.exception()) is not None:
            for waiting in job:
                if not waiting.done.done():
                    waiting.done.set_exception(exc)
        else:
            results = task.result()
            start = 0
            for waiting in job:
                end = start + len(waiting.items)
                if not waiting.done.done():
                    waiting.done.set_result(results[start:end])
                start = end
        self._pump()
