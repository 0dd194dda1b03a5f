"""In-memory fake nodes behind ``httpx.MockTransport`` for the client library's tests.

A :class:`FakeNode` speaks the read and ingest endpoints of spec 0004 over a dict of
wire events, with knobs a hostile or broken node would turn: ``down`` (connection
refused), ``delay`` (slow), ``hidden`` (withhold ids everywhere), ``feed_hidden``
(withhold from the feed only) and ``serve`` (put arbitrary wire bytes, e.g. a broken
signature, in place of an event). :class:`Net` routes requests to nodes by host.

v2 events (did:murmur, spec 0008) are held and served like any other, and
``GET /v1/authors/{did}/keys`` serves the author's key events the node holds (minus
``keys_hidden``), and so does ``POST /v1/keys`` for many authors at once (spec 0004
#keys-batch; ``keys_batch = False`` answers 404 as an older node does, and
``keys_deferred`` authors are deferred to the single-author form, which is served
``keys_page`` key events at a time with ``next``; ``max_feed_authors`` serves
``/v1/info`` and bounds the batch);
``accept_v2 = False`` makes the node refuse v2 events as nodes did before spec 0008
(``unsupported-version``); ``lose_acks`` stores submitted events and then drops the
connection before answering. A body-less copy put in with ``serve`` is served as is,
and a full copy submitted later fills it in (spec 0004 #body-fill, reported
``accepted``). The fake does no key-state check: the client must not rely on
nodes for it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from client.api import NodeClient
from protocol.encoding import decode, encode
from protocol.errors import ProtocolError
from protocol.events import Event, decode_event, decode_unverified, sign_event
from protocol.identity import Identity
from protocol.keystate import KEY_EVENT_KINDS
from tests.node_json import event_json as _v1_event_json

_seeds = itertools.count(100)


@dataclass
class Author:
    """An identity that signs a chain; ``ts`` increases by one second per event."""

    identity: Identity
    seq: int = 0
    prev: bytes | None = None
    ts: int = 1_700_000_000_000
    events: list[Event] = field(default_factory=list)

    @classmethod
    def new(cls) -> Author:
        return cls(identity=Identity.from_seed(next(_seeds).to_bytes(32, "big")))

    @property
    def did(self) -> str:
        return self.identity.did

    def sign(self, kind: str, body: dict[str, Any]) -> Event:
        self.seq += 1
        self.ts += 1000
        ev = sign_event(
            self.identity, kind=kind, body=body, seq=self.seq, prev=self.prev, ts=self.ts
        )
        self.prev = ev.id
        self.events.append(ev)
        return ev

    def post(self, text: str, **body: Any) -> Event:
        return self.sign("post", {"text": text, **body})


def event_json(wire: bytes) -> dict[str, Any]:
    """A node's JSON form of ``wire``, v1 or v2."""
    ev = decode_unverified(wire, allow_v2=True)
    if ev.key is None:
        return _v1_event_json(wire)
    return {
        "id": ev.id_hex,
        "author": ev.author,
        "seq": ev.seq,
        "ts": ev.ts,
        "kind": ev.kind,
        "wire": base64.b64encode(wire).decode(),
    }


def broken_signature(ev: Event) -> bytes:
    """``ev``'s wire form with one bit of the signature flipped."""
    sig = bytearray(ev.sig)
    sig[0] ^= 1
    return encode([ev.header_bytes, bytes(sig), ev.body_bytes])


