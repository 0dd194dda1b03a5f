"""Federation between nodes (spec 0005), in process: real node apps on TestServers,
fake (hostile) peers as small aiohttp apps, everything on 127.0.0.1.

Covered: live replication over the peer's stream with a cursor that survives a restart;
anti-entropy (``Federation.sync_once``, ``POST /v1/sync``, ``GET /v1/events?ids=``);
what a node does with peers that lie (bad ``/v1/info``, garbage or forged stream
events, unrequested events during a fetch), with itself and with twins; backoff and
dropping of dead peers; announcements and gossip; the private-address refusal.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from node.config import NodeLimits
from node.federation.outbound import peer_origin
from node.federation.peers import (
    GOSSIP_GRACE_MS,
    GOSSIP_NEW_PER_ROUND,
    Peer,
    PeerState,
    Score,
)
from node.federation.sync import reconcile_with
from node.state import HUB
from protocol.encoding import decode, encode
from protocol.events import Event
from protocol.negentropy import Negentropy, NegentropyStorage
from tests.node.backends import Backend, both_backends
from tests.node.conftest import MSGPACK, Clock, b64, new_author
from tests.node.fed_fixtures import (
    Cluster,
    FakePeer,
    FedNode,
    closed_port,
    fed_config,
    sse_event,
    wait_for,
)

FRAME = 1_000_000

# Federation between nodes of each store backend (spec 0004 #store-contract).
pytestmark = both_backends()


@pytest.fixture
async def cluster(tmp_path: Path, clock: Clock, backend: Backend) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, clock, backend)
    try:
        yield c
    finally:
        await c.close()


def posts(clock: Clock, n: int, text: str = "post") -> list[Event]:
    """``n`` events of one new author's chain."""
    author = new_author(clock)
    return [author.post(f"{text} {i}") for i in range(n)]


def bad_signature(ev: Event) -> bytes:
    """``ev``'s wire with one signature bit flipped: same id, invalid signature."""
    header, sig, body = decode(ev.wire)
    return encode([header, bytes([sig[0] ^ 1]) + sig[1:], body])


def stream_counts(node: FedNode) -> int:
    """Events this node took from a peer's stream (stored now, or already stored)."""
    fed = node.metrics.federated
    return int(fed[("stream", "accepted")] + fed[("stream", "duplicate")])


# -- live replication ---------------------------------------------------------------------


async def test_stream_replicates_and_cursor_survives_restart(
    cluster: Cluster, clock: Clock
) -> None:
    b = await cluster.start("b")
    a = await cluster.start("a", peers=[b.url])
    await wait_for(lambda: a.state_of(b.url) == "live", "A's stream to B")

    first = posts(clock, 5, "first")
    await b.ingest(*first[:2])
    await b.ingest(*first[2:])
    await wait_for(lambda: a.has_all(first), "the first events on A")
    await wait_for(lambda: a.known(b.url).cursor == 5, "A's cursor of B at 5")
    assert stream_counts(a) == 5  # all five came through the stream

    entry = await a.peer_entry(b.url)
    assert entry is not None
    assert entry["state"] == "live" and entry["source"] == "static"
    assert entry["cursor"] == 5 and entry["node_id"] == b.fed.node_id
    assert entry["events_received"] == 5 and entry["events_rejected"] == 0
    assert entry["failures"] == 0 and entry["last_error"] is None
    assert entry["score"] >= Score.CONNECTED

    await cluster.stop(a)
    # The cursor was saved with the peer when A stopped.
    assert cluster.backend is not None
    store = await cluster.backend.open(a.config.data_dir)
    try:
        records = {r.url: r for r in await store.load_peers()}
    finally:
        await store.close()
    assert records[b.origin].cursor == 5
    assert records[b.origin].node_id == b.fed.node_id
    assert records[b.origin].source == "static"

    second = posts(clock, 7, "second")
    await b.ingest(*second)  # while A is down
    a2 = await cluster.restart(a)
    await wait_for(lambda: a2.has_all(second), "events posted while A was down")
    await wait_for(lambda: a2.known(b.url).cursor == 12, "A's cursor of B at 12")
    # The stream resumed from the saved cursor 5: it replayed the seven missed events
    # (whether anti-entropy stored them first or not). From "now" it would send none.
    assert stream_counts(a2) >= 7
    assert await a2.ids() == {e.id for e in first + second}


