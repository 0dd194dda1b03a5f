"""Tests for the negentropy v1 engine (protocol/negentropy.py, spec 0005 §Set reconciliation).

Known-answer vectors pin the wire format (they were checked byte for byte against
nostr-tools' nip77, and the interop tests keep checking that); reconciliation tests
assert that have/need are exactly the true set differences; property tests throw
random sets and hostile bytes at the engine.
"""

from __future__ import annotations

import ast
import hashlib
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import NegentropyError
from protocol.negentropy import (
    BUCKETS,
    FINGERPRINT_SIZE,
    ID_LIST_THRESHOLD,
    INFINITY_TIMESTAMP,
    PROTOCOL_VERSION,
    Mode,
    Negentropy,
    NegentropyStorage,
    decode_varint,
    encode_varint,
    fingerprint,
)

Item = tuple[int, bytes]
MS_BASE = 1_700_000_000_000  # Murmur timestamps are milliseconds


# -- helpers ----------------------------------------------------------------------------


def vector_items(count: int, per_timestamp: int = 3, base: int = 1_700_000_000) -> list[Item]:
    """Deterministic items; several share a timestamp so bounds need id prefixes."""
    return [
        (base + i // per_timestamp, hashlib.sha256(b"murmur-negentropy-vector-%d" % i).digest())
        for i in range(count)
    ]


def make_sets(size: int, diff: str, seed: int) -> tuple[list[Item], list[Item]]:
    """Two sets of `size` items each; `diff` is "0", "1%", "50%" or "disjoint".

    With p > 0, round(p * size) items (at least one) of each side are replaced by items
    only that side holds. Timestamps collide often, to exercise prefix bounds.
    """
    rng = random.Random(seed)

    def new_item() -> Item:
        return MS_BASE + rng.randrange(max(1, size // 2)), rng.randbytes(32)

    if diff == "disjoint":
        return [new_item() for _ in range(size)], [new_item() for _ in range(size)]
    shared = [new_item() for _ in range(size)]
    fraction = {"0": 0.0, "1%": 0.01, "50%": 0.5}[diff]
    changed = 0 if fraction == 0 or size == 0 else max(1, round(fraction * size))
    client = shared[: size - changed] + [new_item() for _ in range(changed)]
    server = shared[: size - changed] + [new_item() for _ in range(changed)]
    return client, server


def reconcile_sets(
    client_items: list[Item], server_items: list[Item], frame_size_limit: int = 0
) -> tuple[set[bytes], set[bytes], list[bytes]]:
    """Run a whole session in process; return (have, need, every message in order)."""
    client = Negentropy(NegentropyStorage.from_items(client_items), frame_size_limit)
    server = Negentropy(NegentropyStorage.from_items(server_items), frame_size_limit)
    have: set[bytes] = set()
    need: set[bytes] = set()
    message: bytes | None = client.initiate()
    transcript: list[bytes] = []
    rounds = 0
    while message is not None:
        transcript.append(message)
        reply = server.reconcile(message)
        transcript.append(reply)
        message, new_have, new_need = client.reconcile_client(reply)
        if not frame_size_limit:
            # Unlimited frames settle each range once; with a limit the reference may
            # revisit a range after a cut and report an id again (callers dedupe).
            assert not have.intersection(new_have) and not need.intersection(new_need)
        have.update(new_have)
        need.update(new_need)
        rounds += 1
        assert rounds < 10_000, "reconciliation does not terminate"
    if frame_size_limit:
        assert max(len(m) for m in transcript) <= frame_size_limit
    return have, need, transcript


def true_difference(client_items: list[Item], server_items: list[Item]) -> tuple[set[bytes], ...]:
    ours = {item_id for _, item_id in client_items}
    theirs = {item_id for _, item_id in server_items}
    return ours - theirs, theirs - ours


# -- varints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8100"),
        (16383, "ff7f"),
        (16384, "818000"),
        (2**32, "9080808000"),
        (2**64 - 1, "81ffffffffffffffff7f"),
    ],
)
def test_varint_known_encodings(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=4))
def test_varint_roundtrip(value: int, trailer: bytes) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + trailer) == (value, len(encoded))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "empty"),
        ("81", "truncated"),
        ("ffff", "truncated"),
        ("8001", "non-minimal leading digit"),
        ("82808080808080808000", "65 bits"),
        ("8181818181818181818101", "11 bytes"),
    ],
)
def test_varint_rejects(data: str, reason: str) -> None:
    with pytest.raises(NegentropyError):
        decode_varint(bytes.fromhex(data))


