"""``murmur post|repost|like|delete|unlike|unrepost``: sign an event and publish it to
every node.

Event ids may be given short, as the views print them (spec 0007 #short-ids). Likes,
reposts and deletes are state (spec 0007 #no-duplicates): one that already stands is
not signed again; the command says so, exits 0 and its ``--json`` document is
``{"changed": false, "reason": ..., "message": ...}``. ``unlike`` and ``unrepost``
delete the reader's own like or repost of a post. A post needs text, unless it quotes
(spec 0007 #empty-post). The reads before signing (short ids, the target, the
duplicate check) do not wait for a slow node once enough others answered; the nodes
they went on without are named (spec 0007 #slow-lookups).
"""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from client.cli.output import Context, Result, warn
from client.cli.render import event_doc, format_publish, short_id
from client.cli.session import Session, run
from client.facets import fill_post
from client.fanout import Cut
from client.ownacts import own_acts
from client.publish import Publisher, PublishResult
from client.reader import Reader, reply_root
from client.shortids import parse_event_ref
from client.textsafety import safe_line
from protocol import kinds
from protocol.errors import BadRequestError, InvalidDidError, NotAuthorError, NotFoundError
from protocol.events import Event

__all__ = ["checks_reader", "publish_result", "register", "unchanged", "with_unconsulted"]


def checks_reader(pub: Publisher) -> Reader:
    """The reader of what a command checks before signing: its fan-outs go on without
    a node still silent ``QUORUM_GRACE_S`` after the publish quorum answered (spec 0007
    #slow-lookups)."""
    return Reader(
        pub.nodes,
        net=pub.net,
        timeout=pub.timeout,
        keycache=pub.keycache,
        cut=Cut(quorum=pub.quorum),
    )


_reader = checks_reader


def with_unconsulted(result: Result, reader: Reader) -> Result:
    """``result`` naming the nodes the checks before signing went without (spec 0007
    #slow-lookups): ``not_consulted`` in ``--json``, a ``!`` line each for people."""
    cut = [n for n in reader.report.nodes if n.error is not None]
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


async def _find(reader: Reader, eid: bytes, why: str) -> Event:
    found = await reader.find(eid)
    if found is None:
        errors = "; ".join(f"{n.url}: {n.error.code}" for n in reader.report.nodes if n.error)
        raise NotFoundError(
            f"cannot {why}: no configured node holds event {eid.hex()}"
            + (f" ({errors})" if errors else "")
        )
    return found


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


def unchanged(reason: str, message: str, **extra: Any) -> Result:
    """What a command prints when what it was asked for holds already: nothing is
    signed, exit status 0 (spec 0007 #no-duplicates)."""
    return Result({"changed": False, "reason": reason, "message": message, **extra}, message)


