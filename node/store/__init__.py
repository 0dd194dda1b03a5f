"""Event storage for the node: the :class:`Store` interface and its SQLite backend.

Handlers depend on :class:`Store` only; :func:`open_store` picks the backend (SQLite
today, spec 0004 §store).
"""

from __future__ import annotations

from node.store.base import (
    ChainRow,
    Counts,
    FeedQuery,
    LabelRow,
    PeerRecord,
    ProfileRow,
    Store,
    StoredEvent,
    WriteResult,
)
from node.store.migrations import SCHEMA_VERSION, SchemaError
from node.store.sqlite import SqliteStore

__all__ = [
    "ChainRow",
    "Counts",
    "FeedQuery",
    "LabelRow",
    "PeerRecord",
    "ProfileRow",
    "SCHEMA_VERSION",
    "SchemaError",
    "SqliteStore",
    "Store",
    "StoredEvent",
    "WriteResult",
]
