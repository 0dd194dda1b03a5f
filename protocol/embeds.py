"""Embeds of a post: the images it shows, named by hash (spec 0003 #embed).

A ``post`` body may carry ``embed``, a map. This version knows one key of it,
``images``: an array of 1 to :data:`MAX_EMBED_IMAGES` maps, each naming one image by
the SHA-256 of its exact bytes (``hash``) and claiming its ``mime`` type, ``size`` in
bytes, ``width`` and ``height`` in pixels, and carrying its ``alt`` text. Other keys
of ``embed`` (future embeds) and of an image map are ignored, as unknown body keys are
(spec 0003 #unknown-keys), but a malformed known field makes the body invalid
(``bad-field``), like any other.

The hash is what makes an image part of the signed post: whoever serves the bytes,
a reader checks them against it (:func:`protocol.blobs.verify_blob`), so no node can
swap the picture under an author's words. The other fields are claims a reader can
check the same way and use before fetching (layout, a size budget, the description).

Checking is O(images): at most four maps of six bounded fields, and one set of at most
four hashes for the duplicate test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.errors import BadFieldError
from protocol.limits import MAX_ALT_BYTES, MAX_BLOB_BYTES, MAX_EMBED_IMAGES, MAX_IMAGE_SIDE

__all__ = [
    "IMAGE_MIME_TYPES",
    "EmbedImage",
    "post_images",
    "validate_embed",
]

#: The only image types of an embed. Never SVG: it is a document that can carry
#: script, not a picture (spec 0003 #embed).
IMAGE_MIME_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedImage:
    """One image of a post's embed, as the author claims it (spec 0003 #embed).

    Validates on construction: every field within the limits of the spec, so a value of
    this class is always a claim a valid post could make.
    """

    hash: bytes
    mime: str
    size: int
    width: int
    height: int
    alt: str

    def __post_init__(self) -> None:
        _check_image(
            {
                "hash": self.hash,
                "mime": self.mime,
                "size": self.size,
                "width": self.width,
                "height": self.height,
                "alt": self.alt,
            },
            "image",
        )

    @classmethod
    def from_map(cls, image: object, where: str = "image") -> EmbedImage:
        """The image of one decoded ``images`` item; ``BadFieldError`` if it is not one.

        Unknown keys of the map are ignored (spec 0003 #embed).
        """
        checked = _check_image(image, where)
        return cls(
            hash=checked["hash"],
            mime=checked["mime"],
            size=checked["size"],
            width=checked["width"],
            height=checked["height"],
            alt=checked["alt"],
        )

    def to_map(self) -> dict[str, Any]:
        """The map to put in a body's ``embed.images``."""
        return {
            "hash": self.hash,
            "mime": self.mime,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "alt": self.alt,
        }


def _int_field(image: Mapping[str, Any], key: str, high: int, where: str) -> None:
    if key not in image:
        raise BadFieldError(f"{where}.{key} is required")
    value = image[key]
    # bool is an int subclass in Python, never in the protocol (spec 0003 §3.1).
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise BadFieldError(f"{where}.{key} must be an integer in [1, {high}]")


def _check_image(image: object, where: str) -> Mapping[str, Any]:
    """``image`` itself, once it is known to be a valid image map."""
    if not isinstance(image, Mapping):
        raise BadFieldError(f"{where} must be a map")
    if "hash" not in image:
        raise BadFieldError(f"{where}.hash is required")
    digest = image["hash"]
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise BadFieldError(f"{where}.hash must be 32 bytes of bin (a SHA-256)")
    if "mime" not in image:
        raise BadFieldError(f"{where}.mime is required")
    mime = image["mime"]
    if not isinstance(mime, str) or mime not in IMAGE_MIME_TYPES:
        raise BadFieldError(f"{where}.mime must be one of {sorted(IMAGE_MIME_TYPES)}")
    _int_field(image, "size", MAX_BLOB_BYTES, where)
    _int_field(image, "width", MAX_IMAGE_SIDE, where)
    _int_field(image, "height", MAX_IMAGE_SIDE, where)
    if "alt" not in image:
        raise BadFieldError(f"{where}.alt is required (it may be empty)")
    alt = image["alt"]
    if not isinstance(alt, str):
        raise BadFieldError(f"{where}.alt must be a string")
    if len(alt.encode("utf-8")) > MAX_ALT_BYTES:
        raise BadFieldError(f"{where}.alt is longer than {MAX_ALT_BYTES} bytes")
    return image


def _images(embed: object) -> list[Any] | None:
    """The ``images`` array of a well-typed ``embed``, or None when it has none."""
    if not isinstance(embed, Mapping):
        raise BadFieldError("body.embed must be a map")
    if "images" not in embed:
        return None
    images = embed["images"]
    if not isinstance(images, list):
        raise BadFieldError("body.embed.images must be an array")
    if not 1 <= len(images) <= MAX_EMBED_IMAGES:
        raise BadFieldError(f"body.embed.images must hold 1 to {MAX_EMBED_IMAGES} images")
    return images


def validate_embed(embed: object) -> None:
    """Raise ``BadFieldError`` unless ``embed`` is a valid ``post.embed`` (spec 0003
    #embed). An embed without ``images`` is valid: its other keys are future embeds."""
    images = _images(embed)
    if images is None:
        return
    seen: set[bytes] = set()
    for i, image in enumerate(images):
        digest = _check_image(image, f"body.embed.images[{i}]")["hash"]
        if digest in seen:
            raise BadFieldError(f"body.embed.images[{i}].hash names an image already listed")
        seen.add(digest)


def post_images(body: Mapping[str, Any]) -> tuple[EmbedImage, ...]:
    """The images of a post body, in order; ``()`` for a post without any.

    Validates as :func:`validate_embed` does, so it may be called on any body map.
    """
    if "embed" not in body:
        return ()
    validate_embed(body["embed"])
    images = _images(body["embed"]) or []
    return tuple(
        EmbedImage.from_map(image, f"body.embed.images[{i}]") for i, image in enumerate(images)
    )
