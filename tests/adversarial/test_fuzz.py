"""Fuzzing the parsers that take hostile bytes (issue #9), with hypothesis.

Three targets, each fed random bytes and mutations of real inputs (bit flips, bytes
set to MessagePack markers, truncations, insertions, deletions, duplicated slices):

(a) ``protocol.encoding.decode`` and ``protocol.events.decode_event`` in-process: the
    only exceptions are ``ProtocolError`` subclasses, and whatever they *accept* is
    canonical (re-encodes to the same bytes) and authentic (a mutated wire that still
    verifies carries the original, signed header);
(b) the negentropy message parser (``Negentropy.reconcile`` on the server side,
    ``reconcile_client`` on the client side): only ``NegentropyError``;
(c) ``POST /v1/events`` on a real node: only 200 or 4xx, never 5xx; the node stays
    healthy; every event it accepts is one that ``decode_event`` accepts too.

Examples are bounded (``max_examples``, no deadline, no example database) so the file
runs in seconds; each test records how many inputs it tried in the session tally.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import kinds
from protocol.encoding import DecodeLimits, decode, encode
from protocol.errors import NegentropyError, ProtocolError
from protocol.events import Event, claimed_id, decode_event, sign_event
from protocol.identity import Identity
from protocol.negentropy import Negentropy, NegentropyStorage
from tests.adversarial.conftest import MSGPACK, Probe, Tally, now_ms

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Bytes a mutation likes to write: MessagePack type markers at every boundary.
MARKERS = (
    0x00, 0x01, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x93, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
    0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0,
    0xD3, 0xD4, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF,
)

#: Codes a per-event ingest rejection may carry (spec 0004 §errors).
EVENT_CODES = frozenset({
    "malformed", "non-canonical", "too-large", "too-deep", "bad-field", "invalid-did",
    "unsupported-version", "wrong-network", "future-timestamp", "bad-prev",
    "body-mismatch", "invalid-signature", "body-required",
})
#: Rejections that depend on what the node holds, not on the event alone: the event is
#: valid by itself, and the result names it (spec 0004 #bodyless).
STATE_CODES = frozenset({"body-required"})


# -- seeds: real signed events of every shape ----------------------------------------------

_AUTHOR = Identity.from_seed(bytes.fromhex("ad" * 32))
_OTHER = Identity.from_seed(bytes.fromhex("ae" * 32))


def _seed_events() -> list[Event]:
    ts = 1_767_225_600_000
    a = _AUTHOR
    first = sign_event(a, kind="profile", body={"name": "Fuzz", "bio": "b" * 40}, seq=1,
                       prev=None, ts=ts)
    post = sign_event(
        a, kind="post", seq=2, prev=first.id, ts=ts + 1,
        body={"text": "héllo ✓", "reply": {"root": first.id, "parent": first.id},
              "tags": ["x", "y"], "langs": ["en"], "warn": ["spoiler"], "quote": first.id},
    )
    label = sign_event(a, kind="label", seq=3, prev=post.id, ts=ts + 2,
                       body={"subject": _OTHER.did, "val": "spam", "neg": False, "exp": 2**40})
    listing = sign_event(a, kind="list", seq=4, prev=label.id, ts=ts + 3,
                         body={"name": "l", "purpose": "mute", "members": [_OTHER.did]})
    unknown = sign_event(a, kind="x.custom", seq=5, prev=listing.id, ts=ts + 4,
                         body={"n": -(2**63), "m": 2**64 - 1, "deep": [[[[{"k": b"\x00"}]]]]})
    other = sign_event(_OTHER, kind="post", seq=1, prev=None, ts=ts, body={"text": "oops"})
    delete = sign_event(_OTHER, kind="delete", seq=2, prev=other.id, ts=ts + 1,
                        body={"target": other.id})
    return [first, post, label, listing, unknown, other, delete, post.without_body()]


SEEDS = _seed_events()
SEED_WIRES = [ev.wire for ev in SEEDS]
BY_ID = {ev.id: ev for ev in SEEDS}
#: Checking the seeds' ts against this clock: all valid, none in the future.
NOW = 1_767_225_600_000 + 60_000


# -- mutations --------------------------------------------------------------------------------


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """One to four mutations of ``data``."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            out.append(draw(st.sampled_from(MARKERS)))
            continue
        pos = draw(st.integers(0, len(out) - 1))
        op = draw(st.sampled_from(["flip", "marker", "byte", "truncate", "insert", "delete",
                                   "duplicate"]))
        if op == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "marker":
            out[pos] = draw(st.sampled_from(MARKERS))
        elif op == "byte":
            out[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 16))]
        else:
            end = min(len(out), pos + draw(st.integers(1, 64)))
            out[pos:pos] = out[pos:end]
    return bytes(out)