@pytest.mark.parametrize("value", [-1, 2**64])
def test_varint_encode_out_of_range(value: int) -> None:
    with pytest.raises(NegentropyError):
        encode_varint(value)


# -- fingerprints -------------------------------------------------------------------------


def test_fingerprint_of_empty_set() -> None:
    # SHA-256 of 32 zero bytes (the sum) and varint(0), first 16 bytes.
    assert fingerprint([]).hex() == "7f9c9e31ac8256ca2f258583df262dbc"


def test_fingerprint_sums_little_endian_mod_2_256() -> None:
    ones = b"\xff" * 32
    two = (2).to_bytes(32, "little")
    # (2^256 - 1) + 2 wraps to 1; the count (2) is hashed too.
    expected = hashlib.sha256((1).to_bytes(32, "little") + b"\x02").digest()[:FINGERPRINT_SIZE]
    assert fingerprint([ones, two]) == expected
    assert fingerprint([two, ones]) == expected  # order never matters
    # Little-endian: 0x01 then 31 zero bytes is the integer 1, not 2^248.
    assert (
        fingerprint([(1).to_bytes(32, "little")])
        == hashlib.sha256((1).to_bytes(32, "little") + b"\x01").digest()[:FINGERPRINT_SIZE]
    )


def test_storage_fingerprint_matches_direct_sum_for_every_range() -> None:
    items = vector_items(70)
    storage = NegentropyStorage.from_items(items)
    ids = [storage.id(i) for i in range(len(storage))]
    for lower in range(0, 71, 3):
        for upper in range(lower, 71, 5):
            assert storage.fingerprint(lower, upper) == fingerprint(ids[lower:upper])


# -- known messages -----------------------------------------------------------------------

# Two items, fewer than 2*BUCKETS: the initiate message is one IdList up to infinity.
# Checked against nostr-tools 2.25.2 nip77.
TWO_ITEMS_INITIATE = "6100000202" + "ab" * 32 + "cd" * 32

# vector_items(40): 16 fingerprint buckets (40 = 16*2 + 8: eight buckets of 3, eight of
# 2), bounds with id prefixes where neighbours share a timestamp. Checked against
# nostr-tools 2.25.2 nip77.
FORTY_ITEMS_INITIATE = (
    "6186aacfe2020001dcc8f9d346f5c455dcf35c8c1908350a020001c9f113500e2b9e2c0483dd243312934d"
    "02000110eef704472ccd44a0a2288ceaaf0fb8020001ede5e456d636d6388e35bcb24b7c9a1e0200014621"
    "a583f49c167f951f669033d32f35020001b4172a7232eef5a1ad093de5a9fbace2020001b29e46a43a6e75"
    "b76f1496022769c190020001200005b7f15d7c67352acb732c493ca00101da012366e81f6322cd5743184a"
    "892a2bb73302018b010b1f46fcb3fae844c6a807c25e89e18502000178c1148df4f278a0d0a1fcd7713e35"
    "a20101e201747606a58544ad4d4901ebd8f0775dd702019f019d392574cdb8f6c0fb8fec06025231bf0200"
    "01a7a823ef746bb38661367d68fde2f4340101fe01f81d0fd3fb6592c427a44cad2ebd0f90000001108"
    "48edf3a9cf937837c1133a4613bc5"
)


