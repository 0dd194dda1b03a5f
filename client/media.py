"""Images to post: decoded under hard bounds, re-encoded from pixels alone (spec 0007
#images).

:func:`prepare_image` turns a file a person picked into the bytes a post names. The
file is never posted as it is: a photo carries metadata its author rarely means to
publish (EXIF with the GPS position, the camera's serial number and the time taken,
XMP and IPTC blocks, comments, thumbnails that may show the uncropped picture). Only
the pixels survive: the picture is decoded, turned upright by its EXIF orientation,
copied pixel by pixel into a new image with no metadata at all, then encoded afresh:
JPEG (quality 85) when it is opaque, PNG when it has transparency. An ICC colour
profile is applied (the pixels are converted to sRGB) and then dropped too. An
animation keeps its first frame only. Pictures larger than :data:`MAX_SIDE` are scaled
down, and one still over ``MAX_BLOB_BYTES`` (2 MiB) is encoded at lower qualities,
then smaller sizes, in a bounded ladder.

Bounds before decoding: a file over :data:`MAX_INPUT_BYTES` is refused before it is
read, a picture of more than :data:`MAX_INPUT_PIXELS` is refused from its header
(before its pixels are decoded: a decompression bomb is a small file that would fill
memory), and only the four formats a post may carry are opened (Pillow's other
decoders, a larger attack surface, are never tried). Errors are the
:class:`~client.errors.ImageError` branch, with stable codes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from client.errors import ImageTooLargeError, UnsupportedImageError
from protocol.blobs import blob_hash, sniff
from protocol.embeds import EmbedImage
from protocol.errors import BadBlobError
from protocol.limits import MAX_BLOB_BYTES

if TYPE_CHECKING:  # Pillow is imported when an image is prepared, not with every command
    from PIL import Image

__all__ = [
    "INPUT_FORMATS",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_PIXELS",
    "MAX_SIDE",
    "PreparedImage",
    "prepare_image",
]

#: Largest file opened, in bytes (checked before reading it).
MAX_INPUT_BYTES = 50 * 1024 * 1024
#: Most pixels decoded (width × height from the header): 64 Mpx holds a 50 Mpx camera
#: (8160 × 6120) and stays under Pillow's own bomb warning (~89 Mpx); 4 bytes a pixel
#: at most, so ~256 MiB in the worst case, and JPEGs are decoded scaled down first.
MAX_INPUT_PIXELS = 64 * 1024 * 1024
#: Longest side of a posted image, in pixels.
MAX_SIDE = 2560
#: The formats opened: what a post may carry (spec 0003 #embed), no other decoder.
INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
#: JPEG qualities tried in turn before the picture is made smaller.
_QUALITIES = (85, 78, 70, 62)
#: Each smaller try scales the sides by this; at most this many tries.
_SHRINK = 0.75
_MAX_SHRINKS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedImage:
    """An image ready to upload: its new bytes and what a post says of them."""

    data: bytes
    mime: str
    width: int
    height: int
    #: SHA-256 of ``data`` (spec 0003 #embed).
    hash: bytes
    #: What the original carried and the new bytes do not, for people ("EXIF with a
    #: GPS position", "ICC profile (converted to sRGB)", "frames after the first"...).
    dropped: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.data)

    def claim(self, alt: str) -> EmbedImage:
        """What a post says of these bytes (spec 0003 #embed), with ``alt`` as their
        description; ``bad-field`` for an alt text the protocol refuses (too long)."""
        return EmbedImage(
            hash=self.hash, mime=self.mime, size=self.size, width=self.width,
            height=self.height, alt=alt,
        )  # fmt: skip


def _read(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes):
        if len(source) > MAX_INPUT_BYTES:
            raise ImageTooLargeError(_too_big(len(source)))
        return source
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise ImageTooLargeError(f"{path}: {_too_big(size)}")
        with path.open("rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UnsupportedImageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:  # grew since stat
        raise ImageTooLargeError(f"{path}: {_too_big(len(data))}")
    return data


def _too_big(size: int) -> str:
    return (
        f"the file has {size} bytes, more than the {MAX_INPUT_BYTES // (1024 * 1024)} MiB "
        "an image may have to be opened"
    )


def _open(data: bytes) -> Image.Image:
    """The image of ``data``, header read, pixels not decoded yet."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the picture is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
        what = "markup (SVG, XML or HTML)" if head.startswith(b"<") else "not an image"
        raise UnsupportedImageError(
            f"{what}: only PNG, JPEG, WebP and GIF images can be posted"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "corrupt"
        raise UnsupportedImageError(f"the image cannot be read: {exc}") from exc
    width, height = im.size
    if width < 1 or height < 1 or width * height > MAX_INPUT_PIXELS:
        raise ImageTooLargeError(
            f"the picture is {width}×{height} pixels, more than the "
            f"{MAX_INPUT_PIXELS} the client decodes (a decompression bomb, or a picture "
            "to scale down first)"
        )
    return im


def _dropped(im: Image.Image) -> list[str]:
    """The metadata ``im`` carries, named for people."""
    out: list[str] = []
    exif = im.getexif()
    if exif:
        gps = exif.get_ifd(0x8825)  # the GPSInfo IFD
        out.append("EXIF with a GPS position" if gps else "EXIF")
    info = im.info
    if "xmp" in info or "XML:com.adobe.xmp" in info:
        out.append("XMP")
    if "photoshop" in info:
        out.append("IPTC/Photoshop")
    if "comment" in info:
        out.append("comment")
    if any(isinstance(k, str) and k not in _NOT_TEXT for k in info) and im.format == "PNG":
        out.append("text chunks")
    if getattr(im, "n_frames", 1) > 1:
        out.append("frames after the first (the animation)")
    return out


#: Keys of ``Image.info`` that are not free text a PNG carries.
_NOT_TEXT = frozenset(
    {
        "dpi",
        "gamma",
        "transparency",
        "icc_profile",
        "exif",
        "xmp",
        "XML:com.adobe.xmp",
        "aspect",
        "srgb",
        "chromaticity",
        "interlace",
        "duration",
        "loop",
        "background",
        "version",
        "extension",
        "disposal",
        "default_image",
        "comment",
    }
)


def _to_srgb(im: Image.Image, icc: object, dropped: list[str]) -> Image.Image:
    """``im`` in sRGB when it came with an ICC profile (``icc``) that can be applied;
    the profile is dropped either way (the new bytes carry none)."""
    from PIL import ImageCms

    if not isinstance(icc, bytes) or not icc:
        return im
    if im.mode not in ("RGB", "RGBA"):
        dropped.append("ICC profile")
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        dropped.append("ICC profile (not applied: unreadable)")
        return im
    dropped.append("ICC profile (converted to sRGB)")
    return out if out is not None else im


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    ):
        alpha = im.convert("RGBA").getchannel("A")
        low = alpha.getextrema()[0]  # one band: (low, high)
        return isinstance(low, int | float) and low < 255
    return False


def _pixels_only(im: Image.Image) -> Image.Image:
    """A new image of ``im``'s pixels and nothing else: no ``info``, no EXIF, no
    palette metadata, no frames. Grey stays grey; anything else becomes RGB(A)."""
    from PIL import Image

    alpha = _has_alpha(im)
    if im.mode in ("L", "LA", "1", "I", "I;16", "F") or (im.mode == "P" and _grey_palette(im)):
        mode = "LA" if alpha else "L"
    else:
        mode = "RGBA" if alpha else "RGB"
    try:
        converted = im.convert(mode)
    except ValueError as exc:
        raise UnsupportedImageError(f"the image's pixel mode {im.mode} is not supported") from exc
    return Image.frombytes(mode, converted.size, converted.tobytes())


def _grey_palette(im: Image.Image) -> bool:
    palette = im.getpalette() or []
    triples = zip(palette[0::3], palette[1::3], palette[2::3], strict=False)
    return all(r == g == b for r, g, b in triples)


def _encode(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    if im.mode in ("RGBA", "LA"):
        im.save(buf, "PNG", optimize=False, compress_level=9)
    else:
        im.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
    return buf.getvalue()


def _fit(im: Image.Image) -> bytes:
    """The encoded picture, at most ``MAX_BLOB_BYTES``: the qualities first, then
    smaller sizes (bounded: at most ``len(_QUALITIES) + _MAX_SHRINKS`` encodings)."""
    from PIL import Image

    lossy = im.mode in ("RGB", "L")
    for quality in _QUALITIES if lossy else _QUALITIES[:1]:
        data = _encode(im, quality)
        if len(data) <= MAX_BLOB_BYTES:
            return data
    quality = _QUALITIES[-1]
    shrunk = im
    for _ in range(_MAX_SHRINKS):
        w, h = shrunk.size
        size = (max(1, int(w * _SHRINK)), max(1, int(h * _SHRINK)))
        shrunk = im.resize(size, Image.Resampling.LANCZOS)
        data = _encode(shrunk, quality)
        if len(data) <= MAX_BLOB_BYTES:
            return data
    raise ImageTooLargeError(
        f"the picture does not fit in {MAX_BLOB_BYTES} bytes even scaled down to "
        f"{shrunk.size[0]}×{shrunk.size[1]}"
    )


def prepare_image(source: str | Path | bytes) -> PreparedImage:
    """The bytes to post for the image at ``source`` (a path, or the file's bytes):
    re-encoded from its pixels, with no metadata, at most ``MAX_SIDE`` pixels a side
    and ``MAX_BLOB_BYTES`` bytes (spec 0007 #images).

    Raises ``unsupported-image`` for anything but a PNG, JPEG, WebP or GIF that
    decodes, ``image-too-large`` for a file over ``MAX_INPUT_BYTES`` or a picture over
    ``MAX_INPUT_PIXELS`` (a decompression bomb).
    """
    from PIL import Image, ImageOps

    data = _read(source)
    im = _open(data)
    dropped = _dropped(im)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if im.format == "JPEG":  # decode scaled by 1/2, 1/4 or 1/8 when that is enough
                im.draft(im.mode, (MAX_SIDE, MAX_SIDE))
            im.seek(0)
            im.load()
            upright = ImageOps.exif_transpose(im) or im
            upright = _to_srgb(upright, im.info.get("icc_profile"), dropped)
            clean = _pixels_only(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the picture is too large to decode safely: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated, corrupt
        raise UnsupportedImageError(f"the image cannot be decoded: {exc}") from exc
    if max(clean.size) > MAX_SIDE:
        clean.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = _fit(clean)
    try:
        info = sniff(out)
    except BadBlobError as exc:  # the encoder made something the protocol refuses: a bug
        raise RuntimeError(f"prepared image does not sniff: {exc}") from exc
    return PreparedImage(
        data=out,
        mime=info.mime,
        width=info.width,
        height=info.height,
        hash=blob_hash(out),
        dropped=tuple(dropped),
    )