@st.composite
def hostile_wire(draw: st.DrawFn) -> tuple[str, Event, bytes]:
    """(mode, seed event, hostile wire). The modes reach ever deeper validation steps:

    ``wire``: the wire bytes mutated; ``header``/``body``: one part mutated and framed
    canonically again; ``header-resigned``: the mutated header signed by the seed's
    author, so header field checks and the signature itself are reached;
    ``body-rehashed``: the mutated body's hash put in the header and re-signed, so the
    body schema of every kind is reached.
    """
    ev = draw(st.sampled_from(SEEDS))
    mode = draw(st.sampled_from(["wire", "header", "body", "header-resigned", "body-rehashed"]))
    signer = _OTHER if ev.author == _OTHER.did else _AUTHOR
    if mode == "wire":
        return mode, ev, draw(mutate(ev.wire))
    if mode == "header":
        return mode, ev, encode([draw(mutate(ev.header_bytes)), ev.sig, ev.body_bytes])
    if mode == "header-resigned":
        header = draw(mutate(ev.header_bytes))
        return mode, ev, _sign_wire(signer, header, ev.body_bytes)
    body = draw(mutate(ev.body_bytes or encode({"text": "x"})))
    if mode == "body":
        return mode, ev, encode([ev.header_bytes, ev.sig, body])
    header_map = dict(ev.header.to_map(), body=hashlib.sha256(body).digest())
    return mode, ev, _sign_wire(signer, encode(header_map), body)


def _sign_wire(signer: Identity, header: bytes, body: bytes | None) -> bytes:
    eid = hashlib.sha256(header).digest()
    return encode([header, signer.sign(b"murmur-event-v1:" + eid), body])


def _check_accepted(mode: str, seed: Event, wire: bytes, ev: Event) -> None:
    """What ``decode_event`` accepted is canonical, valid, and (unless re-signed) the seed."""
    assert ev.wire == wire  # the exact bytes, never a re-encoding
    assert encode(ev.header.to_map()) == ev.header_bytes
    assert ev.id == hashlib.sha256(ev.header_bytes).digest()
    if ev.body is not None:
        assert encode(ev.body, max_depth=64) == ev.body_bytes
        assert hashlib.sha256(ev.body_bytes or b"").digest() == ev.header.body_hash
        kinds.validate_body(ev.kind, ev.body)
    if mode in ("wire", "header", "body"):
        # Nothing but the author's key makes a signature: the header is the seed's.
        assert ev.header_bytes == seed.header_bytes and ev.sig == seed.sig
        assert ev.body_bytes in (seed.body_bytes, None) or seed.body_bytes is None


# -- (a) in-process decoders --------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(data=st.one_of(st.binary(max_size=2048), st.sampled_from(SEED_WIRES).flatmap(mutate)))
def test_decode_raises_only_protocol_errors(adv_tally: Tally, data: bytes) -> None:
    adv_tally.add("fuzz-decode")
    for limits in (DecodeLimits(), DecodeLimits(max_depth=2, max_items=4, max_str=8, max_bin=8)):
        try:
            value = decode(data, limits=limits)
        except ProtocolError:
            continue
        assert encode(value, max_depth=64) == data  # accepted means canonical