def test_initiate_two_items_known_bytes() -> None:
    storage = NegentropyStorage.from_items([(1001, b"\xcd" * 32), (1000, b"\xab" * 32)])
    assert Negentropy(storage).initiate().hex() == TWO_ITEMS_INITIATE


def test_initiate_forty_items_known_bytes() -> None:
    message = Negentropy(NegentropyStorage.from_items(vector_items(40))).initiate()
    assert message.hex() == FORTY_ITEMS_INITIATE
    # Structure: version, then exactly BUCKETS fingerprint ranges.
    assert message[0] == PROTOCOL_VERSION
    assert message.count(bytes((Mode.FINGERPRINT,))) >= BUCKETS


def test_initiate_empty_storage() -> None:
    # Infinity bound (00), no prefix (00), IdList (02) of zero ids (00).
    assert Negentropy(NegentropyStorage.from_items([])).initiate().hex() == "6100000200"


def test_server_answers_full_range_id_list_with_its_ids() -> None:
    # The reference's protocol-version test message: one range up to infinity holding an
    # empty IdList; the server answers with an IdList of everything it has.
    server = Negentropy(NegentropyStorage.from_items([(12345, b"\xee" * 32)]))
    assert server.reconcile(bytes.fromhex("6100000200")).hex() == "6100000201" + "ee" * 32


@pytest.mark.parametrize("version", [0x60, 0x62, 0x6F])
def test_server_negotiates_version(version: int) -> None:
    server = Negentropy(NegentropyStorage.from_items([(12345, b"\xee" * 32)]))
    assert server.reconcile(bytes((version,)) + b"\xaa\xbb\xcc") == b"\x61"
    # The session stays usable: the client retries in v1.
    assert server.reconcile(bytes.fromhex("6100000200")).hex() == "6100000201" + "ee" * 32


def test_client_refuses_other_version() -> None:
    client = Negentropy(NegentropyStorage.from_items([]))
    client.initiate()
    with pytest.raises(NegentropyError):
        client.reconcile_client(b"\x62")


def test_client_done_on_bare_version_byte() -> None:
    client = Negentropy(NegentropyStorage.from_items(vector_items(3)))
    client.initiate()
    assert client.reconcile_client(b"\x61") == (None, [], [])


def test_bound_timestamps_are_delta_encoded() -> None:
    # Items at ms timestamps; server answers an IdList for [0, infinity) whose single
    # range is cut by the frame limit: the cut bound is a full item (ts delta + 32-byte
    # id), then the rest goes as a fingerprint up to infinity (00 00 01 ...).
    items = [(MS_BASE + i, bytes([i]) * 32) for i in range(1, 200)]
    server = Negentropy(NegentropyStorage.from_items(items), frame_size_limit=4096)
    reply = server.reconcile(bytes.fromhex("6100000200"))
    assert len(reply) <= 4096
    body = reply[1:]
    # First range: IdList ending at a full bound.
    encoded_ts, pos = decode_varint(body)
    prefix_len, pos = decode_varint(body, pos)
    assert prefix_len == 32
    cut_ts = encoded_ts - 1  # delta from 0
    assert cut_ts >= MS_BASE
    mode, pos = decode_varint(body, pos + 32)
    assert mode == Mode.ID_LIST
    count, pos = decode_varint(body, pos)
    assert body[pos + 32 * count :][:3] == b"\x00\x00\x01"  # infinity, no prefix, fingerprint
    assert len(body) == pos + 32 * count + 3 + FINGERPRINT_SIZE


# -- reconciliation -----------------------------------------------------------------------

SIZES = [0, 1, 1000]
DIFFS = ["0", "1%", "50%", "disjoint"]


@pytest.mark.parametrize("frame_size_limit", [0, 4096])
@pytest.mark.parametrize("diff", DIFFS)
@pytest.mark.parametrize("size", SIZES)
def test_reconcile_matrix(size: int, diff: str, frame_size_limit: int) -> None:
    client_items, server_items = make_sets(size, diff, seed=size * 7 + len(diff))
    have, need, _ = reconcile_sets(client_items, server_items, frame_size_limit)
    assert (have, need) == true_difference(client_items, server_items)


