"""A real ``python -m node run`` process on 127.0.0.1, for end-to-end tests.

The benchmarks' launcher (:class:`bench.common.NodeProcess`: port 0, URL from the
startup line, ``/health`` in a deadline loop, stderr drained into ``lines``), with
its own ``MURMUR_HOME``, a kill -9 ``stop()`` and two helpers for tests.
"""

from __future__ import annotations

import base64
import queue
from pathlib import Path
from typing import Any

import httpx

import bench.common

__all__ = ["ROOT", "NodeProcess"]

ROOT = bench.common.ROOT


class NodeProcess(bench.common.NodeProcess):
    """One node subprocess; ``stop()`` kills it (tests use fixtures to always stop)."""

    def __init__(self, data_dir: Path, *args: str, deadline_s: float = 20.0) -> None:
        super().__init__(
            data_dir, *args, deadline_s=deadline_s, env={"MURMUR_HOME": str(data_dir.parent)}
        )

    def more_log(self) -> str:
        """Everything the node has logged so far."""
        while True:
            try:
                self.log.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.log)

    def ingest(self, *wires: bytes) -> list[dict[str, Any]]:
        """POST wire events (JSON form); the per-event results."""
        body = {"events": [base64.b64encode(w).decode() for w in wires]}
        response = httpx.post(self.url + "/v1/events", json=body, timeout=10)
        response.raise_for_status()
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def stop(self) -> None:
        """kill -9: crash tests rely on it, and nothing needs a graceful exit here."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
