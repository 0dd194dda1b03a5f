"""client.media.prepare_image: images re-encoded from pixels, bounded (spec 0007 #images)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from client import media
from client.errors import ImageTooLargeError, UnsupportedImageError
from client.media import MAX_SIDE, prepare_image
from protocol.blobs import blob_hash, sniff
from protocol.limits import MAX_BLOB_BYTES

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _jpeg_with_gps(orientation: int = 6) -> bytes:
    """64×32 stored: the top half red, the bottom half blue; EXIF with a GPS position
    and an orientation, XMP, a comment and an ICC profile."""
    im = Image.new("RGB", (64, 32), RED)
    im.paste(BLUE, (0, 16, 64, 32))
    exif = im.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "SpyCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 30.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    im.save(
        buf,
        "JPEG",
        quality=95,
        exif=exif,
        icc_profile=icc,
        comment=b"secret comment",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">where I live</x:xmpmeta>',
    )
    return buf.getvalue()


def _close(pixel: object, colour: tuple[int, int, int]) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(int(a) - b) < 40 for a, b in zip(pixel, colour, strict=False))


def test_jpeg_loses_exif_gps_xmp_comment_icc_and_is_turned_upright() -> None:
    """spec 0007 #images: no metadata survives; the EXIF orientation is applied."""
    src = _jpeg_with_gps(orientation=6)
    before = Image.open(io.BytesIO(src))
    assert before.getexif().get_ifd(0x8825)  # the input does carry a GPS position
    assert b"Exif" in src and b"ICC_PROFILE" in src and b"secret comment" in src

    out = prepare_image(src)

    assert out.mime == "image/jpeg"
    assert (out.width, out.height) == (32, 64)  # orientation 6: turned a quarter
    im = Image.open(io.BytesIO(out.data))
    assert im.size == (32, 64)
    assert not im.getexif()
    assert "icc_profile" not in im.info and "exif" not in im.info
    assert "comment" not in im.info and "xmp" not in im.info
    for marker in (b"Exif", b"ICC_PROFILE", b"secret comment", b"where I live", b"SpyCam"):
        assert marker not in out.data
    # No APP1 (EXIF/XMP) nor APP2 (ICC) segment at all, no GPS IFD tag (0x8825).
    assert b"\xff\xe1" not in out.data[:2048] and b"\xff\xe2" not in out.data[:2048]
    assert b"\x88\x25" not in out.data[:2048]
    # Displayed upright: the stored top (red) is now on the right, the bottom on the left.
    rgb = im.convert("RGB")
    assert _close(rgb.getpixel((28, 32)), RED) and _close(rgb.getpixel((3, 32)), BLUE)
    assert "EXIF with a GPS position" in out.dropped
    assert any(d.startswith("ICC profile") for d in out.dropped)
    assert "XMP" in out.dropped and "comment" in out.dropped
    assert out.hash == blob_hash(out.data) and out.size == len(out.data)


def test_png_with_alpha_stays_png_with_alpha() -> None:
    im = Image.new("RGBA", (40, 30), (10, 200, 30, 255))
    im.paste((0, 0, 0, 0), (0, 0, 20, 30))
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=_text_chunk())
    out = prepare_image(buf.getvalue())
    assert out.mime == "image/png"
    got = Image.open(io.BytesIO(out.data))
    assert got.mode == "RGBA" and got.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert got.getpixel((30, 5))[3] == 255  # type: ignore[index]
    assert b"tEXt" not in out.data and b"Author" not in out.data
    assert "text chunks" in out.dropped


def _text_chunk() -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "someone at home")
    return info


def test_opaque_png_becomes_jpeg() -> None:
    """spec 0007 #images: opaque pictures are JPEG, only transparency keeps PNG."""
    buf = io.BytesIO()
    Image.new("RGBA", (20, 20), (1, 2, 3, 255)).save(buf, "PNG")
    assert prepare_image(buf.getvalue()).mime == "image/jpeg"


def test_animated_gif_keeps_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = prepare_image(buf.getvalue())
    got = Image.open(io.BytesIO(out.data))
    assert out.mime == "image/jpeg" and getattr(got, "n_frames", 1) == 1
    assert _close(got.convert("RGB").getpixel((8, 8)), RED)
    assert "frames after the first (the animation)" in out.dropped