@pytest.mark.parametrize("frame_size_limit", [0, 4096])
def test_reconcile_50k_one_percent(frame_size_limit: int) -> None:
    client_items, server_items = make_sets(50_000, "1%", seed=50)
    have, need, transcript = reconcile_sets(client_items, server_items, frame_size_limit)
    assert (have, need) == true_difference(client_items, server_items)
    assert len(have) == len(need) == 500
    total = sum(len(m) for m in transcript)
    if frame_size_limit == 0:
        # Two round trips, and well under the 1.6 MB of shipping one side's ids: 1000
        # scattered differences each cost about one IdList of ~25 ids.
        assert len(transcript) == 4
        assert total < 32 * 50_000 // 3
    else:
        assert total < 32 * 50_000


def test_identical_sets_finish_in_one_round() -> None:
    items = vector_items(5000)
    have, need, transcript = reconcile_sets(items, items)
    assert (have, need) == (set(), set())
    assert len(transcript) == 2
    assert transcript[1] == b"\x61"  # everything matched: the server skips it all


def test_many_items_on_one_timestamp() -> None:
    # Every bound between buckets is an id prefix.
    rng = random.Random(3)
    shared = [(MS_BASE, rng.randbytes(32)) for _ in range(3000)]
    client = shared + [(MS_BASE, rng.randbytes(32)) for _ in range(20)]
    server = shared + [(MS_BASE, rng.randbytes(32)) for _ in range(20)]
    for limit in (0, 4096):
        have, need, _ = reconcile_sets(client, server, limit)
        assert (have, need) == true_difference(client, server)


def test_ids_sharing_long_prefixes() -> None:
    # Neighbours that agree on 31 bytes force 32-byte prefix bounds.
    base = b"\x42" * 31
    client = [(7, base + bytes([i])) for i in range(0, 200, 2)]
    server = [(7, base + bytes([i])) for i in range(0, 200, 3)]
    have, need, _ = reconcile_sets(client, server)
    assert (have, need) == true_difference(client, server)


item_ids = st.binary(min_size=32, max_size=32)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.dictionaries(
        item_ids,
        st.tuples(st.integers(min_value=0, max_value=40), st.sampled_from(["c", "s", "b"])),
        max_size=300,
    ),
    big_timestamps=st.booleans(),
    frame_size_limit=st.sampled_from([0, 4096]),
)
def test_random_sets_reconcile(
    items: dict[bytes, tuple[int, str]], big_timestamps: bool, frame_size_limit: int
) -> None:
    offset = 2**63 if big_timestamps else 0
    client = [(ts + offset, i) for i, (ts, side) in items.items() if side in "cb"]
    server = [(ts + offset, i) for i, (ts, side) in items.items() if side in "sb"]
    have, need, _ = reconcile_sets(client, server, frame_size_limit)
    assert (have, need) == true_difference(client, server)


# -- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("", "empty message"),
        ("5f", "invalid protocol version"),  # below the negentropy range
        ("70", "invalid protocol version"),  # above it
        ("610000", "truncated varint"),  # no mode
        ("61000003", "unknown mode 3"),
        ("61000004", "unknown mode 4"),  # v0's UnsupportedProtocolVersion
        ("610021" + "00" * 33 + "00", "longer than 32 bytes"),
        ("61000201", "truncated bound id prefix"),
        ("61000001" + "00" * 15, "truncated fingerprint"),
        ("6100000205" + "00" * 64, "id list longer than the message"),
        ("61000002ffffffffffffffffff7f", "exceeds 64 bits"),
        ("6101" + "02aabb" + "00" + "01" + "01aa" + "00", "out of order"),
        ("6100" + "01bb" + "00" + "00" + "01aa" + "00", "out of order"),  # past infinity
        ("6181", "truncated varint"),
        ("618001", "non-minimal varint"),
        ("6101" + "8181818181818181818101", "longer than 10 bytes"),
    ],
)
def test_malformed_messages_rejected(message: str, match: str) -> None:
    data = bytes.fromhex(message)
    server = Negentropy(NegentropyStorage.from_items(vector_items(50)))
    with pytest.raises(NegentropyError, match=match):
        server.reconcile(data)
    client = Negentropy(NegentropyStorage.from_items(vector_items(50)))
    client.initiate()
    with pytest.raises(NegentropyError, match=match):
        client.reconcile_client(data)


