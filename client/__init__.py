"""Murmur reference client: keystore, CLI, and (coming) reading, posting and moderation.

The client trusts no node: it verifies every event itself with ``protocol``.
"""

from __future__ import annotations

from client.keystore import (
    IdentityExistsError,
    IdentityNotFoundError,
    Keystore,
    KeystoreError,
    StoredIdentity,
    default_home,
)

__all__ = [
    # keystore
    "IdentityExistsError",
    "IdentityNotFoundError",
    "Keystore",
    "KeystoreError",
    "StoredIdentity",
    "default_home",
]
