"""``murmur label``, ``murmur list publish|show`` and ``murmur labeler run``.

The first two sign one event (a ``label`` or a new version of a ``list``, spec 0003
§3.9-3.10) and publish it like ``murmur post`` does. ``labeler run`` follows a node's
live stream and labels what its rules match (:mod:`client.labeler`). Each takes
``--as NAME`` after the command too, since labeling is usually done as a dedicated
labeler identity. Registered by :func:`client.cli.mod_cmds.register`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

import httpx

from client import actions
from client.api import NodeClient
from client.cli.output import Context, Result
from client.cli.post_cmds import publish_result
from client.cli.render import Names, short_id
from client.cli.session import Session, run
from client.config import normalize_node_url
from client.errors import NoNodesError
from client.keyops import apply_pending
from client.labeler import Labeler, LabelerState, Rules, Stats, Subject, subject_key
from client.moderation.settings import parse_when
from client.ownchain import OwnChain
from client.publish import Publisher, PublishResult
from client.reader import MAX_FEED_PAGES, PAGE, latest_by_seq
from client.shortids import parse_event_ref
from client.state import HeadStore
from client.textsafety import safe_line, safe_name
from client.views import profiles_of
from protocol import kinds
from protocol.errors import BadRequestError, InvalidDidError, NotFoundError
from protocol.events import Event

__all__ = ["parse_when", "register"]

_HEX_ID = re.compile(r"[0-9a-f]{64}\Z")


def _acting_as(ctx: Context, name: str | None) -> Context:
    return ctx if name is None else replace(ctx, as_name=name)


def _subject(session: Session, text: str) -> Subject | str:
    """A did, or an event id; a short event id (spec 0007 #short-ids) is returned as
    its hex prefix, to resolve on the nodes. A petname or identity name wins over a
    short id that reads the same."""
    cleaned = text.strip().lower()
    if _HEX_ID.match(cleaned):
        return bytes.fromhex(cleaned)
    try:
        return session.resolve(text)
    except InvalidDidError:
        try:
            ref = parse_event_ref(text)
        except BadRequestError:
            raise InvalidDidError(
                f"{text!r} is neither a did, a petname, an identity name nor an event id"
            ) from None
        assert isinstance(ref, str)  # noqa: S101 - a full id matched above
        return ref


# -- label ------------------------------------------------------------------------------


def cmd_label(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(_acting_as(ctx, args.labeler))
    blob = bool(args.blob)
    given = _blob_hash(args.subject) if blob else _subject(session, args.subject)
    exp = parse_when(args.exp) if args.exp is not None else None
    done = run(
        lambda: actions.label(session, given, args.value, neg=bool(args.neg), exp=exp, blob=blob)
    )
    subject: Subject = done.target if done.target is not None else str(done.subject)
    shown = short_id(subject) if isinstance(subject, bytes) else session.names().display(subject)
    if blob:
        shown = f"image {subject_key(subject)}"
    verb = "Retracted label" if args.neg else "Labeled"
    out = publish_result(session, done.result, f"{verb} {shown} {args.value!r}:")
    out.data.update(subject=subject_key(subject), val=args.value, neg=bool(args.neg), exp=exp)
    if blob:
        out.data["subject_type"] = kinds.LABEL_SUBJECT_BLOB
    return out


def _blob_hash(text: str) -> bytes:
    """An image's SHA-256, all 64 hex (spec 0006 #label-blob-cli): no short form, since
    a label on a prefix could name no image, or another one."""
    cleaned = text.strip().lower()
    if not _HEX_ID.match(cleaned):
        raise BadRequestError(
            f"{text!r} is not an image hash: give all 64 hex of its SHA-256 "
            "(murmur media save names files by it; --json lists it)"
        )
    return bytes.fromhex(cleaned)


# -- lists ------------------------------------------------------------------------------


def cmd_list_publish(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(_acting_as(ctx, args.publisher))
    members = list(dict.fromkeys(session.resolve(m) for m in args.member or ()))
    body = {"name": args.name, "purpose": args.purpose, "members": members}

    async def go() -> PublishResult:
        async with session.publisher() as pub:
            return await pub.publish(kinds.LIST, body)

    result = run(go)
    out = publish_result(
        session, result, f"Published list {args.name!r} ({args.purpose}, {len(members)} member(s))"
    )
    out.data.update(
        name=args.name,
        purpose=args.purpose,
        members=members,
        ref=f"{result.event.author}/{args.name}",
    )
    hint = f"\nreaders subscribe with: murmur filters add list --param ref={out.data['ref']}"
    return Result(out.data, out.text + hint)


def cmd_list_show(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)

    async def go() -> tuple[Event | None, dict[str, Event]]:
        async with session.reader() as reader:
            await reader.fetch_feed(
                authors=[did], kinds_=[kinds.LIST], limit=PAGE, max_pages=MAX_FEED_PAGES
            )
            deleted = reader.deleted_ids()
            latest = latest_by_seq(
                e
                for e in reader.of_author(did)
                if e.kind == kinds.LIST
                and e.body is not None
                and e.id not in deleted
                and e.body.get("name") == args.name
            )
            members = [] if latest is None or latest.body is None else latest.body["members"]
            return latest, await profiles_of(reader, [did, *members])

    latest, profiles = run(go)
    if latest is None or latest.body is None:
        raise NotFoundError(f"no configured node holds a list {args.name!r} by {did}")
    names = Names(session.config, profiles)
    members = list(latest.body["members"])
    doc = {
        "author": did,
        "name": args.name,
        "purpose": latest.body["purpose"],
        "members": members,
        "id": latest.id_hex,
        "seq": latest.seq,
        "ts": latest.ts,
    }
    lines = [
        f"{names.display(did)}/{safe_name(args.name)} ({safe_line(doc['purpose'])}, "
        f"version seq {latest.seq}):"
    ]
    lines += [f"  {names.display(m)}  {m}" for m in members] or ["  (empty)"]
    return Result(doc, "\n".join(lines))


# -- labeler run ------------------------------------------------------------------------


def cmd_labeler_run(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(_acting_as(ctx, args.labeler))
    stored = session.stored_identity()
    rules = Rules.load(Path(args.rules).expanduser())
    stream = normalize_node_url(args.stream_node) if args.stream_node else None
    try:
        configured = session.node_urls()
    except NoNodesError:
        if stream is None:
            raise
        configured = []
    stream = stream or configured[0]
    publish_to = list(dict.fromkeys([stream, *configured]))
    chain = None
    if stored.rotatable:
        # Its labels are v2 events after its own outbox, like its posts (spec 0008,
        # 0007 #own-chain); a rotation a crash interrupted is finished first.
        apply_pending(session.keystore, stored.name)
        chain = OwnChain(ctx.home, stored.did)
    identity = session.identity()
    state = LabelerState.load(ctx.home, stored.name, stored.did)
    log_to = ctx.stderr if ctx.json else ctx.stdout

    def on_label(label: Event, subject: Subject, val: str) -> None:
        log_to.write(
            f"labeled {safe_line(subject_key(subject))} {safe_line(val)} "
            f"(label {short_id(label.id)}, seq {label.seq})\n"
        )
        log_to.flush()

    started: list[Labeler] = []

    async def go() -> Stats:
        async with httpx.AsyncClient(timeout=session.timeout(), follow_redirects=False) as http:
            nodes = [NodeClient(u, http, timeout=session.timeout()) for u in publish_to]
            pub = Publisher(
                identity,
                nodes,
                HeadStore(ctx.home),
                net=session.net(),
                timeout=session.timeout(),
                chain=chain,
            )
            labeler = Labeler(
                pub, http, stream_url=stream, rules=rules, state=state, on_label=on_label
            )
            started.append(labeler)
            return await labeler.run(once=args.once, from_start=args.from_start)

    if not args.once:
        log_to.write(f"labeler {stored.name} following {stream} (Ctrl-C stops)\n")
        log_to.flush()
    stopped = "caught-up" if args.once else "ended"
    try:
        stats = run(go)
    except KeyboardInterrupt:
        stats, stopped = (started[0].stats if started else Stats()), "interrupted"
    doc = {
        "labeler": stored.did,
        "name": stored.name,
        "node": stream,
        "published_to": publish_to,
        "state": str(state.path),
        "stopped": stopped,
        **stats.to_json(),
    }
    text = (
        f"Labeler {stored.name}: {stats.labels} label(s) published from {stats.events} "
        f"event(s); cursor {stats.cursor} on {stream} ({stopped})"
    )
    if stats.invalid:
        text += f"\n! skipped {stats.invalid} event(s) that failed verification"
    return Result(doc, text)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    # ``--as`` after the command has its own dest: a subparser default would otherwise
    # overwrite the global ``murmur --as NAME`` with None.
    label = sub.add_parser(
        "label",
        parents=[common],
        help="publish a signed label on an event, an account or an image (as a labeler)",
        description="Anyone can label; readers choose whose labels count "
        "(murmur labelers subscribe).",
    )
    label.add_argument(
        "subject",
        metavar="SUBJECT",
        help="event id (as printed, or all 64 hex), did or alias; with --blob an image hash",
    )
    label.add_argument("value", metavar="VALUE", help="the label ([a-z0-9-], e.g. spam)")
    label.add_argument(
        "--blob",
        action="store_true",
        help="SUBJECT is an image's SHA-256 (64 hex): label every post that embeds it",
    )
    label.add_argument("--neg", action="store_true", help="retract an earlier label")
    label.add_argument("--exp", metavar="WHEN", help="lapse at WHEN: 7d, 12h, 30m or ISO 8601")
    label.add_argument("--as", dest="labeler", metavar="LABELER", help="identity to label as")
    label.set_defaults(handler=cmd_label)

    lists = sub.add_parser("list", help="publish or show a signed mute/block/curate list")
    lsub = lists.add_subparsers(dest="list_command", metavar="COMMAND", required=True)
    p = lsub.add_parser(
        "publish",
        parents=[common],
        help="publish (a new version of) a list; the newest replaces the whole list",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--purpose", required=True, choices=sorted(kinds.LIST_PURPOSES))
    p.add_argument("--member", metavar="DID|ALIAS", action="append", help="repeatable")
    p.add_argument("--as", dest="publisher", metavar="NAME", help="identity to publish as")
    p.set_defaults(handler=cmd_list_publish)
    p = lsub.add_parser("show", parents=[common], help="the newest version of someone's list")
    p.add_argument("who", metavar="DID|ALIAS")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_list_show)

    labeler = sub.add_parser("labeler", help="run a labeler")
    rsub = labeler.add_subparsers(dest="labeler_command", metavar="COMMAND", required=True)
    p = rsub.add_parser(
        "run",
        parents=[common],
        help="follow a node's stream and publish labels your rules find",
        description="Rules: a TOML file of [[rules]] (label, keywords, regex, kinds, "
        "target) or a Python file defining label(event). The cursor is saved in "
        "$MURMUR_HOME/labelers/NAME.json after the labels it led to are published; "
        "a saved cursor always wins over --from-start.",
    )
    p.add_argument("--as", dest="labeler", metavar="LABELER", help="identity to label as")
    p.add_argument("--rules", required=True, metavar="FILE", help="rules.toml or rules.py")
    p.add_argument(
        "--node",
        dest="stream_node",
        metavar="URL",
        help="node whose stream to follow (default: the first configured node)",
    )
    p.add_argument(
        "--once", action="store_true", help="stop after the node's current head (for cron)"
    )
    p.add_argument(
        "--from-start",
        action="store_true",
        help="without a saved cursor, start at the beginning (default: new events only)",
    )
    p.set_defaults(handler=cmd_labeler_run)
