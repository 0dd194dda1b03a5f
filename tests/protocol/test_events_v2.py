"""v2 events of did:murmur authors (spec 0008 #header-v2, #signature-v2, #key-events).

Only what needs no key state: the header, the signature by ``key``, the binding of a
key event's body to its header, the opt-in, and the signing helpers.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import decode, encode
from protocol.errors import (
    BadFieldError,
    BodyRequiredError,
    InvalidDidError,
    ProtocolError,
    UnsupportedVersionError,
)
from protocol.events import (
    Event,
    Header,
    HeaderV2,
    claimed_id,
    claimed_id_kev,
    claimed_kev,
    decode_event,
    decode_unverified,
    sign_event,
    sign_event_v2,
    sign_genesis,
    try_decode_event,
)
from protocol.identity import Identity, did_murmur_from_genesis_body, next_key_commitment
from protocol.limits import MAX_TS

from .conftest import NOW
from .test_vectors import INVALID as V1_INVALID
from .test_vectors import VALID as V1_VALID


def _key(n: int) -> Identity:
    return Identity.from_seed(bytes([n]) * 32)


S1, N1, R0, R1, S2, N2 = (_key(0x40 + i) for i in range(6))


def _genesis(**kw: Any) -> Event:
    return sign_genesis(S1, next_key=N1.public.raw, recovery=[R0.public.raw], ts=NOW, **kw)


GENESIS = _genesis()
DID = GENESIS.author


def _post(text: str = "hi", *, seq: int = 2, ts: int = NOW, signer: Identity = S1) -> Event:
    return sign_event_v2(
        signer,
        author=DID,
        kind="post",
        body={"text": text},
        seq=seq,
        prev=GENESIS.id,
        kev=GENESIS.id,
        ts=ts,
    )


def _decode(event: Event) -> Event:
    return decode_event(event.wire, now_ms=NOW, allow_v2=True)


def test_v2_is_off_by_default() -> None:
    """A checker that does not check key states keeps answering unsupported-version."""
    for event in (GENESIS, _post()):
        with pytest.raises(UnsupportedVersionError):
            decode_event(event.wire, now_ms=NOW)
        with pytest.raises(UnsupportedVersionError):
            decode_unverified(event.wire)
        assert isinstance(try_decode_event(event.wire, now_ms=NOW), UnsupportedVersionError)
        assert try_decode_event(event.wire, now_ms=NOW, allow_v2=True) == event


def test_genesis_names_its_own_did() -> None:
    """spec 0008 #genesis, #did-murmur."""
    assert GENESIS.author == did_murmur_from_genesis_body(GENESIS.body_bytes or b"")
    assert GENESIS.body == {
        "signing": S1.public.raw,
        "next": next_key_commitment(N1.public.raw),
        "recovery": [R0.public.raw],
    }
    assert (GENESIS.key, GENESIS.kev, GENESIS.seq, GENESIS.prev) == (S1.public.raw, None, 1, None)
    assert _decode(GENESIS) == GENESIS
    moved = _genesis(from_did=Identity.from_seed(bytes(32)).did)
    assert moved.author != DID  # `from` is in the body, so in the did


def test_v2_header_bytes_have_the_ten_keys_in_canonical_order() -> None:
    """spec 0008 #header-v2: author, body, kev, key, kind, ... (kev < key bytewise)."""
    keys = list(decode(_post().header_bytes))
    assert keys == ["author", "body", "kev", "key", "kind", "net", "prev", "seq", "ts", "v"]


def test_v1_events_have_no_key_or_kev() -> None:
    alice = Identity.from_seed(bytes(32))
    event = sign_event(alice, kind="post", body={"text": "x"}, seq=1, prev=None, ts=NOW)
    assert event.key is None and event.kev is None
    assert "key" not in event.header.to_map()
    # A v1 header cannot be built as v2, nor a v2 one as v1.
    with pytest.raises(UnsupportedVersionError):
        Header(**{**_header_kwargs(event), "v": 2})
    with pytest.raises(UnsupportedVersionError):
        HeaderV2(**_header_kwargs(event), key=S1.public.raw, kev=GENESIS.id)
    assert isinstance(_post().header, HeaderV2)


def _header_kwargs(event: Event) -> dict[str, Any]:
    h = event.header
    return {
        "v": h.v,
        "net": h.net,
        "author": h.author,
        "seq": h.seq,
        "prev": h.prev,
        "ts": h.ts,
        "kind": h.kind,
        "body_hash": h.body_hash,
    }


def test_allow_v2_changes_nothing_for_v1() -> None:
    """Opting in to v2 leaves every v1 vector's outcome as it was, except a bare
    `v: 2` with the v1 key set, which is now a v2 header missing `key` and `kev`."""
    for case in V1_VALID:
        wire = bytes.fromhex(case["wire"])
        kw = {"net": case["net"], "now_ms": case["now_ms"]}
        assert decode_event(wire, allow_v2=True, **kw) == decode_event(wire, **kw)
    for case in V1_INVALID:
        outcome = try_decode_event(
            bytes.fromhex(case["wire"]), net=case["net"], now_ms=case["now_ms"], allow_v2=True
        )
        assert isinstance(outcome, ProtocolError)
        expected = "bad-field" if case["error"] == "unsupported-version" else case["error"]
        assert outcome.code == expected, case["comment"]


