"""``murmur post|repost|like|delete|unlike|unrepost``: sign an event and publish it to
every node.

``murmur post --image PATH --alt TEXT`` (repeatable) re-encodes each image from its
pixels (:mod:`client.media`), uploads it to every node and signs the post naming it;
an image without alt text is refused unless ``--no-alt`` (spec 0007 #images).

The face over :mod:`client.actions`, which holds the rules (short ids, the empty-post
rule, no duplicates, slow nodes): this module parses arguments and draws results. An
action that stands already is not signed again; the command says so, exits 0 and its
``--json`` document is ``{"changed": false, "reason": ..., "message": ...}`` (spec 0007
#no-duplicates). The nodes the checks before signing went on without are named:
``not_consulted`` in ``--json``, a ``!`` line each for people (spec 0007 #slow-lookups).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from client import actions
from client.actions import Done, Draft, Unchanged
from client.cli.output import Context, Result
from client.cli.render import event_doc, format_publish, short_id
from client.cli.session import Session, run
from client.errors import AltTextRequiredError, ImageError
from client.imagexfer import human_size
from client.media import PreparedImage, prepare_image
from client.publish import PublishResult
from client.reader import NodeReport
from client.shortids import parse_event_ref
from client.textsafety import safe_line, safe_text
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.events import Event
from protocol.limits import MAX_EMBED_IMAGES

__all__ = [
    "ALT_WHY",
    "done_result",
    "progress",
    "publish_result",
    "register",
    "unchanged_result",
    "with_unconsulted",
]


def with_unconsulted(result: Result, cut: tuple[NodeReport, ...]) -> Result:
    """``result`` naming the nodes the checks before signing went without (spec 0007
    #slow-lookups): ``not_consulted`` in ``--json``, a ``!`` line each for people."""
    data = result.data
    if isinstance(data, dict):
        data["not_consulted"] = [
            {"url": n.url, "code": n.error.code, "message": n.error.message}
            for n in cut
            if n.error is not None
        ]
    lines = [
        f"! {safe_line(n.url)}: not consulted before signing: {n.error.code}: "
        + safe_line(n.error.message)
        for n in cut
        if n.error is not None
    ]
    if not lines:
        return result
    return Result(data, "\n".join([result.text, *lines]), result.exit_code)


def publish_result(
    session: Session,
    result: PublishResult,
    what: str,
    profiles: Mapping[str, Event] | None = None,
) -> Result:
    """The Result of a publishing command: the event's JSON form plus per-node outcomes."""
    names = session.names(profiles)
    doc = event_doc(result.event, names)
    doc["changed"] = True
    doc["nodes"] = [o.to_json() for o in result.outcomes]
    doc["head_source"] = result.head_source
    return Result(doc, format_publish(result, what))


def unchanged_result(session: Session, done: Unchanged) -> Result:
    """What a command prints when what it was asked for holds already: nothing is
    signed, exit status 0 (spec 0007 #no-duplicates)."""
    message = done.message(session.names(done.profiles).display)
    doc = {"changed": False, "reason": done.reason, "message": message, **done.extra()}
    return with_unconsulted(Result(doc, message), done.not_consulted)


def done_result(session: Session, done: Done, what: str) -> Result:
    """A published action, with the nodes its checks went without."""
    return with_unconsulted(
        publish_result(session, done.result, what, done.profiles), done.not_consulted
    )


#: Why ``--image`` wants ``--alt`` (spec 0007 #images), said when it is missing.
ALT_WHY = (
    'each --image needs --alt "what it shows": people who cannot see the picture (a '
    "screen reader, a text terminal, a slow link, a filter reading the post) only get "
    "its description; give --no-alt to post it without one, on purpose"
)


def _image_args(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Each ``--image`` with its alt text: the n-th ``--alt`` goes with the n-th
    ``--image``; ``--no-alt`` gives every image an empty one."""
    paths: list[str] = list(args.image or [])
    alts: list[str] = list(args.alt or [])
    if not paths:
        if alts or args.no_alt:
            raise BadRequestError("--alt and --no-alt describe images: give --image PATH too")
        return []
    if len(paths) > MAX_EMBED_IMAGES:
        raise BadRequestError(f"{len(paths)} images: a post embeds at most {MAX_EMBED_IMAGES}")
    if args.no_alt:
        if alts:
            raise BadRequestError("--no-alt and --alt together: choose one")
        return [(p, "") for p in paths]
    if len(alts) > len(paths):
        raise BadRequestError(
            f"{len(alts)} --alt for {len(paths)} --image: the n-th --alt describes the n-th --image"
        )
    if len(alts) < len(paths):
        missing = ", ".join(str(n) for n in range(len(alts) + 1, len(paths) + 1))
        raise AltTextRequiredError(f"image {missing} has no description: {ALT_WHY}")
    for n, alt in enumerate(alts, 1):
        if not alt.strip():
            raise AltTextRequiredError(f"--alt of image {n} is blank: {ALT_WHY}")
    return list(zip(paths, alts, strict=True))


def _prepare(ctx: Context, images: list[tuple[str, str]]) -> list[tuple[PreparedImage, str]]:
    """Each image re-encoded from its pixels (spec 0007 #images), said on stderr."""
    out: list[tuple[PreparedImage, str]] = []
    for n, (path, alt) in enumerate(images, 1):
        try:
            prepared = prepare_image(path)
        except ImageError as exc:
            raise type(exc)(f"image {n} ({path}): {exc.message}") from exc
        removed = "; removed: " + ", ".join(prepared.dropped) if prepared.dropped else ""
        progress(
            ctx,
            f"image {n}/{len(images)} {path}: {prepared.width}×{prepared.height} "
            f"{prepared.mime}, {human_size(prepared.size)}, re-encoded{removed}",
        )
        out.append((prepared, alt))
    return out


def progress(ctx: Context, message: str) -> None:
    """A progress line on stderr (stdout stays the result, one document with --json)."""
    ctx.stderr.write(f"murmur: {safe_text(message)}\n")
    ctx.stderr.flush()


def cmd_post(args: argparse.Namespace, ctx: Context) -> Result:
    images = _prepare(ctx, _image_args(args))
    draft = Draft.parse(
        args.text,
        reply_to=args.reply_to,
        quote=args.quote,
        warn=args.warn or (),
        langs=args.lang or (),
        images=images,
    )
    session = Session.open(ctx)
    done = run(lambda: actions.post(session, draft, progress=lambda m: progress(ctx, m)))
    return done_result(session, done, "Replied" if draft.reply_to is not None else "Posted")


def _done_undo(session: Session, done: Done, kind: str) -> Result:
    assert done.target is not None  # noqa: S101 - an undo always names its target
    verb = "Unliked" if kind == kinds.LIKE else "Unreposted"
    out = publish_result(
        session, done.result, f"{verb} {short_id(done.target)}: deleted", done.profiles
    )
    out.data["undone"] = [e.id_hex for e in done.undone]
    out.data["of"] = done.target.hex()
    return with_unconsulted(out, done.not_consulted)


def _event_cmd(kind: str, verb: str | None) -> Any:
    """``like``/``repost``/``delete`` (``verb``: what it says once done), or, with no
    verb, ``unlike``/``unrepost``: delete the reader's own standing ``kind`` of a target."""

    def handler(args: argparse.Namespace, ctx: Context) -> Result:
        session = Session.open(ctx)
        ref = parse_event_ref(args.id)
        act = actions.act_on if verb is not None else actions.undo
        done = run(lambda: act(session, kind, ref))
        if isinstance(done, Unchanged):
            return unchanged_result(session, done)
        if verb is None:
            return _done_undo(session, done, kind)
        return done_result(session, done, verb)

    return handler


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    post = sub.add_parser(
        "post",
        parents=[common],
        help="sign and publish a post (or a reply)",
        description="Sign a post with your identity and submit it to every configured node; "
        "it is published when at least one node stores it.",
    )
    post.add_argument("text", help="the text (up to 3000 bytes)")
    post.add_argument(
        "--reply-to", metavar="ID", help="id of the post you reply to (as printed, or full)"
    )
    post.add_argument(
        "--quote", metavar="ID", help="id of a post to quote (the text may then be empty)"
    )
    post.add_argument(
        "--warn",
        metavar="LABEL",
        action="append",
        help="content warning (self-label, e.g. spoiler); repeatable",
    )
    post.add_argument(
        "--lang",
        metavar="CODE",
        action="append",
        help="language of the text (BCP 47, e.g. en, pt-BR); repeatable",
    )
    post.add_argument(
        "--image",
        metavar="PATH",
        action="append",
        help=f"attach an image (PNG, JPEG, WebP or GIF; up to {MAX_EMBED_IMAGES}, repeatable): "
        "re-encoded from its pixels, so no metadata (EXIF, GPS position...) is posted",
    )
    post.add_argument(
        "--alt",
        metavar="TEXT",
        action="append",
        help="what the image shows, for who cannot see it; the n-th --alt describes the "
        "n-th --image (required for each image unless --no-alt)",
    )
    post.add_argument(
        "--no-alt",
        action="store_true",
        help="post the images without descriptions (on purpose; not recommended)",
    )
    post.set_defaults(handler=cmd_post)

    for name, kind, verb, helptext in (
        ("repost", kinds.REPOST, "Reposted", "re-share an event with your followers"),
        ("like", kinds.LIKE, "Liked", "like an event"),
        ("delete", kinds.DELETE, "Deleted", "retract one of your events (nodes drop its body)"),
    ):
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("id", help=_ID_HELP)
        p.set_defaults(handler=_event_cmd(kind, verb))
    for name, kind, helptext in (
        ("unlike", kinds.LIKE, "withdraw your like of an event (deletes your like)"),
        ("unrepost", kinds.REPOST, "withdraw your repost of an event (deletes your repost)"),
    ):
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("id", help="id of the liked or reposted event, " + _ID_HELP)
        p.set_defaults(handler=_event_cmd(kind, None))


#: How an event-id argument is described (spec 0007 #short-ids).
_ID_HELP = "event id: as the views print it (12 hex characters; at least 8) or all 64"
