"""Nobody keeps the peer table full (issue #14, finding 5; spec 0005 #announce-limits,
#peer-eviction).

Against real node processes: announcements (``POST /v1/peers``, which anyone may
send) of dead URLs from distinct loopback addresses (all of 127.0.0.0/8 is loopback,
and the node keeps one announcement bucket per client address).

- one address flooding announcements is cut off by its own small bucket (429 with
  ``Retry-After``), before the table or the probes feel it;
- a table full of dead announced URLs (and a dead static peer) does not keep a
  working peer out: its announcement replaces the oldest announced peer that never
  worked, static peers stay, and the node follows and reconciles with the newcomer;
- the node probes the URLs it was told a few at a time, however many it was told.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import httpx
import pytest

from node.federation.peers import UNTRIED_PROBES
from tests.e2e.fedproc import Author, Cluster, free_port, peer_entry, peers, post_events

pytestmark = pytest.mark.e2e

#: A small table, and a small bucket that refills slowly (one a minute).
MAX_PEERS = 4
ANNOUNCE_LIMITS: dict[str, Any] = {"announce_burst": 3, "announce_per_minute": 1}
#: Dead peers must stay in the table for the whole test: a long backoff keeps them
#: from being dropped by the failure rule (spec 0005 §peers) meanwhile.
SLOW_DROP: dict[str, Any] = {"max_peers": MAX_PEERS, "backoff_max_ms": 300_000}


def _dead() -> str:
    """The URL of a port nothing listens on (connections to it are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def _announce(url: str, peer_url: str, source: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source, retries=0)
    with httpx.Client(transport=transport, timeout=10) as http:
        return http.post(url + "/v1/peers", json={"url": peer_url})


def _urls(url: str) -> set[str]:
    return {entry["url"] for entry in peers(url)}


def test_a_flood_of_dead_announcements_is_rate_limited_and_cannot_keep_a_peer_out(
    cluster: Cluster,
) -> None:
    """spec 0005 #announce-limits and #peer-eviction."""
    static = _dead()
    n = cluster.start(
        "n", peers=[static], peer_exchange=True, limits=ANNOUNCE_LIMITS, federation=SLOW_DROP
    )

    # One address: its burst of announcements is taken, the next is refused.
    flood = [_dead() for _ in range(4)]
    for dead in flood[:3]:
        r = _announce(n.url, dead, "127.0.0.50")
        assert (r.status_code, r.json()) == (202, {"status": "added"})
    r = _announce(n.url, flood[3], "127.0.0.50")
    assert (r.status_code, r.json()["error"]) == (429, "rate-limited"), r.text
    assert r.headers["Retry-After"].isdigit()
    assert flood[3] not in _urls(n.url)  # refused before the node looked at the URL

    # The table (the static peer and three announced) is full of peers that never
    # worked; another address's dead URL replaces the oldest announced one.
    assert _urls(n.url) == {static, *flood[:3]}
    late = _dead()
    r = _announce(n.url, late, "127.0.0.51")
    assert (r.status_code, r.json()) == (202, {"status": "added"})
    assert _urls(n.url) == {static, *flood[1:3], late}

    # A working node that follows N announces itself (from 127.0.0.1) when its stream
    # opens: it joins, replacing the next oldest dead one; N follows it and syncs.
    author = Author(0x5108)
    p = cluster.start("p", peers=[n.url], peer_exchange=True)
    acked = post_events(p.url, author.posts(3))

    def synced() -> dict[str, Any] | None:
        entry = peer_entry(n.url, p.url)
        if entry is None or entry["state"] != "live" or entry["last_sync"] is None:
            return None
        return entry if entry["last_sync"]["error"] is None else None

    entry = cluster.wait_until(synced, "N following and reconciled with P")
    assert entry["source"] == "gossip" and entry["last_ok_ms"] is not None
    assert _urls(n.url) == {static, flood[2], late, p.url}
    assert len(acked) == 3


class Tarpits:
    """``count`` listeners on 127.0.0.1 that accept and never answer; they record how
    many connections were open at once, at most, and which listeners were reached.

    Connections are counted when one is accepted, after dropping those the node has
    already closed (read to their end without blocking): a thread woken late on a
    loaded machine must not make a closed connection look open.
    """

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.max_open = 0
        self.reached: set[int] = set()
        self._listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
        self.urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in self._listeners]
        for index, listener in enumerate(self._listeners):
            threading.Thread(target=self._accept, args=(index, listener), daemon=True).start()

    @staticmethod
    def _alive(conn: socket.socket) -> bool:
        """Drain what the node sent; False once it has hung up."""
        try:
            while conn.recv(4096):
                pass
        except BlockingIOError:
            return True
        except OSError:
            pass
        conn.close()
        return False

    def _accept(self, index: int, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed
            conn.setblocking(False)
            with self._lock:
                self._conns = [c for c in self._conns if self._alive(c)]
                self._conns.append(conn)
                self.max_open = max(self.max_open, len(self._conns))
                self.reached.add(index)

    def close(self) -> None:
        for sock in [*self._listeners, *self._conns]:
            with contextlib.suppress(OSError):
                sock.close()


def test_announced_urls_are_probed_a_few_at_a_time(cluster: Cluster) -> None:
    """spec 0005 #peer-eviction: probes of peers that never worked run at most
    ``UNTRIED_PROBES`` at once, however many URLs were announced."""
    count = 2 * UNTRIED_PROBES
    tarpits = Tarpits(count)
    try:
        n = cluster.start(
            "n",
            peer_exchange=True,
            federation={"max_peers": count, "total_timeout_ms": 1000},
        )
        for i, url in enumerate(tarpits.urls):  # one address each: no bucket is empty
            r = _announce(n.url, url, f"127.0.0.{60 + i}")
            assert (r.status_code, r.json()) == (202, {"status": "added"})
        cluster.wait_until(lambda: len(tarpits.reached) == count, "every URL probed")
        assert tarpits.max_open <= UNTRIED_PROBES, tarpits.max_open
    finally:
        tarpits.close()