def test_signing_refuses_what_decoding_rejects() -> None:
    alice = Identity.from_seed(bytes(32))
    body = {"signing": S2.public.raw, "next": next_key_commitment(N2.public.raw)}
    common: dict[str, Any] = {"seq": 2, "prev": GENESIS.id, "ts": NOW}
    with pytest.raises(InvalidDidError):  # a v2 author is a did:murmur
        sign_event_v2(
            alice, author=alice.did, kind="post", body={"text": "x"}, kev=GENESIS.id, **common
        )
    with pytest.raises(BadFieldError):  # kev nil iff genesis
        sign_event_v2(S1, author=DID, kind="post", body={"text": "x"}, kev=None, **common)
    with pytest.raises(BadFieldError):  # a rotate never carries recovery
        sign_event_v2(
            N1,
            author=DID,
            kind="rotate",
            body={**body, "recovery": [R1.public.raw]},
            kev=GENESIS.id,
            **common,
        )
    with pytest.raises(BadFieldError):  # N signs one rotate and is destroyed
        sign_event_v2(
            N1,
            author=DID,
            kind="rotate",
            body={**body, "signing": N1.public.raw},
            kev=GENESIS.id,
            **common,
        )
    with pytest.raises(InvalidDidError):  # a genesis is signed by its own signing key
        sign_event_v2(
            N1,
            author=DID,
            kind="genesis",
            body=GENESIS.body or {},
            seq=1,
            prev=None,
            kev=None,
            ts=NOW,
        )
    with pytest.raises(BadFieldError):  # 0 recovery keys
        sign_genesis(S1, next_key=N1.public.raw, recovery=[], ts=NOW)
    with pytest.raises(BadFieldError):  # N = S
        sign_genesis(S1, next_key=S1.public.raw, recovery=[R0.public.raw], ts=NOW)


def test_a_v1_signature_never_verifies_as_v2() -> None:
    """spec 0008 #signature-v2: the domains differ, so a signature cannot cross."""
    post = _post()
    v1_sig = S1.sign(b"murmur-event-v1:" + post.id)
    forged = encode([post.header_bytes, v1_sig, post.body_bytes])
    outcome = try_decode_event(forged, now_ms=NOW, allow_v2=True)
    assert isinstance(outcome, ProtocolError) and outcome.code == "invalid-signature"


def test_body_less_key_events_are_retryable_and_ordinary_ones_valid() -> None:
    """spec 0008 #key-event-body: stripping a key event's body (anyone can) must not
    get its id remembered as bad."""
    with pytest.raises(BodyRequiredError) as info:
        _decode(GENESIS.without_body())
    assert info.value.retryable
    bodyless = _post().without_body()
    assert _decode(bodyless) == bodyless


@given(
    text=st.text(max_size=200),
    seq=st.integers(min_value=2, max_value=2**63 - 1),
    ts=st.integers(min_value=0, max_value=NOW),
)
@settings(max_examples=60, deadline=None)
def test_v2_round_trip(text: str, seq: int, ts: int) -> None:
    event = _post(text, seq=seq, ts=ts)
    again = _decode(event)
    assert again == event
    assert (again.key, again.kev, again.author) == (S1.public.raw, GENESIS.id, DID)
    assert again.wire == event.wire


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
@settings(max_examples=300, deadline=None)
def test_mutated_v2_events_only_raise_protocol_errors(pos: int, byte: int) -> None:
    wire = bytearray(GENESIS.wire)
    wire[pos % len(wire)] = byte
    try:
        decode_event(bytes(wire), now_ms=MAX_TS, allow_v2=True)
    except ProtocolError:
        pass


def _claims(wire: bytes) -> tuple[bytes | None, bytes | None]:
    claim = claimed_kev(wire)
    return claimed_id(wire), None if claim is None else claim[1]


def test_claimed_id_kev_reads_what_the_two_decodes_read() -> None:
    """spec 0004 #ingest-v2: the node's pre-check claims (id, kev) from one decode;
    the kev bytes read in place are those of the decoded header, for v1 events,
    geneses, v2 events, mutated wires, and a header where the kev field's bytes also
    occur inside another value (then the header is decoded). Any other header holds
    its kev field's bytes once: a str value is UTF-8, where 0xc4 needs a continuation."""
    v1 = sign_event(
        Identity.from_seed(bytes(32)), kind="post", body={"text": "x"}, seq=1, prev=None, ts=NOW
    )
    post = _post()
    assert claimed_id_kev(post.wire) == (post.id, GENESIS.id)
    assert claimed_id_kev(GENESIS.wire) == (GENESIS.id, None)
    assert claimed_id_kev(v1.wire) == (v1.id, None)
    assert claimed_id_kev(b"\x93") == (None, None)
    # The bytes of a kev field inside prev, ahead of the real field (author < kev).
    decoy = b"\xa3kev\xc4\x20" + bytes(26)
    twice = dict(decode(post.header_bytes), author="did:murmur:x" + decoy.hex(), prev=decoy)
    wire = encode([encode(twice), post.sig, None])
    assert claimed_id_kev(wire) == _claims(wire) == (claimed_id(wire), GENESIS.id)
    for n in range(0, len(post.wire), 7):
        for byte in (0x00, 0xC4, 0xFF):
            mutated = bytearray(post.wire)
            mutated[n] = byte
            eid, kev = claimed_id_kev(bytes(mutated))
            want_id, want_kev = _claims(bytes(mutated))
            # A header that no longer decodes may still be claimed a kev (its event
            # is refused either way); one that decodes is claimed its own.
            assert eid == want_id and (want_kev is None or kev == want_kev), n