async def test_multi_hop_line_without_peer_exchange(cluster: Cluster, clock: Clock) -> None:
    c = await cluster.start("c", peer_exchange=False)
    b = await cluster.start("b", peers=[c.url], peer_exchange=False)
    a = await cluster.start("a", peers=[b.url], peer_exchange=False)
    await wait_for(lambda: b.state_of(c.url) == "live", "B's stream to C")
    await wait_for(lambda: a.state_of(b.url) == "live", "A's stream to B")
    events = posts(clock, 3)
    await c.ingest(*events)
    await wait_for(lambda: a.has_all(events), "C's events on A, through B")
    assert [p.url for p in a.fed.table.all()] == [b.origin]  # A never learnt C


async def test_cursor_is_not_reused_for_a_different_node(cluster: Cluster, clock: Clock) -> None:
    port = closed_port()
    b = await cluster.start("b", port=port)
    a = await cluster.start("a", peers=[b.url])
    await wait_for(lambda: a.state_of(b.url) == "live", "A's stream to B")
    await b.ingest(*posts(clock, 5))
    await wait_for(lambda: a.known(b.url).cursor == 5, "A's cursor of B at 5")
    await cluster.stop(b)
    # Another node (new store, new node id, cursors from 0) now answers at B's URL.
    new = await cluster.fake(node_id="0b" * 16, port=port)
    await wait_for(lambda: bool(new.stream_cursors), "A's stream to the new node")
    assert a.known(b.url).node_id == new.node_id
    # Cursor 5 of B's store means nothing to the new node: start from its present.
    assert new.stream_cursors[0] is None


# -- anti-entropy ---------------------------------------------------------------------


async def test_sync_once_fetches_and_offers_the_difference(cluster: Cluster, clock: Clock) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    shared = [e for _ in range(4) for e in posts(clock, 50, "shared")]
    only_a = posts(clock, 30, "only a")
    only_b = posts(clock, 20, "only b")
    await a.ingest(*shared, *only_a)
    await b.ingest(*shared, *only_b)

    peer = Peer(url=b.origin, source="static")
    outcome = await a.fed.sync_once(peer)
    assert outcome.error is None
    assert sorted(outcome.have) == sorted(e.id for e in only_a)
    assert sorted(outcome.need) == sorted(e.id for e in only_b)
    assert (outcome.fetched, outcome.offered) == (20, 30)
    assert outcome.rounds >= 1 and outcome.bytes_sent > 0 and outcome.bytes_received > 0
    union = {e.id for e in shared + only_a + only_b}
    assert await a.ids() == union
    assert await b.ids() == union
    assert peer.score == Score.SYNCED and peer.failures == 0
    assert peer.last_sync is not None
    assert {k: peer.last_sync[k] for k in ("have", "need", "fetched", "offered", "error")} == {
        "have": 30,
        "need": 20,
        "fetched": 20,
        "offered": 30,
        "error": None,
    }
    assert a.metrics.federated[("sync", "accepted")] == 20
    assert b.metrics.federated[("sync", "accepted")] == 0  # B got them as a client post

    again = await a.fed.sync_once(peer)
    assert (again.have, again.need, again.fetched, again.offered) == ([], [], 0, 0)
    assert again.rounds == 1  # equal sets: one round trip of fingerprints


async def _sync_json(node: FedNode, message: bytes) -> bytes:
    r = await node.http.post("/v1/sync", json={"message": message.hex()})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return bytes.fromhex(r.json()["message"])


