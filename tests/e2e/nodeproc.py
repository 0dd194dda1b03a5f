"""A real ``python -m node run`` process on 127.0.0.1, for end-to-end tests.

It starts on ``--port 0``, reads its URL from the startup line, and waits for
``/health`` in a deadline loop (never a fixed sleep). stderr is drained by a thread
into a queue, so the process never blocks on a full pipe and tests can read its log.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ROOT", "NodeProcess"]

ROOT = Path(__file__).resolve().parents[2]
_URL_RE = re.compile(r"murmur node listening url=(http://\S+)")


class NodeProcess:
    """One node subprocess; ``stop()`` kills it (tests use fixtures to always stop)."""

    def __init__(self, data_dir: Path, *args: str, deadline_s: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MURMUR_HOME": str(data_dir.parent)}
        cmd = [sys.executable, "-m", "node", "run", "--port", "0", "--data", str(data_dir)]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_for_url(deadline_s)
        self._wait_healthy(deadline_s)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def _wait_for_url(self, deadline_s: float) -> str:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if m := _URL_RE.search(line):
                return m.group(1)
        self.stop()
        raise AssertionError("node did not log its URL:\n" + "".join(self.log))

    def _wait_healthy(self, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # poll interval of a deadline loop, not synchronisation
        self.stop()
        raise AssertionError("node never became healthy")

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
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
