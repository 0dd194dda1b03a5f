"""Blob keeping for any store: what does not depend on the database (spec 0004 #blob-keep).

Both stores (:mod:`node.store.sqlite_blobs`, :mod:`node.store.pg_blobs`) keep the same
three tables: ``blobs`` (the bytes, ``held`` or pending), ``blob_refs`` (one row per
image a stored post names, with the post's claim) and the one-row ``blob_totals``.
The rules they share live here: which claims a post body makes, whether bytes match
one of them, and the reasons bytes are dropped (the ``reason`` label of
``murmur_blobs_dropped_total``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from protocol.blobs import verify_blob
from protocol.embeds import EmbedImage, post_images
from protocol.errors import ProtocolError

__all__ = [
    "AUTHOR_QUOTA",
    "DELETED",
    "GRACE",
    "Claim",
    "claim_image",
    "claims_of",
    "matching_authors",
]

#: Why a blob's bytes were dropped.
GRACE: Final = "grace"
DELETED: Final = "deleted"
AUTHOR_QUOTA: Final = "author-quota"

#: A stored claim: (author, mime, size, width, height).
Claim = tuple[str, str, int, int, int]


def claims_of(body: Mapping[str, Any]) -> list[EmbedImage]:
    """The images a stored post's body names (its body passed spec 0003 #embed when it
    was verified; an unreadable embed names none here rather than failing a write)."""
    try:
        return list(post_images(body))
    except ProtocolError:
        return []


def claim_image(digest: bytes, mime: str, size: int, width: int, height: int) -> EmbedImage:
    """A stored claim as the :class:`EmbedImage` :func:`verify_blob` checks (no alt)."""
    return EmbedImage(hash=digest, mime=mime, size=size, width=width, height=height, alt="")


def matching_authors(digest: bytes, data: bytes, claims: Iterable[Claim]) -> list[str]:
    """The authors of the claims of ``digest`` that ``data`` verifies against, in the
    order given (spec 0003 #blob-check: size, hash, type, dimensions)."""
    out: list[str] = []
    for author, mime, size, width, height in claims:
        try:
            verify_blob(data, claim_image(digest, mime, size, width, height))
        except ProtocolError:
            continue
        out.append(author)
    return out