@settings(FUZZ, max_examples=200)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
        | st.binary(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                    max_size=4),
        max_leaves=12,
    ).flatmap(lambda v: st.tuples(st.just(v), mutate(encode(v, max_depth=64)))),
)
def test_decode_mutated_canonical_values(adv_tally: Tally, value: tuple[Any, bytes]) -> None:
    original, data = value
    adv_tally.add("fuzz-decode")
    assert decode(encode(original, max_depth=64)) == _listify(original)
    try:
        decoded = decode(data)
    except ProtocolError:
        return
    assert encode(decoded, max_depth=64) == data


def _listify(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_listify(v) for v in value]
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    return value


@settings(FUZZ, max_examples=600)
@given(case=hostile_wire())
def test_decode_event_mutated_wires(adv_tally: Tally, case: tuple[str, Event, bytes]) -> None:
    mode, seed, wire = case
    adv_tally.add("fuzz-decode-event")
    try:
        ev = decode_event(wire, now_ms=NOW)
    except ProtocolError:
        return
    _check_accepted(mode, seed, wire, ev)


@settings(FUZZ, max_examples=200)
@given(data=st.binary(max_size=4096))
def test_decode_event_random_bytes(adv_tally: Tally, data: bytes) -> None:
    adv_tally.add("fuzz-decode-event")
    with pytest.raises(ProtocolError):
        decode_event(data, now_ms=NOW)


# -- (b) negentropy messages ----------------------------------------------------------------------


def _storage(n: int, salt: bytes) -> NegentropyStorage:
    return NegentropyStorage.from_items(
        (1_700_000_000_000 + i // 3, hashlib.sha256(salt + i.to_bytes(4, "big")).digest())
        for i in range(n)
    )


SERVER = _storage(200, b"server")
CLIENT = _storage(180, b"server")  # a subset: fingerprints differ, ranges split
_client = Negentropy(CLIENT)
INITIAL = _client.initiate()
SERVER_REPLY = Negentropy(SERVER).reconcile(INITIAL)
_FULL_CLIENT = Negentropy(_storage(200, b"other"))
_client2 = Negentropy(CLIENT)
_client2.initiate()
_next, _, _ = _client2.reconcile_client(SERVER_REPLY)
SECOND_ROUND = _next or INITIAL
NEG_SEEDS = [INITIAL, SERVER_REPLY, SECOND_ROUND, _FULL_CLIENT.initiate()]


def _negentropy_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=1024),
        st.binary(max_size=1024).map(lambda b: b"\x61" + b),
        st.sampled_from(NEG_SEEDS).flatmap(mutate),
    )


@settings(FUZZ, max_examples=300)
@given(message=_negentropy_inputs(), frame_limit=st.sampled_from([0, 4096]))
def test_negentropy_server_parser(adv_tally: Tally, message: bytes, frame_limit: int) -> None:
    adv_tally.add("fuzz-negentropy")
    try:
        answer = Negentropy(SERVER, frame_limit).reconcile(message)
    except NegentropyError:
        return
    assert isinstance(answer, bytes) and answer[:1] == b"\x61"
    if frame_limit:
        assert len(answer) <= frame_limit


@settings(FUZZ, max_examples=300)
@given(message=_negentropy_inputs())
def test_negentropy_client_parser(adv_tally: Tally, message: bytes) -> None:
    adv_tally.add("fuzz-negentropy")
    client = Negentropy(CLIENT)
    client.initiate()
    try:
        nxt, have, need = client.reconcile_client(message)
    except NegentropyError:
        return
    assert nxt is None or nxt[:1] == b"\x61"
    assert all(len(i) == 32 for i in [*have, *need])
    assert len(set(need)) == len(need)


# -- (c) the real node's ingest endpoint --------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_node(adv_probe: Probe) -> Probe:
    """The module's node, holding the seeds (so mutations can also collide with them).

    The seeds' ``ts`` are in the past, so the node's real clock accepts them.
    """
    results = adv_probe.ingest(*SEED_WIRES)
    assert [r["status"] for r in results] == ["accepted"] * (len(SEEDS) - 1) + ["duplicate"]
    return adv_probe


@st.composite
def ingest_batch(draw: st.DrawFn) -> list[bytes]:
    items = draw(st.lists(hostile_wire(), min_size=1, max_size=8))
    wires = [wire for _, _, wire in items]
    if draw(st.booleans()):
        wires.append(draw(st.binary(max_size=256)))
    return wires