def test_equal_consecutive_bounds_are_accepted() -> None:
    # The reference emits (infinity, fingerprint) right after an infinity range when a
    # frame limit cuts the last range: equal bounds must parse.
    server = Negentropy(NegentropyStorage.from_items(vector_items(5)))
    empty_fp = fingerprint([]).hex()
    reply = server.reconcile(bytes.fromhex("61000000000001" + empty_fp))
    assert reply[0] == PROTOCOL_VERSION


def _session_messages() -> list[bytes]:
    client_items, server_items = make_sets(300, "50%", seed=9)
    return reconcile_sets(client_items, server_items, 4096)[2]


SESSION_MESSAGES = _session_messages()


def _feed_both_roles(data: bytes) -> None:
    server = Negentropy(NegentropyStorage.from_items(vector_items(100, per_timestamp=7)))
    client = Negentropy(NegentropyStorage.from_items(vector_items(60)), 4096)
    client.initiate()
    for call in (server.reconcile, client.reconcile_client):
        try:
            call(data)
        except NegentropyError:
            pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_negentropy_error(data: bytes) -> None:
    _feed_both_roles(data)
    _feed_both_roles(b"\x61" + data)


@settings(max_examples=500, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(SESSION_MESSAGES) - 1),
    edits=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete", "cut"]), st.integers(0, 2**16)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_messages_only_raise_negentropy_error(
    index: int, edits: list[tuple[str, int]]
) -> None:
    data = bytearray(SESSION_MESSAGES[index])
    for kind, value in edits:
        at = value % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << (value % 8)
        elif kind == "insert":
            data.insert(at, value & 0xFF)
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "cut":
            del data[at:]
    _feed_both_roles(bytes(data))


# -- API contract -------------------------------------------------------------------------


def test_storage_rejects_bad_items() -> None:
    storage = NegentropyStorage()
    with pytest.raises(NegentropyError):
        storage.insert(1, b"\x00" * 31)
    with pytest.raises(NegentropyError):
        storage.insert(INFINITY_TIMESTAMP, b"\x00" * 32)  # reserved for infinity
    with pytest.raises(NegentropyError):
        storage.insert(-1, b"\x00" * 32)
    storage.insert(1, b"\x01" * 32)
    storage.insert(1, b"\x01" * 32)
    with pytest.raises(NegentropyError):
        storage.seal()  # duplicate
    with pytest.raises(NegentropyError):
        storage.insert(2, b"\x02" * 32)  # sealed (even a failed seal ends insertion)


def test_engine_contract() -> None:
    unsealed = NegentropyStorage()
    with pytest.raises(NegentropyError):
        Negentropy(unsealed)
    storage = NegentropyStorage.from_items(vector_items(3))
    with pytest.raises(NegentropyError):
        Negentropy(storage, frame_size_limit=4095)
    client = Negentropy(storage)
    client.initiate()
    with pytest.raises(NegentropyError):
        client.initiate()
    with pytest.raises(NegentropyError):
        client.reconcile(b"\x61")
    server = Negentropy(storage)
    with pytest.raises(NegentropyError):
        server.reconcile_client(b"\x61")


def test_storage_sorts_by_timestamp_then_id() -> None:
    items = [(5, b"\x02" * 32), (5, b"\x01" * 32), (4, b"\xff" * 32)]
    storage = NegentropyStorage.from_items(items)
    assert [(storage.timestamp(i), storage.id(i)) for i in range(3)] == sorted(items)


