"""``murmur post|repost|like|delete|unlike|unrepost``: sign an event and publish it to
every node.

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
from client.publish import PublishResult
from client.reader import NodeReport
from client.shortids import parse_event_ref
from client.textsafety import safe_line
from protocol import kinds
from protocol.events import Event

__all__ = ["done_result", "publish_result", "register", "unchanged_result", "with_unconsulted"]


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


def cmd_post(args: argparse.Namespace, ctx: Context) -> Result:
    draft = Draft.parse(
        args.text,
        reply_to=args.reply_to,
        quote=args.quote,
        warn=args.warn or (),
        langs=args.lang or (),
    )
    session = Session.open(ctx)
    done = run(lambda: actions.post(session, draft))
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
