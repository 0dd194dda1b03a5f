"""Kinds and their body schemas (spec 0003; key events, move and did:murmur, spec 0008)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import kinds
from protocol.errors import BadFieldError
from protocol.identity import Identity, did_murmur_from_genesis_body, next_key_commitment

ID = b"\x11" * 32
DID = Identity.from_seed(bytes(32)).did
DID2 = Identity.from_seed(b"\x02" * 32).did
MURMUR = did_murmur_from_genesis_body(b"\x80")
K1, K2, K3, K4, K5 = (Identity.from_seed(bytes([n]) * 32).public.raw for n in range(0x50, 0x55))
NEXT = next_key_commitment(K5)

VALID: list[tuple[str, dict[str, Any]]] = [
    ("profile", {}),
    ("profile", {"name": "Alice", "bio": "hi"}),
    ("post", {"text": ""}),
    ("post", {"text": "hi", "reply": {"root": ID, "parent": ID}, "quote": ID}),
    ("post", {"text": "hi", "tags": ["a", "b"], "langs": ["en", "pt-BR"], "warn": ["nsfw"]}),
    ("post", {"text": "hi", "future-field": {"anything": [1, 2]}}),  # unknown keys ignored
    ("repost", {"target": ID}),
    ("like", {"target": ID}),
    ("follow", {"subject": DID}),
    ("unfollow", {"subject": DID}),
    ("delete", {"target": ID}),
    ("label", {"subject": ID, "val": "spam"}),
    ("label", {"subject": DID, "val": "bot-account", "neg": True, "exp": 1}),
    ("list", {"name": "trolls", "purpose": "mute", "members": [DID, DID2]}),
    ("list", {"name": "friends", "purpose": "curate", "members": []}),
    ("some.new-kind", {"whatever": b"\x00"}),
    # spec 0008: people may be named by a did:murmur; key events and move
    ("follow", {"subject": MURMUR}),
    ("unfollow", {"subject": MURMUR}),
    ("label", {"subject": MURMUR, "val": "bot"}),
    ("list", {"name": "x", "purpose": "curate", "members": [DID, MURMUR]}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2]}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2, K3, K4], "from": DID}),
    ("rotate", {"signing": K1, "next": NEXT}),
    ("recover", {"signing": K1, "next": NEXT}),
    ("recover", {"signing": K1, "next": NEXT, "recovery": [K2, K3]}),
    ("move", {"to": MURMUR}),
]

INVALID: list[tuple[str, dict[str, Any]]] = [
    ("profile", {"name": 5}),
    ("profile", {"name": "x" * 129}),
    ("post", {}),
    ("post", {"text": b"bytes"}),
    ("post", {"text": "x" * 3001}),
    ("post", {"text": "x", "reply": {"root": ID}}),
    ("post", {"text": "x", "reply": [ID, ID]}),
    ("post", {"text": "x", "quote": b"short"}),
    ("post", {"text": "x", "tags": ["a"] * 17}),
    ("post", {"text": "x", "tags": [""]}),
    ("post", {"text": "x", "tags": "a"}),
    ("post", {"text": "x", "langs": ["English"]}),
    ("post", {"text": "x", "warn": ["NSFW"]}),
    ("repost", {}),
    ("like", {"target": "abc"}),
    ("follow", {"subject": "alice"}),
    ("follow", {"subject": ID}),
    ("delete", {"target": ID[:31]}),
    ("label", {"subject": ID, "val": "Spam"}),
    ("label", {"subject": ID, "val": "x" * 129}),
    ("label", {"subject": ID, "val": ""}),
    ("label", {"val": "spam"}),
    ("label", {"subject": ID[:5], "val": "spam"}),
    ("label", {"subject": ID, "val": "spam", "neg": 1}),
    ("label", {"subject": ID, "val": "spam", "exp": -1}),
    ("list", {"name": "x", "purpose": "hide", "members": []}),
    ("list", {"name": "", "purpose": "mute", "members": []}),
    ("list", {"name": "x", "purpose": "mute", "members": [DID, DID]}),
    ("list", {"name": "x", "purpose": "mute", "members": ["nobody"]}),
    ("list", {"name": "x", "purpose": "mute", "members": [DID] * 1001}),
    ("list", {"name": "x", "purpose": "mute"}),
    # spec 0008 #did-murmur, #genesis, #distinct-keys, #key-events, #move
    ("follow", {"subject": MURMUR.upper()}),
    ("list", {"name": "x", "purpose": "mute", "members": [MURMUR, MURMUR]}),
    ("genesis", {"signing": K1, "next": NEXT}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": []}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2, K3, K4, K5]}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": K2}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2[:31]]}),
    ("genesis", {"signing": K1, "next": NEXT[:31], "recovery": [K2]}),
    ("genesis", {"signing": "K1", "next": NEXT, "recovery": [K2]}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2, K1]}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2, K2]}),
    ("genesis", {"signing": K1, "next": next_key_commitment(K1), "recovery": [K2]}),
    ("genesis", {"signing": K1, "next": next_key_commitment(K2), "recovery": [K2]}),
    ("genesis", {"signing": K1, "next": NEXT, "recovery": [K2], "from": MURMUR}),
    ("rotate", {"signing": K1}),
    ("rotate", {"signing": K1, "next": NEXT, "recovery": [K2]}),
    ("rotate", {"signing": K1, "next": next_key_commitment(K1)}),
    ("recover", {"signing": K1, "next": NEXT, "recovery": []}),
    ("recover", {"signing": K1, "next": NEXT, "recovery": [K1]}),
    ("move", {}),
    ("move", {"to": DID}),
    ("move", {"to": MURMUR + " "}),
]


@pytest.mark.parametrize(
    ("kind", "body"), VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)]
)
def test_valid_bodies(kind: str, body: dict[str, Any]) -> None:
    kinds.validate_body(kind, body)


@pytest.mark.parametrize(
    ("kind", "body"), INVALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(INVALID)]
)
def test_invalid_bodies(kind: str, body: dict[str, Any]) -> None:
    with pytest.raises(BadFieldError) as info:
        kinds.validate_body(kind, body)
    assert info.value.code == "bad-field"


def test_v1_kinds_are_the_spec_table() -> None:
    assert kinds.V1_KINDS == (
        "profile",
        "post",
        "repost",
        "like",
        "follow",
        "unfollow",
        "delete",
        "label",
        "list",
    )
    assert all(kinds.is_known_kind(k) for k in kinds.V1_KINDS)
    assert not kinds.is_known_kind("poll")


def test_0008_kinds_are_known_and_key_events_are_three() -> None:
    assert all(kinds.is_known_kind(k) for k in ("genesis", "rotate", "recover", "move"))
    assert kinds.KEY_EVENT_KINDS == {"genesis", "rotate", "recover"}
    assert kinds.is_key_event_kind("rotate") and not kinds.is_key_event_kind("move")


def test_body_must_be_a_map() -> None:
    with pytest.raises(BadFieldError):
        kinds.validate_body("unknown", [1, 2])
