"""External did:key vectors (W3C CCG, shared/vectors/did-key-ed25519-w3c.json), spec 0001.

For every entry: the seed (the 32-byte Ed25519 private key) gives the did, and the did
gives the public key published in the entry (``publicKeyBase58``, or the base64url
``x`` of ``publicKeyJwk`` for JsonWebKey2020). The entries' X25519 key-agreement dids
are well-formed did:key strings of another key type and must be refused
(spec 0001 §1.3).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import base58
import pytest

from protocol.errors import InvalidDidError
from protocol.identity import Identity, public_bytes_from_did

W3C = Path(__file__).parents[2].parent / "shared" / "vectors" / "did-key-ed25519-w3c.json"
ENTRIES: dict[str, Any] = json.loads(W3C.read_text(encoding="utf-8"))


def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _published_key(method: dict[str, Any]) -> bytes:
    if "publicKeyBase58" in method:
        return base58.b58decode(method["publicKeyBase58"])
    jwk = method["publicKeyJwk"]
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    return _b64url(jwk["x"])


def _ed25519_methods(entry: dict[str, Any]) -> list[dict[str, Any]]:
    methods = [entry["verificationKeyPair"], *entry["didDocument"]["verificationMethod"]]
    return [
        m
        for m in methods
        if m["type"] == "Ed25519VerificationKey2018"
        or (m["type"] == "JsonWebKey2020" and m["publicKeyJwk"]["crv"] == "Ed25519")
    ]


def test_vectors_are_present() -> None:
    assert len(ENTRIES) >= 5
    assert any(m["type"] == "JsonWebKey2020" for e in ENTRIES.values() for m in _ed25519_methods(e))


@pytest.mark.parametrize("did", list(ENTRIES))
def test_seed_to_did(did: str) -> None:
    identity = Identity.from_seed(bytes.fromhex(ENTRIES[did]["seed"]))
    assert identity.did == did
    assert ENTRIES[did]["didDocument"]["id"] == did


@pytest.mark.parametrize("did", list(ENTRIES))
def test_did_to_public_key(did: str) -> None:
    public = public_bytes_from_did(did)
    methods = _ed25519_methods(ENTRIES[did])
    assert methods
    for method in methods:
        assert _published_key(method) == public
    identity = Identity.from_seed(bytes.fromhex(ENTRIES[did]["seed"]))
    assert identity.public.raw == public


@pytest.mark.parametrize("did", list(ENTRIES))
def test_key_agreement_did_is_not_an_identity(did: str) -> None:
    fragment = ENTRIES[did]["keyAgreementKeyPair"]["id"].split("#")[-1]
    assert fragment.startswith("z6LS")  # multicodec x25519-pub (0xec)
    with pytest.raises(InvalidDidError):
        public_bytes_from_did("did:key:" + fragment)
