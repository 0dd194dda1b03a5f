"""Blobs: sniffing image headers and checking bytes against a post's claim (spec 0003
#embed, #blob-check, #blob-polyglot).

The vectors (specs/vectors/blobs.json) are tiny real images with their expected type
and size, bytes to refuse, and claims to check; these tests run them and add the
bounds, the polyglot case and properties over arbitrary bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.blobs import BlobInfo, blob_hash, sniff, verify_blob
from protocol.embeds import EmbedImage
from protocol.errors import BadBlobError, BadFieldError, error_for_code
from protocol.limits import MAX_BLOB_BYTES, MAX_IMAGE_SIDE

from .test_vectors import _value

VECTORS = Path(__file__).parents[2] / "specs" / "vectors" / "blobs.json"
CASES = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
BY_NAME = {c["name"]: base64.b64decode(c["base64"]) for c in CASES["valid"]}
PNG = BY_NAME["png-rgb-3x2"]
JPEG = BY_NAME["jpeg-baseline-3x2"]


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["comment"] for c in cases]


@pytest.mark.parametrize("case", CASES["valid"], ids=_ids(CASES["valid"]))
def test_vector_sniffs(case: dict[str, Any]) -> None:
    """spec 0003 #blob-check: the header names the type and the dimensions."""
    info = sniff(base64.b64decode(case["base64"]))
    assert info == BlobInfo(mime=case["mime"], width=case["width"], height=case["height"])


@pytest.mark.parametrize("case", CASES["invalid"], ids=_ids(CASES["invalid"]))
def test_vector_refused(case: dict[str, Any]) -> None:
    """spec 0003 #blob-check: anything else is bad-blob."""
    with pytest.raises(BadBlobError) as info:
        sniff(base64.b64decode(case["base64"]))
    assert info.value.code == case["error"] == "bad-blob"


@pytest.mark.parametrize("case", CASES["checks"], ids=_ids(CASES["checks"]))
def test_vector_checks(case: dict[str, Any]) -> None:
    """spec 0003 #blob-hash, #blob-check: bytes against the image map of a post."""
    data, image = base64.b64decode(case["base64"]), _value(case["image"])
    if case["error"] is None:
        verify_blob(data, image)
        verify_blob(data, EmbedImage.from_map(image))
    else:
        with pytest.raises(BadBlobError) as info:
            verify_blob(data, image)
        assert info.value.code == case["error"]


def test_vectors_cover_every_type() -> None:
    assert {c["mime"] for c in CASES["valid"]} == {
        "image/png",
        "image/gif",
        "image/jpeg",
        "image/webp",
    }


def test_bad_blob_is_in_the_error_tree() -> None:
    assert error_for_code("bad-blob") is BadBlobError
    assert BadBlobError.status == 400 and not BadBlobError.retryable


# -- the polyglot (spec 0003 #blob-polyglot) --------------------------------------------


def test_png_header_then_html_sniffs_as_png() -> None:
    """The bytes ARE a PNG container; serving headers, not sniffing, keep browsers
    from running them (spec 0003 #blob-polyglot)."""
    polyglot = PNG[:33] + b"<html><script>alert(1)</script></html>"
    assert sniff(polyglot) == BlobInfo(mime="image/png", width=3, height=2)
    claim = {
        "hash": hashlib.sha256(polyglot).digest(),
        "mime": "image/png",
        "size": len(polyglot),
        "width": 3,
        "height": 2,
        "alt": "",
    }
    verify_blob(polyglot, claim)


def test_html_or_svg_named_png_is_refused() -> None:
    for text in (b"<html><script>alert(1)</script></html>", b"<svg onload='x'/>"):
        with pytest.raises(BadBlobError, match="markup"):
            sniff(text)
        with pytest.raises(BadBlobError):
            sniff(b"\x89PNG\r\n\x1a\n" + text)


# -- bounds ----------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


@pytest.mark.parametrize(
    ("width", "height", "ok"),
    [(1, 1, True), (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, True), (0, 5, False), (5, 0, False),
     (MAX_IMAGE_SIDE + 1, 1, False), (1, 2**31 - 1, False)],
)  # fmt: skip
def test_sides_are_one_to_16384(width: int, height: int, ok: bool) -> None:
    """spec 0003 #embed: width and height 1..16384, in the header as in the claim."""
    if ok:
        assert sniff(_png_header(width, height)) == BlobInfo(
            mime="image/png", width=width, height=height
        )
    else:
        with pytest.raises(BadBlobError, match="outside"):
            sniff(_png_header(width, height))


def test_more_than_max_blob_bytes_is_refused_before_hashing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """spec 0003 #blob-check: the size bound comes before any hashing."""
    big = PNG + bytes(MAX_BLOB_BYTES + 1 - len(PNG))
    claim = EmbedImage(
        hash=bytes(32), mime="image/png", size=MAX_BLOB_BYTES, width=3, height=2, alt=""
    )

    def no_hashing(data: bytes) -> bytes:
        raise AssertionError("hashed an oversized blob")

    monkeypatch.setattr("protocol.blobs.blob_hash", no_hashing)
    with pytest.raises(BadBlobError, match="more than"):
        verify_blob(big, claim)
    with pytest.raises(BadBlobError, match="more than"):
        sniff(big)
    # exactly the bound is a size, not a refusal: it fails later, on the claim
    with pytest.raises(BadBlobError, match="claimed size"):
        verify_blob(big[:-1], EmbedImage(**{**claim.to_map(), "size": 1}))


