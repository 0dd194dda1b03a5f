"""Following the nodes' live streams: one reconnect policy for every ``--watch``
(spec 0007 #watch-reconnect), against in-process fake streams.

A fake stream is an object with a ``url`` and a ``stream_chunks(params, idle_s)`` that
fails (``node-unreachable``) a set number of times and then serves the SSE frames the
test gives it, recording the parameters of every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest

from client.api import NodeClient
from client.errors import NodeUnreachableError
from client.watch import NodeStreams

#: Hang guard only; nothing is timed.
DEADLINE_S = 20


def _frame(cursor: int, wire: bytes) -> bytes:
    doc = {"cursor": cursor, "event": {"wire": base64.b64encode(wire).decode()}}
    return f"id: {cursor}\nevent: event\ndata: {json.dumps(doc)}\n\n".encode()


class FakeStream:
    def __init__(self, url: str, *, fail: int, frames: Sequence[bytes]) -> None:
        self.url = url
        self.fail = fail
        self.frames = list(frames)
        self.asked: list[dict[str, Any]] = []

    async def stream_chunks(
        self, params: Sequence[tuple[str, str | int]], *, idle_s: float
    ) -> AsyncIterator[bytes]:
        self.asked.append(dict(params))
        if self.fail > 0:
            self.fail -= 1
            raise NodeUnreachableError(f"{self.url}: connection refused", url=self.url)
        for frame in self.frames:
            yield frame
        self.frames = []
        await asyncio.Event().wait()  # then silent, like a live node between events


async def _take(streams: NodeStreams, starts: dict[str, int | None], n: int) -> list[Any]:
    got: list[tuple[str, bytes]] = []
    async with contextlib.aclosing(streams.batches(starts)) as batches:
        async for batch in batches:
            got += batch
            if len(got) >= n:
                return got
    raise AssertionError("the streams ended")


async def test_a_failing_node_is_reported_down_then_back_and_never_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """spec 0007 #watch-reconnect: a node whose stream fails ``DOWN_AFTER`` times in a
    row is reported down once, is still retried (here 10 failures: more than any
    give-up bound), and when it answers again it is reported back and followed from
    the cursor the watch started at; a healthy node is followed meanwhile."""
    monkeypatch.setattr("client.watch.BACKOFF_MIN_S", 0.001)
    monkeypatch.setattr("client.watch.BACKOFF_MAX_S", 0.004)
    flaky = FakeStream("http://flaky.test", fail=10, frames=[_frame(8, b"late")])
    healthy = FakeStream("http://healthy.test", fail=0, frames=[_frame(3, b"now")])
    status: list[tuple[str, str | None]] = []
    streams = NodeStreams(
        cast(list[NodeClient], [flaky, healthy]),
        kinds_=["post"],
        authors=["did:key:zA"],
        on_status=lambda url, why: status.append((url, why)),
        down_after=3,
    )
    starts: dict[str, int | None] = {flaky.url: 5, healthy.url: None}
    got = await asyncio.wait_for(_take(streams, starts, 2), DEADLINE_S)
    assert sorted(got) == [(flaky.url, b"late"), (healthy.url, b"now")]
    assert [u for u, _ in status] == [flaky.url, flaky.url]
    why = status[0][1]
    assert why is not None and "node-unreachable" in why
    assert status[1][1] is None  # back
    assert len(flaky.asked) == 11
    assert all(a == {"kinds": "post", "authors": "did:key:zA", "cursor": 5} for a in flaky.asked)
    assert healthy.asked == [{"kinds": "post", "authors": "did:key:zA"}]  # from its head
    assert streams.cursors == {flaky.url: 8, healthy.url: 3}
    assert streams.down == {}


async def test_a_stream_that_ends_after_delivering_resumes_from_its_last_cursor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """spec 0007 #watch-reconnect: a node ends a stream after its lifetime; the watch
    opens it again from the last cursor delivered, without counting a failure."""
    monkeypatch.setattr("client.watch.BACKOFF_MIN_S", 0.001)

    class Ending(FakeStream):
        async def stream_chunks(
            self, params: Sequence[tuple[str, str | int]], *, idle_s: float
        ) -> AsyncIterator[bytes]:
            self.asked.append(dict(params))
            n = len(self.asked)
            yield _frame(10 * n, f"e{n}".encode()) + b": closing reason=lifetime\n\n"

    node = Ending("http://ending.test", fail=0, frames=[])
    status: list[tuple[str, str | None]] = []
    streams = NodeStreams(
        cast(list[NodeClient], [node]),
        kinds_=["post"],
        on_status=lambda url, why: status.append((url, why)),
    )
    got = await asyncio.wait_for(_take(streams, {node.url: 1}, 3), DEADLINE_S)
    assert [w for _, w in got[:3]] == [b"e1", b"e2", b"e3"]
    assert [a.get("cursor") for a in node.asked[:3]] == [1, 10, 20]
    assert status == []