async def _sync_raw(node: FedNode, message: bytes) -> bytes:
    r = await node.http.post(
        "/v1/sync", content=message, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return bytes(r.content)


async def _reconcile(
    node: FedNode, storage: NegentropyStorage, *, as_json: bool
) -> tuple[set[bytes], set[bytes]]:
    """Drive a negentropy client against ``node``'s ``POST /v1/sync``: (have, need)."""
    engine = Negentropy(storage, FRAME)
    message: bytes | None = engine.initiate()
    have: set[bytes] = set()
    need: set[bytes] = set()
    rounds = 0
    while message is not None:
        rounds += 1
        assert rounds <= 64
        answer = await (_sync_json if as_json else _sync_raw)(node, message)
        message, h, n = engine.reconcile_client(answer)
        have.update(h)
        need.update(n)
    return have, need


async def test_sync_endpoint_json_form(cluster: Cluster, clock: Clock) -> None:
    node = await cluster.start("n")
    events = posts(clock, 40)
    await node.ingest(*events)
    have, need = await _reconcile(node, NegentropyStorage.from_items([]), as_json=True)
    assert have == set()
    assert need == {e.id for e in events}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sync_endpoint_finds_the_true_difference(
    cluster: Cluster, clock: Clock, seed: int
) -> None:
    rng = random.Random(seed)
    node = await cluster.start("n")
    events = [e for _ in range(3) for e in posts(clock, 60)]
    await node.ingest(*events)
    items = await node.items()
    kept = rng.sample(items, rng.randrange(0, len(items) + 1))
    # Items only the client has: real-looking timestamps, random ids.
    extra = [(ts + rng.randrange(-5, 5), rng.randbytes(32)) for ts, _ in rng.sample(items, 25)]
    client = NegentropyStorage.from_items(kept + extra)
    have, need = await _reconcile(node, client, as_json=False)
    assert have == {eid for _, eid in extra}
    assert need == {eid for _, eid in items} - {eid for _, eid in kept}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/octet-stream", b"\x61\xff\xff\xff", 400, "negentropy"),
        ("application/octet-stream", b"\x00", 400, "negentropy"),
        ("application/octet-stream", b"", 400, "negentropy"),
        ("application/json", b'{"message": "61ffffff"}', 400, "negentropy"),
        ("application/json", b'{"message": "zz"}', 400, "bad-request"),
        ("application/json", b'{"msg": "61"}', 400, "bad-request"),
        ("application/json", b"[1]", 400, "bad-request"),
        ("text/plain", b"\x61", 415, "unsupported-media-type"),
    ],
    ids=[
        "truncated",
        "version",
        "empty",
        "json-truncated",
        "json-hex",
        "json-key",
        "json-list",
        "content-type",
    ],
)
async def test_sync_endpoint_errors(
    cluster: Cluster, content_type: str, body: bytes, status: int, code: str
) -> None:
    node = await cluster.start("n")
    r = await node.http.post("/v1/sync", content=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.json()["error"] == code


async def test_events_by_ids(cluster: Cluster, clock: Clock) -> None:
    node = await cluster.start("n")
    events = posts(clock, 3)
    await node.ingest(*events)
    unknown = bytes(32)
    ask = [events[2].id, unknown, events[0].id]
    query = ",".join(i.hex() for i in ask)

    r = await node.http.get("/v1/events", params={"ids": query})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [e["id"] for e in doc["events"]] == [events[2].id_hex, events[0].id_hex]
    assert [base64.b64decode(e["wire"]) for e in doc["events"]] == [events[2].wire, events[0].wire]
    assert doc["missing"] == [unknown.hex()]

    for params, headers in (
        ({"ids": query, "format": "msgpack"}, {}),
        ({"ids": query}, {"Accept": MSGPACK}),
    ):
        r = await node.http.get("/v1/events", params=params, headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(MSGPACK)
        doc = decode(r.content)
        assert [e["wire"] for e in doc["events"]] == [events[2].wire, events[0].wire]
        assert doc["missing"] == [unknown.hex()]

    # Repeated and comma-separated forms, each id at most once.
    r = await node.http.get(
        f"/v1/events?ids={events[0].id_hex},{events[1].id_hex}&ids={events[0].id_hex}"
    )
    assert [e["id"] for e in r.json()["events"]] == [events[0].id_hex, events[1].id_hex]

    hundred = ",".join(bytes([i]).hex() * 32 for i in range(100))
    assert (await node.http.get("/v1/events", params={"ids": hundred})).status_code == 200
    too_many = hundred + "," + "ff" * 32
    for params in (
        {"ids": too_many},
        {"ids": "zz" * 32},
        {"ids": events[0].id_hex[:-1]},
        {"ids": events[0].id_hex + "00"},
        {"ids": ","},
        {},
    ):
        r = await node.http.get("/v1/events", params=params)
        assert r.status_code == 400, params
        assert r.json()["error"] == "bad-request"


async def test_event_id_with_spaces_is_a_bad_request(cluster: Cluster) -> None:
    node = await cluster.start("n")
    raw = "00 " * 16 + "00" * 8  # 64 characters, 24 bytes
    r = await node.http.get("/v1/events", params={"ids": raw})
    assert r.status_code == 400, r.text


async def test_events_by_ids_case_insensitive_dedup(cluster: Cluster, clock: Clock) -> None:
    node = await cluster.start("n")
    (ev,) = posts(clock, 1)
    await node.ingest(ev)
    r = await node.http.get("/v1/events", params={"ids": f"{ev.id_hex},{ev.id_hex.upper()}"})
    assert r.status_code == 200
    assert len(r.json()["events"]) == 1


# -- hostile peers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [
        (200, "text/html", b"<html><body>hello</body></html>"),
        (200, "application/json", b'{"network": "othernet", "node_id": "' + b"ab" * 16 + b'"}'),
        (200, "application/json", b'{"node_id": "' + b"ab" * 16 + b'"}'),
        (200, "application/json", b"not json"),
        (200, "application/json", b'{"network": "murmur", "node_id": ' + b'"x' * 40 + b'"}'),
    ],
    ids=["html", "wrong-network", "no-network", "not-json", "bad-node-id"],
)
async def test_bad_info_backs_off_and_stores_nothing(
    cluster: Cluster, clock: Clock, info: tuple[int, str, bytes]
) -> None:
    (ev,) = posts(clock, 1)
    fake = await cluster.fake(info=info, wires=[ev.wire], stream=sse_event(1, b64(ev)))
    a = await cluster.start("a", peers=[fake.url])
    await wait_for(
        lambda: (p := a.peer(fake.url)) is not None and p.failures >= 2,
        "two failed probes",
    )
    peer = a.peer(fake.url)
    assert peer is not None
    assert peer.state in (PeerState.BACKOFF, PeerState.CONNECTING)
    assert peer.last_error == "peer-bad-response"
    assert peer.score <= 2 * Score.BAD_RESPONSE
    assert peer.next_attempt_ms is not None
    assert fake.hits["/v1/stream"] == 0 and fake.hits["/v1/sync"] == 0
    assert fake.hits["/v1/events"] == 0
    assert await a.ids() == set()


