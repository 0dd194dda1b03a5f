"""Verify many wire events at once, spread over the CPUs.

``cryptography`` releases the GIL while it checks an Ed25519 signature, so a page of
events verifies in threads about as many times faster as there are cores (see
``bench ingest``). Results come back in input order, each an :class:`Event` or the
:class:`ProtocolError` that rejected it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from protocol.errors import ProtocolError
from protocol.events import DEFAULT_NETWORK, Event, try_decode_event

__all__ = ["usable_cpus", "verify_many"]

#: Below this many events a thread hop costs more than it saves.
_MIN_PARALLEL = 8

_pool: ThreadPoolExecutor | None = None


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware, unlike ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=usable_cpus(), thread_name_prefix="murmur-verify")
    return _pool


def _verify(wires: Sequence[bytes], net: str) -> list[Event | ProtocolError]:
    # v2 (did:murmur) events decode here; whether their key was the author's is
    # decided afterwards from the author's key events (spec 0008 #clients).
    return [try_decode_event(wire, net=net, allow_v2=True) for wire in wires]


async def verify_many(
    wires: Sequence[bytes], *, net: str = DEFAULT_NETWORK
) -> list[Event | ProtocolError]:
    """Decode and verify ``wires`` (in threads when there are enough of them)."""
    workers = usable_cpus()
    if len(wires) < _MIN_PARALLEL or workers == 1:
        return _verify(wires, net)
    size = -(-len(wires) // workers)
    loop = asyncio.get_running_loop()
    parts = await asyncio.gather(
        *(
            loop.run_in_executor(_executor(), _verify, wires[i : i + size], net)
            for i in range(0, len(wires), size)
        )
    )
    return [result for part in parts for result in part]
