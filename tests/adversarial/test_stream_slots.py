"""One address cannot hold every live-stream slot (issue #14, finding 4; spec 0004
#stream-slots, #stream-lifetime).

Against real node processes: idle SSE streams opened from distinct loopback
addresses (all of 127.0.0.0/8 is loopback, and the node counts slots per client
address), each a raw socket that sends the request and keeps the connection open.

- one address gets at most ``max_streams_per_address`` streams (429 beyond), while
  another address still gets one;
- when the general slots are all taken, a newcomer evicts the oldest stream of the
  heaviest address (it ends cleanly: the subscriber resumes by cursor), or is refused
  with 503 when no address holds more than its share;
- a peer the node follows still gets a stream then, from the slots reserved for peers;
- an idle stream is closed cleanly at the stream lifetime, and a node following
  another resumes after each such close without counting it as a failure.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.adversarial.conftest import read_response
from tests.adversarial.hostile import metric_sum
from tests.e2e.fedproc import Author, Cluster, peer_entry, post_events

pytestmark = pytest.mark.e2e

#: The node under attack: 10 slots, 2 of them for peers, 2 streams per address.
SLOTS: dict[str, Any] = {
    "max_subscribers": 10,
    "peer_stream_reserve": 2,
    "max_streams_per_address": 2,
}
GENERAL_SLOTS = 8
#: A short stream lifetime (it ends after 0.75 to 1 times this).
LIFETIME_MS = 1500


class Stream:
    """``GET /v1/stream`` on a raw socket leaving from ``source``; its answer's head."""

    def __init__(self, url: str, source: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.source = source
        self.sock = socket.create_connection(
            (host, int(port)), timeout=10, source_address=(source, 0)
        )
        self.sock.sendall(
            f"GET /v1/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        # A stream's head has no Content-Length: this returns once the head is in,
        # with whatever of the body came along; an error answer comes whole.
        self.status, self.headers, self.body = read_response(self.sock, 10)
        self.error: str | None = None
        if self.status != 200:
            self.error = json.loads(self.body)["error"]
            self.close()

    def read_to_end(self, deadline_s: float) -> bytes:
        """Everything the node sends until it ends the response (closing the chunked
        body with its last chunk) or the connection; AssertionError at the deadline."""
        end = time.monotonic() + deadline_s
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"stream from {self.source} still open: {data[-200:]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    """Every stream a test opens, closed at the end."""
    opened: list[Stream] = []
    yield opened
    for s in opened:
        s.close()


def _open(streams: list[Stream], url: str, source: str) -> Stream:
    s = Stream(url, source)
    streams.append(s)
    return s


def test_one_address_cannot_take_every_stream_slot(cluster: Cluster, streams: list[Stream]) -> None:
    """spec 0004 #stream-slots: a share per address, eviction of the heaviest address's
    oldest stream, 503 when nobody holds more than a share, and the peer reserve."""
    # N follows P; P starts later, when N's general slots are all taken.
    n = cluster.start("n", peers=[cluster.url("p")], limits=SLOTS)

    first, second = (_open(streams, n.url, "127.0.0.10") for _ in range(2))
    assert first.status == second.status == 200
    beyond = _open(streams, n.url, "127.0.0.10")
    assert (beyond.status, beyond.error) == (429, "rate-limited"), beyond.body
    assert beyond.headers.get("retry-after", "").isdigit()
    other = _open(streams, n.url, "127.0.0.11")
    assert other.status == 200  # another address is not affected

    # The rest of the general slots, one stream per address.
    for i in range(GENERAL_SLOTS - 3):
        assert _open(streams, n.url, f"127.0.0.{12 + i}").status == 200
    # A newcomer evicts the oldest stream of the heaviest address (127.0.0.10 holds 2).
    newcomer = _open(streams, n.url, "127.0.0.30")
    assert newcomer.status == 200
    assert b": closing reason=evicted" in first.read_to_end(10)
    # Now every address holds one stream: the next newcomer is refused.
    refused = _open(streams, n.url, "127.0.0.31")
    assert (refused.status, refused.error) == (503, "unavailable"), refused.body
    assert metric_sum(n.url, "murmur_stream_subscribers") == GENERAL_SLOTS

    # P, a peer N follows, connects from 127.0.0.1: it gets one of the reserved slots.
    cluster.start("p", peers=[n.url])
    cluster.wait_until(
        lambda: (peer_entry(cluster.url("p"), n.url) or {}).get("state") == "live",
        "P's stream to N open, in a slot reserved for peers",
    )
    assert metric_sum(n.url, "murmur_stream_subscribers") == GENERAL_SLOTS + 1
    refused = _open(streams, n.url, "127.0.0.32")
    assert (refused.status, refused.error) == (503, "unavailable"), refused.body


def test_idle_stream_ends_at_its_lifetime_and_peers_resume_without_penalty(
    cluster: Cluster, streams: list[Stream]
) -> None:
    """spec 0004 #stream-lifetime: an idle stream is closed cleanly after at most
    ``stream_max_lifetime_ms``; a following node (spec 0005 §replication) resumes by
    cursor, and the close is no failure: its score is not lowered, no error is kept."""
    n = cluster.start("n", limits={"stream_max_lifetime_ms": LIFETIME_MS})
    reader = _open(streams, n.url, "127.0.0.40")
    assert reader.status == 200
    tail = reader.read_to_end(30)
    assert b": closing reason=lifetime" in tail

    p = cluster.start("p", peers=[n.url])
    cluster.wait_until(
        lambda: metric_sum(n.url, "murmur_stream_disconnects_total", reason="lifetime") >= 4,
        "N closed P's stream at its lifetime three times",
    )
    author = Author(0x5107)
    acked = post_events(n.url, author.posts(3))

    def resumed() -> dict[str, Any] | None:
        entry = peer_entry(p.url, n.url)
        live = entry is not None and entry["state"] == "live"
        return entry if live and (entry["cursor"] or 0) >= 3 else None

    entry = cluster.wait_until(resumed, "P live again on N's stream, past the new posts")
    assert len(acked) == 3
    assert entry["failures"] == 0 and entry["last_error"] is None, entry
    assert entry["score"] > 0, entry
