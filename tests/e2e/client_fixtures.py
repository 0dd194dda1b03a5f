"""Fixtures for the client's end-to-end tests: real node processes, a tiny fake node,
and the ``murmur`` command line run in-process.

:class:`RealNode` is :class:`tests.e2e.nodeproc.NodeProcess` (a real node on port 0).
:class:`Cli` runs ``murmur --home HOME ...`` in this process and reads its output.
:class:`ForgingNode` is a stdlib HTTP server in a thread that serves whatever wire
events the test gives it — including ones with broken signatures — for the author-log
and feed endpoints, and 404 for everything else.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from client.cli import main
from tests.e2e.nodeproc import NodeProcess
from tests.node_json import event_json

RealNode = NodeProcess  # the shared real-node helper, under the name these tests use


class Cli:
    """``murmur --home HOME [--as NAME] ...`` in-process; ``json`` parses ``--json``."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def run(self, *argv: str, as_name: str | None = None) -> tuple[int, str, str]:
        pre = ["--home", str(self.home)] + (["--as", as_name] if as_name else [])
        code = main([*pre, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *argv: str, as_name: str | None = None) -> str:
        code, out, err = self.run(*argv, as_name=as_name)
        assert code == 0, f"exit {code}: {err}"
        return out

    def json(self, *argv: str, as_name: str | None = None, ok: bool = True) -> Any:
        """The ``--json`` document; the command must succeed, or fail when not ``ok``."""
        code, out, err = self.run(*argv, "--json", as_name=as_name)
        assert (code == 0) is ok, f"exit {code}: {err}"
        return json.loads(out)

    def error(self, *argv: str) -> tuple[str, str]:
        """The error code (from --json) and the stderr message of a failing command."""
        code, out, err = self.run(*argv, "--json")
        assert code == 1, f"exit {code}: {out} {err}"
        assert "Traceback" not in err
        return json.loads(out)["error"], err

    def post(self, who: str, text: str) -> str:
        eid: str = self.json("post", text, as_name=who)["id"]
        return eid


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