@pytest.mark.parametrize(
    "variant", ["garbage", "bad-base64", "no-cursor", "not-an-object", "forged-signature"]
)
async def test_hostile_stream(cluster: Cluster, clock: Clock, variant: str) -> None:
    good, forged_src = posts(clock, 1, "good")[0], posts(clock, 1, "forged")[0]
    forged = bad_signature(forged_src)
    assert forged != forged_src.wire
    stream = {
        "garbage": b"this is not sse\nevent: event\ndata: {not json\n\n",
        "bad-base64": sse_event(1, "!!not base64!!"),
        "no-cursor": b"event: event\ndata: "
        + json.dumps({"event": {"wire": b64(good)}}).encode()
        + b"\n\n",
        "not-an-object": b"id: 1\nevent: event\ndata: [1, 2]\n\n",
        "forged-signature": sse_event(1, base64.b64encode(forged).decode())
        + sse_event(2, b64(good)),
    }[variant]
    wires = [good.wire] if variant == "forged-signature" else []
    fake = await cluster.fake(wires=wires, stream=stream)
    a = await cluster.start("a", peers=[fake.url])

    if variant == "forged-signature":
        # The stream goes on: the good event is stored, the forgery is not.
        await wait_for(lambda: a.has_all([good]), "the good event")
        await wait_for(
            lambda: a.known(fake.url).events_rejected >= 1,
            "the forged event counted",
        )
        peer = a.peer(fake.url)
        assert peer is not None
        assert peer.state is PeerState.LIVE and peer.last_error is None
        assert peer.score < 0  # +5 stream, -10 invalid batch (+2 if the sync ran)
        assert a.metrics.federated[("stream", "rejected")] >= 1
        assert await a.ids() == {good.id}
        assert fake.hits["/v1/stream"] == 1
    else:
        await wait_for(
            lambda: (
                (p := a.peer(fake.url)) is not None
                and p.last_error == "peer-bad-response"
                and p.score < 0
            ),
            "the stream refused",
        )
        await wait_for(lambda: fake.hits["/v1/stream"] >= 2, "a reconnect after backoff")
        assert await a.ids() == set()  # not even the well-formed event of "no-cursor"
        assert a.known(fake.url).events_rejected == 0

    # The node stays healthy and keeps working.
    assert (await a.http.get("/health")).status_code == 200
    (later,) = posts(clock, 1, "later")
    await a.ingest(later)
    assert later.id in await a.ids()


