"""Identities and did:key (spec 0001); the W3C vectors are in test_did_key_vectors.py."""

from __future__ import annotations

import pytest

from protocol.errors import InvalidDidError, InvalidSignatureError
from protocol.identity import Identity, PublicKey, did_from_public_bytes, public_bytes_from_did


def test_generate_uses_injected_randomness() -> None:
    a = Identity.generate(randbytes=lambda n: b"\x07" * n)
    assert a.did == Identity.from_seed(b"\x07" * 32).did
    assert Identity.generate().did != Identity.generate().did


def test_did_round_trip() -> None:
    identity = Identity.from_seed(b"\x05" * 32)
    assert identity.did.startswith("did:key:z6Mk")
    assert public_bytes_from_did(identity.did) == identity.public.raw
    assert did_from_public_bytes(identity.public.raw) == identity.did
    assert PublicKey.from_did(identity.did) == identity.public


@pytest.mark.parametrize(
    "did",
    [
        "",
        "did:key:",
        "did:key:z",
        "did:web:example.com",
        "did:key:f6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",  # not base58btc
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",  # '0' not in alphabet
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW",  # truncated
        "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",  # X25519, not Ed25519
        "did:key:z1" + "1" * 44,
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp\n",
        "did:key:zé",
        "did:key:z" + "2" * 200,
    ],
)
def test_bad_dids(did: str) -> None:
    with pytest.raises(InvalidDidError) as info:
        public_bytes_from_did(did)
    assert info.value.code == "invalid-did"


def test_seed_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.from_seed(b"\x00" * 31)


def test_sign_and_verify() -> None:
    identity = Identity.from_seed(b"\x09" * 32)
    sig = identity.sign(b"message")
    identity.public.verify(sig, b"message")
    with pytest.raises(InvalidSignatureError):
        identity.public.verify(sig, b"messagE")


def test_seed_is_not_in_repr() -> None:
    identity = Identity.from_seed(b"\x09" * 32)
    assert (b"\x09" * 32).hex() not in repr(identity) and "\\t" not in repr(identity)
