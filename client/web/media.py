"""Posts' images in ``murmur web``: what a page may load, and verified bytes kept in memory
(issue #20 point 3, spec 0007 #web-images).

The browser never talks to a node: a post's image is ``<img src="/media/HASH">`` on the
web server's own origin (the page's CSP allows ``img-src 'self'``), and
``pages/media.py`` fetches it from the reader's nodes with the verifying client call
(``client.imagexfer.fetch_image``: each node's answer is checked against the signed
claim, spec 0003 #blob-hash; altered bytes are never served, the next node is asked).

* :class:`KnownImages`: the claims of the images the server has put in a page
  (``hash → claims``), bounded and least recently drawn first out. ``/media/HASH``
  answers only for those, so the server is no proxy for any blob a page of another
  site names. A hash may come with more than one claim (a post may lie about an image
  another post names truly): up to :data:`MAX_CLAIMS_A_HASH` are kept, tried newest
  first.
* :class:`ImageCache`: verified bytes, least recently served first out, within a
  budget of bytes (:data:`CACHE_BYTES`).
* :func:`post_images_view`: a post's images as a template draws them, blurred when the
  post carries a sensitive-media self-label or the reader's moderation warned about
  it (spec 0007 #web-images).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from client.textsafety import safe_line
from protocol.embeds import EmbedImage
from protocol.events import Event

__all__ = [
    "CACHE_BYTES",
    "MAX_CLAIMS_A_HASH",
    "MAX_KNOWN_IMAGES",
    "MEDIA_LABELS",
    "ImageCache",
    "ImageView",
    "Images",
    "KnownImages",
    "MediaState",
    "post_images_view",
]

#: Verified image bytes kept in memory (least recently served dropped first).
CACHE_BYTES: Final = 64 * 1024 * 1024
#: Image hashes ``/media/`` answers for: those of the pages drawn most recently.
#: 4096 is 20 full timeline pages of 4-image posts; a claim is ~200 bytes.
MAX_KNOWN_IMAGES: Final = 4096
#: Distinct claims kept for one hash (a lying post's claim cannot shadow a true one).
MAX_CLAIMS_A_HASH: Final = 4
#: Self-labels (a post's ``warn``) that blur its images whatever the reader's filters
#: make of the post (spec 0007 #web-images).
MEDIA_LABELS: Final = frozenset({"nsfw", "porn", "sexual", "nudity", "gore", "graphic-media"})


class KnownImages:
    """The image claims of the posts the server has drawn, ``hash → claims``, bounded."""

    def __init__(self, limit: int = MAX_KNOWN_IMAGES) -> None:
        self.limit = limit
        self._claims: OrderedDict[bytes, tuple[EmbedImage, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._claims)

    def add(self, claim: EmbedImage) -> None:
        """Remember ``claim`` as drawn now (its hash becomes the most recent)."""
        old = self._claims.pop(claim.hash, ())
        claims = (claim, *(c for c in old if c != claim))[:MAX_CLAIMS_A_HASH]
        self._claims[claim.hash] = claims
        while len(self._claims) > self.limit:
            self._claims.popitem(last=False)

    def claims(self, digest: bytes) -> tuple[EmbedImage, ...]:
        """The claims drawn for ``digest``, newest first; ``()``: never drawn (or
        forgotten since)."""
        return self._claims.get(digest, ())


@dataclass(frozen=True, slots=True)
class Cached:
    """Verified bytes and the type they were verified as."""

    data: bytes
    mime: str


class ImageCache:
    """Verified image bytes by hash, least recently served first out, within ``budget``
    bytes (an image larger than the budget is not kept)."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[bytes, Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, digest: bytes) -> Cached | None:
        item = self._items.get(digest)
        if item is not None:
            self._items.move_to_end(digest)
        return item

    def put(self, digest: bytes, data: bytes, mime: str) -> None:
        """Keep bytes that were verified against ``digest`` (the caller checked them)."""
        if len(data) > self.budget:
            return
        old = self._items.pop(digest, None)
        if old is not None:
            self.used -= len(old.data)
        while self._items and self.used + len(data) > self.budget:
            _, dropped = self._items.popitem(last=False)
            self.used -= len(dropped.data)
        self._items[digest] = Cached(data=data, mime=mime)
        self.used += len(data)


@dataclass(slots=True)
class MediaState:
    """The web server's images: the claims it drew, the verified bytes it keeps."""

    known: KnownImages = field(default_factory=KnownImages)
    cache: ImageCache = field(default_factory=ImageCache)

    def drawn(self, events: Iterable[Event]) -> None:
        """Remember the images of ``events``, which a page is about to draw."""
        for e in events:
            for claim in e.images:
                self.known.add(claim)


@dataclass(frozen=True, slots=True)
class ImageView:
    """One image as a template draws it (``alt`` one line, inert; ``""``: none)."""

    hash_hex: str
    alt: str
    width: int
    height: int
    mime: str


@dataclass(frozen=True, slots=True)
class Images:
    """A post's images, and why they are blurred (``""``: they are not)."""

    items: tuple[ImageView, ...]
    blur: str = ""


def post_images_view(e: Event, *, warned: str = "") -> Images:
    """``e``'s images for a page; blurred when ``e`` carries one of :data:`MEDIA_LABELS`
    in its ``warn`` or when ``warned`` (why the reader's moderation warned about or hid
    the item) is given."""
    claims = e.images
    if not claims:
        return Images(items=())
    views = tuple(
        ImageView(
            hash_hex=c.hash.hex(),
            alt=" ".join(safe_line(c.alt).split()),
            width=c.width,
            height=c.height,
            mime=c.mime,
        )
        for c in claims
    )
    warn = (e.body or {}).get("warn")
    labels = [w for w in warn if isinstance(w, str)] if isinstance(warn, list) else []
    sensitive = [w for w in labels if w.lower() in MEDIA_LABELS]
    if sensitive:
        blur = "marked " + ", ".join(safe_line(w) for w in sensitive)
    else:
        blur = warned
    return Images(items=views, blur=blur)
