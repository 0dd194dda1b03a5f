"""Murmur reference client: keystore, posting, verified multi-node reading, the CLI.

The client trusts no node: it verifies every event itself with ``protocol``, reads from
several nodes at once and reports what each one withheld (spec 0007).
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

#: Where each public name lives: imported on first use (PEP 562), so that a module
#: of the package (a moderation worker, the CLI's fast paths) does not pay for httpx
#: and the whole client when it needs one piece.
_LOCATIONS: dict[str, str] = {
    "author_view": "client.views",
    "BadResponseError": "client.errors",
    "ClientConfig": "client.config",
    "ClientError": "client.errors",
    "default_home": "client.keystore",
    "follow_set": "client.views",
    "Head": "client.state",
    "HeadStore": "client.state",
    "IdentityExistsError": "client.keystore",
    "IdentityNotFoundError": "client.keystore",
    "IngestResult": "client.api",
    "Keystore": "client.keystore",
    "KeystoreError": "client.keystore",
    "NodeClient": "client.api",
    "NodeOutcome": "client.publish",
    "NodeReport": "client.reader",
    "NodeTimeoutError": "client.errors",
    "NodeUnreachableError": "client.errors",
    "NoNodeAnsweredError": "client.errors",
    "NoNodesError": "client.errors",
    "PassphraseError": "client.errors",
    "profile_view": "client.views",
    "Publisher": "client.publish",
    "PublishError": "client.errors",
    "PublishResult": "client.publish",
    "Reader": "client.reader",
    "ReadReport": "client.reader",
    "search_view": "client.views",
    "StoredIdentity": "client.keystore",
    "thread_view": "client.views",
    "timeline": "client.views",
    "View": "client.views",
    "WireItem": "client.api",
}

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


def __getattr__(name: str) -> _typing.Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
