"""Image blobs on the node: upload budgets, the grace-period sweep, counters (spec 0004 #blobs).

The bytes and references live in the store (:meth:`node.store.base.Store.put_upload`
and friends), in the same transactions as the posts that name them. What is here is
the node around it: :class:`BlobKeeper` holds the per-address upload budget (a token
bucket of bytes an hour, spec 0004 #blob-upload), counts uploads by result, and runs
the sweep that drops uploads no post used within ``limits.blob_upload_grace_ms``
(#blob-keep) — a background task started with the node, in bounded steps, on the
node's injected clock; :meth:`BlobKeeper.sweep_once` is the same step, for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Final

from node.config import NodeConfig
from node.limits import RateLimiter
from node.store.base import Store

__all__ = ["SWEEP_BATCH", "SWEEP_MAX_BATCHES", "BlobKeeper"]

log = logging.getLogger("murmur.node.blobs")

#: Pending uploads one sweep transaction drops at most, and such transactions one
#: sweep runs at most: the rest waits for the next sweep (bounded work per step).
SWEEP_BATCH: Final = 200
SWEEP_MAX_BATCHES: Final = 50
#: Longest time between two sweeps.
_MAX_SWEEP_INTERVAL_MS: Final = 60_000


class BlobKeeper:
    """The node's blob bookkeeping around the store (one per app)."""

    def __init__(self, config: NodeConfig) -> None:
        limits = config.limits
        self._now_ms = config.now_ms
        self.grace_ms = limits.blob_upload_grace_ms
        self.max_pending = limits.blob_pending_bytes
        self.budget = RateLimiter(
            rate=limits.blob_upload_bytes_per_hour / 3600,
            burst=limits.blob_upload_bytes_per_hour,
            max_keys=limits.rate_max_ips,
            now_ms=config.now_ms,
            what=f"{limits.blob_upload_bytes_per_hour} bytes of images an hour",
        )
        #: Uploads by result: ``stored`` or the refusal's error code.
        self.uploads: Counter[str] = Counter()
        self._store: Store | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def interval_s(self) -> float:
        """Time between sweeps: a quarter of the grace period, at most a minute."""
        return min(self.grace_ms // 4, _MAX_SWEEP_INTERVAL_MS) / 1000

    async def sweep_once(self) -> int:
        """Drop the pending uploads whose grace period is over, at most
        ``SWEEP_BATCH * SWEEP_MAX_BATCHES`` of them; return how many were dropped."""
        store = self._store
        if store is None:
            return 0
        before = self._now_ms() - self.grace_ms
        dropped = 0
        for _ in range(SWEEP_MAX_BATCHES):
            n = await store.sweep_blobs(received_before_ms=before, limit=SWEEP_BATCH)
            dropped += n
            if n < SWEEP_BATCH:
                break
        if dropped:
            log.info("blob uploads dropped reason=grace count=%d", dropped)
        return dropped

    def start(self, store: Store) -> None:
        """Start sweeping ``store`` (with the node, once the store is open)."""
        self._store = store
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep_once()
            except Exception:  # a failed sweep is tried again at the next one
                log.exception("blob sweep failed")
