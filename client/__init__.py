"""Murmur reference client: keystore, posting, verified multi-node reading, the CLI.

The client trusts no node: it verifies every event itself with ``protocol``, reads from
several nodes at once and reports what each one withheld (spec 0007).
"""

from __future__ import annotations

from client.api import IngestResult, NodeClient, WireItem
from client.config import ClientConfig
from client.errors import (
    BadResponseError,
    ClientError,
    NodeTimeoutError,
    NodeUnreachableError,
    NoNodeAnsweredError,
    NoNodesError,
    PassphraseError,
    PublishError,
)
from client.keystore import (
    IdentityExistsError,
    IdentityNotFoundError,
    Keystore,
    KeystoreError,
    StoredIdentity,
    default_home,
)
from client.publish import NodeOutcome, Publisher, PublishResult
from client.reader import NodeReport, Reader, ReadReport
from client.state import Head, HeadStore
from client.views import (
    View,
    author_view,
    follow_set,
    profile_view,
    search_view,
    thread_view,
    timeline,
)

__all__ = [
    # keystore and local state
    "ClientConfig",
    "Head",
    "HeadStore",
    "Keystore",
    "StoredIdentity",
    "default_home",
    # one node's API
    "IngestResult",
    "NodeClient",
    "WireItem",
    # posting
    "NodeOutcome",
    "PublishResult",
    "Publisher",
    # verified reading
    "NodeReport",
    "ReadReport",
    "Reader",
    "View",
    "author_view",
    "follow_set",
    "profile_view",
    "search_view",
    "thread_view",
    "timeline",
    # errors
    "BadResponseError",
    "ClientError",
    "IdentityExistsError",
    "IdentityNotFoundError",
    "KeystoreError",
    "NoNodeAnsweredError",
    "NoNodesError",
    "NodeTimeoutError",
    "NodeUnreachableError",
    "PassphraseError",
    "PublishError",
]
