"""Blobs: the bytes of an embedded image, recognised by header and checked against a
post's claim (spec 0003 #embed, #blob-check).

:func:`sniff` says what an image's bytes are — PNG, GIF, JPEG or WebP, and its width
and height — from the format's own header, and refuses everything else with
``BadBlobError`` (``bad-blob``): empty or truncated headers, text (SVG, XML, HTML),
unknown formats, a dimension of 0 or above :data:`MAX_IMAGE_SIDE`, more than
:data:`MAX_BLOB_BYTES`. It never decodes pixels: it reads a few dozen bytes, except a
JPEG, whose first frame header (SOFn) may come after other segments; that walk jumps
from segment to segment and advances at least one byte a step, so it ends within
``len(data)`` steps whatever the bytes are.

:func:`verify_blob` checks bytes against an :class:`~protocol.embeds.EmbedImage`:
size (the bound first, before any hashing), SHA-256, then the sniffed type and
dimensions. A reader runs it on every blob it fetches, from any node: the hash is in
the signed post, so bytes that pass are the author's bytes.

**Polyglots.** Sniffing looks at headers only, so bytes that begin with a valid PNG
header and continue with ``<html><script>…`` sniff as ``image/png`` — and they are a
PNG container, whatever else a lenient parser may see in them. Refusing them would
take a full decoder here, and would still not stop the next trick. The defence is how
the bytes are served: always with the type the post claims (never one sniffed by a
browser), ``X-Content-Type-Options: nosniff`` and a sandboxing Content-Security-Policy,
so no browser ever runs them as a document. What this module guarantees is narrower
and exact: the bytes begin as the image type they claim, of the size they claim, and
they are the bytes the author signed for.

Pure functions, O(len(data)): no I/O, no decoding library.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.embeds import EmbedImage
from protocol.errors import BadBlobError
from protocol.limits import MAX_BLOB_BYTES, MAX_IMAGE_SIDE

__all__ = [
    "BlobInfo",
    "blob_hash",
    "sniff",
    "verify_blob",
]

PNG: Final = "image/png"
GIF: Final = "image/gif"
JPEG: Final = "image/jpeg"
WEBP: Final = "image/webp"

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: Bit depths allowed for each PNG colour type (PNG spec §11.2.2, IHDR).
_PNG_DEPTHS: Final[Mapping[int, frozenset[int]]] = {
    0: frozenset({1, 2, 4, 8, 16}),  # greyscale
    2: frozenset({8, 16}),  # truecolour
    3: frozenset({1, 2, 4, 8}),  # indexed
    4: frozenset({8, 16}),  # greyscale with alpha
    6: frozenset({8, 16}),  # truecolour with alpha
}
#: JPEG start-of-frame markers SOF0-SOF15, less DHT (C4), JPG (C8) and DAC (CC),
#: which share the range but are not frame headers (ITU T.81 Table B.1).
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers with no length field: TEM and RST0-7 (T.81 §B.1.1.3).
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
#: The VP8 key frame start code (RFC 6386 §9.1).
_VP8_START: Final = b"\x9d\x01\x2a"


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobInfo:
    """What :func:`sniff` found: the image type and its dimensions in pixels."""

    mime: str
    width: int
    height: int


def blob_hash(data: bytes) -> bytes:
    """The 32-byte name of a blob: SHA-256 of its exact bytes (spec 0003 #embed)."""
    return hashlib.sha256(data).digest()


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise BadBlobError(f"truncated {what}: {len(data)} bytes, the header needs {n}")


def _info(mime: str, width: int, height: int) -> BlobInfo:
    for name, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_IMAGE_SIDE:
            raise BadBlobError(f"{mime} {name} {value} is outside [1, {MAX_IMAGE_SIDE}]")
    return BlobInfo(mime=mime, width=width, height=height)


def _png(data: bytes) -> BlobInfo:
    # signature, then the first chunk, which MUST be IHDR: length 13, type, 13 bytes
    # of data, CRC over type and data (PNG spec §5.3, §11.2.2).
    _need(data, 33, "PNG")
    length, ctype = struct.unpack_from(">I4s", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise BadBlobError("PNG signature not followed by a 13-byte IHDR chunk")
    (crc,) = struct.unpack_from(">I", data, 29)
    if zlib.crc32(data[12:29]) != crc:
        raise BadBlobError("PNG IHDR chunk has a bad CRC")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", data, 16
    )
    if depth not in _PNG_DEPTHS.get(colour, frozenset()):
        raise BadBlobError(f"PNG colour type {colour} with bit depth {depth} does not exist")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise BadBlobError("PNG IHDR names an unknown compression, filter or interlace method")
    return _info(PNG, width, height)


def _gif(data: bytes) -> BlobInfo:
    # "GIF87a"/"GIF89a", then the logical screen descriptor: width, height (LE16),
    # flags, background, aspect (GIF89a §18).
    _need(data, 13, "GIF")
    width, height = struct.unpack_from("<HH", data, 6)
    return _info(GIF, width, height)


def _jpeg(data: bytes) -> BlobInfo:
    """Walk the marker segments after SOI to the first SOFn (ITU T.81 Annex B).

    Every step consumes at least one byte (fill bytes one at a time, a marker and its
    segment together), so the loop runs at most ``len(data)`` times.
    """
    n = len(data)
    i = 2
    while True:
        if i >= n:
            raise BadBlobError("truncated JPEG: no frame header (SOFn) before the end")
        if data[i] != 0xFF:
            raise BadBlobError(f"JPEG: byte {i} should start a marker (0xFF)")
        while i < n and data[i] == 0xFF:  # 0xFF fill bytes may precede any marker
            i += 1
        if i >= n:
            raise BadBlobError("truncated JPEG: fill bytes run to the end")
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8, 0xD9, 0xDA):
            # a stuffed zero outside scan data, a second SOI, EOI or the start of a
            # scan: all impossible before the frame header of a valid image.
            raise BadBlobError(f"JPEG: marker 0xff{marker:02x} before the frame header")
        _need(data, i + 2, "JPEG segment")
        (length,) = struct.unpack_from(">H", data, i)
        if length < 2:
            raise BadBlobError(f"JPEG: segment 0xff{marker:02x} has length {length} < 2")
        if marker in _JPEG_SOF:
            # Lf, P, Y (height), X (width), Nf, then Nf 3-byte components: Lf = 8 + 3 Nf
            _need(data, i + 8, "JPEG frame header")
            height, width, components = struct.unpack_from(">HHB", data, i + 3)
            if components == 0 or length != 8 + 3 * components:
                raise BadBlobError(
                    f"JPEG: frame header length {length} for {components} components"
                )
            _need(data, i + length, "JPEG frame header")
            # height 0 ("defined later by a DNL marker") is refused as a zero side.
            return _info(JPEG, width, height)
        i += length