def test_id_list_threshold_is_twice_the_buckets() -> None:
    assert (BUCKETS, ID_LIST_THRESHOLD) == (16, 32)
    below = Negentropy(NegentropyStorage.from_items(vector_items(31))).initiate()
    at = Negentropy(NegentropyStorage.from_items(vector_items(32))).initiate()
    assert below[3] == Mode.ID_LIST and len(below) == 1 + 3 + 1 + 31 * 32
    assert at.count(b"\x01") >= BUCKETS and len(at) < 31 * 32


def test_module_imports_only_stdlib_and_errors() -> None:
    # spec: protocol/ is pure; the engine may use the stdlib and protocol.errors only.
    protocol_dir = Path(__file__).parents[2] / "protocol"
    modules: set[str] = set()
    nodes = [
        node
        for name in ("negentropy.py", "negentropy_storage.py")
        for node in ast.walk(ast.parse((protocol_dir / name).read_text()))
    ]
    for node in nodes:
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    for name in modules:
        top = name.split(".")[0]
        assert (
            top in sys.stdlib_module_names
            or name.startswith("protocol.negentropy")
            or (name == "protocol.errors")
        ), name


def test_spec_worked_example() -> None:
    # specs/0005-federation.md#negentropy-example, byte for byte.
    t = 1_700_000_000_000
    a, b, c, d = (bytes([x]) * 32 for x in (0xAA, 0xBB, 0xCC, 0xDD))
    client = Negentropy(NegentropyStorage.from_items([(t, a), (t + 250, b), (t + 250, c)]))
    server = Negentropy(NegentropyStorage.from_items([(t, a), (t + 250, b), (t + 900, d)]))
    query = client.initiate()
    assert query == bytes.fromhex("6100000203") + a + b + c
    reply = server.reconcile(query)
    assert reply == bytes.fromhex("6100000203") + a + b + d
    assert client.reconcile_client(reply) == (None, [c], [d])
    assert fingerprint([a, b]).hex() == "2e77f59864f98c80d0cef0915e063b05"

    items = [(t + 1000 * (i // 4), hashlib.sha256(b"murmur-%d" % i).digest()) for i in range(40)]
    message = Negentropy(NegentropyStorage.from_items(items)).initiate()
    assert len(message) == 329
    assert message.startswith(
        bytes.fromhex(
            "61"
            "b1bcff95d001"
            "01e5"
            "01b1e46ab2935a174fa64aae35fb84c82e"
            "8769"
            "01dc"
            "01c757a946abd74b1ae62d6e4d42d29387"
            "8769"
            "0140"
            "010637e92046c7cd40f1b8d0db743b1d1e"
        )
    )
    assert message.endswith(bytes.fromhex("000001f988bc8c383f0e79b33754d7509b4c11"))
    assert Negentropy(NegentropyStorage.from_items([])).reconcile(bytes.fromhex("62aabb")) == b"a"


def test_from_sorted_matches_from_items_and_refuses_disorder() -> None:
    import random

    rng = random.Random(7)
    items = sorted({(rng.randrange(5), rng.randbytes(32)) for _ in range(3000)})
    streamed = NegentropyStorage.from_sorted(iter(items))
    sorted_copy = NegentropyStorage.from_items(reversed(items))
    assert len(streamed) == len(sorted_copy) == len(items)
    for lo, hi in [(0, len(items)), (0, 1), (17, 2900), (1024, 2048), (5, 5)]:
        assert streamed.fingerprint(lo, hi) == sorted_copy.fingerprint(lo, hi)
    assert streamed.ids(0, len(items)) == sorted_copy.ids(0, len(items))
    with pytest.raises(NegentropyError):
        NegentropyStorage.from_sorted([items[1], items[0]])
    with pytest.raises(NegentropyError):
        NegentropyStorage.from_sorted([items[0], items[0]])
    with pytest.raises(NegentropyError):
        NegentropyStorage.from_sorted([(0, b"short")])
