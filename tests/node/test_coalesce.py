"""node.coalesce.Coalescer: concurrent submissions share jobs (spec 0004 #verify-workers).

A fake ``run`` whose jobs each wait on their own ``asyncio.Event`` lets a test decide
when a job finishes, so what arrives meanwhile is known exactly; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from node.coalesce import Coalescer


class _Jobs:
    """A controllable ``run``: records each job's items; a job finishes when its gate
    is opened, with ``f"r{item}"`` per item, or fails with the exception set for it."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gates: list[asyncio.Event] = []
        self.failures: dict[int, BaseException] = {}

    async def run(self, items: list[int]) -> list[str]:
        index = len(self.calls)
        self.calls.append(list(items))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if index in self.failures:
            raise self.failures[index]
        return [f"r{item}" for item in items]

    def release(self, index: int) -> None:
        self.gates[index].set()


async def _until(cond: Callable[[], bool]) -> None:
    """Yield to the other tasks until ``cond()`` holds (deadline: 5 s)."""
    async with asyncio.timeout(5):
        while not cond():  # noqa: ASYNC110 - other tasks' state, bounded by the deadline
            await asyncio.sleep(0)


def _coalescer(jobs: _Jobs, *, max_inflight: int = 1, max_items: int = 100) -> Coalescer[int, str]:
    return Coalescer(jobs.run, max_inflight=max_inflight, max_items=max_items)


async def test_a_lone_submission_is_sent_at_once() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs)
    done = co.submit([1, 2])
    await _until(lambda: len(jobs.calls) == 1)
    assert jobs.calls == [[1, 2]] and co.jobs == 1 and not done.done()
    jobs.release(0)
    assert await done == ["r1", "r2"]


async def test_what_arrives_while_every_slot_is_busy_goes_out_as_one_job() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs, max_inflight=2)
    first = [co.submit([0]), co.submit([1])]
    await _until(lambda: len(jobs.calls) == 2)  # two free slots: two jobs at once
    waiting = [co.submit([10 + i, 20 + i]) for i in range(5)]
    assert len(jobs.calls) == 2 and co.jobs == 2  # nothing more while both run
    jobs.release(0)
    await _until(lambda: len(jobs.calls) == 3)
    assert jobs.calls[2] == [10, 20, 11, 21, 12, 22, 13, 23, 14, 24]
    jobs.release(1)
    jobs.release(2)
    assert await asyncio.gather(*first) == [["r0"], ["r1"]]
    assert await asyncio.gather(*waiting) == [[f"r{10 + i}", f"r{20 + i}"] for i in range(5)]
    assert co.jobs == 3


async def test_a_job_never_exceeds_max_items_but_a_big_submission_still_goes_alone() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs, max_items=4)
    busy = co.submit([0])
    await _until(lambda: len(jobs.calls) == 1)
    small = [co.submit([1, 2]), co.submit([3]), co.submit([4, 5])]  # 2 + 1 fit; 2 more do not
    big = co.submit([6, 7, 8, 9, 10, 11])  # larger than max_items on its own
    for index in range(3):
        jobs.release(index)
        calls = index + 2
        await _until(lambda: len(jobs.calls) == calls)  # noqa: B023 - awaited at once
    jobs.release(3)
    assert jobs.calls == [[0], [1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11]]
    assert await busy == ["r0"]
    assert await asyncio.gather(*small) == [["r1", "r2"], ["r3"], ["r4", "r5"]]
    assert await big == [f"r{i}" for i in range(6, 12)]


async def test_each_submission_gets_its_own_results_in_order() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs)
    busy = co.submit([])
    await _until(lambda: len(jobs.calls) == 1)
    sizes = [3, 0, 1, 5, 2]
    subs = [co.submit([100 * n + k for k in range(n)]) for n in sizes]
    jobs.release(0)
    await _until(lambda: len(jobs.calls) == 2)
    jobs.release(1)
    assert await busy == []
    for n, sub in zip(sizes, subs, strict=True):
        assert await sub == [f"r{100 * n + k}" for k in range(n)]


