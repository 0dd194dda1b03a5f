"""The live stream (spec 0004 §stream): SSE frames in cursor order, replay from a
cursor, resume with Last-Event-ID after a disconnect without loss, filters,
heartbeats and the subscriber cap."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest

from node.stream import StreamHub, client_address
from protocol.errors import RateLimitedError
from tests.node.backends import both_backends
from tests.node.conftest import Author, Clock, Node, new_author, read_sse

# The node API over each store backend (spec 0004 §store: one contract).
pytestmark = both_backends()


async def test_live_stream_delivers_new_events_in_order(node: Node, author: Author) -> None:
    await node.ingest(author.post("before"))
    async with node.http.stream("GET", "/v1/stream") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [author.post(f"live {i}") for i in range(3)]
        await node.ingest(events[0])
        await node.ingest(*events[1:])
        frames = await read_sse(resp, 3)
    assert [f["data"]["event"]["id"] for f in frames] == [e.id.hex() for e in events]
    assert [f["id"] for f in frames] == [2, 3, 4]
    assert all(f["id"] == f["data"]["cursor"] for f in frames)
    assert base64.b64decode(frames[0]["data"]["event"]["wire"]) == events[0].wire


async def test_replay_from_cursor_zero(node: Node, author: Author) -> None:
    events = [author.post(str(i)) for i in range(4)]
    await node.ingest(*events)
    async with node.http.stream("GET", "/v1/stream", params={"cursor": 1}) as resp:
        frames = await read_sse(resp, 3)
    assert [f["data"]["event"]["id"] for f in frames] == [e.id.hex() for e in events[1:]]


async def test_resume_after_disconnect_loses_nothing(node: Node, author: Author) -> None:
    first = [author.post(f"a{i}") for i in range(5)]
    await node.ingest(*first)
    async with node.http.stream("GET", "/v1/stream?cursor=0") as resp:
        got = await read_sse(resp, 2)
    last_id = got[-1]["id"]
    # while disconnected, more events are stored
    more = [author.post(f"b{i}") for i in range(4)]
    await node.ingest(*more)
    headers = {"Last-Event-ID": str(last_id)}
    # Last-Event-ID wins over the original ?cursor=0 of a reconnecting EventSource
    async with node.http.stream("GET", "/v1/stream?cursor=0", headers=headers) as resp:
        got += await read_sse(resp, 7)
    ids = [f["data"]["event"]["id"] for f in got]
    assert ids == [e.id.hex() for e in first + more]  # no loss, no duplicates
    assert [f["id"] for f in got] == sorted({f["id"] for f in got})


async def test_stream_filters(node: Node, author: Author, clock: Clock) -> None:
    other = new_author(clock)
    await node.ingest(
        author.post("p1"), other.post("x"), author.sign("like", {"target": b"\x01" * 32}),
        author.post("p2"),
    )
    params = {"cursor": "0", "kinds": "post", "authors": author.did}
    async with node.http.stream("GET", "/v1/stream", params=params) as resp:
        frames = await read_sse(resp, 2)
        # a later matching event still arrives after non-matching ones
        await node.ingest(other.post("y"), author.post("p3"))
        frames += await read_sse(resp, 1)
    assert [f["data"]["event"]["body"]["text"] for f in frames] == ["p1", "p2", "p3"]


async def test_heartbeat_while_idle(start_node: Callable[..., Any]) -> None:
    node: Node = await start_node(heartbeat_ms=50)
    lines: list[str] = []
    async with node.http.stream("GET", "/v1/stream") as resp:
        async with asyncio.timeout(5):
            async for line in resp.aiter_lines():
                lines.append(line)
                if line == ": heartbeat":
                    break
    assert lines[0] == "retry: 1000" and ": heartbeat" in lines


async def test_subscriber_cap_is_503(start_node: Callable[..., Any]) -> None:
    node: Node = await start_node(max_subscribers=1)
    async with node.http.stream("GET", "/v1/stream") as first:
        async with asyncio.timeout(5):
            async for _ in first.aiter_lines():
                break  # the first subscriber is registered
        second = await node.http.get("/v1/stream")
        assert second.status_code == 503 and second.json()["error"] == "unavailable"
    # after the first leaves, a new subscriber is welcome again
    for _ in range(100):
        if node.app[__import__("node.state").state.HUB].subscribers == 0:
            break
        await asyncio.sleep(0.01)
    async with node.http.stream("GET", "/v1/stream") as again:
        assert again.status_code == 200


# -- slots (spec 0004 #stream-slots, #client-address) -------------------------------------


def test_client_address_groups_ipv6_by_64_and_keeps_ipv4() -> None:
    """spec 0004 #client-address: one key per IPv4 address and per IPv6 /64."""
    assert client_address("2001:db8::1") == client_address("2001:db8::ffff:1:2:3")
    assert client_address("2001:db8::1") != client_address("2001:db8:0:1::1")
    assert client_address("::ffff:192.0.2.7") == client_address("192.0.2.7") == "192.0.2.7"
    assert client_address("192.0.2.7") != client_address("192.0.2.8")
    assert client_address(None) == "unknown"


def test_a_working_peer_address_takes_one_reserved_slot_per_peer() -> None:
    """spec 0004 #stream-slots: the rest of a peer address's streams are general ones,
    under the normal share (reserved slots are never evicted)."""
    hub = StreamHub(max_subscribers=20, max_per_address=2, peer_reserve=10)
    subs = [hub.join("198.51.100.1", peers=1) for _ in range(3)]
    assert [s.reserved for s in subs] == [True, False, False]
    assert (hub.reserved, hub.general) == (1, 2)
    with pytest.raises(RateLimitedError):
        hub.join("198.51.100.1", peers=1)
    # Two working peers there: two reserved slots, still not more.
    two = [hub.join("198.51.100.2", peers=2) for _ in range(4)]
    assert [s.reserved for s in two] == [True, True, False, False]
    with pytest.raises(RateLimitedError):
        hub.join("198.51.100.2", peers=2)


def test_fake_peers_and_one_ipv6_prefix_cannot_lock_out_a_peer_or_a_reader() -> None:
    """spec 0004 #stream-slots, #client-address (the review's scenario): eight addresses
    each running one trivial node the table counts as working, eight streams each,
    then single streams from 192 addresses of one IPv6 /64. The next honest peer and
    the next reader from another address still get a slot."""
    hub = StreamHub(max_subscribers=256, max_per_address=8, peer_reserve=64)
    for i in range(8):
        for _ in range(8):
            hub.join(client_address(f"198.51.100.{i + 1}"), peers=1)
    refused = 0
    for i in range(192):
        try:
            hub.join(client_address(f"2001:db8::{i + 1:x}"))
        except RateLimitedError:
            refused += 1
    assert hub.reserved == 8  # one per fake peer: the reserve is not theirs
    assert refused == 192 - 8  # the /64 is one address holding its share
    peer = hub.join(client_address("203.0.113.7"), peers=1)
    reader = hub.join(client_address("192.0.2.9"))
    assert peer.reserved and not reader.reserved