def _noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    bands = [Image.effect_noise(size, 90) for _ in mode]
    return Image.merge(mode, bands)


def test_a_large_picture_is_scaled_down_to_max_side() -> None:
    im = Image.new("RGB", (MAX_SIDE * 2, MAX_SIDE // 2), (90, 90, 90))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    out = prepare_image(buf.getvalue())
    assert (out.width, out.height) == (MAX_SIDE, MAX_SIDE // 4)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_picture_over_the_blob_limit_is_encoded_smaller_until_it_fits(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Noise does not compress: the quality ladder, then smaller sizes, bring it
    under the limit (scaled down here so the test stays fast)."""
    limit = 150_000
    monkeypatch.setattr(media, "MAX_BLOB_BYTES", limit)
    im = _noise((900, 600), mode)
    if mode == "RGBA":
        im.putpixel((0, 0), (0, 0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    assert len(buf.getvalue()) > limit
    out = prepare_image(buf.getvalue())
    assert out.size <= limit
    assert out.mime == ("image/png" if mode == "RGBA" else "image/jpeg")
    assert out.width < 900 and out.height < 600
    assert abs(out.width / out.height - 1.5) < 0.02


def test_a_noisy_12_mpx_photo_fits_the_real_limit() -> None:
    """The real MAX_BLOB_BYTES with a camera-sized, noisy picture."""
    base = Image.linear_gradient("L").resize((4032, 3024)).convert("RGB")
    im = Image.blend(base, _noise((4032, 3024)), 0.3)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    out = prepare_image(buf.getvalue())
    assert out.size <= MAX_BLOB_BYTES and max(out.width, out.height) <= MAX_SIDE
    assert sniff(out.data).mime == "image/jpeg"


@pytest.mark.parametrize(
    "data",
    [
        b"just some text, not a picture\n",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>',
        b"<html><body>hi</body></html>",
        b"",
    ],
    ids=["text", "svg", "html", "empty"],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedImageError) as err:
        prepare_image(data)
    assert err.value.code == "unsupported-image"
    assert "PNG, JPEG, WebP and GIF" in err.value.message


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_other_image_formats_are_not_opened(fmt: str) -> None:
    """Only the decoders of the four formats a post carries are ever tried."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, fmt)
    with pytest.raises(UnsupportedImageError):
        prepare_image(buf.getvalue())


def test_a_truncated_jpeg_is_refused() -> None:
    buf = io.BytesIO()
    _noise((200, 200)).save(buf, "JPEG")
    with pytest.raises(UnsupportedImageError) as err:
        prepare_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert err.value.code == "unsupported-image"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes claiming ``width × height`` greyscale pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "size", [(9000, 9000), (16000, 16000), (60000, 60000)], ids=["81Mpx", "256Mpx", "3.6Gpx"]
)
def test_a_decompression_bomb_is_refused_before_decoding(size: tuple[int, int]) -> None:
    """81 Mpx passes Pillow's own warning but not the client's bound; larger ones
    trip Pillow's too: either way ``image-too-large``, nothing decoded."""
    data = _bomb_png(*size)
    assert len(data) < 100_000
    with pytest.raises(ImageTooLargeError) as err:
        prepare_image(data)
    assert err.value.code == "image-too-large"


def test_a_file_over_the_input_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "MAX_INPUT_BYTES", 1000)
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff\xd8" + b"\x00" * 2000)

    def no_open(*a: object, **kw: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Path, "open", no_open)
    with pytest.raises(ImageTooLargeError) as err:
        prepare_image(path)
    assert err.value.code == "image-too-large" and "big.jpg" in err.value.message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImageError) as err:
        prepare_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in err.value.message


def test_a_path_and_its_bytes_prepare_alike(tmp_path: Path) -> None:
    path = tmp_path / "p.jpg"
    path.write_bytes(_jpeg_with_gps())
    assert (
        prepare_image(path).hash
        == prepare_image(str(path)).hash
        == prepare_image(path.read_bytes()).hash
    )
