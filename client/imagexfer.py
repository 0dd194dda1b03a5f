"""Images to and from the node set: upload before a post is signed, verified download
(spec 0007 #images).

A node keeps an uploaded blob only if a post naming it is stored within its upload
grace period, so :func:`upload_images` runs right before the post is signed, to every
node of the set at once: a post is made when at least one node took every image, and
the nodes that did not are reported (they fetch the bytes from their peers when the
post reaches them). :func:`fetch_image` asks the nodes one after the other and takes
the first bytes that are the image the post names (``NodeClient.fetch_blob`` checks
each answer against the claim, spec 0003 #blob-hash): a node serving altered bytes is
reported and the next node asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from client.api import NodeClient
from client.errors import BlobUnavailableError, UploadError
from client.media import PreparedImage
from protocol.embeds import EmbedImage
from protocol.errors import ProtocolError

__all__ = [
    "FetchedImage",
    "NodeFailure",
    "UploadReport",
    "fetch_image",
    "human_size",
    "upload_images",
]

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress: none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailure:
    """What one node did instead: its url, the stable code and the message."""

    url: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadReport:
    """Which nodes took every image, and what the others said."""

    took: tuple[str, ...]
    failed: tuple[NodeFailure, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedImage:
    """Verified bytes of an image, the node that served them, and the nodes that did
    not (a ``blob-mismatch`` among them: a node served altered bytes)."""

    data: bytes
    url: str
    failed: tuple[NodeFailure, ...]


def human_size(size: int) -> str:
    """``230 KB``, ``1.4 MB`` (decimal units, as file managers show them)."""
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{round(size / 1000)} KB"
    return f"{size / 1_000_000:.1f} MB"


async def upload_images(
    nodes: Sequence[NodeClient],
    images: Sequence[PreparedImage],
    *,
    progress: Progress = _quiet,
) -> UploadReport:
    """Upload every image to every node (the nodes at once, each node's images in
    turn); ``upload-failed`` unless at least one node took them all."""
    total = len(images)

    async def one(node: NodeClient) -> NodeFailure | None:
        for n, image in enumerate(images, 1):
            try:
                await node.upload_blob(image.data, image.mime)
            except ProtocolError as exc:
                progress(f"image {n}/{total} → {node.url}: failed: {exc.code}: {exc.message}")
                return NodeFailure(url=node.url, code=exc.code, message=exc.message)
            progress(f"image {n}/{total} ({human_size(image.size)}) → {node.url}: ok")
        return None

    results = await asyncio.gather(*(one(node) for node in nodes))
    took = tuple(node.url for node, r in zip(nodes, results, strict=True) if r is None)
    failed = tuple(r for r in results if r is not None)
    if not took:
        said = "; ".join(f"{f.url}: {f.code}: {f.message}" for f in failed) or "no node"
        raise UploadError(f"no node took every image, nothing was signed ({said})")
    return UploadReport(took=took, failed=failed)


async def fetch_image(nodes: Sequence[NodeClient], claim: EmbedImage) -> FetchedImage:
    """The bytes of the image ``claim`` names, from the first node serving exactly
    them; ``blob-unavailable`` (saying what each node did) when none does."""
    failed: list[NodeFailure] = []
    for node in nodes:
        try:
            data = await node.fetch_blob(claim)
        except ProtocolError as exc:
            failed.append(NodeFailure(url=node.url, code=exc.code, message=exc.message))
            continue
        return FetchedImage(data=data, url=node.url, failed=tuple(failed))
    said = "; ".join(f"{f.url}: {f.code}: {f.message}" for f in failed) or "no node"
    raise BlobUnavailableError(
        f"no node served image {claim.hash.hex()[:12]} as the post names it ({said})"
    )
