"""The blob vectors of spec 0003 #embed: ``specs/vectors/blobs.json``.

Imported by ``scripts/gen_vectors.py`` (which writes and ``--check``s the file), beside
the embed cases it adds to ``events-valid.json`` and ``events-invalid.json``. The
images are tiny real files: made once with Pillow (not a dependency of this project)
and kept here as base64, so the file never depends on an encoder's version. The
variants are derived from them by hand, byte by byte. Every expected result — type,
width, height, refusal — is written here **by hand** from the formats' specifications,
never computed by ``protocol/blobs.py``: tests/protocol/test_blobs.py checks the
reference against them.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

from protocol.limits import MAX_IMAGE_SIDE

SPEC = "0003-kinds.md#blob-check"


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


# -- the images (Pillow 13.0.0, 2026; see the module docstring) -----------------------

PNG_RGB_3X2 = _b64(
    "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAHUlEQVR4nGNk+M/gtuuS265LLBo3KjRu"
    "VGjcuAQAV74Ja1YlpwgAAAAASUVORK5CYII="
)
PNG_RGBA_5X4 = _b64(
    "iVBORw0KGgoAAAANSUhEUgAAAAUAAAAECAYAAABGM/VAAAAAJElEQVR4nGNk+B/V4LaLgQEZs2jcYGDU"
    "uMHAgIyZoIIoGKsgAJzlFO6yx2gdAAAAAElFTkSuQmCC"
)
GIF_3X2 = _b64("R0lGODdhAwACAIIAAMwzAAD/AGaZZjPMZplmmTPMzAAAAAAAACwAAAAAAwACAAAICQADFCAwQACAgAA7")
JPEG_BASELINE_3X2 = _b64(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdA"
    "SFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAACAAMDASIAAhEBAxEB/8QA"
    "HwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIh"
    "MUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVW"
    "V1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXG"
    "x8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQF"
    "BgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAV"
    "YnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOE"
    "hYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq"
    "8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCC5dhcPhj19aKKKxWx1Yf+FH0X5H//2Q=="
)
JPEG_PROGRESSIVE_5X4 = _b64(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdA"
    "SFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wgARCAAEAAUDASIAAhEBAxEB/8QA"
    "FQABAQAAAAAAAAAAAAAAAAAAAAH/xAAVAQEBAAAAAAAAAAAAAAAAAAABAv/aAAwDAQACEAMQAAABoI//"
    "xAAUEAEAAAAAAAAAAAAAAAAAAAAA/9oACAEBAAEFAn//xAAWEQEBAQAAAAAAAAAAAAAAAAABABL/2gAI"
    "AQMBAT8ByN//xAAUEQEAAAAAAAAAAAAAAAAAAAAA/9oACAECAQE/AX//xAAVEAEBAAAAAAAAAAAAAAAA"
    "AAAAEf/aAAgBAQAGPwKv/8QAGBAAAgMAAAAAAAAAAAAAAAAAAAERIVH/2gAIAQEAAT8hmtM//9oADAMB"
    "AAIAAwAAABAD/8QAFhEBAQEAAAAAAAAAAAAAAAAAAQAx/9oACAEDAQE/ENSF/8QAFhEAAwAAAAAAAAAA"
    "AAAAAAAAAAEx/9oACAECAQE/EHT/xAAYEAEBAAMAAAAAAAAAAAAAAAABEQAhgf/aAAgBAQABPxARB2t5"
    "n//Z"
)
WEBP_LOSSY_3X2 = _b64(
    "UklGRkIAAABXRUJQVlA4IDYAAACwAQCdASoDAAIAAsBMJagCdAEO9qIgAPatZIED4OOqpkj1FIjHHHA+"
    "//yb/NTnoMff/5N0wAA="
)
WEBP_LOSSLESS_5X4 = _b64(
    "UklGRjIAAABXRUJQVlA4TCYAAAAvBMAAALmM6H/sIgre/wBhtpG/Uklmc89TmH+BQDL2nBFFbACQHw=="
)
WEBP_ALPHA_5X4 = _b64(
    "UklGRnwAAABXRUJQVlA4WAoAAAAQAAAABAAAAwAAQUxQSBUAAAAAgICAgICBgYGBgYKCgoKCg4ODg4MA"
    "VlA4IEAAAADQAQCdASoFAAQAAsBMJaACdAD0h/tsAADzwiEU9AsTFxAZZnXG8g0mTyuejn5ft/mv/PvO"
    "0/f/8nJEc3HfgAAA"
)
#: The classic 1x1 transparent GIF89a (43 bytes), by hand.
GIF89A_1X1 = _b64("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
#: The baseline JPEG with a comment segment after SOI and two 0xFF fill bytes before
#: the APP0 marker (ITU T.81 §B.1.1.2: any marker may be preceded by fill bytes).
JPEG_FILL_COM_3X2 = (
    JPEG_BASELINE_3X2[:2] + b"\xff\xfe\x00\x08murmur" + b"\xff\xff" + JPEG_BASELINE_3X2[2:]
)
#: A PNG header (signature and IHDR of PNG_RGB_3X2) followed by HTML: a PNG container
#: whatever else it holds (spec 0003 #blob-polyglot).
PNG_POLYGLOT = PNG_RGB_3X2[:33] + b"<html><script>alert(document.cookie)</script></html>"

ALL = {
    "png-rgb-3x2": PNG_RGB_3X2,
    "png-rgba-5x4": PNG_RGBA_5X4,
    "gif87a-3x2": GIF_3X2,
    "gif89a-1x1": GIF89A_1X1,
    "jpeg-baseline-3x2": JPEG_BASELINE_3X2,
    "jpeg-progressive-5x4": JPEG_PROGRESSIVE_5X4,
    "jpeg-fill-com-3x2": JPEG_FILL_COM_3X2,
    "webp-lossy-3x2": WEBP_LOSSY_3X2,
    "webp-lossless-5x4": WEBP_LOSSLESS_5X4,
    "webp-extended-5x4": WEBP_ALPHA_5X4,
    "png-polyglot-3x2": PNG_POLYGLOT,
}


def _png_ihdr(data: bytes, **fields: int) -> bytes:
    """``data`` (a PNG) with IHDR fields replaced and its CRC recomputed."""
    width, height, depth, colour, comp, filt, lace = struct.unpack_from(">IIBBBBB", data, 16)
    values = {"width": width, "height": height, "depth": depth, "colour": colour} | fields
    ihdr = b"IHDR" + struct.pack(
        ">IIBBBBB",
        values["width"],
        values["height"],
        values["depth"],
        values["colour"],
        comp,
        filt,
        lace,
    )
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def _jpeg_sof(data: bytes) -> int:
    """Offset of the SOF0/SOF2 marker of one of the JPEGs above (they have no 0xffc0
    or 0xffc2 inside an earlier segment)."""
    return min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i >= 0)


def _b64s(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _valid(comment: str, name: str, mime: str, width: int, height: int) -> dict[str, Any]:
    return {
        "comment": comment,
        "name": name,
        "base64": _b64s(ALL[name]),
        "mime": mime,
        "width": width,
        "height": height,
    }


def valid_blobs() -> list[dict[str, Any]]:
    return [
        _valid("PNG, truecolour, 3x2", "png-rgb-3x2", "image/png", 3, 2),
        _valid("PNG, truecolour with alpha, 5x4", "png-rgba-5x4", "image/png", 5, 4),
        _valid("GIF87a, 3x2 (logical screen)", "gif87a-3x2", "image/gif", 3, 2),
        _valid("GIF89a, 1x1, transparent", "gif89a-1x1", "image/gif", 1, 1),
        _valid(
            "JPEG baseline (SOF0 after APP0 and two DQT segments), 3x2",
            "jpeg-baseline-3x2",
            "image/jpeg",
            3,
            2,
        ),
        _valid("JPEG progressive (SOF2), 5x4", "jpeg-progressive-5x4", "image/jpeg", 5, 4),
        _valid(
            "JPEG with a COM segment after SOI and 0xff fill bytes before APP0, 3x2",
            "jpeg-fill-com-3x2",
            "image/jpeg",
            3,
            2,
        ),
        _valid("WebP lossy (VP8 chunk), 3x2", "webp-lossy-3x2", "image/webp", 3, 2),
        _valid("WebP lossless (VP8L chunk), 5x4", "webp-lossless-5x4", "image/webp", 5, 4),
        _valid(
            "WebP extended (VP8X, then ALPH and VP8), 5x4 canvas",
            "webp-extended-5x4",
            "image/webp",
            5,
            4,
        ),
        _valid(
            "polyglot: a valid PNG header followed by <html><script>: it IS a PNG "
            "container, so it sniffs as image/png; serving headers are the defence "
            "(spec 0003 #blob-polyglot)",
            "png-polyglot-3x2",
            "image/png",
            3,
            2,
        ),
    ]


def invalid_blobs() -> list[dict[str, Any]]:
    png, gif, jpeg = PNG_RGB_3X2, GIF_3X2, JPEG_BASELINE_3X2
    sof = _jpeg_sof(jpeg)
    webp_lossy, webp_lossless, webp_x = WEBP_LOSSY_3X2, WEBP_LOSSLESS_5X4, WEBP_ALPHA_5X4
    cases: list[tuple[str, bytes]] = [
        ("no bytes", b""),
        (
            "SVG with a script: markup, never an image",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        ),
        (
            "SVG with a UTF-8 BOM and an XML declaration",
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        ),
        ("HTML", b"<!doctype html><html><script>alert(1)</script></html>"),
        ("plain text", b"hello, world"),
        ("a PNG signature followed by garbage", png[:8] + b"<html><script>x</script></html>"),
        ("a PNG cut inside its IHDR chunk", png[:20]),
        ("a PNG whose IHDR CRC is wrong", png[:16] + b"\x00\x00\x00\x04" + png[20:]),
        ("a PNG 0 pixels wide", _png_ihdr(png, width=0)),
        (f"a PNG {MAX_IMAGE_SIDE + 1} pixels high", _png_ihdr(png, height=MAX_IMAGE_SIDE + 1)),
        ("a PNG of colour type 2 with bit depth 4 (no such PNG)", _png_ihdr(png, depth=4)),
        ("a GIF cut inside its logical screen descriptor", gif[:9]),
        ("a GIF 0 pixels high", gif[:8] + b"\x00\x00" + gif[10:]),
        ("a GIF88a: no such version", b"GIF88a" + gif[6:]),
        ("a bare JPEG SOI", jpeg[:2]),
        (f"a JPEG cut before its frame header (first {sof} bytes)", jpeg[:sof]),
        ("a JPEG cut inside its frame header", jpeg[: sof + 6]),
        ("a JPEG whose scan (SOS) starts before any frame header", b"\xff\xd8\xff\xda\x00\x08"),
        ("a JPEG segment of length 1", b"\xff\xd8\xff\xe0\x00\x01" + jpeg[6:]),
        ("a JPEG with a stuffed 0xff00 where a marker belongs", b"\xff\xd8\xff\x00" + jpeg[2:]),
        ("a JPEG with no marker after SOI", b"\xff\xd8JFIF" + jpeg[2:]),
        (
            "a JPEG frame header with height 0 (lines defined later by DNL)",
            jpeg[: sof + 5] + b"\x00\x00" + jpeg[sof + 7 :],
        ),
        ("a WebP cut inside its first chunk header", webp_lossy[:16]),
        (
            "a WebP VP8 chunk without the key frame start code",
            webp_lossy[:23] + b"\x00\x00\x00" + webp_lossy[26:],
        ),
        (
            "a WebP VP8L chunk without its signature byte",
            webp_lossless[:20] + b"\x00" + webp_lossless[21:],
        ),
        ("a WebP with an unknown first chunk 'VP9 '", webp_lossy[:12] + b"VP9 " + webp_lossy[16:]),
        (
            f"a WebP VP8X canvas {MAX_IMAGE_SIDE + 1} pixels wide",
            webp_x[:24] + (MAX_IMAGE_SIDE).to_bytes(3, "little") + webp_x[27:],
        ),
        ("a RIFF WAVE file", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20)),
        ("a BMP", b"BM" + bytes(52)),
        ("a PDF", b"%PDF-1.7\n"),
    ]
    return [{"comment": c, "base64": _b64s(data), "error": "bad-blob"} for c, data in cases]


def _image(data: bytes, **claims: Any) -> dict[str, Any]:
    image = {
        "hash": hashlib.sha256(data).digest(),
        "mime": "image/png",
        "size": len(data),
        "width": 3,
        "height": 2,
        "alt": "a gradient",
    }
    image.update(claims)
    return image


def blob_checks() -> list[tuple[str, bytes, dict[str, Any], str | None]]:
    """(comment, bytes, image map, expected error or None) for ``verify_blob``."""
    png = PNG_RGB_3X2
    swapped = png[:-1] + bytes([png[-1] ^ 1])  # same size and header, other bytes
    jpeg = JPEG_BASELINE_3X2
    return [
        ("the bytes of the claim", png, _image(png), None),
        ("a JPEG claimed as one", jpeg, _image(jpeg, mime="image/jpeg"), None),
        (
            "the PNG-headed polyglot, claimed as the PNG it is",
            PNG_POLYGLOT,
            _image(PNG_POLYGLOT),
            None,
        ),
        (
            "bytes swapped for others of the same size and header: the hash differs",
            swapped,
            _image(png),
            "bad-blob",
        ),
        ("one byte more than the claimed size", png + b"\x00", _image(png), "bad-blob"),
        (
            "the right hash, a PNG claimed as image/jpeg",
            png,
            _image(png, mime="image/jpeg"),
            "bad-blob",
        ),
        ("the right hash, 3x2 claimed as 2x3", png, _image(png, width=2, height=3), "bad-blob"),
        (
            "an SVG named by its own hash and claimed as a PNG",
            b"<svg/>",
            _image(b"<svg/>"),
            "bad-blob",
        ),
    ]


def blob_vectors(to_json: Any) -> dict[str, list[dict[str, Any]]]:
    """The ``cases`` of blobs.json; ``to_json`` is gen_vectors' tagged-JSON form."""
    return {
        "valid": valid_blobs(),
        "invalid": invalid_blobs(),
        "checks": [
            {"comment": c, "base64": _b64s(data), "image": to_json(image), "error": error}
            for c, data, image, error in blob_checks()
        ],
    }