async def test_a_failed_job_fails_only_its_own_submissions_and_the_next_job_runs() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs)
    busy = co.submit([0])
    await _until(lambda: len(jobs.calls) == 1)
    doomed = [co.submit([1]), co.submit([2])]
    jobs.failures[1] = RuntimeError("worker lost")
    jobs.release(0)
    await _until(lambda: len(jobs.calls) == 2)
    later = co.submit([3])  # arrives while the doomed job runs
    jobs.release(1)
    for sub in doomed:
        with pytest.raises(RuntimeError, match="worker lost"):
            await sub
    await _until(lambda: len(jobs.calls) == 3)
    assert jobs.calls[2] == [3]
    jobs.release(2)
    assert await busy == ["r0"] and await later == ["r3"]


async def test_a_submission_cancelled_while_it_waits_is_not_sent() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs)
    busy = co.submit([0])
    await _until(lambda: len(jobs.calls) == 1)
    kept, withdrawn, also_kept = co.submit([1]), co.submit([2]), co.submit([3])
    withdrawn.cancel()
    jobs.release(0)
    await _until(lambda: len(jobs.calls) == 2)
    assert jobs.calls[1] == [1, 3]
    jobs.release(1)
    assert (await busy, await kept, await also_kept) == (["r0"], ["r1"], ["r3"])
    assert withdrawn.cancelled()


async def test_a_withdrawn_submission_takes_no_room_in_the_next_job() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs, max_items=3)
    busy = co.submit([0])
    await _until(lambda: len(jobs.calls) == 1)
    first, withdrawn, last = co.submit([1, 2]), co.submit([7, 8, 9]), co.submit([3])
    withdrawn.cancel()
    jobs.release(0)
    await _until(lambda: len(jobs.calls) == 2)
    assert jobs.calls[1] == [1, 2, 3]  # the withdrawn three never counted
    jobs.release(1)
    assert (await busy, await first, await last) == (["r0"], ["r1", "r2"], ["r3"])


async def test_a_cancelled_submission_alone_makes_no_job() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs)
    busy = co.submit([0])
    await _until(lambda: len(jobs.calls) == 1)
    co.submit([1]).cancel()
    jobs.release(0)
    assert await busy == ["r0"]  # its job's end pumped the queue before this returned
    assert jobs.calls == [[0]] and co.jobs == 1


async def test_fail_waiting_fails_what_is_not_sent_and_leaves_the_running_job() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs)
    running = co.submit([0])
    await _until(lambda: len(jobs.calls) == 1)
    waiting = [co.submit([1]), co.submit([2])]
    co.fail_waiting(ConnectionError("stopping"))
    for sub in waiting:
        with pytest.raises(ConnectionError, match="stopping"):
            await sub
    jobs.release(0)
    assert await running == ["r0"]
    assert jobs.calls == [[0]]


def test_bounds_must_be_positive() -> None:
    jobs = _Jobs()
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(jobs.run, max_inflight=0, max_items=1)
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(jobs.run, max_inflight=1, max_items=0)


async def test_run_without_load_runs_in_the_callers_task_and_with_load_waits_its_turn() -> None:
    jobs = _Jobs()
    co = _coalescer(jobs, max_inflight=1)
    caller = asyncio.current_task()
    ran_in: list[asyncio.Task[object] | None] = []
    real = jobs.run

    async def run(items: list[int]) -> list[str]:
        ran_in.append(asyncio.current_task())
        return await real(items)

    co._run = run
    alone = asyncio.ensure_future(co.run([1]))
    await _until(lambda: len(jobs.calls) == 1)
    assert ran_in == [alone]  # no task of its own: the caller's
    later = [asyncio.ensure_future(co.run([i])) for i in (2, 3)]
    await _until(lambda: len(co._queue) == 2)  # the slot is busy: they wait, together
    jobs.release(0)
    await _until(lambda: len(jobs.calls) == 2)
    assert jobs.calls[1] == [2, 3] and ran_in[1] not in (alone, *later, caller)
    jobs.release(1)
    assert await alone == ["r1"] and [await f for f in later] == [["r2"], ["r3"]]
    assert co.jobs == 2
