"""``murmur media save ID [--dir DIR]``: the images of a post, fetched, verified, saved.

Each image is asked of the reader's nodes one after the other and kept only when its
bytes are the ones the signed post names (spec 0003 #blob-hash, spec 0007 #images): a
node serving altered bytes is named with ``blob-mismatch`` and the next node asked.
Files are named by the image's hash and type (``<sha256 hex>.jpg``), so saving twice
writes the same files and no name from the post reaches the file system.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from client.cli.output import Context, Result
from client.cli.render import image_doc, image_line
from client.cli.session import Session, run
from client.errors import ClientError
from client.files import atomic_write
from client.imagexfer import FetchedImage, NodeFailure, fetch_image
from client.shortids import parse_event_ref
from client.textsafety import safe_line
from protocol import kinds
from protocol.errors import BadRequestError, NotFoundError, ProtocolError
from protocol.events import Event

__all__ = ["EXTENSIONS", "register"]

#: The file extension of each image type.
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


async def _fetch_all(
    session: Session, ref: str
) -> tuple[Event, list[FetchedImage | ProtocolError]]:
    async with session.reader() as reader:
        eid = await session.event_id(reader, parse_event_ref(ref))
        event = await reader.find(eid)
        if event is None:
            raise NotFoundError(f"no configured node holds event {eid.hex()}")
        if event.kind != kinds.POST:
            raise BadRequestError(f"event {eid.hex()} is a {event.kind}, not a post")
        out: list[FetchedImage | ProtocolError] = []
        for claim in event.images:
            try:
                out.append(await fetch_image(reader.nodes, claim))
            except ClientError as exc:
                out.append(exc)
        return event, out


def _failure_line(f: NodeFailure) -> str:
    return f"  ! {safe_line(f.url)}: {f.code}: {safe_line(f.message)}"


def cmd_save(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    event, fetched = run(lambda: _fetch_all(session, args.id))
    images = event.images
    if not images:
        return Result(
            {"id": event.id_hex, "images": []}, f"Post {event.id_hex[:12]} has no images."
        )
    folder: Path = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    docs: list[dict[str, Any]] = []
    lines: list[str] = []
    failed = 0
    for n, (claim, got) in enumerate(zip(images, fetched, strict=True), 1):
        doc = image_doc(claim)
        lines.append(image_line(claim, n, len(images)))
        if isinstance(got, ProtocolError):
            failed += 1
            doc.update(saved=None, error=got.code, message=got.message)
            lines.append(f"  ! not saved: {got.code}: {safe_line(got.message)}")
        else:
            path = folder / f"{claim.hash.hex()}.{EXTENSIONS.get(claim.mime, 'bin')}"
            atomic_write(path, got.data, 0o644)
            doc.update(saved=str(path), node=got.url)
            lines.append(f"  saved {path} (verified, from {safe_line(got.url)})")
            lines.extend(_failure_line(f) for f in got.failed)
            doc["failed_nodes"] = [f.to_json() for f in got.failed]
        docs.append(doc)
    return Result({"id": event.id_hex, "images": docs}, "\n".join(lines), 1 if failed else 0)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    media = sub.add_parser("media", help="the images of posts")
    media_sub = media.add_subparsers(dest="media_command", metavar="COMMAND", required=True)
    save = media_sub.add_parser(
        "save",
        parents=[common],
        help="fetch a post's images from your nodes, verify them, save them",
        description="Fetch each image of a post from the configured nodes, check the bytes "
        "against the hash the post signs (a node serving other bytes is reported and the "
        "next one asked), and save them as HASH.EXT in DIR. Exit status 1 if an image "
        "could not be saved.",
    )
    save.add_argument("id", help="id of the post (as printed, or full)")
    save.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        default=Path(),
        help="where to save the files (default: the current directory)",
    )
    save.set_defaults(handler=cmd_save)
