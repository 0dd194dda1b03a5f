"""Identities: Ed25519 key pairs and the two kinds of did that name authors.

A ``did:key`` (spec 0001) *is* its key: ``"did:key:z"`` followed by base58btc of the
multicodec header ``0xed 0x01`` (unsigned-varint of 0xed, the ed25519-pub code) and the
32 raw public-key bytes; ``z`` is the multibase prefix for base58btc.

A ``did:murmur`` (spec 0008 #did-murmur) is a rotatable identity: ``"did:murmur:"``
followed by the lowercase, unpadded RFC 4648 base32 of
``sha256(b"murmur-did-v1:" + genesis_body_bytes)``, 52 characters. It names the hash of
the identity's first key event, not a key: which key signs for it is decided by the
author's key events (``protocol/keystate.py``), never by the name.

Nothing else names an identity: display names are profile data. Both kinds are parsed
strictly (one spelling per name); :func:`did_method` tells them apart. Signing and
verification go through ``cryptography``; this module adds the naming, the parsing and
the pre-rotation commitment of spec 0008 #genesis.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

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
    "DID_MURMUR_DOMAIN",
    "DID_MURMUR_PREFIX",
    "DID_PREFIX",
    "ED25519_MULTICODEC",
    "NEXT_KEY_DOMAIN",
    "DidMethod",
    "Identity",
    "PublicKey",
    "did_from_public_bytes",
    "did_method",
    "did_murmur_from_genesis_body",
    "did_murmur_hash",
    "next_key_commitment",
    "public_bytes_from_did",
    "verify_with_key",
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


# -- did:murmur (spec 0008 #did-murmur) ------------------------------------------------

DID_MURMUR_PREFIX: Final = "did:murmur:"
#: Domain of the did hash: a did:murmur can never be confused with another Murmur hash.
DID_MURMUR_DOMAIN: Final = b"murmur-did-v1:"
#: Domain of the pre-rotation commitment of a next key (spec 0008 #genesis).
NEXT_KEY_DOMAIN: Final = b"murmur-next-v1:"
#: 32 hash bytes are 256 bits; base32 writes 5 bits a character, so 52 characters
#: whose last one carries 4 padding bits, which MUST be zero.
_MURMUR_B32_LEN = 52
_MURMUR_B32_RE = re.compile(r"[a-z2-7]{52}")

#: The did methods an author may have: ``"key"`` or ``"murmur"``.
DidMethod: TypeAlias = Literal["key", "murmur"]


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def did_murmur_from_genesis_body(body_bytes: bytes) -> str:
    """The ``did:murmur`` of a genesis, from its canonical body bytes (never truncated)."""
    return DID_MURMUR_PREFIX + _b32(hashlib.sha256(DID_MURMUR_DOMAIN + body_bytes).digest())


def did_murmur_hash(did: str) -> bytes:
    """The 32-byte genesis hash a ``did:murmur`` names; raises ``InvalidDidError``.

    Strict (spec 0008 #did-murmur): the exact prefix, then exactly 52 characters of
    ``[a-z2-7]`` whose last 4 padding bits are zero, so each hash has one spelling and a
    did compares as a string. No uppercase, no ``=`` padding, no whitespace.
    """
    if not isinstance(did, str) or len(did) > MAX_DID_BYTES:
        raise InvalidDidError("not a did:murmur string")
    return _murmur_hash(did)


@functools.lru_cache(maxsize=4096)
def _murmur_hash(did: str) -> bytes:
    # Cached like did:key (authors repeat); only valid dids are cached, errors are not.
    rest = did[len(DID_MURMUR_PREFIX) :]
    if not did.startswith(DID_MURMUR_PREFIX) or not _MURMUR_B32_RE.fullmatch(rest):
        raise InvalidDidError(f"{did[:24]!r} is not a did:murmur of 52 base32 characters")
    # 52 characters + 4 "=" make whole 40-bit groups; b32decode wants uppercase.
    raw = base64.b32decode(rest.upper() + "====")
    if _b32(raw) != rest:  # nonzero padding bits: a second spelling of the same hash
        raise InvalidDidError("did:murmur is not in canonical form (padding bits set)")
    return raw


def did_method(did: object) -> DidMethod:
    """``"key"`` or ``"murmur"`` for a did that parses strictly; else ``InvalidDidError``.

    A ``did:key`` is parsed exactly as :func:`public_bytes_from_did` does (spec 0001
    §1.3); a ``did:murmur`` as :func:`did_murmur_hash` does.
    """
    if not isinstance(did, str) or len(did) > MAX_DID_BYTES:
        raise InvalidDidError("a did is a string of at most 128 characters")
    if did.startswith(DID_MURMUR_PREFIX):
        _murmur_hash(did)
        return "murmur"
    _public_bytes(did)
    return "key"


def next_key_commitment(public: bytes) -> bytes:
    """``sha256(b"murmur-next-v1:" + public)``: the ``next`` that pre-commits a key."""
    return hashlib.sha256(NEXT_KEY_DOMAIN + public).digest()


def verify_with_key(public: bytes, signature: bytes, message: bytes) -> None:
    """Verify ``signature`` over ``message`` by the raw 32-byte Ed25519 key ``public``.

    For v2 events, whose header carries the signing key itself (spec 0008
    #signature-v2). Raises ``InvalidSignatureError``, also for 32 bytes that are not a
    curve point (such a key can sign nothing).
    """
    try:
        key = _ed25519_key(public)
    except ValueError:
        raise InvalidSignatureError("the key is not an Ed25519 public key") from None
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise InvalidSignatureError("signature does not verify") from None


@functools.lru_cache(maxsize=_DID_CACHE)
def _ed25519_key(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)


# -- keys -------------------------------------------------------------------------------


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
