"""End-to-end: real ``python -m node run`` processes on 127.0.0.1 (spec 0004).

Covers what only a real process can show: the startup line and ``/v1/info`` as the
README's ``curl`` sees it, graceful SIGTERM with a live stream open, and durability —
``kill -9`` while acknowledged ingests are streaming in, restart on the same data
directory, every acknowledged event is there. No fixed sleeps: every wait is a
deadline loop on an observable condition.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from protocol.encoding import encode
from protocol.events import sign_event
from protocol.identity import Identity
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def processes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.stop()


def _post(seed: int, count: int) -> list[bytes]:
    ident = Identity.from_seed(seed.to_bytes(32, "big"))
    out, prev = [], None
    for seq in range(1, count + 1):
        ev = sign_event(ident, kind="post", body={"text": f"{seed}/{seq}"}, seq=seq, prev=prev)
        out.append(ev.wire)
        prev = ev.id
    return out


def test_info_over_http_like_curl(tmp_path: Path, processes: list[NodeProcess]) -> None:
    node = NodeProcess(tmp_path / "node")
    processes.append(node)
    assert f"data={tmp_path / 'node'}" in node.more_log()
    r = httpx.get(node.url + "/v1/info", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    info = r.json()
    assert info["network"] == "murmur" and info["counts"]["events"] == 0
    wires = _post(1, 3)
    r = httpx.post(
        node.url + "/v1/events",
        content=encode([*wires]),
        headers={"Content-Type": "application/msgpack"},
        timeout=10,
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3


def test_sigterm_is_graceful_with_a_stream_open(
    tmp_path: Path, processes: list[NodeProcess]
) -> None:
    node = NodeProcess(tmp_path / "node")
    processes.append(node)
    host, port = node.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in sock.recv(4096)  # the subscriber is in
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=15) == 0
    assert "murmur node stopping" in node.more_log()


def test_kill_9_loses_no_acknowledged_event(tmp_path: Path, processes: list[NodeProcess]) -> None:
    data = tmp_path / "node"
    node = NodeProcess(data)
    processes.append(node)
    acked: set[bytes] = set()
    lock = threading.Lock()
    stop = threading.Event()
    batches = 0

    def writer(seed: int) -> None:
        nonlocal batches
        wires = _post(seed, 400)
        with httpx.Client(base_url=node.url, timeout=5) as http:
            for i in range(0, len(wires), 10):
                if stop.is_set():
                    return
                chunk = wires[i : i + 10]
                try:
                    r = http.post(
                        "/v1/events",
                        content=encode([*chunk]),
                        headers={"Content-Type": "application/msgpack"},
                    )
                except httpx.TransportError:
                    return  # the node died mid-request: not acknowledged
                results = r.json()["results"]
                with lock:
                    batches += 1
                    acked.update(
                        bytes.fromhex(x["id"])
                        for x in results
                        if x["status"] in ("accepted", "duplicate")
                    )

    threads = [threading.Thread(target=writer, args=(s,)) for s in (11, 12, 13)]
    for t in threads:
        t.start()
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with lock:
            if batches >= 30:
                break
        time.sleep(0.01)  # polling interval of a deadline loop
    node.proc.send_signal(signal.SIGKILL)  # while the writers are still posting
    node.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 300, len(acked)

    restarted = NodeProcess(data)
    processes.append(restarted)
    held: set[bytes] = set()
    with httpx.Client(base_url=restarted.url, timeout=10) as http:
        params: dict[str, str | int] = {"limit": 500}
        for _ in range(100):  # every stored event, newest first, page by page
            doc = http.get("/v1/feed", params=params).json()
            held.update(bytes.fromhex(e["id"]) for e in doc["events"])
            if doc["next"] is None:
                break
            params["before"] = doc["next"]
    missing = acked - held
    assert not missing, f"{len(missing)} acknowledged events lost"
