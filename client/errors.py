"""Client-side errors: local problems a person can fix, in the one ProtocolError tree.

::

    ProtocolError
    └── KeystoreError           keystore-error        the home, a key or config file
        ├── IdentityExistsError identity-exists
        ├── IdentityNotFoundError identity-not-found
        └── PassphraseError     bad-passphrase
"""

from __future__ import annotations

from protocol.errors import ProtocolError

__all__ = ["IdentityExistsError", "IdentityNotFoundError", "KeystoreError", "PassphraseError"]


class KeystoreError(ProtocolError):
    """A keystore problem a person can fix; ``code`` is stable, the message says how."""

    code = "keystore-error"


class IdentityExistsError(KeystoreError):
    code = "identity-exists"


class IdentityNotFoundError(KeystoreError):
    code = "identity-not-found"


class PassphraseError(KeystoreError):
    """The key is sealed and no passphrase, or the wrong one, was given."""

    code = "bad-passphrase"
