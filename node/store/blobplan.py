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

from protocol.blobs import BlobInfo, blob_hash, sniff
from protocol.embeds import EmbedImage, post_images
from protocol.errors import ProtocolError
from protocol.limits import MAX_BLOB_BYTES

__all__ = [
    "AUTHOR_QUOTA",
    "DELETED",
    "GRACE",
    "Claim",
    "Facts",
    "claim_image",
    "claims_of",
    "facts_of",
    "fetched_facts",
    "matching_authors",
]

#: Why a blob's bytes were dropped.
GRACE: Final = "grace"
DELETED: Final = "deleted"
AUTHOR_QUOTA: Final = "author-quota"

#: A stored claim: (author, mime, size, width, height).
Claim = tuple[str, str, int, int, int]
#: What is known of held or pending bytes: (mime, size, width, height).
Facts = tuple[str, int, int, int]


def claims_of(body: Mapping[str, Any]) -> list[EmbedImage]:
    """The images a stored post's body names (its body passed spec 0003 #embed when it
    was verified; an unreadable embed names none here rather than failing a write)."""
    try:
        return list(post_images(body))
    except ProtocolError:
        return []


def claim_image(digest: bytes, mime: str, size: int, width: int, height: int) -> EmbedImage:
    """A stored claim as an :class:`EmbedImage` (no alt)."""
    return EmbedImage(hash=digest, mime=mime, size=size, width=width, height=height, alt="")


def facts_of(info: BlobInfo, size: int) -> Facts:
    """The facts of bytes of ``size`` whose sniff gave ``info``."""
    return (info.mime, size, info.width, info.height)


def fetched_facts(digest: bytes, data: bytes) -> Facts | None:
    """The facts of bytes from a peer, or None unless they are an acceptable image whose
    SHA-256 is ``digest`` (spec 0003 #blob-hash: failing bytes are absent). CPU-bound:
    called on a thread, before any transaction."""
    if len(data) > MAX_BLOB_BYTES or blob_hash(data) != digest:
        return None
    try:
        info = sniff(data)
    except ProtocolError:
        return None
    return facts_of(info, len(data))


def matching_authors(facts: Facts, claims: Iterable[Claim]) -> list[str]:
    """The authors of the claims that bytes with ``facts`` (and the claims' hash)
    verify against, in the order given: :func:`protocol.blobs.verify_blob`'s checks
    (size, hash, type, dimensions, spec 0003 #blob-check), the hash and sniff having
    been made once, when the bytes came (upload or fetch), not again in a write."""
    return [author for author, *claimed in claims if tuple(claimed) == facts]