def _valid_locally(wire: bytes) -> Event | None:
    try:
        return decode_event(wire, now_ms=now_ms())
    except ProtocolError:
        return None


@pytest.mark.e2e
@settings(FUZZ, max_examples=60)
@given(batch=ingest_batch(), as_json=st.booleans())
def test_ingest_endpoint_mutated_batches(
    fuzz_node: Probe, adv_tally: Tally, batch: list[bytes], as_json: bool
) -> None:
    errors_before = fuzz_node.internal_errors()
    if as_json:
        r = fuzz_node.http.post(
            "/v1/events", json={"events": [base64.b64encode(w).decode() for w in batch]}
        )
    else:
        r = fuzz_node.http.post(
            "/v1/events", content=encode(batch), headers={"Content-Type": MSGPACK}
        )
    adv_tally.add("fuzz-http-ingest", len(batch))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(batch)
    for wire, result in zip(batch, results, strict=True):
        local = _valid_locally(wire)
        if result["status"] == "rejected":
            assert result["error"] in EVENT_CODES, result
            if result["error"] in STATE_CODES:
                assert local is not None and result["id"] == local.id.hex(), result
            else:
                assert result["id"] is None
                assert local is None, f"node rejected a valid event: {result}"
        elif result["status"] == "duplicate" and local is None:
            # Spec 0004 #dup-first: a copy of a held id is a duplicate unchecked; it
            # must name an event the node really holds, which stays unchanged.
            held = claimed_id(wire)
            assert held is not None and result["id"] == held.hex(), result
            assert fuzz_node.stored(held), f"duplicate of an id not held: {wire.hex()}"
        else:
            assert result["status"] in ("accepted", "duplicate"), result
            assert local is not None, f"node stored an invalid event: {wire.hex()}"
            assert result["id"] == local.id.hex()
    assert fuzz_node.internal_errors() == errors_before


@pytest.mark.e2e
@settings(FUZZ, max_examples=60)
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.builds(encode, st.lists(st.binary(max_size=64), max_size=4)).flatmap(mutate),
        st.sampled_from([encode(SEED_WIRES)]).flatmap(mutate),
    ),
    content_type=st.sampled_from([MSGPACK, "application/json", "application/vnd.murmur+msgpack"]),
)
def test_ingest_endpoint_raw_bodies(
    fuzz_node: Probe, adv_tally: Tally, body: bytes, content_type: str
) -> None:
    adv_tally.add("fuzz-http-raw")
    r = fuzz_node.http.post("/v1/events", content=body, headers={"Content-Type": content_type})
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert 400 <= r.status_code < 500
        assert r.json()["error"] in ("bad-request", "payload-too-large"), r.text
        return
    for result in r.json()["results"]:
        assert result["status"] in ("accepted", "duplicate") or result["error"] in EVENT_CODES


@pytest.mark.e2e
def test_node_after_fuzzing_is_healthy_and_holds_only_valid_events(
    fuzz_node: Probe, adv_tally: Tally
) -> None:
    """Runs after the fuzz tests of this module: every event the node holds verifies.

    A mutation that still verifies was signed by one of the two seed identities, so
    their logs (header-only events included) are everything the node can hold.
    """
    assert fuzz_node.healthy()
    held = 0
    for did in (_AUTHOR.did, _OTHER.did):
        from_seq: int | None = 1
        while from_seq is not None:
            r = fuzz_node.http.get(
                f"/v1/authors/{did}/events", params={"from_seq": from_seq, "limit": 500}
            )
            assert r.status_code == 200, r.text
            doc = r.json()
            for item in doc["events"]:
                ev = decode_event(base64.b64decode(item["wire"]), now_ms=now_ms())  # or raise
                assert ev.id.hex() == item["id"] and ev.author == did
                assert (item["body"] is None) == (ev.body is None)
                held += 1
            from_seq = doc["next_from_seq"]
    assert held == fuzz_node.stored_total() >= len(SEEDS) - 1
    print(f"fuzzed node holds {held} events, every one re-verified")
    adv_tally.add("fuzz-http-verify", held)
