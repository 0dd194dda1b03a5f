"""Fixtures for the client's end-to-end tests: real node processes and a tiny fake node.

:class:`RealNode` is :class:`tests.e2e.nodeproc.NodeProcess` (a real node on port 0).
:class:`ForgingNode` is a stdlib HTTP server in a thread that serves whatever wire
events the test gives it — including ones with broken signatures — for the author-log
and feed endpoints, and 404 for everything else.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.nodeproc import NodeProcess
from tests.node_json import event_json

RealNode = NodeProcess  # the shared real-node helper, under the name these tests use


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
                    events = [event_json(w) for w in outer.wires]
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

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