async def test_gossip_peer_sending_forgeries_is_dropped(cluster: Cluster, clock: Clock) -> None:
    forged = [bad_signature(e) for e in posts(clock, 10, "forged")]
    stream = [sse_event(i + 1, base64.b64encode(w).decode()) for i, w in enumerate(forged)]
    fake = await cluster.fake(stream=stream, gap_s=0.03)
    a = await cluster.start("a")
    r = await a.http.post("/v1/peers", json={"url": fake.url})
    assert r.json() == {"status": "added"}
    peer = a.peer(fake.url)
    assert peer is not None
    # Spec 0005 §peers: a gossip peer is dropped when its score reaches -50 (+5 for
    # connecting, +2 per sync, -10 per batch with forgeries), while its stream is open.
    await wait_for(lambda: a.peer(fake.url) is None, "the peer dropped")
    assert 5 <= peer.events_rejected <= 10
    assert peer.score <= -50
    assert await a.ids() == set()


@pytest.mark.parametrize("extra", [False, True], ids=["honest", "unrequested-event"])
async def test_sync_refuses_an_answer_with_an_unrequested_event(
    cluster: Cluster, clock: Clock, extra: bool
) -> None:
    held = posts(clock, 3, "held")
    (unasked,) = posts(clock, 1, "unasked")
    fake = await cluster.fake(
        wires=[e.wire for e in held], extra_events=[unasked.wire] if extra else []
    )
    a = await cluster.start("a")
    peer = Peer(url=peer_origin(fake.url), source="gossip")
    outcome = await a.fed.sync_once(peer)

    assert sorted(outcome.need) == sorted(e.id for e in held)
    assert outcome.have == [] and outcome.offered == 0
    assert fake.hits["/v1/events"] == 1
    if extra:
        assert outcome.error == "peer-bad-response"
        assert outcome.fetched == 0
        assert await a.ids() == set()  # nothing of that answer, asked-for events included
        assert peer.score == Score.BAD_RESPONSE
        assert peer.last_sync is not None and peer.last_sync["error"] == "peer-bad-response"
    else:
        assert outcome.error is None and outcome.fetched == 3
        assert await a.ids() == {e.id for e in held}
        assert peer.score == Score.SYNCED


async def test_sync_with_a_peer_using_a_larger_frame_limit(cluster: Cluster) -> None:
    rng = random.Random(7)
    items = [(1_700_000_000_000 + i, rng.randbytes(32)) for i in range(40_000)]
    # A peer configured with sync_frame_bytes = 4 MB (allowed by FederationConfig) holds
    # 40k items; its first answer to an empty node lists them all (1.28 MB).
    fake = await cluster.fake(items=items, frame_limit=4_000_000)
    a = await cluster.start("a")  # sync_frame_bytes: the default 1 MB
    outcome = await reconcile_with(
        a.fed.client,
        peer_origin(fake.url),
        await a.fed.snapshot.get(),
        policy=a.fed.policy,
        frame_size_limit=a.config.federation.sync_frame_bytes,
    )
    assert len(outcome.need) == 40_000


async def test_sync_does_not_refetch_a_rejected_event(cluster: Cluster, clock: Clock) -> None:
    (ev,) = posts(clock, 1)
    fake = await cluster.fake(wires=[bad_signature(ev)])
    a = await cluster.start("a")
    peer = Peer(url=peer_origin(fake.url), source="gossip")
    first = await a.fed.sync_once(peer)
    assert first.need == [ev.id] and first.fetched == 0
    assert fake.hits["/v1/events"] == 1
    assert peer.events_rejected == 1
    await a.fed.sync_once(peer)
    # Spec 0005 §anti-entropy: ids this node rejected in the last hour are not fetched.
    assert fake.hits["/v1/events"] == 1


async def test_stripped_copies_are_not_refetched_at_every_sync(
    cluster: Cluster, clock: Clock
) -> None:
    """Spec 0005 #body-repair: a peer serving body-less copies no delete explains
    (`body-required`, retryable) is not held at fault, but the ids are not fetched from
    it again at the next run: no peer can make this node verify them at every sync."""
    evs = posts(clock, 20)
    fake = await cluster.fake(wires=[ev.without_body().wire for ev in evs])
    a = await cluster.start("a")
    peer = Peer(url=peer_origin(fake.url), source="gossip")
    first = await a.fed.sync_once(peer)
    assert len(first.need) == 20 and first.fetched == 0 and first.error is None
    assert peer.events_rejected == 0 and peer.score > 0
    fetches = fake.hits["/v1/events"]
    for _ in range(2):
        again = await a.fed.sync_once(peer)
        assert again.fetched == 0 and again.error is None
    assert fake.hits["/v1/events"] == fetches


