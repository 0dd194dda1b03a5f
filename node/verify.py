"""Decoding and signature checks off the event loop, coalesced, on every core.

Verification is most of what ingest costs, and the event loop must not run it. The
:class:`Verifier` hands wire events to workers (spec 0004 #verify-workers):

* **processes** (the default where the node may use more than one CPU): decoding and
  the signature check run in worker processes, so they scale past the one core a
  Python process's threads share. A worker sends back the decoded, already validated
  :class:`Event` objects; the writer never decodes them again.
* **threads**: no process to start and nothing to copy between processes; on one CPU
  a process would only add the copying.

Either way the work is **coalesced** (:mod:`node.coalesce`): at most a few jobs are in
flight, and what arrives meanwhile waits and goes out together in the next job. A
hand-off (a thread wake-up, a process round trip: :mod:`node.procpool`) costs more
than one event's check where events come one per request, so under load many requests
share one, while a lone request is sent at once, never held back. A big batch is cut
into parts of :data:`PART` events, spread over the workers.

A worker process that dies (killed, out of memory) fails only the requests whose
events it held, with ``unavailable`` (503: send them again); it is replaced at the
next job.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Literal

from node.coalesce import Coalescer
from node.config import VERIFY_MODES
from node.procpool import ProcessPool, WorkerDiedError
from protocol.errors import ProtocolError, TooLargeError, UnavailableError
from protocol.events import Event, try_decode_event

__all__ = ["PART", "Verifier", "Wire", "usable_cpus"]

log = logging.getLogger("murmur.node.verify")

Wire = bytes | ProtocolError
Checked = Event | ProtocolError
Mode = Literal["processes", "threads"]

#: Events of one request handed out together: big enough to amortise a hand-off, small
#: enough to spread a big batch over every worker.
PART: Final = 64
#: Most events in one job: what waited while every worker was busy, up to this.
JOB_EVENTS: Final = 256
#: Jobs in flight per worker: a second one queued behind the running one keeps a
#: process busy across the round trip.
_INFLIGHT_PER_WORKER: Final = 2


def usable_cpus() -> int:
    """CPUs this process may run on (it may be pinned to fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _check(job: Sequence[tuple[Wire, int]], net: str, max_event_bytes: int) -> list[Checked]:
    """One job: each wire against its own request's clock."""
    return [
        wire
        if isinstance(wire, ProtocolError)
        else TooLargeError(f"event is {len(wire)} bytes; limit {max_event_bytes}")
        if len(wire) > max_event_bytes
        # v2 (spec 0008): safe only because the store runs §8.5 steps 1-4 on every
        # v2 event in its write transaction (node.store.sqlite_keys).
        else try_decode_event(wire, net=net, now_ms=now_ms, allow_v2=True)
        for wire, now_ms in job
    ]


class Verifier:
    """Runs :func:`protocol.events.decode_event` on workers, coalescing what arrives
    while they are busy. ``workers`` 0 is one per usable CPU."""

    def __init__(self, *, workers: int, net: str, max_event_bytes: int, mode: str = "auto") -> None:
        if mode not in VERIFY_MODES:
            raise ValueError(f"verify mode must be one of {VERIFY_MODES}, not {mode!r}")
        cpus = usable_cpus()
        self.workers = workers or cpus
        self.mode: Mode = (
            "processes" if mode == "processes" or (mode == "auto" and cpus > 1) else "threads"
        )
        self._net = net
        self._max_event_bytes = max_event_bytes
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPool[list[tuple[Wire, int]], list[Checked]] | None = None
        if self.mode == "processes":
            self._processes = ProcessPool(
                _check, (net, max_event_bytes), workers=self.workers, preload=("node.verify",)
            )
        else:
            self._threads = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="murmur-verify"
            )
        self._jobs: Coalescer[tuple[Wire, int], Checked] = Coalescer(
            self._run, max_inflight=self.workers * _INFLIGHT_PER_WORKER, max_items=JOB_EVENTS
        )
        self._closed = False
        #: Wire events handed to :func:`decode_event` (and so, unless an earlier check
        #: refused them, to a signature check): ``murmur_events_verified_total``.
        self.verified = 0

    @property
    def jobs(self) -> int:
        """Jobs handed to workers (``murmur_verify_jobs_total``): fewer than requests
        when requests were coalesced."""
        return self._jobs.jobs

    @property
    def restarts(self) -> int:
        """Worker processes that died (each is replaced at the next job)."""
        return 0 if self._processes is None else self._processes.restarts

    def worker_pids(self) -> list[int]:
        """The live worker processes (none in threads mode)."""
        return [] if self._processes is None else self._processes.pids()

    async def verify(self, wires: Sequence[Wire], now_ms: int) -> list[Checked]:
        """Each wire's :class:`Event`, or the ``ProtocolError`` that refuses it, in order."""
        if self._closed:
            raise UnavailableError("the node is stopping")
        self.verified += sum(not isinstance(w, ProtocolError) for w in wires)
        stamped = [(w, now_ms) for w in wires]
        if len(stamped) <= PART:
            return await self._jobs.run(stamped)
        parts = [self._jobs.submit(stamped[i : i + PART]) for i in range(0, len(wires), PART)]
        out: list[Checked] = []
        try:
            for part in parts:
                out.extend(await part)
        finally:
            for part in parts:  # a cancelled caller withdraws what is not sent yet
                part.cancel()
        return out

    async def _run(self, job: list[tuple[Wire, int]]) -> list[Checked]:
        if self._processes is not None:
            try:
                return await self._processes.run(job)
            except WorkerDiedError:
                # Killed or out of memory: only the events it held are lost, and their
                # requests may be sent again; the next job starts a fresh worker.
                raise UnavailableError(
                    "a verification worker died; send the events again"
                ) from None
        if self._threads is None:
            raise UnavailableError("the node is stopping")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, _check, job, self._net, self._max_event_bytes
        )

    async def start(self) -> None:
        """Start the worker processes, if any (a node does before it listens)."""
        if self._processes is not None:
            await self._processes.start()

    async def close(self) -> None:
        """Fail what waits and stop the workers (processes exit, threads finish)."""
        self._closed = True
        self._jobs.fail_waiting(UnavailableError("the node is stopping"))
        if self._processes is not None:
            await self._processes.close()
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
