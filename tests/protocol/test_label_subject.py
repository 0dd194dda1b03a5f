"""``label.subject_type``: labels on blobs and future subjects (spec 0003 #label-blob).

The vectors (``events-valid.json``, ``events-invalid.json``) are decoded by
test_vectors; here each rule is checked on bodies, and against the vectors by comment,
so a regenerated file that lost a case fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol import kinds
from protocol.errors import BadFieldError
from protocol.identity import Identity
from protocol.limits import MAX_LABEL_BYTES

VECTORS = Path(__file__).resolve().parents[2] / "specs" / "vectors"
HASH = bytes(range(32))
DID = Identity.from_seed(bytes(32)).did


@pytest.mark.parametrize(
    "body",
    [
        {"subject": HASH, "subject_type": "blob", "val": "gore"},
        {"subject": HASH, "subject_type": "blob", "val": "gore", "neg": True, "exp": 5},
        {"subject": HASH, "subject_type": "org.example.thing", "val": "spam"},
        {"subject": DID, "subject_type": "org.example.thing", "val": "spam"},
        {"subject": DID, "subject_type": "x" * MAX_LABEL_BYTES, "val": "spam"},
    ],
    ids=["blob", "blob-neg-exp", "future-on-bin", "future-on-did", "type-128-bytes"],
)
def test_valid_subject_types(body: dict[str, Any]) -> None:
    """spec 0003 #label-blob: "blob" on 32 bytes, any other str of 1-128 bytes."""
    kinds.validate_body("label", body)


@pytest.mark.parametrize(
    "body",
    [
        {"subject": DID, "subject_type": "blob", "val": "gore"},
        {"subject": HASH[:31], "subject_type": "blob", "val": "gore"},
        {"subject": HASH.hex(), "subject_type": "blob", "val": "gore"},
        {"subject": HASH, "subject_type": "", "val": "gore"},
        {"subject": HASH, "subject_type": "x" * (MAX_LABEL_BYTES + 1), "val": "gore"},
        {"subject": HASH, "subject_type": b"blob", "val": "gore"},
        {"subject": HASH, "subject_type": 1, "val": "gore"},
        {"subject": HASH, "subject_type": None, "val": "gore"},
        {"subject": "alice", "subject_type": "org.example.thing", "val": "spam"},
    ],
    ids=[
        "blob-on-did", "blob-31-bytes", "blob-hex-str", "empty", "129-bytes", "bin", "int",
        "nil", "future-on-non-did",
    ],
)  # fmt: skip
def test_invalid_subject_types(body: dict[str, Any]) -> None:
    """spec 0003 #label-blob: a "blob" label on a did is bad-field; subject_type is a
    str of 1-128 bytes; the subject rule holds whatever subject_type says."""
    with pytest.raises(BadFieldError):
        kinds.validate_body("label", body)


def test_label_subject_type_reads_the_field() -> None:
    assert kinds.label_subject_type({"subject": HASH, "val": "x"}) is None
    assert kinds.label_subject_type({"subject": HASH, "subject_type": "blob"}) == "blob"
    assert kinds.LABEL_SUBJECT_BLOB == "blob"
    assert kinds.label_subject_type({"subject_type": "org.example.x"}) == "org.example.x"


def _cases(name: str) -> list[dict[str, Any]]:
    doc = json.loads((VECTORS / name).read_text())
    return list(doc["cases"])


def test_vectors_hold_blob_labels() -> None:
    """The valid vectors hold a blob label naming the embedded PNG's hash, its
    retraction and two future subject types; the invalid ones the rules above."""
    valid = [c for c in _cases("events-valid.json") if "subject_type" in json.dumps(c)]
    assert len(valid) == 4
    embedded = {
        img["hash"]["$bytes"]
        for c in _cases("events-valid.json")
        if c["header"]["kind"] == "post"
        for img in (c["body"] or {}).get("embed", {}).get("images", [])
    }
    blob = [c for c in valid if c["body"]["subject_type"] == "blob"]
    assert len(blob) == 2
    assert all(c["body"]["subject"]["$bytes"] in embedded for c in blob)
    invalid = [c for c in _cases("events-invalid.json") if c["spec"] == "0003-kinds.md#label-blob"]
    assert len(invalid) == 8
    assert {c["error"] for c in invalid} == {"bad-field"}
