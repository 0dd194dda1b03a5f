"""Every protocol limit, named once (spec 0002 §limits, spec 0003).

Nodes and clients import these; specs/README.md lists them. Changing one is a
protocol change: a smaller limit makes valid events invalid for some peers.
"""

from __future__ import annotations

__all__ = [
    "FUTURE_SKEW_MS",
    "MAX_ALT_BYTES",
    "MAX_BLOB_BYTES",
    "MAX_BIO_BYTES",
    "MAX_BODY_BYTES",
    "MAX_BODY_ITEMS",
    "MAX_DEPTH",
    "MAX_DID_BYTES",
    "MAX_EMBED_IMAGES",
    "MAX_FACETS",
    "MAX_FEED_DESCRIPTION_BYTES",
    "MAX_FEED_NAME_BYTES",
    "MAX_FEED_NODES",
    "MAX_FEED_NODE_URL_BYTES",
    "MAX_FACET_TYPE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_KIND_BYTES",
    "MAX_LABEL_BYTES",
    "MAX_LANGS",
    "MAX_LIST_MEMBERS",
    "MAX_LIST_NAME_BYTES",
    "MAX_NAME_BYTES",
    "MAX_NET_BYTES",
    "MAX_RECOVERY_KEYS",
    "MAX_SEQ",
    "MAX_SHAPE_DEPTH",
    "MAX_SHAPE_ITEMS",
    "MAX_TAGS",
    "MAX_TAG_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TS",
    "MAX_URI_BYTES",
    "MAX_WARN",
    "MAX_WIRE_BYTES",
]

#: Events whose ``ts`` is more than this ahead of the checker's clock are rejected.
FUTURE_SKEW_MS = 10 * 60 * 1000

#: Whole wire form ``[header, sig, body]``.
MAX_WIRE_BYTES = 72 * 1024
#: Encoded header map.
MAX_HEADER_BYTES = 1024
#: Encoded body map.
MAX_BODY_BYTES = 64 * 1024
#: Nesting depth of a body (the body map itself is depth 0).
MAX_DEPTH = 8
#: Elements of any one array or map in a body.
MAX_BODY_ITEMS = 4096
#: Depth and element bounds of the wire array and the header map. They only need to
#: let a wrongly shaped value decode far enough to be named precisely (spec 0002).
MAX_SHAPE_DEPTH = 4
MAX_SHAPE_ITEMS = 16

MAX_NET_BYTES = 64
MAX_KIND_BYTES = 64
#: A did:key for Ed25519 is 56 characters; leave room, refuse anything absurd.
MAX_DID_BYTES = 128
#: seq and ts are unsigned and must fit in 63 bits (SQLite INTEGER, JSON-safe-ish).
MAX_SEQ = 2**63 - 1
MAX_TS = 2**63 - 1

MAX_TEXT_BYTES = 3000
MAX_TAGS = 16
MAX_TAG_BYTES = 64
MAX_LANGS = 4
MAX_WARN = 8
#: Facets of one post (spec 0003 #facets), the bytes of a facet's ``type``, and of a
#: link facet's ``uri``.
MAX_FACETS = 32
MAX_FACET_TYPE_BYTES = 32
MAX_URI_BYTES = 2048
MAX_NAME_BYTES = 128
MAX_BIO_BYTES = 2000
MAX_LABEL_BYTES = 128
MAX_LIST_NAME_BYTES = 128
MAX_LIST_MEMBERS = 1000
#: Recovery keys in a genesis or recover body (spec 0008 #genesis): 1 to this many.
MAX_RECOVERY_KEYS = 3
#: Images of one post's ``embed`` (spec 0003 #embed): 1 to this many.
MAX_EMBED_IMAGES = 4
#: Bytes of one blob (an embedded image, spec 0003 #embed): 2 MiB. Checked before
#: hashing or sniffing, so a checker never reads more than this per image.
MAX_BLOB_BYTES = 2 * 1024 * 1024
#: Width and height of an embedded image, in pixels: 1 to this many each.
MAX_IMAGE_SIDE = 16384
#: An embedded image's ``alt`` text (its description), in UTF-8 bytes.
MAX_ALT_BYTES = 2000
#: A ``feed`` event (spec 0003 #feed): its ``name`` (1 to this many bytes of
#: ``[a-z0-9_.-]``), its ``description``, how many nodes it names (1 to this many) and
#: the bytes of each node's URL.
MAX_FEED_NAME_BYTES = 64
MAX_FEED_DESCRIPTION_BYTES = 300
MAX_FEED_NODES = 8
MAX_FEED_NODE_URL_BYTES = 256
