"""Asking every node at once and going on without the slow ones (spec 0007 #post-quorum,
#slow-lookups).

:func:`until_quorum` runs one call per node concurrently and returns when every call
ended, when a deadline passed, or a short grace after ``quorum`` calls returned a
result that counts; calls still running then are cancelled. Publishing uses it for the
head query and the submission (:mod:`client.publish`), reads before signing for every
fan-out (:class:`client.reader.Reader` with a :class:`Cut`), and a lookup by id with a
quorum of one and no grace: the first node serving the verified event ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from protocol.errors import ProtocolError

__all__ = ["QUORUM_GRACE_S", "Cut", "until_quorum"]

T = TypeVar("T")

#: Seconds the other nodes get, once the quorum answered, before a fan-out goes on
#: without them (spec 0007 #post-quorum).
QUORUM_GRACE_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Cut:
    """When each fan-out of a read stops waiting (spec 0007 #slow-lookups): ``grace``
    seconds after ``quorum`` nodes answered, or at the per-node timeout."""

    quorum: int = 1
    grace: float = QUORUM_GRACE_S


async def until_quorum(
    calls: Mapping[str, Awaitable[T]],
    *,
    quorum: int,
    ok: Callable[[T], bool],
    deadline: float,
    grace: float = QUORUM_GRACE_S,
    enough: Callable[[T], bool] | None = None,
) -> tuple[dict[str, T | ProtocolError | None], bool]:
    """Run ``calls`` at once until all ended, ``deadline`` (loop time) passed,
    ``grace`` seconds after ``quorum`` of them returned a result that is ``ok``, or
    one returned a result that is ``enough`` on its own (then at once).

    Returns each call's result, its ``ProtocolError``, or None (cut: cancelled), and
    whether the quorum was met. Any other exception is a bug and propagates.
    """
    loop = asyncio.get_running_loop()
    tasks = {key: asyncio.ensure_future(call) for key, call in calls.items()}
    pending: set[asyncio.Future[T]] = set(tasks.values())
    stop_at, good, met = deadline, 0, False
    try:
        while pending:
            left = stop_at - loop.time()
            if left <= 0:
                break
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, ProtocolError):
                    raise exc
                if exc is None and ok(task.result()):
                    good += 1
                if exc is None and enough is not None and enough(task.result()):
                    stop_at = loop.time()
            if not met and good >= quorum:
                met = True
                stop_at = min(stop_at, loop.time() + grace)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    out: dict[str, T | ProtocolError | None] = {}
    for key, task in tasks.items():
        if task.cancelled():
            out[key] = None
        else:
            exc = task.exception()
            out[key] = exc if isinstance(exc, ProtocolError) else task.result()
    return out, met
