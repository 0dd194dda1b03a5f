"""Conformance vectors (specs/vectors/, specs/README.md "Vectors"), both directions.

Valid events decode to the recorded header, body, id and signature, and signing the
recorded fields with the recorded seed reproduces every byte (Ed25519 is
deterministic). Invalid events fail with exactly the recorded code. Encoding and chain
vectors are checked the same way, and a last test regenerates every file in memory so
the committed vectors can never drift from the code.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocol.chain import analyze_chain
from protocol.encoding import decode, encode
from protocol.errors import ProtocolError, error_for_code
from protocol.events import decode_event, decode_unverified, sign_event
from protocol.identity import Identity

REPO = Path(__file__).parents[2]
VECTORS = REPO / "specs" / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))["cases"]


def _value(j: Any) -> Any:
    """The JSON form of a value back to Python: {"$bytes": hex}, {"$int": decimal}."""
    if isinstance(j, dict):
        if set(j) == {"$bytes"}:
            return bytes.fromhex(j["$bytes"])
        if set(j) == {"$int"}:
            return int(j["$int"])
        return {k: _value(v) for k, v in j.items()}
    if isinstance(j, list):
        return [_value(v) for v in j]
    return j


def _hex(h: str | None) -> bytes | None:
    return None if h is None else bytes.fromhex(h)


VALID = _load("events-valid.json")
INVALID = _load("events-invalid.json")
ENCODING = _load("encoding.json")
CHAIN = _load("chain.json")


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["comment"] for c in cases]


# -- valid events -----------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_event_decodes(case: dict[str, Any]) -> None:
    wire = bytes.fromhex(case["wire"])
    event = decode_event(wire, net=case["net"], now_ms=case["now_ms"])
    h = case["header"]
    assert event.header.v == h["v"]
    assert event.header.net == h["net"] == case["net"]
    assert event.header.author == h["author"]
    assert event.header.seq == h["seq"]
    assert event.header.prev == _hex(h["prev"])
    assert event.header.ts == h["ts"]
    assert event.header.kind == h["kind"]
    assert event.header.body_hash == bytes.fromhex(h["body"])
    assert event.header_bytes == bytes.fromhex(case["header_bytes"])
    assert event.id == bytes.fromhex(case["id"])
    assert event.sig == bytes.fromhex(case["sig"])
    assert event.body_bytes == _hex(case["body_bytes"])
    assert event.body == _value(case["body"])
    assert event.wire == wire
    assert Identity.from_seed(bytes.fromhex(case["seed"])).did == h["author"]
    # The header bytes are the canonical encoding of the header fields.
    assert decode(event.header_bytes) == {**event.header.to_map()}
    assert encode(event.header.to_map()) == event.header_bytes


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_event_signs_byte_for_byte(case: dict[str, Any]) -> None:
    h = case["header"]
    dropped = case["body"] is None
    body = _value(case["original_body"] if dropped else case["body"])
    event = sign_event(
        Identity.from_seed(bytes.fromhex(case["seed"])),
        kind=h["kind"],
        body=body,
        seq=h["seq"],
        prev=_hex(h["prev"]),
        ts=h["ts"],
        net=h["net"],
    )
    if dropped:
        event = event.without_body()
    else:
        assert event.body_bytes == bytes.fromhex(case["body_bytes"])
        assert encode(body) == event.body_bytes
    assert event.header_bytes.hex() == case["header_bytes"]
    assert event.id.hex() == case["id"]
    assert event.sig.hex() == case["sig"]
    assert event.wire.hex() == case["wire"]


def test_valid_vectors_cover_every_v1_kind_unknown_and_dropped() -> None:
    from protocol.kinds import V1_KINDS, is_known_kind

    kinds = {c["header"]["kind"] for c in VALID}
    assert set(V1_KINDS) <= kinds
    assert any(not is_known_kind(k) for k in kinds)
    assert any(c["body"] is None for c in VALID)


# -- invalid events ---------------------------------------------------------------------


#: Vectors the reference code gets wrong today, with the bug; remove an entry once fixed.
KNOWN_BUGS: dict[str, str] = {}


def _invalid_param(case: dict[str, Any]) -> Any:
    bug = KNOWN_BUGS.get(case["comment"])
    marks = [pytest.mark.xfail(reason=bug, raises=TypeError, strict=False)] if bug else []
    return pytest.param(case, id=case["comment"], marks=marks)


@pytest.mark.parametrize("case", [_invalid_param(c) for c in INVALID])
def test_invalid_event_rejected_with_code(case: dict[str, Any]) -> None:
    assert error_for_code(case["error"]) is not None, "codes come from protocol/errors.py"
    with pytest.raises(ProtocolError) as info:
        decode_event(bytes.fromhex(case["wire"]), net=case["net"], now_ms=case["now_ms"])
    assert info.value.code == case["error"], info.value.message


_CRYPTO_OR_CLOCK = {"invalid-signature", "wrong-network", "future-timestamp"}


@pytest.mark.parametrize(
    "case",
    [c for c in INVALID if c["error"] in _CRYPTO_OR_CLOCK and "order:" not in c["comment"]],
    ids=lambda c: c["comment"],
)
def test_invalid_only_in_signature_network_or_clock_is_structurally_valid(
    case: dict[str, Any],
) -> None:
    # Proves these vectors break exactly the rule they name: everything before the
    # signature/network/clock check passes.
    decode_unverified(bytes.fromhex(case["wire"]))


# -- canonical encoding -----------------------------------------------------------------


@pytest.mark.parametrize("case", ENCODING["valid"], ids=_ids(ENCODING["valid"]))
def test_encoding_valid(case: dict[str, Any]) -> None:
    value = _value(case["value"])
    data = bytes.fromhex(case["hex"])
    assert encode(value) == data
    assert decode(data) == value


@pytest.mark.parametrize("case", ENCODING["invalid"], ids=_ids(ENCODING["invalid"]))
def test_encoding_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(bytes.fromhex(case["hex"]))
    assert info.value.code == case["error"], info.value.message


# -- chains -----------------------------------------------------------------------------


class _Item:
    def __init__(self, seq: int, eid: str, prev: str | None) -> None:
        self.author = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        self.seq = seq
        self.id = bytes.fromhex(eid)
        self.prev = _hex(prev)


@pytest.mark.parametrize("case", CHAIN, ids=_ids(CHAIN))
def test_chain(case: dict[str, Any]) -> None:
    report = analyze_chain(_Item(e["seq"], e["id"], e["prev"]) for e in case["events"])
    assert report.head_seq == case["head_seq"]
    assert report.head_id == _hex(case["head_id"])
    assert report.max_seq == case["max_seq"]
    assert [list(g) for g in report.gaps] == case["gaps"]
    assert [{"seq": s, "ids": [i.hex() for i in ids]} for s, ids in report.forks] == case["forks"]
    assert list(report.broken_links) == case["broken_links"]


# -- no drift ---------------------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_vectors", REPO / "scripts" / "gen_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def test_vectors_are_up_to_date() -> None:
    gen = _generator()
    assert gen.check(VECTORS) == [], "run: python scripts/gen_vectors.py"
    assert gen.render() == gen.render(), "generation must be deterministic"


# -- vectors and specs name each other ----------------------------------------------------

SPECS = REPO / "specs"


def _anchors(doc: str) -> set[str]:
    return set(re.findall(r'<a id="([^"]+)"></a>', (SPECS / doc).read_text(encoding="utf-8")))


@pytest.mark.parametrize("ref", sorted({c["spec"] for c in INVALID}))
def test_invalid_vector_names_an_existing_spec_anchor(ref: str) -> None:
    doc, _, anchor = ref.partition("#")
    assert anchor in _anchors(doc), f"specs/{doc} has no anchor {anchor!r}"


def test_readme_lists_every_error_code_and_limit() -> None:
    from protocol import errors, limits

    readme = (SPECS / "README.md").read_text(encoding="utf-8")
    codes = {
        cls.code
        for name in errors.__all__
        if isinstance(cls := getattr(errors, name), type)
        and issubclass(cls, errors.ProtocolError)
        and cls is not errors.RemoteError
    }
    for code in codes:
        assert f"| `{code}` |" in readme, f"README error table lacks {code}"
    for name in limits.__all__:
        assert f"| `{name}` |" in readme, f"README limits table lacks {name}"