async def test_peer_that_is_this_node_is_never_subscribed(
    cluster: Cluster, clock: Clock, tmp_path: Path
) -> None:
    # The node id is made with the store: make it first, so the fake can claim it.
    assert cluster.backend is not None
    store = await cluster.backend.open(tmp_path / "a")
    node_id = await store.node_id()
    await store.close()
    fake = await cluster.fake(node_id=node_id)
    a = await cluster.start("a", peers=[fake.url])
    assert a.fed.node_id == node_id
    await wait_for(lambda: a.state_of(fake.url) == "self", "state self")
    entry = await a.peer_entry(fake.url)
    assert entry is not None
    assert entry["state"] == "self" and entry["node_id"] == node_id
    assert entry["next_attempt_ms"] is None  # never retried
    assert fake.hits["/v1/info"] == 1
    assert fake.hits["/v1/stream"] == 0 and fake.hits["/v1/sync"] == 0


async def test_two_urls_of_one_node_one_live_one_duplicate(cluster: Cluster, clock: Clock) -> None:
    b = await cluster.start("b")
    port = b.server.port
    twin = f"http://localhost:{port}"
    a = await cluster.start("a", peers=[b.url, twin])
    await wait_for(
        lambda: sorted(str(a.state_of(u)) for u in (b.url, twin)) == ["duplicate", "live"],
        "one live and one duplicate",
    )
    assert b.app[HUB].subscribers == 1  # one stream, not two
    events = posts(clock, 2)
    await b.ingest(*events)
    await wait_for(lambda: a.has_all(events), "B's events on A")
    assert {a.known(u).node_id for u in (b.url, twin)} == {b.fed.node_id}
    assert b.app[HUB].subscribers == 1


async def test_dead_peer_backs_off_exponentially(cluster: Cluster, clock: Clock) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    a = await cluster.start("a", peers=[dead], backoff_min_ms=50, backoff_max_ms=400)
    await wait_for(lambda: a.known(dead).failures >= 1, "the first attempt")
    loop = asyncio.get_running_loop()
    began, start = loop.time(), a.known(dead).failures
    await asyncio.sleep(2.0)  # the measurement window, not a synchronisation
    await wait_for(lambda: a.known(dead).failures >= start + 3, "three more attempts")
    window = loop.time() - began  # as long as it really was: a busy machine stretches it
    peer = a.peer(dead)
    assert peer is not None
    attempts = peer.failures - start
    # Delays 50, 100, 200, 400, 400 ... ms, each x [0.5, 1.5]: even with the shortest
    # jitter, 4 attempts fit in the first 0.375 s and one more per 0.2 s after (13 in
    # 2 s); a loop without backoff would make hundreds. The bound follows the window
    # actually measured, so a loaded machine cannot fail it (issue #14, finding 9),
    # plus one for an attempt made while the first poll was late to see ``start``.
    allowed = 6 + int(max(0.0, window - 0.375) / 0.2)
    assert 3 <= attempts <= allowed, (attempts, allowed, window)
    assert peer.last_error == "peer-unreachable"
    assert peer.state in (PeerState.BACKOFF, PeerState.CONNECTING)
    assert peer.score == max(-100.0, Score.UNREACHABLE * peer.failures)
    # The clock is frozen, so the scheduled delay can be read off next_attempt_ms.
    assert peer.next_attempt_ms is not None
    assert 200 <= peer.next_attempt_ms - clock.now <= 600
    assert a.peer(dead) is not None  # static: never dropped


@pytest.mark.parametrize("rule", ["silence", "score"])
async def test_dead_gossip_peer_is_dropped(cluster: Cluster, clock: Clock, rule: str) -> None:
    dead_static = f"http://127.0.0.1:{closed_port()}"
    dead_gossip = f"http://127.0.0.1:{closed_port()}"
    a = await cluster.start("a", peers=[dead_static], backoff_min_ms=5, backoff_max_ms=20)
    r = await a.http.post("/v1/peers", json={"url": dead_gossip})
    assert (r.status_code, r.json()) == (202, {"status": "added"})
    peer = a.peer(dead_gossip)
    assert peer is not None and peer.source == "gossip"
    if rule == "silence":
        clock.advance(1_000)  # more than 4 x backoff_max_ms since it was added
    await wait_for(lambda: a.peer(dead_gossip) is None, "the gossip peer dropped")
    if rule == "silence":
        # 8 failures in a row and silent too long, before the score got to -50.
        assert peer.failures == 8 and peer.score == 8 * Score.UNREACHABLE
    else:
        # The clock did not move: only the score (-5 a failure) can drop it, at -50.
        assert peer.failures == 10 and peer.score == -50.0
    assert peer_origin(dead_gossip) not in [p["url"] for p in (await a.peers_doc())["peers"]]

    async def forgotten() -> bool:
        return peer_origin(dead_gossip) not in {r.url for r in await a.store.load_peers()}

    await wait_for(forgotten, "the dropped peer deleted from the store")
    # The static one keeps backing off, never dropped.
    await wait_for(lambda: a.known(dead_static).failures >= 12, "static failures")
    assert a.peer(dead_static) is not None


