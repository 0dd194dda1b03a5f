"""Post embeds: images named by hash (spec 0003 #embed).

The vectors (events-valid/invalid.json) pin one case per rule and run through
``decode_event``; these tests check each rule against ``validate_body`` directly, the
:class:`EmbedImage` claim type, and a property: any valid embed survives signing and
decoding unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.embeds import IMAGE_MIME_TYPES, EmbedImage, post_images, validate_embed
from protocol.errors import BadFieldError
from protocol.events import decode_event, sign_event
from protocol.identity import Identity
from protocol.kinds import validate_body
from protocol.limits import MAX_ALT_BYTES, MAX_BLOB_BYTES, MAX_EMBED_IMAGES, MAX_IMAGE_SIDE

from .conftest import NOW

IMAGE: dict[str, Any] = {
    "hash": hashlib.sha256(b"png bytes").digest(),
    "mime": "image/png",
    "size": 86,
    "width": 3,
    "height": 2,
    "alt": "a gradient",
}


def _post(embed: Any) -> dict[str, Any]:
    return {"text": "a picture", "embed": embed}


def _image(i: int = 0, **change: Any) -> dict[str, Any]:
    image = {**IMAGE, "hash": hashlib.sha256(b"image %d" % i).digest(), **change}
    return {k: v for k, v in image.items() if v is not None}


def test_valid_embeds() -> None:
    """spec 0003 #embed: 1 to 4 images, empty alt, unknown keys, limits' edges."""
    for body in (
        _post({"images": [_image()]}),
        _post({"images": [_image(i) for i in range(MAX_EMBED_IMAGES)]}),
        _post({"images": [_image(alt="")]}),
        _post({"images": [{**_image(), "org.example.focus": [0, 0]}]}),
        _post({"org.example.video": {}}),  # no images: future embeds only
        _post({"images": [_image(), _image(1)], "org.example.card": "x"}),
        _post({"images": [_image(size=1, width=1, height=MAX_IMAGE_SIDE)]}),
        _post({"images": [_image(size=MAX_BLOB_BYTES, width=MAX_IMAGE_SIDE, height=1)]}),
        _post({"images": [_image(alt="é" * (MAX_ALT_BYTES // 2))]}),
        *(_post({"images": [_image(mime=mime)]}) for mime in sorted(IMAGE_MIME_TYPES)),
    ):
        validate_body("post", body)


INVALID: list[tuple[str, Any]] = [
    ("embed not a map", [IMAGE]),
    ("embed null", None),
    ("images not an array", {"images": IMAGE}),
    ("no images", {"images": []}),
    ("5 images", {"images": [_image(i) for i in range(MAX_EMBED_IMAGES + 1)]}),
    ("image not a map", {"images": [IMAGE["hash"]]}),
    ("same hash twice", {"images": [_image(), _image()]}),
    ("same hash, other claims", {"images": [_image(), _image(mime="image/gif", alt="")]}),
    ("no hash", {"images": [_image(hash=None)]}),
    ("hash 31 bytes", {"images": [_image(hash=bytes(31))]}),
    ("hash 33 bytes", {"images": [_image(hash=bytes(33))]}),
    ("hash as str", {"images": [_image(hash="00" * 32)]}),
    ("no mime", {"images": [_image(mime=None)]}),
    ("svg", {"images": [_image(mime="image/svg+xml")]}),
    ("uppercase mime", {"images": [_image(mime="image/PNG")]}),
    ("bmp", {"images": [_image(mime="image/bmp")]}),
    ("html", {"images": [_image(mime="text/html")]}),
    ("mime as bin", {"images": [_image(mime=b"image/png")]}),
    ("no size", {"images": [_image(size=None)]}),
    ("size 0", {"images": [_image(size=0)]}),
    ("size > 2 MiB", {"images": [_image(size=MAX_BLOB_BYTES + 1)]}),
    ("size true", {"images": [_image(size=True)]}),
    ("no width", {"images": [_image(width=None)]}),
    ("width 0", {"images": [_image(width=0)]}),
    ("width 16385", {"images": [_image(width=MAX_IMAGE_SIDE + 1)]}),
    ("width true", {"images": [_image(width=True)]}),
    ("width false", {"images": [_image(width=False)]}),
    ("no height", {"images": [_image(height=None)]}),
    ("height negative", {"images": [_image(height=-1)]}),
    ("height 16385", {"images": [_image(height=MAX_IMAGE_SIDE + 1)]}),
    ("height str", {"images": [_image(height="2")]}),
    ("no alt", {"images": [_image(alt=None)]}),
    ("alt 2001 bytes", {"images": [_image(alt="a" * (MAX_ALT_BYTES + 1))]}),
    ("alt 2001 bytes of 2-byte characters", {"images": [_image(alt="é" * 1000 + "a")]}),
    ("alt as bin", {"images": [_image(alt=b"x")]}),
]


@pytest.mark.parametrize(("why", "embed"), INVALID, ids=[w for w, _ in INVALID])
def test_invalid_embed_is_bad_field(why: str, embed: Any) -> None:
    """spec 0003 #embed: every violation is bad-field, like the rest of §3.3."""
    with pytest.raises(BadFieldError):
        validate_body("post", _post(embed))
    with pytest.raises(BadFieldError):
        post_images(_post(embed))


def test_embed_is_only_checked_on_posts() -> None:
    """An `embed` key on another kind is an unknown key (spec 0003 #unknown-keys)."""
    validate_body("profile", {"name": "x", "embed": {"images": []}})
    validate_body("org.example.gallery", {"embed": "anything"})


def test_post_images_and_embed_image_round_trip() -> None:
    body = _post({"images": [_image(0), {**_image(1), "org.example.x": 1}]})
    images = post_images(body)
    assert [i.hash for i in images] == [_image(0)["hash"], _image(1)["hash"]]
    assert images[0].to_map() == _image(0)
    assert EmbedImage.from_map(images[1].to_map()) == images[1]
    assert post_images({"text": "no embed"}) == ()
    assert post_images(_post({"org.example.video": {}})) == ()


def test_embed_image_validates_on_construction() -> None:
    with pytest.raises(BadFieldError):
        EmbedImage(**{**IMAGE, "mime": "image/svg+xml"})
    with pytest.raises(BadFieldError):
        EmbedImage(**{**IMAGE, "width": True})
    with pytest.raises(BadFieldError, match=r"image\.alt"):
        EmbedImage.from_map({k: v for k, v in IMAGE.items() if k != "alt"})


def test_error_names_the_field() -> None:
    with pytest.raises(BadFieldError, match=r"body\.embed\.images\[1\]\.hash"):
        validate_embed({"images": [_image(0), _image(0)]})
    with pytest.raises(BadFieldError, match=r"body\.embed\.images\[0\]\.mime"):
        validate_embed({"images": [_image(mime="image/svg+xml")]})


# -- property: valid embeds survive signing and decoding -------------------------------

_images = st.lists(
    st.builds(
        dict,
        hash=st.binary(min_size=32, max_size=32),
        mime=st.sampled_from(sorted(IMAGE_MIME_TYPES)),
        size=st.integers(1, MAX_BLOB_BYTES),
        width=st.integers(1, MAX_IMAGE_SIDE),
        height=st.integers(1, MAX_IMAGE_SIDE),
        alt=st.text(max_size=200),
    ),
    min_size=1,
    max_size=MAX_EMBED_IMAGES,
    unique_by=lambda image: image["hash"],
)


@settings(max_examples=60, deadline=None)
@given(images=_images)
def test_valid_embeds_round_trip(images: list[dict[str, Any]]) -> None:
    alice = Identity.from_seed(bytes(32))
    body = {"text": "pics", "embed": {"images": images}}
    event = sign_event(alice, kind="post", body=body, seq=1, prev=None, ts=NOW)
    decoded = decode_event(event.wire, net=event.net, now_ms=NOW)
    assert decoded.body == body
    assert [i.to_map() for i in post_images(decoded.body)] == images
