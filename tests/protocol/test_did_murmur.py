"""did:murmur names (spec 0008 #did-murmur): derivation and strict parsing.

did:key parsing must not change (its W3C vectors are test_did_key_vectors.py); here we
check that the two methods are told apart and that a did:murmur has one spelling.
"""

from __future__ import annotations

import base64
import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import InvalidDidError
from protocol.identity import (
    DID_MURMUR_PREFIX,
    Identity,
    did_method,
    did_murmur_from_genesis_body,
    did_murmur_hash,
    next_key_commitment,
    public_bytes_from_did,
)

B32 = "abcdefghijklmnopqrstuvwxyz234567"
BODY = b"\x83\xa4next\xc4\x20" + bytes(32)  # any bytes: the did hashes what it is given
DID = did_murmur_from_genesis_body(BODY)
REST = DID[len(DID_MURMUR_PREFIX) :]


def _spell(digest: bytes) -> str:
    return DID_MURMUR_PREFIX + base64.b32encode(digest).decode().rstrip("=").lower()


def test_derivation_is_the_domain_separated_hash_of_the_body() -> None:
    digest = hashlib.sha256(b"murmur-did-v1:" + BODY).digest()
    assert DID == _spell(digest)
    assert len(DID) == 63 and len(REST) == 52
    assert did_murmur_hash(DID) == digest
    assert did_method(DID) == "murmur"
    # Not truncated: a different body gives a different did, and the hash is whole.
    assert did_murmur_from_genesis_body(BODY + b"\x00") != DID


def test_did_method_tells_the_two_apart() -> None:
    alice = Identity.from_seed(bytes(32))
    assert did_method(alice.did) == "key"
    assert did_method(DID) == "murmur"
    with pytest.raises(InvalidDidError):
        public_bytes_from_did(DID)  # a did:murmur names no key
    with pytest.raises(InvalidDidError):
        did_murmur_hash(alice.did)


def _flip_padding(rest: str) -> str:
    # The last character carries 1 data bit and 4 padding bits; set the lowest.
    return rest[:-1] + B32[B32.index(rest[-1]) ^ 1]


@pytest.mark.parametrize(
    "did",
    [
        "did:murmur:",
        DID[:-1],  # 51 characters
        DID + "a",  # 53 characters
        DID_MURMUR_PREFIX + REST.upper(),
        "DID:MURMUR:" + REST,
        "did:Murmur:" + REST,
        DID + "====",
        DID_MURMUR_PREFIX + REST[:-1] + "1",  # '1', '0', '8', '9' are not base32
        DID_MURMUR_PREFIX + REST[:-1] + "0",
        DID_MURMUR_PREFIX + REST[:-1] + "8",
        DID_MURMUR_PREFIX + _flip_padding(REST),
        DID + "\n",
        " " + DID,
        DID_MURMUR_PREFIX + REST[:-1] + "é",
        "did:murmur:" + "a" * 200,
    ],
)
def test_bad_did_murmur(did: str) -> None:
    """spec 0008 #did-murmur: anything but the one spelling is invalid-did."""
    for parse in (did_murmur_hash, did_method):
        with pytest.raises(InvalidDidError) as info:
            parse(did)
        assert info.value.code == "invalid-did"


def test_non_strings_are_invalid() -> None:
    for value in (None, b"did:murmur:", 5):
        with pytest.raises(InvalidDidError):
            did_method(value)


@given(st.binary(min_size=32, max_size=32))
def test_every_hash_has_exactly_one_spelling(digest: bytes) -> None:
    did = _spell(digest)
    assert did_murmur_hash(did) == digest
    assert did_method(did) == "murmur"
    # Every other value of the last character decodes to the same data bit at most, so
    # at most one of the 16 spellings sharing the data bit parses: the canonical one.
    parsed = [c for c in B32 if _try(did[:-1] + c) == digest]
    assert parsed == [did[-1]]


def _try(did: str) -> bytes | None:
    try:
        return did_murmur_hash(did)
    except InvalidDidError:
        return None


@given(st.text(alphabet=string.ascii_letters + string.digits + "=:-_ \n", max_size=70))
def test_parsing_is_strict_for_any_text(tail: str) -> None:
    did = DID_MURMUR_PREFIX + tail
    digest = _try(did)
    if digest is not None:
        assert _spell(digest) == did  # whatever parses is the canonical spelling


def test_next_key_commitment_is_domain_separated() -> None:
    key = Identity.from_seed(b"\x01" * 32).public.raw
    assert next_key_commitment(key) == hashlib.sha256(b"murmur-next-v1:" + key).digest()
    assert next_key_commitment(key) != hashlib.sha256(key).digest()
