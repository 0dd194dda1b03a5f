"""The ``feed`` event kind: a feed's name, description and serving nodes (spec 0003 #feed).

The vectors (specs/vectors/events-*.json, run by test_vectors.py) hold signed valid and
invalid ``feed`` events; these are the body rules one by one.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol import kinds
from protocol.errors import BadFieldError
from protocol.limits import (
    MAX_FEED_DESCRIPTION_BYTES,
    MAX_FEED_NAME_BYTES,
    MAX_FEED_NODE_URL_BYTES,
    MAX_FEED_NODES,
)

from .test_vectors import INVALID, VALID

NODE = "https://node.example"

VALID_BODIES: list[dict[str, Any]] = [
    {"name": "hot", "description": "What's hot", "nodes": [NODE]},
    {"name": "hot", "nodes": [NODE]},  # description is optional
    {"name": "a", "description": "", "nodes": ["http://127.0.0.1:8080"]},
    {"name": "0-long_posts.v2", "nodes": [NODE, NODE + "/", "https://n.example:8443/murmur"]},
    {"name": "x" * MAX_FEED_NAME_BYTES, "nodes": [f"https://n{i}.example" for i in range(8)]},
    {"name": "hot", "description": "é" * (MAX_FEED_DESCRIPTION_BYTES // 2), "nodes": [NODE]},
    {"name": "hot", "nodes": ["https://" + "n" * (MAX_FEED_NODE_URL_BYTES - 8)]},
    {"name": "hot", "nodes": ["https://n.example/@me"]},  # '@' in the path is no userinfo
    {"name": "hot", "nodes": [NODE], "org.example.icon": "flame"},  # unknown keys
]

INVALID_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("no name", {"nodes": [NODE]}),
    ("empty name", {"name": "", "nodes": [NODE]}),
    ("uppercase name", {"name": "Hot", "nodes": [NODE]}),
    ("name starting with '-'", {"name": "-hot", "nodes": [NODE]}),
    ("name starting with '.'", {"name": ".hot", "nodes": [NODE]}),
    ("name with '/'", {"name": "a/b", "nodes": [NODE]}),
    ("name with a space", {"name": "a b", "nodes": [NODE]}),
    ("name too long", {"name": "x" * (MAX_FEED_NAME_BYTES + 1), "nodes": [NODE]}),
    ("name as bin", {"name": b"hot", "nodes": [NODE]}),
    ("description as bin", {"name": "hot", "description": b"x", "nodes": [NODE]}),
    ("description too long",
     {"name": "hot", "description": "x" * (MAX_FEED_DESCRIPTION_BYTES + 1), "nodes": [NODE]}),
    ("no nodes", {"name": "hot"}),
    ("empty nodes", {"name": "hot", "nodes": []}),
    ("nodes as a str", {"name": "hot", "nodes": NODE}),
    ("too many nodes",
     {"name": "hot", "nodes": [f"https://n{i}.example" for i in range(MAX_FEED_NODES + 1)]}),
    ("duplicate nodes", {"name": "hot", "nodes": [NODE, NODE]}),
    ("ftp", {"name": "hot", "nodes": ["ftp://node.example"]}),
    ("uppercase scheme", {"name": "hot", "nodes": ["HTTPS://node.example"]}),
    ("no host", {"name": "hot", "nodes": ["https://"]}),
    ("no host, a path", {"name": "hot", "nodes": ["https:///v1"]}),
    ("userinfo", {"name": "hot", "nodes": ["https://me:pw@node.example"]}),
    ("fragment", {"name": "hot", "nodes": ["https://node.example/#x"]}),
    ("query", {"name": "hot", "nodes": ["https://node.example/?a=1"]}),
    ("space", {"name": "hot", "nodes": ["https://node .example"]}),
    ("non-ASCII host", {"name": "hot", "nodes": ["https://nœud.example"]}),
    ("url too long", {"name": "hot", "nodes": ["https://" + "n" * (MAX_FEED_NODE_URL_BYTES - 7)]}),
    ("node as bin", {"name": "hot", "nodes": [NODE.encode()]}),
]  # fmt: skip


@pytest.mark.parametrize("body", VALID_BODIES, ids=[str(i) for i in range(len(VALID_BODIES))])
def test_valid_feed_bodies(body: dict[str, Any]) -> None:
    """spec 0003 #feed."""
    kinds.validate_body(kinds.FEED, body)


@pytest.mark.parametrize(("why", "body"), INVALID_BODIES, ids=[w for w, _ in INVALID_BODIES])
def test_invalid_feed_bodies(why: str, body: dict[str, Any]) -> None:
    """spec 0003 #feed: every broken rule is bad-field."""
    with pytest.raises(BadFieldError) as info:
        kinds.validate_body(kinds.FEED, body)
    assert info.value.code == "bad-field"


def test_feed_is_a_known_kind_beside_the_v1_kinds() -> None:
    assert kinds.FEED == "feed" and kinds.is_known_kind("feed")
    assert "feed" not in kinds.V1_KINDS  # the nine of 0003 §3.2-3.10 stay nine
    assert kinds.is_feed_name("hot") and not kinds.is_feed_name("Hot")
    assert kinds.is_feed_node_url(NODE) and not kinds.is_feed_node_url(NODE + "#x")


def test_the_vectors_hold_valid_and_invalid_feed_events() -> None:
    """specs/README.md #vectors: test_vectors.py decodes these with the rest."""
    assert sum(c["header"]["kind"] == "feed" for c in VALID) >= 2
    assert sum(c["spec"] == "0003-kinds.md#feed" for c in INVALID) >= 4
