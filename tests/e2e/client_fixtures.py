"""Fixtures for the client's end-to-end tests: real node processes and a tiny fake node.

:class:`RealNode` starts ``python -m node run --port 0`` on 127.0.0.1, reads the URL from
its startup line and waits for ``/health`` in a deadline loop (no fixed sleeps);
teardown kills it. :class:`ForgingNode` is a stdlib HTTP server in a thread that serves
whatever wire events the test gives it — including ones with broken signatures — for the
author-log and feed endpoints, and 404 for everything else.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from protocol.events import decode_unverified

ROOT = Path(__file__).resolve().parents[2]
_URL_RE = re.compile(r"murmur node listening url=(http://\S+)")


class RealNode:
    """A ``python -m node run`` subprocess without peers."""

    def __init__(self, data_dir: Path, *args: str, deadline_s: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MURMUR_HOME": str(data_dir.parent)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--port", "0", "--data", str(data_dir), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_for_url(deadline_s)
        self._wait_healthy(deadline_s)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def _wait_for_url(self, deadline_s: float) -> str:
        end, seen = time.monotonic() + deadline_s, []
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if m := _URL_RE.search(line):
                return m.group(1)
        self.stop()
        raise AssertionError("node did not log its URL:\n" + "".join(seen))

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

    def ingest(self, *wires: bytes) -> list[dict[str, Any]]:
        body = {"events": [base64.b64encode(w).decode() for w in wires]}
        response = httpx.post(self.url + "/v1/events", json=body, timeout=10)
        response.raise_for_status()
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class ForgingNode:
    """Serves ``wires`` (any bytes, valid or not) as an author log and an empty feed."""

    def __init__(self) -> None:
        self.wires: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path.startswith("/v1/authors/") and path.endswith("/events"):
                    author = path.split("/")[3]
                    events = [outer.event_json(w) for w in outer.wires]
                    events = [e for e in events if e["author"] == author]
                    self._send(200, {"author": author, "events": events, "next_from_seq": None})
                elif path == "/v1/feed":
                    self._send(200, {"events": [], "next": None})
                else:
                    self._send(404, {"error": "not-found", "message": "not here"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def event_json(wire: bytes) -> dict[str, Any]:
        ev = decode_unverified(wire)
        return {
            "id": ev.id_hex,
            "author": ev.author,
            "seq": ev.seq,
            "ts": ev.ts,
            "kind": ev.kind,
            "wire": base64.b64encode(wire).decode(),
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
