"""Reads kept between pages (spec 0007 #web-read-cache; :mod:`client.readcache`).

A node's answers are kept with its ``(node_id, cursor)``; a read that validates first
takes them only while both are unchanged. Against fake nodes whose ``/v1/info``
cursor moves with every stored event, as a real node's does (spec 0004
#store-cursor).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest

import client.reader as reader_module
from client.api import NodeClient
from client.readcache import Answer, NodeAnswers, ReadCache, Tally, tally
from client.reader import MergedEvents, Reader
from protocol.events import Event
from tests.client.conftest import Author, FakeNode, broken_signature

BOB = Author.new()


class Node(FakeNode):
    """A fake node whose ``/v1/info`` names it and gives a cursor that moves with every
    event it stores (``node_id=None``: an older node that names nothing)."""

    node_id: str | None = "node-1"
    failing = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/info":
            self.requests.append("GET /v1/info")
            doc = {"node_id": self.node_id, "cursor": len(self.wires)}
            return httpx.Response(200, json=doc)
        if self.failing:
            self.requests.append(f"{request.method} {request.url.path}")
            return httpx.Response(500, json={"error": "internal", "message": "boom"})
        return await super().handle(request)


@pytest.fixture
async def http() -> AsyncIterator[Callable[[Node], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(node: Node) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(node.handle))
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


async def _read(
    node: Node, http: httpx.AsyncClient, cache: ReadCache, *, ids: Sequence[bytes] = ()
) -> Reader:
    nodes = [NodeClient(node.url, http, answers=cache.node(node.url))]
    await cache.validate(nodes)
    reader = Reader(nodes, verified=cache.verified)
    await reader.fetch_feed(authors=[BOB.did], kinds_=["post"], limit=50)
    if ids:
        await reader.lookup(ids)
    return reader


def _texts(reader: Reader) -> set[str]:
    return {str((e.body or {}).get("text")) for e in reader.events.values()}


async def test_answers_are_kept_until_the_node_stores_something(
    http: Callable[[Node], httpx.AsyncClient],
) -> None:
    """spec 0007 #web-read-cache: the second read asks only ``/v1/info``; once the node
    stored a new event (its cursor moved), the next read asks again and shows it."""
    node = Node("http://n1.test")
    node.add(BOB.post("one"))
    cache, client = ReadCache(), http(node)
    counted = Tally()
    token = tally.set(counted)
    try:
        assert _texts(await _read(node, client, cache)) == {"one"}
        first = len(node.requests)
        assert _texts(await _read(node, client, cache)) == {"one"}
        assert node.requests[first:] == ["GET /v1/info"]
        assert counted.cached == 1
        node.add(BOB.post("two"))
        first = len(node.requests)
        assert _texts(await _read(node, client, cache)) == {"one", "two"}
        assert node.requests[first:] == ["GET /v1/info", "GET /v1/feed"]
    finally:
        tally.reset(token)


async def test_a_node_that_names_no_node_id_is_asked_every_time(
    http: Callable[[Node], httpx.AsyncClient],
) -> None:
    """Without ``node_id`` the cursor alone could belong to another store: nothing kept."""
    node = Node("http://n1.test")
    node.node_id = None
    node.add(BOB.post("one"))
    cache, client = ReadCache(), http(node)
    await _read(node, client, cache)
    first = len(node.requests)
    await _read(node, client, cache)
    assert len(node.requests) - first == 2  # /v1/info and the feed again
    assert cache.node(node.url).cursor == 1  # the live stream's start is still known


async def test_a_missing_event_is_kept_as_missing_and_a_failure_is_not_kept(
    http: Callable[[Node], httpx.AsyncClient],
) -> None:
    """The ``404`` of an event asked by id is an answer of the node's state; a ``500``
    (or any failure) is not: the next read asks again."""
    node = Node("http://n1.test")
    node.add(BOB.post("one"))
    absent = BOB.post("never sent").id  # signed, never given to the node
    cache, client = ReadCache(), http(node)
    await _read(node, client, cache, ids=[absent])
    first = len(node.requests)
    await _read(node, client, cache, ids=[absent])
    assert node.requests[first:] == ["GET /v1/info"]

    node.failing = True
    node.add(BOB.post("two"))  # the cursor moves: the kept answers go
    reader = await _read(node, client, cache)
    assert reader.report.nodes[0].error is not None
    node.failing = False
    first = len(node.requests)
    assert _texts(await _read(node, client, cache)) == {"one", "two"}
    assert len(node.requests) - first == 2


def test_an_answer_asked_before_a_newer_validation_is_not_kept() -> None:
    """An answer read across a change of the node (another page validated a newer
    cursor meanwhile) may hold either state: it is dropped, never kept."""
    answers = NodeAnswers("http://n1.test")
    answers.validate("node-1", 5)
    asked_under = answers.generation
    answers.validate("node-1", 6)
    key = ("GET", "/v1/feed", (), b"")
    answers.put(asked_under, key, Answer({"events": []}, 10))
    assert answers.get(key) is None
    answers.put(answers.generation, key, Answer({"events": []}, 10))
    assert answers.get(key) is not None
    answers.validate("node-1", 6)  # unchanged: kept
    assert answers.get(key) is not None
    answers.validate("node-2", 6)  # another store at the same URL: dropped
    assert answers.get(key) is None


async def test_verified_events_are_not_verified_again_and_forged_ones_are_checked_each_time(
    http: Callable[[Node], httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same wire bytes verify the same way: a later read takes the event this
    process verified; a forged copy is never taken as verified, so every read drops and
    reports it (spec 0007 §read)."""
    node = Node("http://n1.test")
    good, forged = BOB.post("good"), BOB.post("forged")
    node.add(good)
    node.serve(broken_signature(forged))
    cache, client = ReadCache(), http(node)
    first = await _read(node, client, cache)
    assert _texts(first) == {"good"} and len(first.report.nodes[0].invalid) == 1

    checked: list[bytes] = []
    real_many = reader_module.verify_cached  # type: ignore[attr-defined]
    real_one = reader_module.verify_cached_sync  # type: ignore[attr-defined]

    async def many(wires: list[bytes], *args: Any, **kwargs: Any) -> Any:
        checked.extend(wires)
        return await real_many(wires, *args, **kwargs)

    def one(wires: list[bytes], *args: Any, **kwargs: Any) -> Any:
        checked.extend(wires)
        return real_one(wires, *args, **kwargs)

    monkeypatch.setattr(reader_module, "verify_cached", many)
    monkeypatch.setattr(reader_module, "verify_cached_sync", one)
    again = await _read(node, client, cache)
    assert _texts(again) == {"good"} and len(again.report.nodes[0].invalid) == 1
    assert checked == [broken_signature(forged)]


def test_merged_events_index_authors_as_the_events_change() -> None:
    """:meth:`Reader.of_author` reads an index kept by every change of ``events``
    (a key state moving an event out and back in, spec 0008 §8.7, included)."""
    alice = Author.new()
    a1, b1, a2 = alice.post("a1"), BOB.post("b1"), alice.post("a2")
    events = MergedEvents()
    for e in (a1, b1, a2):
        events[e.id] = e

    def of(did: str) -> list[Event]:
        return list(events.by_author.get(did, {}).values())

    assert of(alice.did) == [a1, a2] and of(BOB.did) == [b1]
    assert events.pop(a1.id) is a1 and of(alice.did) == [a2]
    assert events.pop(a1.id, None) is None
    with pytest.raises(KeyError):
        events.pop(a1.id)
    events[a1.id] = a1
    assert of(alice.did) == [a2, a1] == [e for e in events.values() if e.author == alice.did]
    del events[b1.id]
    assert of(BOB.did) == [] and b1.id not in events
    with pytest.raises(TypeError):
        events.update({b1.id: b1})