def _webp(data: bytes) -> BlobInfo:
    # RIFF header (12 bytes), then the first chunk's FourCC and size (8), then its data
    # (WebP container spec: "Simple file format (lossy/lossless)", "Extended").
    _need(data, 20, "WebP")
    fourcc = data[12:16]
    (chunk_size,) = struct.unpack_from("<I", data, 16)
    p = 20
    if fourcc == b"VP8 ":  # lossy: 3-byte frame tag, start code, 14-bit sizes
        _need(data, p + 10, "WebP VP8 header")
        if chunk_size < 10:
            raise BadBlobError(f"WebP VP8 chunk of {chunk_size} bytes is too short")
        if data[p] & 1:
            raise BadBlobError("WebP VP8 data does not begin with a key frame")
        if data[p + 3 : p + 6] != _VP8_START:
            raise BadBlobError("WebP VP8 key frame lacks its start code")
        width, height = struct.unpack_from("<HH", data, p + 6)
        return _info(WEBP, width & 0x3FFF, height & 0x3FFF)  # top 2 bits: scaling
    if fourcc == b"VP8L":  # lossless: signature 0x2f, then 14+14+1+3 bits
        _need(data, p + 5, "WebP VP8L header")
        if chunk_size < 5:
            raise BadBlobError(f"WebP VP8L chunk of {chunk_size} bytes is too short")
        if data[p] != 0x2F:
            raise BadBlobError("WebP VP8L chunk lacks its signature byte 0x2f")
        (bits,) = struct.unpack_from("<I", data, p + 1)
        if bits >> 29:
            raise BadBlobError(f"WebP VP8L version {bits >> 29} is not 0")
        return _info(WEBP, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if fourcc == b"VP8X":  # extended: flags, 3 reserved, 24-bit canvas sizes minus one
        _need(data, p + 10, "WebP VP8X header")
        if chunk_size < 10:
            raise BadBlobError(f"WebP VP8X chunk of {chunk_size} bytes is too short")
        width = int.from_bytes(data[p + 4 : p + 7], "little") + 1
        height = int.from_bytes(data[p + 7 : p + 10], "little") + 1
        return _info(WEBP, width, height)
    raise BadBlobError(f"WebP with an unknown first chunk {fourcc!r}")


def sniff(data: bytes) -> BlobInfo:
    """The type and dimensions of an image's bytes, from its header alone.

    Raises ``BadBlobError`` for anything that is not PNG, GIF, JPEG or WebP with both
    sides in ``[1, MAX_IMAGE_SIDE]``, and for more than ``MAX_BLOB_BYTES`` bytes. The
    type is decided by the leading signature only; nothing else in the bytes is
    looked at beyond the header (see the module docstring on polyglots).
    """
    if len(data) > MAX_BLOB_BYTES:
        raise BadBlobError(f"{len(data)} bytes, more than the {MAX_BLOB_BYTES} a blob may have")
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _gif(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp(data)
    if not data:
        raise BadBlobError("no bytes")
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        raise BadBlobError("markup text (SVG, XML or HTML), not a PNG, JPEG, WebP or GIF image")
    raise BadBlobError("not a PNG, JPEG, WebP or GIF image")


def verify_blob(data: bytes, image: EmbedImage | Mapping[str, Any]) -> None:
    """Raise ``BadBlobError`` unless ``data`` is exactly the image a post claims.

    ``image`` is an :class:`EmbedImage` or one decoded ``embed.images`` map (a
    malformed map is ``BadFieldError``: the claim, not the bytes, is wrong). Checked in
    this order, the cheap and bounding ones first: at most ``MAX_BLOB_BYTES`` (before
    hashing anything), the claimed ``size``, the SHA-256 ``hash``, then the sniffed
    ``mime``, ``width`` and ``height`` (spec 0003 #blob-check).
    """
    claim = image if isinstance(image, EmbedImage) else EmbedImage.from_map(image)
    if len(data) > MAX_BLOB_BYTES:
        raise BadBlobError(f"{len(data)} bytes, more than the {MAX_BLOB_BYTES} a blob may have")
    if len(data) != claim.size:
        raise BadBlobError(f"{len(data)} bytes, not the claimed size {claim.size}")
    digest = blob_hash(data)
    if digest != claim.hash:
        raise BadBlobError(f"bytes hash to {digest.hex()}, not the claimed {claim.hash.hex()}")
    info = sniff(data)
    if info.mime != claim.mime:
        raise BadBlobError(f"the bytes are {info.mime}, not the claimed {claim.mime}")
    if (info.width, info.height) != (claim.width, claim.height):
        raise BadBlobError(
            f"the image is {info.width}x{info.height}, not the claimed {claim.width}x{claim.height}"
        )
