"""``murmur post|repost|like|delete``: sign an event and publish it to every node."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from client.cli.output import Context, Result, warn
from client.cli.render import Names, event_doc, format_publish
from client.cli.session import Session, parse_event_id, run
from client.facets import fill_post
from client.publish import Publisher, PublishResult
from client.reader import Reader, reply_root
from protocol import kinds
from protocol.errors import InvalidDidError, NotAuthorError, NotFoundError
from protocol.events import Event

__all__ = ["publish_result", "register"]


async def _find(pub: Publisher, eid: bytes, why: str) -> Event:
    reader = Reader(pub.nodes, net=pub.net, timeout=pub.timeout)
    found = (await reader.lookup([eid])).get(eid)
    if found is None:
        errors = "; ".join(f"{n.url}: {n.error.code}" for n in reader.report.nodes if n.error)
        raise NotFoundError(
            f"cannot {why}: no configured node holds event {eid.hex()}"
            + (f" ({errors})" if errors else "")
        )
    return found


def publish_result(session: Session, result: PublishResult, what: str) -> Result:
    """The Result of a publishing command: the event's JSON form plus per-node outcomes."""
    names = Names(session.config)
    doc = event_doc(result.event, names)
    doc["nodes"] = [o.to_json() for o in result.outcomes]
    doc["head_source"] = result.head_source
    return Result(doc, format_publish(result, what))


def _mention_resolver(session: Session) -> Callable[[str], str | None]:
    """Who ``@name`` in a post is: a petname, else a local identity's name, as for
    ``DID|ALIAS`` arguments (spec 0007 #facets); None for a name neither knows."""

    def resolve(name: str) -> str | None:
        try:
            return session.resolve(name)
        except InvalidDidError:
            return None

    return resolve


def cmd_post(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    body: dict[str, Any] = {"text": args.text}
    if args.lang:
        body["langs"] = list(dict.fromkeys(args.lang))
    if args.warn:
        body["warn"] = list(dict.fromkeys(args.warn))
    parent_id = parse_event_id(args.reply_to) if args.reply_to else None
    if args.quote:
        body["quote"] = parse_event_id(args.quote)
    for note in fill_post(body, _mention_resolver(session)):  # mentions, links, #tags
        warn(ctx, note)

    async def go() -> PublishResult:
        async with session.publisher() as pub:
            if parent_id is not None:
                parent = await _find(pub, parent_id, "reply")
                body["reply"] = {"root": reply_root(parent) or parent.id, "parent": parent.id}
            return await pub.publish(kinds.POST, body)

    result = run(go)
    return publish_result(session, result, "Replied" if parent_id else "Posted")


def _target_cmd(kind: str, verb: str) -> Any:
    def handler(args: argparse.Namespace, ctx: Context) -> Result:
        session = Session.open(ctx)
        target = parse_event_id(args.id)

        async def go() -> PublishResult:
            async with session.publisher() as pub:
                if kind == kinds.DELETE:
                    reader = Reader(pub.nodes, net=pub.net, timeout=pub.timeout)
                    held = (await reader.lookup([target])).get(target)
                    if held is not None and held.author != pub.did:
                        raise NotAuthorError(
                            f"event {target.hex()} was written by {held.author}; "
                            "only its author can delete it"
                        )
                else:
                    await _find(pub, target, kind)
                return await pub.publish(kind, {"target": target})

        return publish_result(session, run(go), verb)

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
    post.add_argument("--reply-to", metavar="ID", help="event id of the post you reply to")
    post.add_argument("--quote", metavar="ID", help="event id of a post to quote")
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
        p.add_argument("id", help="full event id (64 hex, as printed by --json)")
        p.set_defaults(handler=_target_cmd(kind, verb))