class FakeNode:
    def __init__(self, url: str, *, net: str = "murmur") -> None:
        self.url = url
        self.net = net
        self.wires: dict[bytes, bytes] = {}  # id -> wire, in insertion order
        self.down = False
        self.delay = 0.0
        self.hidden: set[bytes] = set()
        self.feed_hidden: set[bytes] = set()
        #: Key events left out of ``/keys`` answers only.
        self.keys_hidden: set[bytes] = set()
        #: Serve ``POST /v1/keys`` (False: an older node, 404).
        self.keys_batch = True
        #: Authors ``POST /v1/keys`` defers to ``GET /v1/authors/{did}/keys``.
        self.keys_deferred: set[str] = set()
        #: ``limits.max_feed_authors`` served by ``/v1/info`` (None: no ``/v1/info``,
        #: 404) and enforced by ``POST /v1/keys``.
        self.max_feed_authors: int | None = None
        #: Key events per ``GET /v1/authors/{did}/keys`` page (then ``next``).
        self.keys_page = 1000
        self.accept_v2 = True
        #: Serve ``POST /v1/authors/events`` and ``POST /v1/stats`` (False: an older
        #: node, 404).
        self.batches = True
        #: ``first_seen_ms`` by author in ``stats`` answers.
        self.first_seen: dict[str, int] = {}
        #: Serve ``GET /v1/events?ids=`` (False: an older node, 400).
        self.ids_batch = True
        self.requests: list[str] = []
        #: Every wire submitted, in order (to compare retried bytes).
        self.submitted: list[bytes] = []
        #: Store submitted events, then drop the connection before answering.
        self.lose_acks = False

    def add(self, *events: Event) -> None:
        for ev in events:
            self.wires[ev.id] = ev.wire

    def serve(self, wire: bytes) -> None:
        """Serve raw ``wire`` (valid or not) as the event with its header's id."""
        self.wires[decode_unverified(wire, allow_v2=True).id] = wire

    def _events(self) -> list[Event]:
        return [
            decode_unverified(w, allow_v2=True)
            for i, w in self.wires.items()
            if i not in self.hidden
        ]

    def _stats(self, did: str) -> dict[str, int | None]:
        ts = [e.ts for e in self._events() if e.author == did]
        return {
            "followers": 0,
            "following": 0,
            "first_ts": min(ts, default=None),
            "first_seen_ms": self.first_seen.get(did),
        }

    def _doc(self, events: list[Event]) -> list[dict[str, Any]]:
        return [event_json(self.wires[e.id]) for e in events]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.delay:
            await asyncio.sleep(self.delay)
        path, q = request.url.path, request.url.params
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/v1/events":
            answer = self._ingest(request.content)
            if self.lose_acks:
                raise httpx.ReadError("connection reset before the answer", request=request)
            return answer
        if path == "/v1/events" and request.method == "GET" and "ids" in q:
            if not self.ids_batch:
                return _error(400, "bad-request")
            asked = [bytes.fromhex(h) for h in q["ids"].split(",") if h]
            held = [i for i in asked if i in self.wires and i not in self.hidden]
            doc = {
                "events": [event_json(self.wires[i]) for i in held],
                "missing": [i.hex() for i in asked if i not in held],
            }
            return httpx.Response(200, json=doc)
        if parts[:2] == ["v1", "events"] and len(parts) == 3:
            wire = self.wires.get(bytes.fromhex(parts[2]))
            if wire is None or bytes.fromhex(parts[2]) in self.hidden:
                return _error(404, "not-found")
            return httpx.Response(200, json={"event": event_json(wire)})
        if request.method == "POST" and path == "/v1/authors/events":
            if not self.batches:
                return _error(404, "not-found")
            body = json.loads(request.content)
            room = int(body.get("limit", 500))
            logs = []
            for r in body["ranges"]:
                evs = sorted(
                    (
                        e
                        for e in self._events()
                        if e.author == r["author"] and r["from_seq"] <= e.seq <= r["to_seq"]
                    ),
                    key=lambda e: e.seq,
                )
                page, nxt = evs[:room], None
                if len(evs) > room:
                    nxt = evs[room].seq if page else r["from_seq"]
                room -= len(page)
                logs.append({**r, "events": self._doc(page), "next_from_seq": nxt})
            return httpx.Response(200, json={"logs": logs})
        if request.method == "POST" and path == "/v1/stats":
            if not self.batches:
                return _error(404, "not-found")
            authors = json.loads(request.content)["authors"]
            return httpx.Response(200, json={"stats": {a: self._stats(a) for a in authors}})
        if request.method == "GET" and parts[:2] == ["v1", "followers"]:
            return httpx.Response(
                200,
                json={"did": parts[2], "stats": self._stats(parts[2]), "events": [], "next": None},
            )
        if parts[:2] == ["v1", "authors"] and parts[3] == "events":
            lo, hi = int(q.get("from_seq", 1)), int(q.get("to_seq", 2**62))
            limit = int(q.get("limit", 100))
            evs = sorted(
                (e for e in self._events() if e.author == parts[2] and lo <= e.seq <= hi),
                key=lambda e: e.seq,
            )
            page, nxt = evs[:limit], None
            if len(evs) > limit:
                nxt = evs[limit].seq
            return httpx.Response(
                200, json={"author": parts[2], "events": self._doc(page), "next_from_seq": nxt}
            )
        if parts[:2] == ["v1", "authors"] and parts[3] == "keys":
            doc = self._keys(parts[2])
            start = int(q.get("after") or 0)
            page = doc["events"][start : start + self.keys_page]
            more = start + self.keys_page < len(doc["events"])
            doc.update(events=page, next=str(start + self.keys_page) if more else None)
            return httpx.Response(200, json=doc)
        if path == "/v1/info" and self.max_feed_authors is not None:
            return httpx.Response(
                200, json={"cursor": 0, "limits": {"max_feed_authors": self.max_feed_authors}}
            )
        if request.method == "POST" and path == "/v1/keys":
            if not self.keys_batch:
                return _error(404, "not-found")
            authors = json.loads(request.content)["authors"]
            if len(authors) > (self.max_feed_authors or 500):
                return _error(400, "bad-request")
            groups = [self._keys(a) for a in authors if a not in self.keys_deferred]
            return httpx.Response(
                200,
                json={
                    "keys": [g for g in groups if g["events"]],
                    "deferred": [a for a in authors if a in self.keys_deferred],
                },
            )
        if parts[:2] == ["v1", "authors"] and parts[3] == "head":
            evs = [e for e in self._events() if e.author == parts[2]]
            if not evs:
                return _error(404, "not-found")
            return httpx.Response(
                200, json={"author": parts[2], "max_seq": max(e.seq for e in evs)}
            )
        if path == "/v1/feed":
            if request.method == "POST":  # long author lists come in a JSON body
                query = json.loads(request.content)
                q = httpx.QueryParams(
                    {k: ",".join(v) if isinstance(v, list) else v for k, v in query.items()}
                )
            authors = set(q.get("authors", "").split(",")) - {""}
            kinds = set(q.get("kinds", "").split(",")) - {""}
            evs = [
                e
                for e in self._events()
                if e.id not in self.feed_hidden
                and (not authors or e.author in authors)
                and (not kinds or e.kind in kinds)
            ]
            evs.sort(key=lambda e: e.ts, reverse=True)
            start = int(q.get("before") or 0)
            limit = int(q.get("limit", 50))
            page = evs[start : start + limit]
            nxt = str(start + limit) if len(evs) > start + limit else None
            return httpx.Response(200, json={"events": self._doc(page), "next": nxt})
        if parts[:2] == ["v1", "threads"]:
            root = bytes.fromhex(parts[2])
            evs = self._events()
            root_ev = next((e for e in evs if e.id == root), None)
            replies = [
                e
                for e in evs
                if e.body
                and isinstance(e.body.get("reply"), dict)
                and e.body["reply"]["root"] == root
            ]
            if root_ev is None and not replies:
                return _error(404, "not-found")
            return httpx.Response(
                200,
                json={
                    "root": None if root_ev is None else event_json(self.wires[root]),
                    "replies": self._doc(sorted(replies, key=lambda e: e.ts)),
                    "next": None,
                },
            )
        if path == "/v1/profiles":
            needle = q["q"].lower()
            evs = [
                e
                for e in self._events()
                if e.kind == "profile" and e.body and needle in str(e.body.get("name", "")).lower()
            ]
            return httpx.Response(
                200,
                json={
                    "profiles": [
                        {"author": e.author, "event": event_json(self.wires[e.id])} for e in evs
                    ]
                },
            )
        return _error(404, "not-found")

    def _keys(self, author: str) -> dict[str, Any]:
        evs = [
            e
            for e in self._events()
            if e.author == author and e.kind in KEY_EVENT_KINDS and e.id not in self.keys_hidden
        ]
        return {"author": author, "events": self._doc(evs), "path": []}

    def _ingest(self, content: bytes) -> httpx.Response:
        results = []
        for wire in decode(content):
            self.submitted.append(wire)
            try:
                ev = decode_event(wire, net=self.net, allow_v2=self.accept_v2)
            except ProtocolError as exc:
                results.append(
                    {"id": None, "status": "rejected", "error": exc.code, "message": exc.message}
                )
                continue
            held = self.wires.get(ev.id)
            filled = held is not None and decode_unverified(held, allow_v2=True).body is None
            status = "duplicate" if held is not None and not filled else "accepted"
            self.wires[ev.id] = wire
            results.append({"id": ev.id_hex, "status": status})
        return httpx.Response(200, json={"results": results})


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps({"error": code, "message": code}).encode(),
        headers={"Content-Type": "application/json"},
    )


class Net:
    """Fake nodes by URL, and an ``httpx.AsyncClient`` that reaches them."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}

    def node(self, name: str, **kw: Any) -> FakeNode:
        url = f"http://{name}.test"
        self.nodes[url] = FakeNode(url, **kw)
        return self.nodes[url]

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        url = f"{request.url.scheme}://{request.url.host}"
        if url not in self.nodes:
            raise httpx.ConnectError("no such host", request=request)
        return await self.nodes[url].handle(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self._handle))


@pytest.fixture
async def net() -> AsyncIterator[tuple[Net, Callable[..., list[NodeClient]]]]:
    fake = Net()
    async with fake.client() as http:

        def clients(*nodes: FakeNode, timeout: float = 2.0) -> list[NodeClient]:
            return [NodeClient(n.url, http, timeout=timeout) for n in nodes]

        yield fake, clients