# -- peer exchange ----------------------------------------------------------------------


async def test_announce_and_peer_list(cluster: Cluster) -> None:
    # The test clock stands still, so the announcement bucket never refills: raise it.
    config = fed_config(cluster.root / "a", cluster.clock, max_peers=2)
    a = await cluster.start("a", config=replace(config, limits=NodeLimits(announce_burst=64)))
    dead = f"http://127.0.0.1:{closed_port()}"

    r = await a.http.post("/v1/peers", json={"url": dead + "/some/path/"})
    assert (r.status_code, r.json()) == (202, {"status": "added"})
    r = await a.http.post("/v1/peers", json={"url": dead.replace("http://", "HTTP://")})
    assert (r.status_code, r.json()) == (200, {"status": "known"})
    other = f"http://127.0.0.1:{closed_port()}"
    r = await a.http.post("/v1/peers", json={"url": other})
    assert (r.status_code, r.json()) == (202, {"status": "added"})
    # Full of peers that never worked: the oldest makes room (spec 0005 #peer-eviction).
    third = "http://third.invalid:1"
    r = await a.http.post("/v1/peers", json={"url": third})
    assert (r.status_code, r.json()) == (202, {"status": "added"})

    for body in (
        {"url": "ftp://example.com"},
        {"url": "http://user:pw@example.com"},
        {"url": "http://example.com/?q=1"},
        {"url": "not a url"},
        {"url": 5},
        {"nope": dead},
        [dead],
    ):
        r = await a.http.post("/v1/peers", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"] == "bad-request"
    r = await a.http.post("/v1/peers", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = await a.http.post("/v1/peers", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415

    doc = await a.peers_doc()
    assert set(doc) == {"node_id", "url", "peer_exchange", "peers"}
    info = (await a.http.get("/v1/info")).json()
    assert doc["node_id"] == info["node_id"] == a.fed.node_id
    assert len(doc["node_id"]) == 32 and int(doc["node_id"], 16) >= 0
    assert doc["url"] is None  # port 0: nothing to announce
    assert doc["peer_exchange"] is True
    assert [p["url"] for p in doc["peers"]] == sorted([peer_origin(other), peer_origin(third)])
    for entry in doc["peers"]:
        assert entry["source"] == "gossip"
        assert entry["state"] in ("new", "connecting", "backoff")


async def test_announcement_ignored_without_peer_exchange(cluster: Cluster) -> None:
    a = await cluster.start("a", peer_exchange=False)
    r = await a.http.post("/v1/peers", json={"url": "http://127.0.0.1:9"})
    assert (r.status_code, r.json()) == (200, {"status": "ignored"})
    r = await a.http.post("/v1/peers", json={"url": "ftp://x"})
    assert r.status_code == 400  # still validated
    doc = await a.peers_doc()
    assert doc["peers"] == [] and doc["peer_exchange"] is False


async def test_announcement_makes_the_link_two_way(cluster: Cluster, clock: Clock) -> None:
    b = await cluster.start("b")
    port = closed_port()  # A listens on a known port, so it has a URL to announce
    a = await cluster.start("a", peers=[b.url], port=port)
    assert a.fed.advertised_url == f"http://127.0.0.1:{port}"
    await wait_for(lambda: b.state_of(a.url) == "live", "B subscribed back to A")
    assert b.known(a.url).source == "gossip"
    events = posts(clock, 2)
    await a.ingest(*events)
    await wait_for(lambda: b.has_all(events), "A's events on B")


async def test_gossip_learns_live_peers_of_peers(cluster: Cluster, clock: Clock) -> None:
    c = await cluster.start("c")
    b = await cluster.start("b", peers=[c.url])
    await wait_for(lambda: b.state_of(c.url) == "live", "B's stream to C")
    a = await cluster.start("a", peers=[b.url], gossip_interval_ms=200)
    await wait_for(lambda: a.state_of(c.url) == "live", "A learnt C from B and follows it")
    assert a.known(c.url).source == "gossip"
    assert a.known(b.url).source == "static"


async def test_gossip_when_a_stream_opens(cluster: Cluster, clock: Clock) -> None:
    c = await cluster.start("c")
    b = await cluster.start("b", peers=[c.url])
    await wait_for(lambda: b.state_of(c.url) == "live", "B's stream to C")
    # Spec 0005 §peer-exchange: a node gossips when a stream opens, not only on the
    # timer (here 10 minutes).
    a = await cluster.start("a", peers=[b.url])
    await wait_for(lambda: a.state_of(b.url) == "live", "A's stream to B")
    # Within the usual wait deadline (8 s): far under the 10-minute timer, so only the
    # gossip at stream opening can pass, however busy the machine (issue #14, finding 9).
    await wait_for(lambda: a.peer(c.url) is not None, "A learnt C")
    assert a.known(c.url).source == "gossip"


# -- outbound safety ----------------------------------------------------------------------


async def test_private_peer_is_refused_without_a_request(cluster: Cluster) -> None:
    fake = await cluster.fake()
    a = await cluster.start("a", peers=[fake.url], allow_private=False)
    await wait_for(lambda: a.state_of(fake.url) == "refused", "state refused")
    peer = a.peer(fake.url)
    assert peer is not None
    assert peer.last_error == "peer-forbidden-address"
    assert peer.score == Score.FORBIDDEN
    entry = await a.peer_entry(fake.url)
    assert entry is not None and entry["state"] == "refused"
    assert entry["last_error"] == "peer-forbidden-address"
    assert sum(fake.hits.values()) == 0


#: 64 URLs where nothing listens (connections to them are refused at once).
_DEAD = tuple(f"http://127.0.0.1:{port}" for port in range(1, 65))


class _DeadGossip(FakePeer):
    """A live peer whose ``GET /v1/peers`` names 64 dead URLs, all "live"."""

    async def _get_peers(self, request: web.Request) -> web.Response:
        entries = [{"url": url, "state": "live"} for url in _DEAD]
        return web.json_response({"node_id": self.node_id, "url": None, "peers": entries})


async def test_gossip_adds_a_few_urls_a_round(cluster: Cluster) -> None:
    """spec 0005 #peer-eviction: one gossip answer adds at most GOSSIP_NEW_PER_ROUND."""
    a = await cluster.start("a", max_peers=64)
    hostile = await _DeadGossip().start()
    try:
        added = await a.fed.gossip_with(Peer(url=hostile.url, source="static"))
        assert added == GOSSIP_NEW_PER_ROUND
        assert len(a.fed.table) == GOSSIP_NEW_PER_ROUND
    finally:
        await hostile.close()


async def test_gossip_cannot_evict_a_newcomer_before_its_first_probe(
    cluster: Cluster, clock: Clock
) -> None:
    """spec 0005 #peer-eviction: a URL learnt by gossip replaces only an untried peer
    whose first probe has finished or whose grace has run out, so a live hostile peer
    naming dead URLs cannot push out a newcomer announced a moment ago."""
    a = await cluster.start("a", max_peers=3)
    table = a.fed.table
    # Added directly: no probe task, so the newcomer stays unprobed (as one queued
    # behind the untried probes would be).
    probed_dead = Peer(url="http://dead.invalid:1", source="gossip", added_ms=clock.now - 1)
    probed_dead.failed("unreachable", Score.UNREACHABLE)
    newcomer = Peer(url="http://newcomer.invalid:1", source="gossip", added_ms=clock.now)
    worked = Peer(url="http://worked.invalid:1", source="gossip", added_ms=clock.now - 2)
    worked.last_ok_ms = clock.now - 2
    for peer in (probed_dead, newcomer, worked):
        assert table.add(peer)
    hostile = await _DeadGossip().start()
    try:
        gossiper = Peer(url=hostile.url, source="static")
        # Only the peer whose probe failed makes room, once.
        assert await a.fed.gossip_with(gossiper) == 1
        urls = {p.url for p in table.all()}
        assert newcomer.url in urls and worked.url in urls and probed_dead.url not in urls
        # Its grace over (still never probed), the newcomer may be replaced like any
        # untried peer, and still no more than GOSSIP_NEW_PER_ROUND a round.
        clock.advance(GOSSIP_GRACE_MS)
        assert await a.fed.gossip_with(gossiper) == GOSSIP_NEW_PER_ROUND
        urls = {p.url for p in table.all()}
        assert newcomer.url not in urls and worked.url in urls
    finally:
        await hostile.close()
