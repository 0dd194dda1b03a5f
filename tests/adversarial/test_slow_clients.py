"""Slow clients against a real node (issue #9, spec 0004 §limits "Deadlines").

A slowloris client opens a connection and sends its request a few bytes at a time,
so that each connection costs the node a socket and a handler for as long as the
client likes. The node's defence is its deadlines: ``request_timeout_ms`` for the
whole request and ``body_timeout_ms`` for the body. These tests drip bytes over raw
sockets to a node configured with short deadlines, check that the node answers or
drops the connection long before the client would have finished (and, for a body,
says which deadline it was), and that it keeps serving everyone else in the
meantime. They assert what was cut, not after how many seconds: a busy machine
stretches those (issue #14, finding 9). Waiting is always on the socket (``recv``
with a timeout equal to the drip interval), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from protocol.encoding import encode
from tests.adversarial.conftest import (
    MSGPACK,
    SLOW_BODY_TIMEOUT_MS,
    Tally,
    new_identity,
    signed,
)
from tests.e2e.nodeproc import NodeProcess

pytestmark = pytest.mark.e2e

#: One byte every this many seconds: far slower than any deadline allows for (a
#: 4000-byte drip would take 400 s).
DRIP_S = 0.1
#: How long a dripping client waits for the node to cut it before the test fails as
#: "never cut": a hang guard, 20x the longest deadline (1 s) so that no load makes the
#: node miss it, and 20x shorter than the drips, which the node therefore cut.
HANG_S = 20.0

HEADER_START = b"GET /v1/info HTTP/1.1\r\nHost: adv\r\n"
HEADER_DRIP = b"X-Drip: " + b"a" * 4000
BODY_START = (
    b"POST /v1/events HTTP/1.1\r\nHost: adv\r\nContent-Type: application/msgpack\r\n"
    b"Content-Length: 4000\r\n\r\n"
)
BODY_DRIP = b"\x00" * 4000


@dataclass(slots=True)
class Outcome:
    """What a dripping client saw: when the node answered and when it hung up."""

    sent: int = 0
    response: bytes = b""
    answered_after: float | None = None
    closed_after: float | None = None


def _address(node: NodeProcess) -> tuple[str, int]:
    host, port = node.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _drip(
    node: NodeProcess, start: bytes, drip: bytes, window_s: float, *, until_answer: bool = False
) -> Outcome:
    """Send ``start``, then ``drip`` one byte per :data:`DRIP_S` for up to ``window_s``
    or until the node hangs up (or, with ``until_answer``, until it answers)."""
    out = Outcome()
    with socket.create_connection(_address(node), timeout=5) as sock:
        began = time.monotonic()  # before sending: a conservative upper bound
        if start:
            sock.sendall(start)
        while time.monotonic() - began < window_s:
            sock.settimeout(DRIP_S)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                data = None
            except OSError:
                out.closed_after = time.monotonic() - began
                break
            elapsed = time.monotonic() - began
            if data == b"":
                out.closed_after = elapsed
                break
            if data:
                out.response += data
                if out.answered_after is None:
                    out.answered_after = elapsed
                if until_answer:
                    break
                continue
            if drip and out.sent < len(drip):
                try:
                    sock.sendall(drip[out.sent : out.sent + 1])
                except OSError:
                    out.closed_after = time.monotonic() - began
                    break
                out.sent += 1
    return out


def test_slow_drip_body_is_answered_at_the_body_deadline(
    adv_slow_node: NodeProcess, adv_tally: Tally
) -> None:
    deadline = SLOW_BODY_TIMEOUT_MS / 1000
    out = _drip(adv_slow_node, BODY_START, BODY_DRIP, window_s=HANG_S, until_answer=True)
    print(f"slow body: answered after {out.answered_after} s, {out.sent} bytes dripped")
    assert out.answered_after is not None, f"no answer within {HANG_S} s"
    assert out.response.startswith(b"HTTP/1.1 400 ")
    assert b'"error": "bad-request"' in out.response or b'"error":"bad-request"' in out.response
    # The body deadline fired (not the request deadline, nor the end of the body).
    assert f"request body not received within {deadline:g} s".encode() in out.response
    assert out.sent < len(BODY_DRIP)
    adv_tally.add("slow-clients")


def test_slow_drip_body_connection_is_dropped_at_the_body_deadline(
    adv_slow_node: NodeProcess, adv_tally: Tally
) -> None:
    adv_tally.add("slow-clients")
    out = _drip(adv_slow_node, BODY_START, BODY_DRIP, window_s=HANG_S)
    # Cut within HANG_S, while the drip had 380 s to go: only a deadline does that.
    assert out.closed_after is not None, out


def test_slow_or_idle_request_head_is_dropped_at_the_idle_deadline(
    adv_slow_node: NodeProcess, adv_tally: Tally
) -> None:
    drips = {
        "headers": (HEADER_START, HEADER_DRIP),
        "request-line": (b"", b"GET /v1/info?" + b"a" * 4000),
        "idle": (b"", b""),
    }
    outcomes: dict[str, Outcome] = {}

    def run(name: str) -> None:
        start, payload = drips[name]
        outcomes[name] = _drip(adv_slow_node, start, payload, window_s=HANG_S)

    # The three variants side by side: one deadline's worth of waiting, not three.
    threads = [threading.Thread(target=run, args=(name,)) for name in drips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=HANG_S + 10)
    adv_tally.add("slow-clients", len(drips))
    held = {
        name: out.sent
        for name, out in outcomes.items()
        if out.closed_after is None and out.answered_after is None
    }
    assert len(outcomes) == len(drips) and not held, (
        f"still connected after {HANG_S} s (bytes dripped): {held}"
    )


class Drippers:
    """Background slowloris: ``count`` connections of each kind, each fed one byte per
    :data:`DRIP_S`; a connection the node drops is replaced by a new one."""

    def __init__(self, node: NodeProcess, count: int) -> None:
        self.address = _address(node)
        self.kinds = [(HEADER_START, HEADER_DRIP), (BODY_START, BODY_DRIP), (b"", b"")]
        self.socks: dict[socket.socket, tuple[bytes, int]] = {}
        self.opened = 0
        self.dropped = 0
        self.dripped = 0
        self._stop = threading.Event()
        for drip_start, drip in self.kinds:
            for _ in range(count):
                self._open(drip_start, drip)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, start: bytes, drip: bytes) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        if start:
            sock.sendall(start)
        sock.setblocking(False)
        self.socks[sock] = (drip, 0)
        self.opened += 1

    def _close(self, sock: socket.socket) -> None:
        drip, _ = self.socks.pop(sock)
        with contextlib.suppress(OSError):
            sock.close()
        self.dropped += 1
        start = next(s for s, d in self.kinds if d == drip)
        with contextlib.suppress(OSError):
            self._open(start, drip)

    def _run(self) -> None:
        while not self._stop.wait(DRIP_S):  # the drip pace
            readable, _, _ = select.select(list(self.socks), [], [], 0)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._close(sock)
            for sock, (drip, sent) in list(self.socks.items()):
                if sent >= len(drip):
                    continue
                try:
                    sock.send(drip[sent : sent + 1])
                except OSError:
                    self._close(sock)
                    continue
                self.socks[sock] = (drip, sent + 1)
                self.dripped += 1

    def __enter__(self) -> Drippers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def drippers(adv_slow_node: NodeProcess) -> Iterator[Drippers]:
    with Drippers(adv_slow_node, count=15) as background:
        yield background


def test_other_clients_are_served_during_slow_drips(
    adv_slow_node: NodeProcess, drippers: Drippers, adv_tally: Tally
) -> None:
    ident = new_identity()
    latencies: list[float] = []
    # Each request has the client's 10 s timeout as its hang guard: ~100x a request's
    # usual time here, above any delay a busy machine adds. How quick the rounds were
    # is printed, not asserted (issue #14, finding 9).
    with httpx.Client(base_url=adv_slow_node.url, timeout=10) as http:
        prev: bytes | None = None
        # At least 10 rounds, and on until the node has cut as many dripping
        # connections as were opened at first (they are replaced as they are cut), so
        # that the normal client works while the deadlines fire, however long that takes.
        first = drippers.opened
        hang_at = time.monotonic() + HANG_S
        seq = 0
        while seq < 10 or drippers.dropped < first:
            assert time.monotonic() < hang_at, (
                f"the node cut {drippers.dropped} of {first} dripping connections "
                f"in {HANG_S} s"
            )
            seq += 1
            start = time.monotonic()
            assert http.get("/health").status_code == 200
            assert http.get("/v1/info").status_code == 200
            wire, eid = signed(ident, {"text": f"served {seq}"}, seq=seq, prev=prev)
            r = http.post("/v1/events", content=encode([wire]), headers={
                "Content-Type": MSGPACK
            })
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
            assert http.get(f"/v1/events/{eid.hex()}").status_code == 200
            latencies.append(time.monotonic() - start)
            prev = eid
    print(
        f"slow drips: {drippers.opened} slow connections opened, {drippers.dropped} dropped "
        f"by the node, {drippers.dripped} bytes dripped; "
        f"normal client round max {max(latencies):.3f} s"
    )
    assert drippers.dripped > 0 and len(drippers.socks) == 45
    assert drippers.dropped >= first
    adv_tally.add("slow-clients", drippers.opened)
