"""Regenerate the conformance vectors in ``specs/vectors/`` (specs/README.md, "Vectors").

Deterministic: fixed seeds, fixed timestamps, deterministic Ed25519, and a fixed JSON
layout, so running it twice writes identical files. ``--check`` writes nothing and
exits 1 if a committed file differs from what this script would generate (a test runs
:func:`check` so vectors and code cannot drift apart).

Valid events are built with :func:`protocol.sign_event`. Invalid events are built by
hand: the library refuses to sign what it would reject, so the script assembles header
and body bytes itself (hand-written MessagePack where the point is a non-canonical
form) and signs ids with the author's key directly, keeping every signature valid
unless the case is about the signature. Each invalid case breaks one rule, except the
``order:`` cases, which break several to pin the validation order (spec 0002 §2.8).

JSON conventions: bytes are lowercase hex strings where the type is fixed (header
fields, wire, ids); inside free-form values (bodies, encoding cases) bytes are
``{"$bytes": "<hex>"}`` and integers outside +-(2**53 - 1) are ``{"$int": "<decimal>"}``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/gen_vectors.py` from anywhere
    sys.path.insert(0, str(ROOT))

from protocol.chain import analyze_chain  # noqa: E402
from protocol.encoding import encode  # noqa: E402
from protocol.events import (  # noqa: E402
    Event,
    event_id,
    sign_event,
    sign_event_v2,
    sign_genesis,
    signing_message,
    signing_message_v2,
)
from protocol.identity import (  # noqa: E402
    Identity,
    did_murmur_from_genesis_body,
    next_key_commitment,
)
from protocol.limits import (  # noqa: E402
    FUTURE_SKEW_MS,
    MAX_ALT_BYTES,
    MAX_BLOB_BYTES,
    MAX_FEED_DESCRIPTION_BYTES,
    MAX_FEED_NAME_BYTES,
    MAX_FEED_NODE_URL_BYTES,
    MAX_FEED_NODES,
    MAX_IMAGE_SIDE,
    MAX_LABEL_BYTES,
    MAX_TEXT_BYTES,
    MAX_TS,
    MAX_WIRE_BYTES,
)

if str(ROOT / "scripts") not in sys.path:  # the sibling module of the key histories
    sys.path.insert(0, str(ROOT / "scripts"))
from blob_vectors import (  # noqa: E402
    GIF89A_1X1,
    JPEG_BASELINE_3X2,
    PNG_RGB_3X2,
    WEBP_LOSSY_3X2,
    blob_vectors,
)
from key_history_vectors import key_history_cases, keys_json  # noqa: E402

VECTORS = ROOT / "specs" / "vectors"

#: 2026-01-01T00:00:00Z: every event is stamped relative to this, never the wall clock.
T0 = 1_767_225_600_000
#: The checker's clock for every case unless a case says otherwise.
NOW = T0 + 3_600_000

SEED_ALICE = bytes(32)  # the W3C did:key vector with seed 00..00 (spec 0001 §1.5)
SEED_BOB = bytes(31) + b"\x01"
SEED_CAROL = bytes(31) + b"\x02"
ALICE = Identity.from_seed(SEED_ALICE)
BOB = Identity.from_seed(SEED_BOB)
CAROL = Identity.from_seed(SEED_CAROL)
#: The X25519 key-agreement did of the W3C seed-00..00 vector: well-formed did:key,
#: wrong multicodec (0xec), so not an Ed25519 identity.
X25519_DID = "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW"
JSON_SAFE = 2**53 - 1


# -- JSON helpers -----------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A decoded canonical value as JSON: bytes and big ints are tagged."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -JSON_SAFE <= value <= JSON_SAFE else {"$int": str(value)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    raise TypeError(f"no JSON form for {type(value).__name__}")


def header_json(event: Event) -> dict[str, Any]:
    h = event.header
    out: dict[str, Any] = {
        "v": h.v,
        "net": h.net,
        "author": h.author,
        "seq": h.seq,
        "prev": None if h.prev is None else h.prev.hex(),
        "ts": h.ts,
        "kind": h.kind,
        "body": h.body_hash.hex(),
    }
    if h.v == 2:  # spec 0008 #header-v2; v1 cases keep their exact JSON
        out["key"] = None if h.key is None else h.key.hex()
        out["kev"] = None if h.kev is None else h.kev.hex()
    return out


# -- hand-built MessagePack (for non-canonical forms only) ----------------------------


def raw_map(pairs: Iterable[tuple[str, bytes]]) -> bytes:
    """A map from already-encoded values, in the order given, duplicates kept."""
    items = list(pairs)
    assert len(items) <= 15
    return bytes([0x80 | len(items)]) + b"".join(encode(k) + v for k, v in items)


def wire_of(header_bytes: bytes, sig: bytes, body_bytes: bytes | None) -> bytes:
    return encode([header_bytes, sig, body_bytes])


def header_map(
    author: Identity | str,
    *,
    seq: int,
    prev: bytes | None,
    ts: int,
    kind: str,
    body_bytes: bytes,
    net: str = "murmur",
    v: int = 1,
) -> dict[str, Any]:
    return {
        "v": v,
        "net": net,
        "author": author.did if isinstance(author, Identity) else author,
        "seq": seq,
        "prev": prev,
        "ts": ts,
        "kind": kind,
        "body": hashlib.sha256(body_bytes).digest(),
    }


def signed_wire(header_bytes: bytes, body_bytes: bytes | None, signer: Identity) -> bytes:
    """Wire form with a signature by ``signer`` over the id of ``header_bytes``."""
    return wire_of(header_bytes, signer.sign(signing_message(event_id(header_bytes))), body_bytes)


def craft(
    body_bytes: bytes,
    *,
    signer: Identity = ALICE,
    mutate_header: Callable[[dict[str, Any]], None] | None = None,
    **fields: Any,
) -> bytes:
    """A signed wire event from a (possibly invalid) header map and raw body bytes."""
    defaults: dict[str, Any] = {"seq": 1, "prev": None, "ts": T0, "kind": "post"}
    defaults.update(fields)
    author = defaults.pop("author", signer)
    h = header_map(author, body_bytes=body_bytes, **defaults)
    if mutate_header is not None:
        mutate_header(h)
    return signed_wire(encode(h), body_bytes, signer)


# -- valid events -----------------------------------------------------------------------


def _id(label: str) -> bytes:
    """A stand-in 32-byte event id for targets outside the vector set."""
    return hashlib.sha256(label.encode()).digest()


def _span(text: str, part: str, after: int = 0) -> tuple[int, int]:
    """The UTF-8 byte range ``[start, end)`` of the first ``part`` in ``text`` at or
    after character ``after`` (facet offsets are bytes, spec 0003 #facets)."""
    i = text.index(part, after)
    start = len(text[:i].encode("utf-8"))
    return start, start + len(part.encode("utf-8"))


def _facet(kind: str, text: str, part: str, **value: Any) -> dict[str, Any]:
    start, end = _span(text, part)
    return {"type": kind, "start": start, "end": end, **value}


#: A did:murmur to mention (the hash of a stand-in genesis body).
FACET_MURMUR_DID = did_murmur_from_genesis_body(b"\x80")
#: The text of the facet cases: 2-, 3- and 4-byte characters before and between them.
FACET_TEXT = "Olá @bob! 🎉 lisez https://murmur.example/spec?x=1 #Murmur"


def _embed_image(data: bytes, mime: str, width: int, height: int, alt: str) -> dict[str, Any]:
    """The ``embed.images`` map naming ``data`` (spec 0003 #embed)."""
    return {
        "hash": hashlib.sha256(data).digest(),
        "mime": mime,
        "size": len(data),
        "width": width,
        "height": height,
        "alt": alt,
    }


#: The one-image embed of the vectors: the 3x2 PNG of blobs.json.
EMBED_PNG = _embed_image(PNG_RGB_3X2, "image/png", 3, 2, "a gradient from teal to rose")


@dataclass
class _Chain:
    """Signs consecutive events for one author, linking seq/prev."""

    identity: Identity
    seq: int = 0
    prev: bytes | None = None

    def sign(self, kind: str, body: Mapping[str, Any], ts: int, net: str = "murmur") -> Event:
        event = sign_event(
            self.identity, kind=kind, body=body, seq=self.seq + 1, prev=self.prev, ts=ts, net=net
        )
        self.seq, self.prev = event.seq, event.id
        return event


def _valid_case(
    comment: str,
    event: Event,
    seed: bytes,
    *,
    now_ms: int = NOW,
    original_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "comment": comment,
        "seed": seed.hex(),
        "net": event.net,
        "now_ms": now_ms,
        "header": header_json(event),
        "body": None if event.body is None else to_json(event.body),
    }
    if original_body is not None:
        case["original_body"] = to_json(original_body)
    case.update(
        {
            "header_bytes": event.header_bytes.hex(),
            "body_bytes": None if event.body_bytes is None else event.body_bytes.hex(),
            "id": event.id.hex(),
            "sig": event.sig.hex(),
            "wire": event.wire.hex(),
        }
    )
    return case


def valid_events() -> list[dict[str, Any]]:
    a, b, c = _Chain(ALICE), _Chain(BOB), _Chain(CAROL)
    cases: list[dict[str, Any]] = []

    def add(
        comment: str, chain: _Chain, kind: str, body: Mapping[str, Any], ts: int, **kw: Any
    ) -> Event:
        net = kw.pop("net", "murmur")
        event = chain.sign(kind, body, ts, net=net)
        seed = chain.identity.seed
        cases.append(_valid_case(comment, event, seed, **kw))
        return event

    add(
        "profile, seq 1 (prev nil); the worked example of spec 0002 §2.10",
        a,
        "profile",
        {"name": "Alice", "bio": "Testing Murmur."},
        T0,
    )
    first_post = add("post with text only", a, "post", {"text": "Hello, Murmur!"}, T0 + 1000)
    add(
        "post: reply {root, parent}, quote, tags, langs, warn (self-labels), non-ASCII text",
        a,
        "post",
        {
            "text": "Réponse — ça marche 🎉",
            "reply": {"root": first_post.id, "parent": first_post.id},
            "quote": _id("quoted"),
            "tags": ["murmur", "test"],
            "langs": ["fr", "pt-BR"],
            "warn": ["spoiler"],
        },
        T0 + 2000,
    )
    add("repost of a post", a, "repost", {"target": first_post.id}, T0 + 3000)
    add("like of a post", a, "like", {"target": first_post.id}, T0 + 4000)
    add("follow a did", a, "follow", {"subject": BOB.did}, T0 + 5000)
    add(
        "unfollow the same did (latest per subject wins)",
        a,
        "unfollow",
        {"subject": BOB.did},
        T0 + 6000,
    )
    add("delete the author's own post", a, "delete", {"target": first_post.id}, T0 + 7000)
    add(
        "list: purpose mute, two members",
        a,
        "list",
        {"name": "noisy", "purpose": "mute", "members": [BOB.did, CAROL.did]},
        T0 + 8000,
    )
    add(
        "label on an event id (a labeler is any author)",
        b,
        "label",
        {"subject": first_post.id, "val": "spam"},
        T0 + 10_000,
    )
    add(
        "label on a did with neg (retraction) and exp (expiry, ms)",
        b,
        "label",
        {"subject": ALICE.did, "val": "bot", "neg": True, "exp": T0 + 86_400_000},
        T0 + 11_000,
    )
    add(
        "unknown kind: valid, opaque map body of any canonical values",
        b,
        "org.example.poll",
        {
            "question": "Tea or coffee?",
            "options": ["tea", "coffee"],
            "n": -300,
            "big": 2**64 - 1,
            "raw": b"\x00\xff",
            "ok": False,
            "none": None,
        },
        T0 + 12_000,
    )
    add(
        "post with keys the kind does not define: allowed and ignored",
        b,
        "post",
        {"text": "extra keys", "x-client": "murmur-cli", "x-n": 7},
        T0 + 13_000,
    )
    add(
        "profile with an empty body: every profile field is optional", b, "profile", {}, T0 + 14_000
    )
    add(
        f"post text of exactly {MAX_TEXT_BYTES} UTF-8 bytes (1000 x 3-byte char)",
        b,
        "post",
        {"text": "€" * (MAX_TEXT_BYTES // 3)},
        T0 + 15_000,
    )
    add(
        "label value of exactly 128 bytes",
        b,
        "label",
        {"subject": CAROL.did, "val": "a-" * 63 + "z9"},
        T0 + 16_000,
    )
    add(
        "body nested to exactly the depth limit (body map is depth 0, deepest value depth 8)",
        b,
        "org.example.deep",
        {"x": [[[[[[[0]]]]]]]},
        T0 + 17_000,
    )
    add(
        "ts 9 minutes ahead of the checker's clock: within the allowed skew",
        c,
        "post",
        {"text": "from a fast clock"},
        NOW + 9 * 60_000,
    )
    add(
        "ts exactly 10 minutes ahead: the bound is inclusive",
        c,
        "post",
        {"text": "at the edge"},
        NOW + FUTURE_SKEW_MS,
    )
    add(
        "ts long in the past: no lower bound",
        c,
        "post",
        {"text": "from 1970"},
        0,
    )
    add(
        "non-default network, checked with that network",
        _Chain(CAROL),
        "post",
        {"text": "on a test network"},
        T0,
        net="murmur-test.1",
    )

    # A dropped body: the header still proves itself; no body hash or schema check.
    dropped_body = {"text": "soon deleted"}
    dropped = c.sign("post", dropped_body, T0 + 20_000).without_body()
    cases.append(
        _valid_case(
            "dropped body (nil): header and signature verify without it; original_body is "
            "what was signed",
            dropped,
            SEED_CAROL,
            original_body=dropped_body,
        )
    )
    # label exp at both ends of its range (spec 0003 #label-exp): appended last, so the
    # events above keep their bytes.
    add(
        "label exp = 0: the least expiry (already lapsed, still valid)",
        b,
        "label",
        {"subject": ALICE.did, "val": "bot", "exp": 0},
        T0 + 18_000,
    )
    add(
        "label exp = 2^63 - 1: the greatest expiry, the same bound as ts",
        b,
        "label",
        {"subject": ALICE.did, "val": "bot", "exp": MAX_TS},
        T0 + 19_000,
    )
    # Facets (spec 0003 #facets): appended last, so the events above keep their bytes.
    add(
        "post with facets: a mention, a link and a hashtag; offsets are UTF-8 bytes of "
        "a text with 2-, 3- and 4-byte characters",
        a,
        "post",
        {
            "text": FACET_TEXT,
            "tags": ["Murmur"],
            "facets": [
                _facet("mention", FACET_TEXT, "@bob", did=BOB.did),
                _facet("link", FACET_TEXT, "https://murmur.example/spec?x=1",
                       uri="https://murmur.example/spec?x=1"),
                _facet("tag", FACET_TEXT, "#Murmur", tag="Murmur"),
            ],
        },
        T0 + 21_000,
    )  # fmt: skip
    adjacent = "@dana#x é"
    add(
        "post facets: a did:murmur mention, two adjacent facets (end = next start), an "
        "unknown facet type overlapping them with its own keys (ignored), facets in "
        "any order",
        a,
        "post",
        {
            "text": adjacent,
            "facets": [
                {"type": "org.example.bold", "start": 0, "end": len(adjacent.encode()),
                 "weight": 700},
                _facet("tag", adjacent, "#x", tag="x"),
                _facet("mention", adjacent, "@dana", did=FACET_MURMUR_DID),
            ],
        },
        T0 + 22_000,
    )  # fmt: skip
    # Embeds (spec 0003 #embed): appended last, so the events above keep their bytes.
    add(
        "post with one embedded image: the 3x2 PNG of blobs.json, named by its SHA-256",
        a,
        "post",
        {"text": "a 3×2 picture", "embed": {"images": [EMBED_PNG]}},
        T0 + 23_000,
    )
    add(
        "post with 4 images, one of each type; an empty alt (no description), unknown "
        "keys in an image map and in embed (ignored)",
        a,
        "post",
        {
            "text": "",
            "embed": {
                "images": [
                    {**_embed_image(JPEG_BASELINE_3X2, "image/jpeg", 3, 2, ""),
                     "org.example.focus": [1, 1]},
                    _embed_image(WEBP_LOSSY_3X2, "image/webp", 3, 2, "the same, lossy"),
                    _embed_image(GIF89A_1X1, "image/gif", 1, 1, "a clear pixel"),
                    EMBED_PNG,
                ],
                "org.example.video": {"uri": "https://murmur.example/v"},
            },
        },
        T0 + 24_000,
    )  # fmt: skip
    add(
        f"post embed at the edges: size {MAX_BLOB_BYTES}, sides 1 and {MAX_IMAGE_SIDE}, "
        f"alt of {MAX_ALT_BYTES} bytes (the claims only: no blob needs to be held)",
        a,
        "post",
        {
            "text": "edges",
            "embed": {
                "images": [
                    {"hash": _id("blob at the edges"), "mime": "image/png",
                     "size": MAX_BLOB_BYTES, "width": MAX_IMAGE_SIDE, "height": 1,
                     "alt": "é" * (MAX_ALT_BYTES // 2)},
                    {"hash": _id("smallest blob"), "mime": "image/gif", "size": 1,
                     "width": 1, "height": MAX_IMAGE_SIDE, "alt": ""},
                ]
            },
        },
        T0 + 25_000,
    )  # fmt: skip
    add(
        "post embed without images: only a future embed, ignored",
        a,
        "post",
        {"text": "soon", "embed": {"org.example.video": {}}},
        T0 + 26_000,
    )
    # Labels on blobs (spec 0003 #label-blob): appended last, so the events above keep
    # their bytes.
    add(
        'label on a blob: subject_type "blob", subject the SHA-256 of the 3x2 PNG that '
        "the embed posts above name; it covers every post embedding that hash",
        b,
        "label",
        {"subject": EMBED_PNG["hash"], "subject_type": "blob", "val": "gore"},
        T0 + 27_000,
    )
    add(
        "label on a blob retracted (neg): only another blob label retracts a blob label",
        b,
        "label",
        {"subject": EMBED_PNG["hash"], "subject_type": "blob", "val": "gore", "neg": True},
        T0 + 28_000,
    )
    add(
        "label with an unknown subject_type (a future subject) on 32 bytes: valid; "
        "readers ignore the label",
        b,
        "label",
        {"subject": _id("a future subject"), "subject_type": "org.example.thing", "val": "spam"},
        T0 + 29_000,
    )
    add(
        "label with an unknown subject_type on a did: valid; readers ignore the label",
        b,
        "label",
        {"subject": ALICE.did, "subject_type": "x" * MAX_LABEL_BYTES, "val": "spam"},
        T0 + 30_000,
    )
    # Feed announcements (spec 0003 #feed): appended last, so the events above keep
    # their bytes.
    add(
        "feed: a name, a description and two nodes serving GET /v1/feeds/hot",
        a,
        "feed",
        {
            "name": "hot",
            "description": "Posts most liked and reposted in the last day",
            "nodes": ["https://node1.murmur.example", "http://127.0.0.1:8080"],
        },
        T0 + 31_000,
    )
    add(
        f"feed at the edges: a name of {MAX_FEED_NAME_BYTES} bytes using every allowed "
        f"character, no description (optional), {MAX_FEED_NODES} nodes with ports and "
        f"paths, one URL of {MAX_FEED_NODE_URL_BYTES} bytes, an unknown key (ignored)",
        a,
        "feed",
        {
            "name": ("0a_.-" + "z" * MAX_FEED_NAME_BYTES)[:MAX_FEED_NAME_BYTES],
            "nodes": [f"https://n{i}.murmur.example:8443/murmur" for i in range(
                MAX_FEED_NODES - 1)] + [
                "https://" + "n" * (MAX_FEED_NODE_URL_BYTES - len("https://"))],
            "org.example.icon": "flame",
        },
        T0 + 32_000,
    )  # fmt: skip
    add(
        f"feed with an empty description and one of {MAX_FEED_DESCRIPTION_BYTES} bytes "
        "would both be valid: here the longest, in 2-byte characters",
        a,
        "feed",
        {
            "name": "long-posts",
            "description": "é" * (MAX_FEED_DESCRIPTION_BYTES // 2),
            "nodes": ["http://localhost:7000/"],
        },
        T0 + 33_000,
    )
    return cases


# -- invalid events ---------------------------------------------------------------------


def invalid_events() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(comment: str, wire: bytes, error: str, spec: str, **kw: Any) -> None:
        case = {
            "comment": comment,
            "net": kw.get("net", "murmur"),
            "now_ms": kw.get("now_ms", NOW),
            "error": error,
            "spec": spec,
            "wire": wire.hex(),
        }
        cases.append(case)

    post = encode({"text": "hi"})
    good = sign_event(ALICE, kind="post", body={"text": "hi"}, seq=1, prev=None, ts=T0)
    good2 = sign_event(ALICE, kind="post", body={"text": "hi"}, seq=2, prev=good.id, ts=T0)

    # -- step 1: size
    big = encode([good.header_bytes, good.sig, b"\x00" * (MAX_WIRE_BYTES - 80)])
    add(
        f"wire of {len(big)} bytes > {MAX_WIRE_BYTES}: rejected before decoding",
        big,
        "too-large",
        "0002-events.md#v-size",
    )

    # -- step 2: strict decode of the wire
    add("empty input", b"", "malformed", "0002-events.md#enc-malformed")
    add("truncated wire array", good.wire[:-5], "malformed", "0002-events.md#enc-malformed")
    add("reserved byte 0xc1", b"\x93\xc1\xc0\xc0", "malformed", "0002-events.md#enc-malformed")
    add(
        "wire is a map, not an array",
        encode({"h": good.header_bytes}),
        "malformed",
        "0002-events.md#wire",
    )
    add(
        "wire array of 2 elements",
        encode([good.header_bytes, good.sig]),
        "malformed",
        "0002-events.md#wire",
    )
    add(
        "wire array of 4 elements",
        encode([good.header_bytes, good.sig, post, None]),
        "malformed",
        "0002-events.md#wire",
    )
    add(
        "sig of 63 bytes",
        encode([good.header_bytes, good.sig[:63], post]),
        "malformed",
        "0002-events.md#wire",
    )
    add(
        "header carried as str, not bin",
        encode(["x", good.sig, post]),
        "malformed",
        "0002-events.md#wire",
    )
    add(
        "body carried as a map, not bin or nil",
        encode([good.header_bytes, good.sig, {"text": "hi"}]),
        "malformed",
        "0002-events.md#wire",
    )
    add(
        "trailing byte after the wire array",
        good.wire + b"\xc0",
        "non-canonical",
        "0002-events.md#enc-trailing",
    )
    # wire whose array header is array16 for 3 elements
    add(
        "wire array length prefix not shortest (array16 for 3 elements)",
        b"\xdc\x00\x03" + good.wire[1:],
        "non-canonical",
        "0002-events.md#enc-lengths",
    )

    # -- steps 3-4: header and body bytes (strict, canonical)
    hdr = header_map(ALICE, seq=1, prev=None, ts=T0, kind="post", body_bytes=post)
    unsorted = raw_map(
        (k, encode(hdr[k])) for k in ("v", "net", "author", "seq", "prev", "ts", "kind", "body")
    )
    add(
        "header keys not sorted (signature valid over these bytes)",
        signed_wire(unsorted, post, ALICE),
        "non-canonical",
        "0002-events.md#enc-map-order",
    )
    body_unsorted = raw_map([("text", encode("hi")), ("tags", encode(["a"]))])
    add(
        "body keys not sorted (header hashes these exact bytes; signature valid)",
        craft(body_unsorted),
        "non-canonical",
        "0002-events.md#enc-map-order",
    )
    dup_hdr = raw_map([*((k, encode(hdr[k])) for k in sorted(hdr)), ("v", encode(1))])
    add(
        "duplicate key in header ('v' twice)",
        signed_wire(dup_hdr, post, ALICE),
        "non-canonical",
        "0002-events.md#enc-map-order",
    )
    dup_body = raw_map([("text", encode("hi")), ("text", encode("hi"))])
    add("duplicate key in body", craft(dup_body), "non-canonical", "0002-events.md#enc-map-order")
    float_body = raw_map([("n", bytes.fromhex("cb3ff8000000000000")), ("text", encode("hi"))])
    add("float64 1.5 in body", craft(float_body), "non-canonical", "0002-events.md#enc-types")
    f32_body = raw_map([("n", bytes.fromhex("ca3fc00000")), ("text", encode("hi"))])
    add("float32 1.5 in body", craft(f32_body), "non-canonical", "0002-events.md#enc-types")
    nonshort_hdr = raw_map((k, b"\xcc\x01" if k == "seq" else encode(hdr[k])) for k in sorted(hdr))
    add(
        "non-shortest int in header (seq 1 as uint8 0xcc 0x01)",
        signed_wire(nonshort_hdr, post, ALICE),
        "non-canonical",
        "0002-events.md#enc-ints",
    )
    nonshort_body = raw_map([("n", b"\xd0\x05"), ("text", encode("hi"))])
    add(
        "non-shortest int in body (5 as int8 0xd0 0x05)",
        craft(nonshort_body),
        "non-canonical",
        "0002-events.md#enc-ints",
    )
    str8_hdr = raw_map((k, b"\xd9\x04post" if k == "kind" else encode(hdr[k])) for k in sorted(hdr))
    add(
        "non-shortest str length prefix in header (str8 for 'post')",
        signed_wire(str8_hdr, post, ALICE),
        "non-canonical",
        "0002-events.md#enc-lengths",
    )
    trailing_hdr = encode(hdr) + b"\x00"
    add(
        "trailing byte inside header_bytes (signature valid over them)",
        signed_wire(trailing_hdr, post, ALICE),
        "non-canonical",
        "0002-events.md#enc-trailing",
    )
    add(
        "trailing byte inside body_bytes (header hashes them)",
        craft(post + b"\x00"),
        "non-canonical",
        "0002-events.md#enc-trailing",
    )
    ext_body = raw_map([("n", bytes.fromhex("d40100")), ("text", encode("hi"))])
    add(
        "ext type 1 (fixext1) in body", craft(ext_body), "non-canonical", "0002-events.md#enc-types"
    )
    ts_ext_body = raw_map([("at", bytes.fromhex("d6ff00000001")), ("text", encode("hi"))])
    add(
        "timestamp ext -1 (fixext4) in body",
        craft(ts_ext_body),
        "non-canonical",
        "0002-events.md#enc-types",
    )
    int_key_body = bytes([0x82]) + encode(1) + encode(2) + encode("text") + encode("hi")
    add("int map key in body", craft(int_key_body), "non-canonical", "0002-events.md#enc-types")
    add(
        "invalid UTF-8 in body text",
        craft(bytes.fromhex("81a474657874a2fffe")),
        "malformed",
        "0002-events.md#enc-malformed",
    )
    deep = {"text": "deep"}
    nest: Any = 0
    for _ in range(8):
        nest = [nest]
    deep["x"] = nest
    add(
        "body nested one level past the limit (a value at depth 9)",
        craft(encode(deep)),
        "too-deep",
        "0002-events.md#layer-bounds",
    )
    add(
        "body is an array, not a map",
        craft(encode(["hi"])),
        "bad-field",
        "0002-events.md#v-body-map",
    )
    add(
        "prev of 33 bytes",
        craft(post, seq=2, prev=b"\x01" * 33),
        "bad-field",
        "0002-events.md#header",
    )

    # -- step 5: header fields
    def drop(key: str) -> Callable[[dict[str, Any]], None]:
        return lambda h: h.pop(key)

    add(
        "header missing 'ts'",
        craft(post, mutate_header=drop("ts")),
        "bad-field",
        "0002-events.md#header",
    )
    add(
        "header with an extra key 'x'",
        craft(post, mutate_header=lambda h: h.update(x=1)),
        "bad-field",
        "0002-events.md#header",
    )
    add(
        "header is an array, not a map",
        signed_wire(encode([1]), post, ALICE),
        "bad-field",
        "0002-events.md#header",
    )
    add(
        "unsupported version v = 2",
        craft(post, v=2),
        "unsupported-version",
        "0002-events.md#header",
    )
    add(
        "v = true (bool is not an int)",
        craft(post, mutate_header=lambda h: h.update(v=True)),
        "bad-field",
        "0002-events.md#header",
    )
    add(
        "net with an uppercase letter",
        craft(post, net="Murmur"),
        "bad-field",
        "0002-events.md#header",
    )
    add(
        "author names an X25519 key (multicodec 0xec), not Ed25519",
        craft(post, author=X25519_DID),
        "invalid-did",
        "0001-identity.md#parsing",
    )
    add(
        "author did with a trailing space (not the canonical spelling)",
        craft(post, author=ALICE.did + " "),
        "invalid-did",
        "0001-identity.md#parsing",
    )
    add("seq 0", craft(post, seq=0), "bad-field", "0002-events.md#header")
    add(
        "seq = true (bool is not an int)",
        craft(post, mutate_header=lambda h: h.update(seq=True)),
        "bad-field",
        "0002-events.md#header",
    )
    add("seq 1 with a prev", craft(post, seq=1, prev=good.id), "bad-prev", "0002-events.md#chain")
    add("seq 2 without a prev", craft(post, seq=2, prev=None), "bad-prev", "0002-events.md#chain")
    add(
        "prev of 31 bytes",
        craft(post, seq=2, prev=b"\x01" * 31),
        "bad-field",
        "0002-events.md#header",
    )
    add("negative ts", craft(post, ts=-1), "bad-field", "0002-events.md#header")
    add(
        "kind with an uppercase letter",
        craft(post, kind="Post"),
        "bad-field",
        "0002-events.md#header",
    )
    add(
        "header body hash as str, not bin",
        craft(post, mutate_header=lambda h: h.update(body="x" * 32)),
        "bad-field",
        "0002-events.md#header",
    )

    # -- step 6: body schema (spec 0003)
    def body_case(comment: str, kind: str, body: Mapping[str, Any], **kw: Any) -> None:
        add(comment, craft(encode(body), kind=kind, **kw), "bad-field", f"0003-kinds.md#{kind}")

    body_case(
        f"post text of {MAX_TEXT_BYTES + 1} bytes", "post", {"text": "a" * (MAX_TEXT_BYTES + 1)}
    )
    body_case("post without text", "post", {"tags": ["a"]})
    body_case("post text as bin, not str", "post", {"text": b"hi"})
    body_case("post reply without parent", "post", {"text": "hi", "reply": {"root": _id("r")}})
    body_case(
        "post langs with an uppercase primary subtag", "post", {"text": "hi", "langs": ["EN"]}
    )
    body_case("post warn value with an uppercase letter", "post", {"text": "hi", "warn": ["NSFW"]})
    body_case("repost target of 31 bytes", "repost", {"target": b"\x01" * 31})
    body_case("follow subject that is not a did:key", "follow", {"subject": "alice"})
    body_case("unfollow subject naming an X25519 key", "unfollow", {"subject": X25519_DID})
    body_case("label val with an uppercase letter", "label", {"subject": BOB.did, "val": "Spam"})
    body_case("label val of 129 bytes", "label", {"subject": BOB.did, "val": "a" * 129})
    body_case(
        "label neg = 1 (must be bool)", "label", {"subject": BOB.did, "val": "spam", "neg": 1}
    )
    for comment, exp in (
        ("label exp = 2^63: one past the bound shared with ts", MAX_TS + 1),
        ("label exp = -1: negative", -1),
        ("label exp = true (bool is not an int)", True),
    ):
        add(
            comment,
            craft(encode({"subject": BOB.did, "val": "spam", "exp": exp}), kind="label"),
            "bad-field",
            "0003-kinds.md#label-exp",
        )
    # label subject_type (spec 0003 #label-blob)
    for comment, body in (
        (
            'label subject_type "blob" on a did (a blob is named by its 32-byte hash)',
            {"subject": BOB.did, "subject_type": "blob", "val": "gore"},
        ),
        (
            'label subject_type "blob" on 31 bytes',
            {"subject": EMBED_PNG["hash"][:31], "subject_type": "blob", "val": "gore"},
        ),
        (
            'label subject_type "blob" on the hash as a hex str, not bin',
            {"subject": EMBED_PNG["hash"].hex(), "subject_type": "blob", "val": "gore"},
        ),
        (
            "label subject_type of 0 bytes",
            {"subject": EMBED_PNG["hash"], "subject_type": "", "val": "gore"},
        ),
        (
            f"label subject_type of {MAX_LABEL_BYTES + 1} bytes",
            {"subject": EMBED_PNG["hash"], "subject_type": "x" * (MAX_LABEL_BYTES + 1),
             "val": "gore"},
        ),
        (
            "label subject_type as bin, not str",
            {"subject": EMBED_PNG["hash"], "subject_type": b"blob", "val": "gore"},
        ),
        (
            "label subject_type 1, not str",
            {"subject": EMBED_PNG["hash"], "subject_type": 1, "val": "gore"},
        ),
        (
            "label with an unknown subject_type on a subject that is not a did: the "
            "subject rule holds for every subject_type",
            {"subject": "alice", "subject_type": "org.example.thing", "val": "spam"},
        ),
    ):  # fmt: skip
        add(comment, craft(encode(body), kind="label"), "bad-field", "0003-kinds.md#label-blob")
    body_case("list purpose 'ban'", "list", {"name": "x", "purpose": "ban", "members": []})
    body_case(
        "list purpose that is an array, not a str",
        "list",
        {"name": "x", "purpose": ["mute"], "members": []},
    )
    body_case(
        "list with duplicate members",
        "list",
        {"name": "x", "purpose": "block", "members": [BOB.did, BOB.did]},
    )
    body_case("list with an empty name", "list", {"name": "", "purpose": "mute", "members": []})

    # post facets (spec 0003 #facets): each case breaks one rule of FACET_TEXT's facets
    def facet_case(comment: str, *facets: Any, text: str = FACET_TEXT) -> None:
        body = {"text": text, "facets": list(facets)}
        add(comment, craft(encode(body)), "bad-field", "0003-kinds.md#facets")

    t = FACET_TEXT
    size = len(t.encode())
    mention = _facet("mention", t, "@bob", did=BOB.did)
    link = _facet("link", t, "https://murmur.example/spec?x=1", uri="https://murmur.example/")
    tag = _facet("tag", t, "#Murmur", tag="Murmur")
    emoji_start, emoji_end = _span(t, "🎉")
    add(
        "post facets that is a map, not an array",
        craft(encode({"text": t, "facets": mention})),
        "bad-field",
        "0003-kinds.md#facets",
    )
    facet_case(
        "post with 33 facets (the limit is 32; unknown types count too)",
        *({"type": "org.example.x", "start": 0, "end": 1} for _ in range(33)),
    )
    facet_case("post facet that is a string, not a map", "mention")
    facet_case("post facet without a type", {"start": 0, "end": 1})
    facet_case("post facet with an empty type", {"type": "", "start": 0, "end": 1})
    facet_case("post facet type of 33 bytes", {"type": "x" * 33, "start": 0, "end": 1})
    facet_case("post facet type as bin, not str", {"type": b"tag", "start": 0, "end": 1})
    facet_case("post facet of an unknown type without end", {"type": "org.example.x", "start": 0})
    facet_case("post facet start = true (bool is not an int)", {**mention, "start": True})
    facet_case("post facet with a negative start", {**mention, "start": -1})
    facet_case("post facet with start = end (empty range)", {**mention, "end": mention["start"]})
    facet_case("post facet with end before start", {**mention, "start": 5, "end": 4})
    facet_case(f"post facet end one past the text's {size} bytes", {**tag, "end": size + 1})
    facet_case(
        "post facet starting inside a 4-byte character (emoji)",
        {"type": "org.example.x", "start": emoji_start + 1, "end": emoji_end},
    )
    facet_case(
        "post facet ending inside a 4-byte character (emoji)",
        {"type": "org.example.x", "start": emoji_start, "end": emoji_end - 1},
    )
    facet_case(
        "post facet ending inside a 2-byte character (á)",
        {"type": "org.example.x", "start": 0, "end": 3},
    )
    facet_case("post mention facet without did", {k: v for k, v in mention.items() if k != "did"})
    facet_case("post mention facet with a did that is not one", {**mention, "did": "bob"})
    facet_case("post mention facet naming an X25519 key", {**mention, "did": X25519_DID})
    facet_case("post link facet with an ftp: uri", {**link, "uri": "ftp://murmur.example/"})
    facet_case(
        "post link facet with an uppercase scheme", {**link, "uri": "HTTPS://murmur.example/"}
    )
    facet_case("post link facet with a space in the uri", {**link, "uri": "https://a.example/b c"})
    facet_case("post link facet with only a scheme", {**link, "uri": "https://"})
    facet_case(
        "post link facet uri of 2049 bytes",
        {**link, "uri": "https://a.example/" + "x" * (2049 - len("https://a.example/"))},
    )
    facet_case("post tag facet with a leading '#'", {**tag, "tag": "#Murmur"})
    facet_case("post tag facet with an empty tag", {**tag, "tag": ""})
    facet_case("post tag facet of 65 bytes", {**tag, "tag": "a" * 65})
    facet_case("post tag facet with a tag that is an int", {**tag, "tag": 7})
    facet_case(
        "post facets of known types that overlap (a tag inside a link)",
        link,
        {"type": "tag", "start": link["end"] - 4, "end": link["end"], "tag": "spec"},
    )
    facet_case("post with the same mention facet twice (overlap)", mention, mention)

    # post embeds (spec 0003 #embed): each case breaks one rule of EMBED_PNG's embed
    def embed_case(comment: str, embed: Any) -> None:
        body = {"text": "a picture", "embed": embed}
        add(comment, craft(encode(body)), "bad-field", "0003-kinds.md#embed")

    def image_case(comment: str, **change: Any) -> None:
        image = {k: v for k, v in {**EMBED_PNG, **change}.items() if v is not None}
        embed_case(comment, {"images": [image]})

    img = EMBED_PNG
    other = _embed_image(JPEG_BASELINE_3X2, "image/jpeg", 3, 2, "")
    embed_case("post embed that is an array, not a map", [img])
    embed_case("post embed images that is a map, not an array", {"images": img})
    embed_case("post embed with no images (0, the least is 1)", {"images": []})
    embed_case("post embed with 5 images (the limit is 4)", {"images": [
        {**img, "hash": _id(f"image {i}")} for i in range(5)]})  # fmt: skip
    embed_case("post embed image that is its hash, not a map", {"images": [img["hash"]]})
    embed_case("post embed with the same hash twice", {"images": [img, img]})
    embed_case(
        "post embed with the same hash twice under different claims",
        {"images": [other, {**img, "hash": other["hash"]}]},
    )
    image_case("post embed image without hash", hash=None)
    image_case("post embed image hash of 31 bytes", hash=img["hash"][:31])
    image_case("post embed image hash of 33 bytes", hash=img["hash"] + b"\x00")
    image_case("post embed image hash as a hex str, not bin", hash=img["hash"].hex())
    image_case("post embed image without mime", mime=None)
    image_case("post embed image/svg+xml: SVG is never an embedded image", mime="image/svg+xml")
    image_case("post embed image mime in uppercase", mime="image/PNG")
    image_case("post embed image/bmp: not one of the four types", mime="image/bmp")
    image_case("post embed image mime as bin, not str", mime=b"image/png")
    image_case("post embed image without size", size=None)
    image_case("post embed image size 0", size=0)
    image_case(f"post embed image size {MAX_BLOB_BYTES + 1} (2 MiB + 1)", size=MAX_BLOB_BYTES + 1)
    image_case("post embed image size = true (bool is not an int)", size=True)
    image_case("post embed image without width", width=None)
    image_case("post embed image width 0", width=0)
    image_case(f"post embed image width {MAX_IMAGE_SIDE + 1}", width=MAX_IMAGE_SIDE + 1)
    image_case("post embed image width = true (bool is not an int)", width=True)
    image_case("post embed image without height", height=None)
    image_case("post embed image height -2", height=-2)
    image_case(f"post embed image height {MAX_IMAGE_SIDE + 1}", height=MAX_IMAGE_SIDE + 1)
    image_case("post embed image height as a str", height="2")
    image_case("post embed image without alt", alt=None)
    image_case(f"post embed image alt of {MAX_ALT_BYTES + 1} bytes", alt="a" * (MAX_ALT_BYTES + 1))
    image_case("post embed image alt as bin, not str", alt=b"a gradient")

    # -- step 7: network
    add(
        "event for network 'murmur-test' checked on 'murmur' (signature valid)",
        craft(post, net="murmur-test"),
        "wrong-network",
        "0002-events.md#v-network",
    )

    # -- step 8: time window
    add(
        "ts 11 minutes ahead of the checker's clock (signature valid)",
        craft(post, ts=NOW + 11 * 60_000),
        "future-timestamp",
        "0002-events.md#v-time",
    )
    add(
        "ts 10 minutes + 1 ms ahead: just past the inclusive bound",
        craft(post, ts=NOW + FUTURE_SKEW_MS + 1),
        "future-timestamp",
        "0002-events.md#v-time",
    )

    # -- step 9: body hash
    add(
        "body bytes differ from the header's body hash (signature valid)",
        signed_wire(good.header_bytes, encode({"text": "HI"}), ALICE),
        "body-mismatch",
        "0002-events.md#v-body-hash",
    )

    # -- step 10: signature
    flipped = bytes([good.sig[0] ^ 0x01]) + good.sig[1:]
    add(
        "signature with its first byte flipped",
        wire_of(good.header_bytes, flipped, post),
        "invalid-signature",
        "0002-events.md#signature",
    )
    add(
        "signature by bob over an event whose author is alice",
        signed_wire(good.header_bytes, post, BOB),
        "invalid-signature",
        "0002-events.md#signature",
    )
    add(
        "signature over the bare id, without the b'murmur-event-v1:' domain",
        wire_of(good.header_bytes, ALICE.sign(good.id), post),
        "invalid-signature",
        "0002-events.md#signature",
    )
    add(
        "dropped body (nil) with a signature from another event",
        wire_of(good2.header_bytes, good.sig, None),
        "invalid-signature",
        "0002-events.md#signature",
    )

    # -- order: several violations, the earliest step wins (spec 0002 §2.8)
    add(
        "order: wrong network + future ts + bad signature -> network is checked first",
        wire_of(
            encode(
                header_map(
                    ALICE,
                    seq=1,
                    prev=None,
                    ts=NOW + 3_600_000,
                    kind="post",
                    body_bytes=post,
                    net="other",
                )
            ),
            flipped,
            post,
        ),
        "wrong-network",
        "0002-events.md#validation-order",
    )
    add(
        "order: future ts + body mismatch -> time is checked before the body hash",
        signed_wire(
            encode(
                header_map(
                    ALICE, seq=1, prev=None, ts=NOW + 3_600_000, kind="post", body_bytes=post
                )
            ),
            encode({"text": "HI"}),
            ALICE,
        ),
        "future-timestamp",
        "0002-events.md#validation-order",
    )
    add(
        "order: body mismatch + bad signature -> body hash is checked first",
        wire_of(good.header_bytes, flipped, encode({"text": "HI"})),
        "body-mismatch",
        "0002-events.md#validation-order",
    )
    add(
        "order: bad body schema + wrong network -> fields are checked first",
        craft(encode({"text": 1}), net="other"),
        "bad-field",
        "0002-events.md#validation-order",
    )
    add(
        "order: unsupported version + bad kind -> v is the first header field checked",
        craft(post, v=2, kind="BAD"),
        "unsupported-version",
        "0002-events.md#validation-order",
    )
    add(
        "order: bad header field (seq 0) + non-canonical body -> every layer is decoded "
        "before any field is checked",
        craft(body_unsorted, seq=0),
        "non-canonical",
        "0002-events.md#validation-order",
    )
    # feed bodies (spec 0003 #feed): appended last, so the cases above keep their bytes.
    node = "https://node.murmur.example"
    for comment, body in (
        ("feed without a name", {"nodes": [node]}),
        ("feed name with an uppercase letter", {"name": "Hot", "nodes": [node]}),
        ("feed name starting with '-'", {"name": "-hot", "nodes": [node]}),
        ("feed name with a '/'", {"name": "a/b", "nodes": [node]}),
        (f"feed name of {MAX_FEED_NAME_BYTES + 1} bytes",
         {"name": "x" * (MAX_FEED_NAME_BYTES + 1), "nodes": [node]}),
        (f"feed description of {MAX_FEED_DESCRIPTION_BYTES + 1} bytes",
         {"name": "hot", "description": "x" * (MAX_FEED_DESCRIPTION_BYTES + 1),
          "nodes": [node]}),
        ("feed description as bin, not str", {"name": "hot", "description": b"x",
                                              "nodes": [node]}),
        ("feed without nodes", {"name": "hot"}),
        ("feed with an empty nodes list", {"name": "hot", "nodes": []}),
        (f"feed with {MAX_FEED_NODES + 1} nodes",
         {"name": "hot", "nodes": [f"https://n{i}.murmur.example"
                                   for i in range(MAX_FEED_NODES + 1)]}),
        ("feed naming the same node twice", {"name": "hot", "nodes": [node, node]}),
        ("feed node with an ftp: URL", {"name": "hot", "nodes": ["ftp://node.murmur.example"]}),
        ("feed node without a host", {"name": "hot", "nodes": ["https://"]}),
        ("feed node URL with userinfo",
         {"name": "hot", "nodes": ["https://me:secret@node.murmur.example"]}),
        ("feed node URL with a fragment", {"name": "hot", "nodes": [node + "/#top"]}),
        ("feed node URL with a query", {"name": "hot", "nodes": [node + "/?x=1"]}),
        (f"feed node URL of {MAX_FEED_NODE_URL_BYTES + 1} bytes",
         {"name": "hot", "nodes": ["https://" + "n" * (MAX_FEED_NODE_URL_BYTES - 7)]}),
    ):  # fmt: skip
        add(comment, craft(encode(body), kind="feed"), "bad-field", "0003-kinds.md#feed")
    return cases


# -- canonical encoding -----------------------------------------------------------------


def encoding_vectors() -> dict[str, list[dict[str, Any]]]:
    valid_values: list[tuple[str, Any]] = [
        ("nil", None),
        ("false", False),
        ("true", True),
        ("0: positive fixint", 0),
        ("127: largest positive fixint", 127),
        ("128: uint8", 128),
        ("255: largest uint8", 255),
        ("256: uint16", 256),
        ("65535: largest uint16", 65535),
        ("65536: uint32", 65536),
        ("2**32 - 1: largest uint32", 2**32 - 1),
        ("2**32: uint64", 2**32),
        ("2**64 - 1: largest uint64", 2**64 - 1),
        ("-1: negative fixint", -1),
        ("-32: smallest negative fixint", -32),
        ("-33: int8", -33),
        ("-128: smallest int8", -128),
        ("-129: int16", -129),
        ("-32768: smallest int16", -32768),
        ("-32769: int32", -32769),
        ("-2**31: smallest int32", -(2**31)),
        ("-2**31 - 1: int64", -(2**31) - 1),
        ("-2**63: smallest int64", -(2**63)),
        ("empty str: fixstr", ""),
        ("str 'a'", "a"),
        ("31-byte str: largest fixstr", "x" * 31),
        ("32-byte str: str8", "x" * 32),
        ("256-byte str: str16", "x" * 256),
        ("non-ASCII str, length in UTF-8 bytes", "é🎉"),
        ("empty bin: bin8 (there is no fixbin)", b""),
        ("bin of 3 bytes", b"\x00\x01\xff"),
        ("256-byte bin: bin16", bytes(256)),
        ("empty array", []),
        ("15-element array: largest fixarray", list(range(15))),
        ("16-element array: array16", list(range(16))),
        ("empty map", {}),
        ("map keys sorted by UTF-8 bytes, not by length: 'aa' < 'b'", {"b": 1, "aa": 2}),
        ("map keys sorted by UTF-8 bytes: 'z' (0x7a) < 'é' (0xc3 0xa9)", {"é": 1, "z": 2}),
        ("map keys: uppercase sorts before lowercase; '' is a valid key", {"a": 0, "B": 1, "": 2}),
        ("16-entry map: map16", {f"k{i:02d}": i for i in range(16)}),
        ("nested array and map", {"a": [1, {"b": None, "c": [True, b"\x01"]}]}),
    ]
    valid = [{"comment": c, "value": to_json(v), "hex": encode(v).hex()} for c, v in valid_values]
    invalid_cases: list[tuple[str, str, str]] = [
        ("empty input", "", "malformed"),
        ("truncated array", "9201", "malformed"),
        ("truncated str", "a3616263"[:-2], "malformed"),
        ("reserved byte 0xc1", "c1", "malformed"),
        ("invalid UTF-8 in str", "a2fffe", "malformed"),
        ("UTF-16 surrogate encoded in UTF-8 (CESU)", "a3eda080", "malformed"),
        ("map used as a map key", "818001", "non-canonical"),
        ("array used as a map key", "819001", "non-canonical"),
        ("float32", "ca3fc00000", "non-canonical"),
        ("float64", "cb3ff8000000000000", "non-canonical"),
        ("ext type 1 (fixext1)", "d40100", "non-canonical"),
        ("ext type 5 (ext8 of 2 bytes)", "c702050000", "non-canonical"),
        ("timestamp ext -1 (fixext4, 32-bit seconds)", "d6ff00000001", "non-canonical"),
        (
            "ext -1 with a 1-byte payload, not a valid timestamp",
            "d4ff00",
            "non-canonical",
        ),
        (
            "ext -1, 64-bit form, nanoseconds > 999999999",
            "d7ffffffffff00000001",
            "non-canonical",
        ),
        ("ext8 with a 65-byte payload", "c74105" + "00" * 65, "non-canonical"),
        ("trailing byte after a value", "0100", "non-canonical"),
        ("two values", "c0c0", "non-canonical"),
        ("5 as uint8", "cc05", "non-canonical"),
        ("5 as int8 (non-negative ints use the unsigned family)", "d005", "non-canonical"),
        ("200 as uint16", "cd00c8", "non-canonical"),
        ("1 as uint64", "cf0000000000000001", "non-canonical"),
        ("-1 as int8", "d0ff", "non-canonical"),
        ("-33 as int16", "d1ffdf", "non-canonical"),
        ("'a' as str8", "d90161", "non-canonical"),
        ("'a' as str16", "da000161", "non-canonical"),
        ("1-byte bin as bin16", "c5000161", "non-canonical"),
        ("1-element array as array16", "dc000101", "non-canonical"),
        ("1-entry map as map16", "de0001a16101", "non-canonical"),
        ("map keys out of order ('b' before 'a')", "82a16201a16102", "non-canonical"),
        (
            "map keys by length instead of bytes ('b' before 'aa')",
            "82a16201a2616102",
            "non-canonical",
        ),
        ("duplicate map key", "82a16101a16102", "non-canonical"),
        ("int map key", "810101", "non-canonical"),
        ("bin map key", "81c4016101", "non-canonical"),
        ("nil map key", "81c001", "non-canonical"),
        ("17 nested arrays: a value at depth 17 > 16", "91" * 17 + "c0", "too-deep"),
        ("array16 claiming 10001 items (limit 10000)", "dc2711" + "c0" * 10001, "too-large"),
    ]
    invalid = [{"comment": c, "hex": h, "error": e} for c, h, e in invalid_cases]
    return {"valid": valid, "invalid": invalid}


# -- chains -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    author: str
    seq: int
    prev: bytes | None
    id: bytes


def chain_vectors() -> list[dict[str, Any]]:
    def ident(name: str) -> bytes:
        return hashlib.sha256(name.encode()).digest()

    e1, e2, e3, e4 = (ident(f"e{i}") for i in range(1, 5))
    e2b, e3b = ident("e2b"), ident("e3b")
    other = ident("elsewhere")
    sets: list[tuple[str, list[tuple[int, bytes, bytes | None]]]] = [
        ("nothing held", []),
        ("seq 1 only", [(1, e1, None)]),
        ("1..4 linked, given out of order", [(3, e3, e2), (1, e1, None), (4, e4, e3), (2, e2, e1)]),
        ("the same event twice is one event", [(1, e1, None), (1, e1, None), (2, e2, e1)]),
        ("gap at 2: head stops at 1", [(1, e1, None), (3, e3, e2)]),
        ("seq 1 missing: head 0, gap (1, 1)", [(2, e2, e1), (3, e3, e2)]),
        (
            "gaps kept as ranges, even for huge seqs",
            [(1, e1, None), (5, e4, other), (2**62, e3, other)],
        ),
        (
            "fork at 2: both kept, head stops at 1, no broken link at 2 (two candidates)",
            [(1, e1, None), (2, e2, e1), (2, e2b, e1), (3, e3, e2)],
        ),
        (
            "broken link: seq 3's prev is not the id held at 2",
            [(1, e1, None), (2, e2, e1), (3, e3b, other)],
        ),
        (
            "fork at 3 where one branch is also a broken link",
            [(1, e1, None), (2, e2, e1), (3, e3, e2), (3, e3b, other)],
        ),
    ]
    author = ALICE.did
    cases = []
    for comment, entries in sets:
        report = analyze_chain(_Item(author, s, p, i) for s, i, p in entries)
        cases.append(
            {
                "comment": comment,
                "events": [
                    {"seq": s, "id": i.hex(), "prev": None if p is None else p.hex()}
                    for s, i, p in entries
                ],
                "head_seq": report.head_seq,
                "head_id": None if report.head_id is None else report.head_id.hex(),
                "max_seq": report.max_seq,
                "gaps": [list(g) for g in report.gaps],
                "forks": [{"seq": s, "ids": [i.hex() for i in ids]} for s, ids in report.forks],
                "broken_links": list(report.broken_links),
            }
        )
    return cases


# -- v2 events: did:murmur authors (spec 0008) ------------------------------------------


def _seeded(n: int) -> Identity:
    return Identity.from_seed(bytes(31) + bytes([n]))


#: dana is a did:murmur: S are signing keys, N next keys, R recovery keys (spec 0008 §8.1).
D_S1, D_N1, D_R0, D_R1, D_S2, D_N2, D_S3, D_N3, D_R2, D_S4, D_N4 = (
    _seeded(0x10 + i) for i in range(11)
)
#: erin and frank: two more genesis shapes; alice's did:murmur (she moves to it).
E_S, E_N, E_R0, E_R1, E_R2, F_S, F_N, F_R = (_seeded(0x30 + i) for i in range(8))
AM_S, AM_N, AM_R = (_seeded(0x20 + i) for i in range(3))


def _pub(identity: Identity) -> bytes:
    return identity.public.raw


def _genesis_body(
    signing: Identity, next_key: Identity, recovery: list[Identity]
) -> dict[str, Any]:
    return {
        "signing": _pub(signing),
        "next": next_key_commitment(_pub(next_key)),
        "recovery": [_pub(r) for r in recovery],
    }


DANA_GENESIS_BODY = _genesis_body(D_S1, D_N1, [D_R0, D_R1])
DANA = did_murmur_from_genesis_body(encode(DANA_GENESIS_BODY))


@dataclass
class _Chain2:
    """Signs consecutive v2 events of one did:murmur, linking seq/prev and kev."""

    author: str
    seq: int
    prev: bytes
    kev: bytes

    def sign(self, signer: Identity, kind: str, body: Mapping[str, Any], ts: int) -> Event:
        event = sign_event_v2(
            signer,
            author=self.author,
            kind=kind,
            body=body,
            seq=self.seq + 1,
            prev=self.prev,
            kev=self.kev,
            ts=ts,
        )
        self.seq, self.prev = event.seq, event.id
        if kind in ("rotate", "recover"):
            self.kev = event.id
        return event


def valid_v2_events() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(comment: str, event: Event, signer: Identity, **kw: Any) -> Event:
        cases.append(_valid_case(comment, event, signer.seed, **kw))
        return event

    genesis = add(
        "genesis of dana: signed by S1, next commits to N1, recovery [R0, R1]; the author "
        "is the did:murmur of the body bytes (spec 0008 #genesis, #did-murmur)",
        sign_genesis(D_S1, next_key=_pub(D_N1), recovery=[_pub(D_R0), _pub(D_R1)], ts=T0),
        D_S1,
    )
    d = _Chain2(genesis.author, genesis.seq, genesis.id, genesis.id)
    add(
        "v2 post signed by S1; kev = the genesis",
        d.sign(D_S1, "post", {"text": "hi"}, T0 + 1000),
        D_S1,
    )
    add(
        "v2 follow of a did:key by a did:murmur author",
        d.sign(D_S1, "follow", {"subject": BOB.did}, T0 + 2000),
        D_S1,
    )
    add(
        "rotate signed by N1 (the key the genesis next commits to) to a fresh S2 and a "
        "next committing to N2; it carries no recovery (spec 0008 #key-events)",
        d.sign(
            D_N1,
            "rotate",
            {"signing": _pub(D_S2), "next": next_key_commitment(_pub(D_N2))},
            T0 + 3000,
        ),
        D_N1,
    )
    add(
        "v2 post signed by S2; kev = the rotate",
        d.sign(D_S2, "post", {"text": "new key"}, T0 + 4000),
        D_S2,
    )
    dropped_body = {"text": "soon deleted"}
    add(
        "v2 post with its body dropped (nil): an ordinary event may travel without its "
        "body, a key event never (spec 0008 #key-event-body)",
        d.sign(D_S2, "post", dropped_body, T0 + 5000).without_body(),
        D_S2,
        original_body=dropped_body,
    )
    add(
        "recover signed by R1 (position 1): new S3 and N3, and a recovery list [R1, R2] "
        "that drops R0 (spec 0008 #key-events)",
        d.sign(
            D_R1,
            "recover",
            {
                "signing": _pub(D_S3),
                "next": next_key_commitment(_pub(D_N3)),
                "recovery": [_pub(D_R1), _pub(D_R2)],
            },
            T0 + 6000,
        ),
        D_R1,
    )
    add(
        "recover signed by R2 without recovery: the list at kev is kept",
        d.sign(
            D_R2,
            "recover",
            {"signing": _pub(D_S4), "next": next_key_commitment(_pub(D_N4))},
            T0 + 7000,
        ),
        D_R2,
    )
    add(
        "genesis with three recovery keys, the most (spec 0008 #genesis)",
        sign_genesis(E_S, next_key=_pub(E_N), recovery=[_pub(E_R0), _pub(E_R1), _pub(E_R2)], ts=T0),
        E_S,
    )
    add(
        "genesis with one recovery key, the least",
        sign_genesis(F_S, next_key=_pub(F_N), recovery=[_pub(F_R)], ts=T0),
        F_S,
    )
    moved = add(
        "genesis naming the did:key it moves from in `from` (spec 0008 #move)",
        sign_genesis(AM_S, next_key=_pub(AM_N), recovery=[_pub(AM_R)], from_did=ALICE.did, ts=T0),
        AM_S,
    )
    add(
        "move: a v1 event of alice (did:key) naming her did:murmur in `to` (spec 0008 #move)",
        sign_event(
            ALICE, kind="move", body={"to": moved.author}, seq=10, prev=_id("alice 9"), ts=T0
        ),
        ALICE,
    )
    b = _Chain(BOB)
    add(
        "v1 follow of a did:murmur: bodies that name people accept either did",
        b.sign("follow", {"subject": DANA}, T0),
        BOB,
    )
    add(
        "v1 list whose members are a did:key and a did:murmur",
        b.sign(
            "list",
            {"name": "friends", "purpose": "curate", "members": [CAROL.did, DANA]},
            T0 + 1000,
        ),
        BOB,
    )
    add(
        "v1 label on a did:murmur",
        b.sign("label", {"subject": DANA, "val": "bot"}, T0 + 2000),
        BOB,
    )
    return cases


def craft_v2(
    body_bytes: bytes,
    *,
    signer: Identity,
    author: str = DANA,
    key: bytes | None = None,
    kev: bytes | None = None,
    sign_domain: Callable[[bytes], bytes] = signing_message_v2,
    mutate_header: Callable[[dict[str, Any]], None] | None = None,
    wire_body: bool = True,
    **fields: Any,
) -> bytes:
    """A signed v2 wire event from a (possibly invalid) header and raw body bytes:
    ``key`` defaults to the signer's, the signature is by the signer over ``sign_domain``."""
    defaults: dict[str, Any] = {"seq": 2, "prev": _id("dana 1"), "ts": T0, "kind": "post", "v": 2}
    defaults.update(fields)
    h = header_map(author, body_bytes=body_bytes, **defaults)
    h["key"] = _pub(signer) if key is None else key
    h["kev"] = kev
    if mutate_header is not None:
        mutate_header(h)
    header_bytes = encode(h)
    sig = signer.sign(sign_domain(event_id(header_bytes)))
    return wire_of(header_bytes, sig, body_bytes if wire_body else None)


def invalid_v2_events() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(comment: str, wire: bytes, error: str, anchor: str) -> None:
        doc = anchor if anchor.startswith("0") else f"0008-key-rotation.md#{anchor}"
        cases.append(
            {
                "comment": comment,
                "net": "murmur",
                "now_ms": NOW,
                "error": error,
                "spec": doc,
                "wire": wire.hex(),
            }
        )

    kev = _id("dana key event")
    post = encode({"text": "hi"})
    gbody = encode(DANA_GENESIS_BODY)

    def genesis(body: Mapping[str, Any] | bytes, **kw: Any) -> bytes:
        raw = body if isinstance(body, bytes) else encode(body)
        kw.setdefault("author", did_murmur_from_genesis_body(raw))
        kw.setdefault("signer", D_S1)
        kw.setdefault("kev", None)
        return craft_v2(raw, kind="genesis", seq=1, prev=None, **kw)

    def rotate(body: Mapping[str, Any], **kw: Any) -> bytes:
        kw.setdefault("signer", D_N1)
        return craft_v2(encode(body), kind="rotate", kev=kev, **kw)

    def recover(body: Mapping[str, Any], **kw: Any) -> bytes:
        kw.setdefault("signer", D_R0)
        return craft_v2(encode(body), kind="recover", kev=kev, **kw)

    s1, n1, r0, r1 = _pub(D_S1), next_key_commitment(_pub(D_N1)), _pub(D_R0), _pub(D_R1)
    s2, n2 = _pub(D_S2), next_key_commitment(_pub(D_N2))

    # -- the did of a genesis (#did-murmur, #validity step 1)
    other = did_murmur_from_genesis_body(encode(_genesis_body(D_S1, D_N1, [D_R1, D_R0])))
    add(
        "genesis whose author is a well-formed did:murmur of another body (recovery keys "
        "in the other order)",
        genesis(gbody, author=other),
        "invalid-did",
        "did-murmur",
    )
    undomained = (
        "did:murmur:"
        + base64.b32encode(hashlib.sha256(gbody).digest()).decode().rstrip("=").lower()
    )
    add(
        "genesis whose author hashes the body without the b'murmur-did-v1:' domain",
        genesis(gbody, author=undomained),
        "invalid-did",
        "did-murmur",
    )
    add(
        "genesis signed (key and signature) by N1, not by the signing key of its body",
        genesis(gbody, author=DANA, signer=D_N1),
        "invalid-did",
        "validity",
    )
    add(
        "genesis at seq 2 (prev set, kev nil): a genesis is the first event",
        craft_v2(gbody, signer=D_S1, kind="genesis", seq=2, prev=_id("x"), kev=None),
        "invalid-did",
        "validity",
    )
    add(
        "order: genesis of the wrong did and a bad signature -> the signature is checked "
        "first (0008 checks follow those of 0002 §2.8)",
        genesis(gbody, author=other, signer=D_S1, sign_domain=signing_message),
        "invalid-signature",
        "validity",
    )

    # -- the v2 header (#header-v2)
    add("genesis with kev set", genesis(gbody, author=DANA, kev=kev), "bad-field", "header-v2")
    add("v2 post with kev nil", craft_v2(post, signer=D_S1, kev=None), "bad-field", "header-v2")
    add(
        "v2 post with kev of 31 bytes",
        craft_v2(post, signer=D_S1, kev=kev[:31]),
        "bad-field",
        "header-v2",
    )
    add(
        "v2 header without key",
        craft_v2(post, signer=D_S1, kev=kev, mutate_header=lambda h: h.pop("key")),
        "bad-field",
        "header-v2",
    )
    add(
        "v2 header with key of 33 bytes",
        craft_v2(post, signer=D_S1, kev=kev, key=s1 + b"\x00"),
        "bad-field",
        "header-v2",
    )
    add(
        "v2 header with an extra key 'x'",
        craft_v2(post, signer=D_S1, kev=kev, mutate_header=lambda h: h.update(x=1)),
        "bad-field",
        "header-v2",
    )
    add(
        "v2 header whose author is a did:key (signed by that key over the v2 domain)",
        craft_v2(post, signer=ALICE, author=ALICE.did, kev=kev),
        "invalid-did",
        "header-v2",
    )
    add(
        "v1 header whose author is a did:murmur (signed by S1 over the v1 domain)",
        craft(post, signer=D_S1, author=DANA),
        "invalid-did",
        "header-v2",
    )

    # -- strict did:murmur parsing (#did-murmur)
    rest = DANA[len("did:murmur:") :]
    padded = (
        rest[:-1]
        + "abcdefghijklmnopqrstuvwxyz234567"["abcdefghijklmnopqrstuvwxyz234567".index(rest[-1]) ^ 1]
    )
    for comment, did in (
        ("author did:murmur in uppercase base32", "did:murmur:" + rest.upper()),
        ("author did:murmur with 51 base32 characters", DANA[:-1]),
        ("author did:murmur with 53 base32 characters", DANA + "a"),
        ("author did:murmur whose last character sets a padding bit", "did:murmur:" + padded),
        ("author did:murmur with '=' padding", DANA + "===="),
        ("author did:murmur with '1', not in the base32 alphabet", DANA[:-1] + "1"),
        ("author 'DID:MURMUR:' prefix in uppercase", "DID:MURMUR:" + rest),
    ):
        add(comment, craft_v2(post, signer=D_S1, author=did, kev=kev), "invalid-did", "did-murmur")
    for comment, kind, body in (
        (
            "follow subject: a did:murmur whose last character sets a padding bit",
            "follow",
            {"subject": "did:murmur:" + padded},
        ),
        (
            "list member: a did:murmur of 51 base32 characters",
            "list",
            {"name": "x", "purpose": "mute", "members": [DANA[:-1]]},
        ),
        (
            "label subject: a did:murmur with a trailing newline",
            "label",
            {"subject": DANA + "\n", "val": "bot"},
        ),
    ):
        add(comment, craft(encode(body), signer=BOB, kind=kind), "bad-field", "did-murmur")

    # -- genesis bodies (#genesis, #distinct-keys)
    for comment, body, anchor in (
        ("genesis without recovery", {"signing": s1, "next": n1}, "genesis"),
        ("genesis with 0 recovery keys", {"signing": s1, "next": n1, "recovery": []}, "genesis"),
        (
            "genesis with 4 recovery keys",
            {"signing": s1, "next": n1, "recovery": [r0, r1, _pub(D_R2), _pub(D_S3)]},
            "genesis",
        ),
        (
            "genesis with a recovery key of 31 bytes",
            {"signing": s1, "next": n1, "recovery": [r0[:31]]},
            "genesis",
        ),
        (
            "genesis with signing of 31 bytes",
            {"signing": s1[:31], "next": n1, "recovery": [r0]},
            "genesis",
        ),
        ("genesis without next", {"signing": s1, "recovery": [r0]}, "genesis"),
        (
            "genesis whose signing key is also a recovery key",
            {"signing": s1, "next": n1, "recovery": [r0, s1]},
            "distinct-keys",
        ),
        (
            "genesis with the same recovery key twice",
            {"signing": s1, "next": n1, "recovery": [r0, r0]},
            "distinct-keys",
        ),
        (
            "genesis whose next commits to its own signing key (N = S)",
            {"signing": s1, "next": next_key_commitment(s1), "recovery": [r0]},
            "distinct-keys",
        ),
        (
            "genesis whose next commits to one of its recovery keys",
            {"signing": s1, "next": next_key_commitment(r1), "recovery": [r0, r1]},
            "distinct-keys",
        ),
        (
            "genesis whose `from` is a did:murmur, not a did:key",
            {"signing": s1, "next": n1, "recovery": [r0], "from": DANA},
            "move",
        ),
    ):
        add(comment, genesis(body), "bad-field", anchor)

    # -- rotate and recover bodies (#key-events)
    add(
        "rotate carrying recovery: a rotate cannot change who may recover",
        rotate({"signing": s2, "next": n2, "recovery": [r0]}),
        "bad-field",
        "key-events",
    )
    add("rotate without next", rotate({"signing": s2}), "bad-field", "key-events")
    add(
        "rotate whose new signing key is N1, the key that signed it (N signs one rotate "
        "and is destroyed)",
        rotate({"signing": _pub(D_N1), "next": n2}),
        "bad-field",
        "key-events",
    )
    add(
        "rotate whose new next commits to N1, the key that signed it",
        rotate({"signing": s2, "next": n1}),
        "bad-field",
        "key-events",
    )
    add(
        "recover with an empty recovery list",
        recover({"signing": s2, "next": n2, "recovery": []}),
        "bad-field",
        "key-events",
    )
    add(
        "recover whose new signing key is R0, the recovery key that signed it",
        recover({"signing": r0, "next": n2}),
        "bad-field",
        "key-events",
    )
    add(
        "recover whose new signing key is also in its new recovery list",
        recover({"signing": s2, "next": n2, "recovery": [r1, s2]}),
        "bad-field",
        "distinct-keys",
    )

    # -- move (#move)
    add(
        "move whose `to` is a did:key",
        craft(encode({"to": BOB.did}), kind="move"),
        "bad-field",
        "move",
    )
    add("move without `to`", craft(encode({}), kind="move"), "bad-field", "move")

    # -- signature (#signature-v2)
    add(
        "v2 signature over the v1 domain b'murmur-event-v1:' + id",
        craft_v2(post, signer=D_S1, kev=kev, sign_domain=signing_message),
        "invalid-signature",
        "signature-v2",
    )
    add(
        "v2 signature by S1 while the header's key is S2",
        craft_v2(post, signer=D_S1, key=s2, kev=kev),
        "invalid-signature",
        "signature-v2",
    )
    add(
        "v2 signature over the bare id",
        craft_v2(post, signer=D_S1, kev=kev, sign_domain=lambda eid: eid),
        "invalid-signature",
        "signature-v2",
    )

    # -- key events keep their bodies (#key-event-body)
    add(
        "genesis without its body (nil): its did and keys cannot be checked",
        genesis(gbody, author=DANA, wire_body=False),
        "body-required",
        "key-event-body",
    )
    add(
        "rotate without its body (nil)",
        rotate({"signing": s2, "next": n2}, wire_body=False),
        "body-required",
        "key-event-body",
    )
    return cases


# -- files ------------------------------------------------------------------------------


def _doc(description: str, cases: Any) -> dict[str, Any]:
    return {"description": description, "generator": "scripts/gen_vectors.py", "cases": cases}


def render() -> dict[str, str]:
    """Every vector file's name and exact text."""
    docs = {
        "events-valid.json": _doc(
            "Valid events (spec 0002, 0003). decode_event(wire, net, now_ms) accepts each; "
            "signing header fields and body with seed reproduces header_bytes, id, sig and "
            "wire byte for byte.",
            valid_events(),
        ),
        "events-invalid.json": _doc(
            "Invalid events (spec 0002 §2.8). decode_event(wire, net, now_ms) rejects each "
            "with exactly the error code `error`; `spec` names the requirement.",
            invalid_events(),
        ),
        "blobs.json": _doc(
            "Blobs of spec 0003 #embed, bytes as base64. valid: sniff(bytes) gives mime, "
            "width and height; invalid: sniff(bytes) fails with `error` (bad-blob); "
            "checks: verify_blob(bytes, image) passes when `error` is null, else fails "
            "with `error`. `spec` names the requirement: 0003-kinds.md#blob-check.",
            blob_vectors(to_json),
        ),
        "encoding.json": _doc(
            "Canonical MessagePack (spec 0002 §2.2). valid: encode(value) == hex and "
            "decode(hex) == value. invalid: decode(hex) fails with `error` under the "
            "generic decode bounds of spec 0002 §2.3.",
            encoding_vectors(),
        ),
        "events-v2-valid.json": _doc(
            "Valid events of spec 0008 (v2 headers of did:murmur authors, key events, "
            "moves, did:murmur in bodies). decode_event(wire, net, now_ms, allow_v2=True) "
            "accepts each; signing the header fields and body with seed (sign_event for "
            "v: 1, sign_event_v2 for v: 2, whose author and kev come from the header) "
            "reproduces header_bytes, id, sig and wire byte for byte. A genesis's author "
            "is the did:murmur of its body_bytes.",
            valid_v2_events(),
        ),
        "events-v2-invalid.json": _doc(
            "Invalid events of spec 0008. decode_event(wire, net, now_ms, allow_v2=True) "
            "rejects each with exactly the error code `error`; `spec` names the "
            "requirement. Signatures are valid unless the case is about the signature. "
            "None of these checks needs a key state (that is key-histories.json).",
            invalid_v2_events(),
        ),
        "chain.json": _doc(
            "Per-author chain analysis (spec 0002 §2.9): a set of (seq, id, prev) of one "
            "author gives head_seq, head_id, max_seq, gaps, forks and broken_links.",
            chain_vectors(),
        ),
        "key-histories.json": {
            **_doc(
                "Key histories of spec 0008: one did:murmur author's wire events per case "
                "(hex). Decode each with decode_event(wire, net, now_ms, allow_v2=True); "
                "`verdict` is §8.5 steps 1-4 against the key events the case holds "
                "(`accepted`, or the code: unauthorized-key, unknown-key-event, bad-kev, "
                "bad-field; `no-effect` for a v1 event, in no key history). The accepted "
                "events give `path` (key event ids, genesis first), `dispute` (null, or "
                "the branch point, null for the virtual root of the geneses, and the "
                "contenders) and per event `status`, `revoked_by` (an id or null) and "
                "`reason` (the rule's code when a rule, not a key event, revoked it). "
                "Ingesting the events in any order of `arrival_orders` (retrying "
                "unknown-key-event) gives the same verdicts and statuses. `keys` names "
                "every key (seed = sha256('murmur key-histories v1:' + name)).",
                key_history_cases(),
            ),
            "keys": keys_json(),
        },
    }
    return {
        name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in docs.items()
    }


def check(directory: Path = VECTORS) -> list[str]:
    """Names of vector files that are missing or differ from what would be generated."""
    stale = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def write(directory: Path = VECTORS) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    files = render()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        for name in stale:
            print(f"stale: specs/vectors/{name} (run python scripts/gen_vectors.py)")
        return 1 if stale else 0
    for name in write():
        print(f"wrote specs/vectors/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
