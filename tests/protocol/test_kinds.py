"""v1 kinds and their body schemas (spec 0003)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import kinds
from protocol.errors import BadFieldError
from protocol.identity import Identity

ID = b"\x11" * 32
DID = Identity.from_seed(bytes(32)).did
DID2 = Identity.from_seed(b"\x02" * 32).did

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


def test_body_must_be_a_map() -> None:
    with pytest.raises(BadFieldError):
        kinds.validate_body("unknown", [1, 2])