def test_verify_messages_are_precise() -> None:
    good = {
        "hash": blob_hash(PNG),
        "mime": "image/png",
        "size": len(PNG),
        "width": 3,
        "height": 2,
        "alt": "",
    }
    other = hashlib.sha256(b"other").digest()
    with pytest.raises(BadBlobError, match=f"hash to {blob_hash(PNG).hex()}, not the claimed"):
        verify_blob(PNG, {**good, "hash": other})
    with pytest.raises(BadBlobError, match="image/png, not the claimed image/webp"):
        verify_blob(PNG, {**good, "mime": "image/webp"})
    with pytest.raises(BadBlobError, match="3x2, not the claimed 3x3"):
        verify_blob(PNG, {**good, "height": 3})
    with pytest.raises(BadFieldError):  # the claim is malformed, not the bytes
        verify_blob(PNG, {**good, "mime": "image/svg+xml"})


# -- JPEG walk --------------------------------------------------------------------------


def _sof(width: int, height: int, marker: int = 0xC0) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"


@pytest.mark.parametrize("marker", [0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCF])
def test_jpeg_every_sof_marker(marker: int) -> None:
    data = b"\xff\xd8" + _sof(7, 9, marker)
    assert sniff(data) == BlobInfo(mime="image/jpeg", width=7, height=9)


@pytest.mark.parametrize("marker", [0xC4, 0xC8, 0xCC])
def test_jpeg_dht_jpg_dac_are_not_frame_headers(marker: int) -> None:
    """C4, C8 and CC sit among the SOF codes but are segments to skip (T.81 B.1)."""
    data = b"\xff\xd8" + bytes([0xFF, marker]) + struct.pack(">H", 4) + b"\x00\x00" + _sof(7, 9)
    assert sniff(data) == BlobInfo(mime="image/jpeg", width=7, height=9)


def test_jpeg_standalone_markers_and_fill_bytes() -> None:
    data = b"\xff\xd8\xff\xd0\xff\x01\xff\xff\xff\xfe\x00\x03x\xff\xff" + _sof(2, 3)[1:]
    assert sniff(data) == BlobInfo(mime="image/jpeg", width=2, height=3)


def test_jpeg_worst_cases_end() -> None:
    """The walk consumes at least one byte a step: a blob of fill bytes, or of the
    smallest segments, ends (with a refusal) after one pass."""
    n = MAX_BLOB_BYTES
    with pytest.raises(BadBlobError, match="truncated"):
        sniff(b"\xff\xd8" + b"\xff" * (n - 2))
    with pytest.raises(BadBlobError, match="truncated"):
        sniff(b"\xff\xd8" + b"\xff\xe0\x00\x02" * ((n - 2) // 4))
    with pytest.raises(BadBlobError, match="truncated"):
        sniff(b"\xff\xd8" + b"\xff\xd0" * ((n - 2) // 2))


def test_jpeg_segment_running_past_the_end() -> None:
    with pytest.raises(BadBlobError, match="truncated"):
        sniff(b"\xff\xd8\xff\xe0\xff\xff" + bytes(10))


# -- properties --------------------------------------------------------------------------

_PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"\xff\xd8", b"\xff\xd8\xff",
             b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L",
             b"RIFF\x00\x00\x00\x00WEBPVP8X", PNG[:16], JPEG[:160]]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(prefix=st.sampled_from(_PREFIXES), rest=st.binary(max_size=300))
def test_sniff_raises_only_bad_blob(prefix: bytes, rest: bytes) -> None:
    """On any bytes, sniff answers a BlobInfo within bounds or raises BadBlobError."""
    try:
        info = sniff(prefix + rest)
    except BadBlobError:
        return
    assert info.mime in {"image/png", "image/gif", "image/jpeg", "image/webp"}
    assert 1 <= info.width <= MAX_IMAGE_SIDE and 1 <= info.height <= MAX_IMAGE_SIDE


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 400), name=st.sampled_from(sorted(BY_NAME)))
def test_truncated_vectors_sniff_the_same_or_refuse(cut: int, name: str) -> None:
    """A prefix of a real image sniffs to the same answer (the header is all there)
    or is refused; never another type or size."""
    data = BY_NAME[name]
    full = sniff(data)
    try:
        assert sniff(data[:cut]) == full
    except BadBlobError:
        assert cut < len(data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_verify_blob_raises_only_bad_blob(data: bytes) -> None:
    claim = EmbedImage(
        hash=blob_hash(data), mime="image/png", size=max(1, len(data)), width=3, height=2, alt=""
    )
    with pytest.raises(BadBlobError):
        verify_blob(data, claim)
