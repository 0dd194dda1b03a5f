"""Identities: Ed25519 key pairs named by their ``did:key`` (spec 0001).

A did is ``"did:key:z"`` followed by base58btc of the multicodec header ``0xed 0x01``
(unsigned-varint of 0xed, the ed25519-pub code) and the 32 raw public-key bytes. The
``z`` is the multibase prefix for base58btc. Nothing else names an identity: display
names are profile data.

Signing and verification go through ``cryptography``; this module only adds the
naming, strict parsing of dids (one canonical spelling per key) and the
domain-separated signing of event ids.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.errors import InvalidDidError, InvalidSignatureError
from protocol.limits import MAX_DID_BYTES

__all__ = [
    "DID_PREFIX",
    "ED25519_MULTICODEC",
    "Identity",
    "PublicKey",
    "did_from_public_bytes",
    "public_bytes_from_did",
]

#: multicodec ed25519-pub (0xed) as an unsigned varint: 0xed 0x01.
ED25519_MULTICODEC = b"\xed\x01"
DID_PREFIX = "did:key:z"


def did_from_public_bytes(public: bytes) -> str:
    """The ``did:key`` naming a 32-byte Ed25519 public key."""
    if len(public) != 32:
        raise InvalidDidError("an Ed25519 public key is 32 bytes")
    return DID_PREFIX + base58.b58encode(ED25519_MULTICODEC + public).decode("ascii")


def public_bytes_from_did(did: str) -> bytes:
    """The 32 public-key bytes named by ``did``; raises ``InvalidDidError``.

    Strict: only the Ed25519 multicodec, only base58btc, and the did must be the
    canonical spelling of its key (base58 has one spelling per byte string, but leading
    zero bytes and stray characters are checked by re-encoding).
    """
    if not isinstance(did, str) or len(did) > MAX_DID_BYTES:
        raise InvalidDidError("not a did:key string")
    return _public_bytes(did)


#: Parsed dids kept for reuse: a busy node sees the same authors again and again, and
#: base58 in Python costs more than the parse of the rest of an event. Only valid dids
#: are cached (a raised error is not), so garbage cannot evict much: at most this many
#: entries of about 200 bytes each.
_DID_CACHE = 32_768


@functools.lru_cache(maxsize=_DID_CACHE)
def _public_bytes(did: str) -> bytes:
    if not did.startswith(DID_PREFIX):
        raise InvalidDidError(f"{did[:24]!r} is not a base58btc did:key")
    try:
        raw = base58.b58decode(did[len(DID_PREFIX) :].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidDidError(f"{did[:24]!r} is not valid base58btc") from None
    if len(raw) != 34 or raw[:2] != ED25519_MULTICODEC:
        raise InvalidDidError("did:key does not name an Ed25519 public key")
    public = raw[2:]
    if did_from_public_bytes(public) != did:
        raise InvalidDidError("did:key is not in canonical form")
    return public


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key with its did; verifies domain-separated signatures."""

    raw: bytes
    did: str
    _key: Ed25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_did(cls, did: str) -> PublicKey:
        """The key named by ``did`` (cached: keys are immutable); raises ``InvalidDidError``."""
        return _public_key(public_bytes_from_did(did), did)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKey:
        did = did_from_public_bytes(raw)
        return cls(raw=raw, did=did, _key=Ed25519PublicKey.from_public_bytes(raw))

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return nothing if ``signature`` is valid over ``message``; else raise."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise InvalidSignatureError("signature does not verify") from None


@functools.lru_cache(maxsize=_DID_CACHE)
def _public_key(raw: bytes, did: str) -> PublicKey:
    return PublicKey(raw=raw, did=did, _key=Ed25519PublicKey.from_public_bytes(raw))


@dataclass(frozen=True, slots=True)
class Identity:
    """A private Ed25519 key and its did. ``seed`` is the 32-byte private key."""

    seed: bytes = field(repr=False)
    public: PublicKey
    _key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("an Ed25519 seed is exactly 32 bytes")
        key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(seed=seed, public=PublicKey.from_bytes(raw), _key=key)

    @classmethod
    def generate(cls, *, randbytes: Callable[[int], bytes] = os.urandom) -> Identity:
        """A new identity from the OS CSPRNG (or an injected ``randbytes``, for tests)."""
        return cls.from_seed(bytes(randbytes(32)))

    @property
    def did(self) -> str:
        return self.public.did

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