def is_blank(text: str) -> bool:
    """Empty, or only spaces, line breaks and invisible format characters."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs") for ch in text)


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
    if is_blank(args.text) and not args.quote:
        raise BadRequestError(
            "a post needs text: this one is empty or only spaces (spec 0007 #empty-post; "
            "only a quote may leave its text empty)"
        )
    session = Session.open(ctx)
    body: dict[str, Any] = {"text": args.text}
    if args.lang:
        body["langs"] = list(dict.fromkeys(args.lang))
    if args.warn:
        body["warn"] = list(dict.fromkeys(args.warn))
    parent_ref = parse_event_ref(args.reply_to) if args.reply_to else None
    quote_ref = parse_event_ref(args.quote) if args.quote else None
    for note in fill_post(body, _mention_resolver(session)):  # mentions, links, #tags
        warn(ctx, note)

    async def go() -> tuple[PublishResult, Reader]:
        async with session.publisher() as pub:
            reader = _reader(pub)
            if parent_ref is not None:
                parent = await _find(reader, await session.event_id(reader, parent_ref), "reply")
                body["reply"] = {"root": reply_root(parent) or parent.id, "parent": parent.id}
            if quote_ref is not None:
                body["quote"] = await session.event_id(reader, quote_ref)
            return await pub.publish(kinds.POST, body), reader

    result, reader = run(go)
    return with_unconsulted(
        publish_result(session, result, "Replied" if parent_ref else "Posted"), reader
    )


#: Why nothing was signed, by kind: (reason code, what holds already).
_STANDING = {
    kinds.LIKE: ("already-liked", "You already like"),
    kinds.REPOST: ("already-reposted", "You already reposted"),
}
_NOT_STANDING = {
    kinds.LIKE: ("not-liked", "You do not like"),
    kinds.REPOST: ("not-reposted", "You have not reposted"),
}


def _target_cmd(kind: str, verb: str) -> Any:
    def handler(args: argparse.Namespace, ctx: Context) -> Result:
        session = Session.open(ctx)
        ref = parse_event_ref(args.id)

        async def go() -> Result:
            async with session.publisher() as pub:
                reader = _reader(pub)
                return with_unconsulted(await checked(pub, reader), reader)

        async def checked(pub: Publisher, reader: Reader) -> Result:
            target = await session.event_id(reader, ref)
            if kind == kinds.DELETE:
                held = await reader.find(target)
                if held is not None and held.author != pub.did:
                    raise NotAuthorError(
                        f"event {target.hex()} was written by {held.author}; "
                        "only its author can delete it"
                    )
            else:
                await _find(reader, target, kind)
            acts = await own_acts(reader, pub.did, [kind], chain=pub.chain)
            profiles = {pub.did: acts.profile} if acts.profile is not None else {}
            session.names(profiles)  # keeps the own profile just read
            if kind == kinds.DELETE and target in acts.deleted:
                return unchanged(
                    "already-deleted",
                    f"Event {short_id(target)} is deleted already; nothing was signed.",
                    target=target.hex(),
                )
            standing = acts.acting_on(kind, target) if kind in _STANDING else None
            if standing is not None:
                reason, said = _STANDING[kind]
                return unchanged(
                    reason,
                    f"{said} {short_id(target)} ({kind} {short_id(standing.id)}); "
                    "nothing was signed.",
                    target=target.hex(),
                    existing=standing.id_hex,
                )
            result = await pub.publish(kind, {"target": target})
            return publish_result(session, result, verb, profiles)

        return run(go)

    return handler


def _undo_cmd(kind: str) -> Any:
    """``unlike``/``unrepost``: delete the reader's own standing ``kind`` of a target
    (all of them, should an older client have signed two)."""

    def handler(args: argparse.Namespace, ctx: Context) -> Result:
        session = Session.open(ctx)
        ref = parse_event_ref(args.id)

        async def go() -> Result:
            async with session.publisher() as pub:
                reader = _reader(pub)
                target = await session.event_id(reader, ref)
                acts = await own_acts(reader, pub.did, [kind], chain=pub.chain)
                profiles = {pub.did: acts.profile} if acts.profile is not None else {}
                standing = [
                    e
                    for e in acts.events
                    if e.kind == kind and e.body is not None and e.body.get("target") == target
                ]
                if not standing:
                    reason, said = _NOT_STANDING[kind]
                    nothing = unchanged(
                        reason,
                        f"{said} {short_id(target)}; nothing was signed.",
                        target=target.hex(),
                    )
                    return with_unconsulted(nothing, reader)
                results = [
                    await pub.publish(kinds.DELETE, {"target": e.id}) for e in standing
                ]
                verb = "Unliked" if kind == kinds.LIKE else "Unreposted"
                out = publish_result(
                    session, results[-1], f"{verb} {short_id(target)}: deleted", profiles
                )
                out.data["undone"] = [e.id_hex for e in standing]
                out.data["of"] = target.hex()
                return with_unconsulted(out, reader)

        return run(go)

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
        p.set_defaults(handler=_target_cmd(kind, verb))
    for name, kind, helptext in (
        ("unlike", kinds.LIKE, "withdraw your like of an event (deletes your like)"),
        ("unrepost", kinds.REPOST, "withdraw your repost of an event (deletes your repost)"),
    ):
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("id", help="id of the liked or reposted event, " + _ID_HELP)
        p.set_defaults(handler=_undo_cmd(kind))


#: How an event-id argument is described (spec 0007 #short-ids).
_ID_HELP = "event id: as the views print it (12 hex characters; at least 8) or all 64"
