"""``murmur feeds add|remove|list|discover|announce`` and ``murmur feed NAME``
(spec 0007 #feeds).

A feed chooses and orders; the client checks. ``murmur feed NAME`` prints a feed's
page exactly as the timeline prints its own (:mod:`client.cli.pageview`): the
reader's filters, ``--explain``, ``--json``, the read report, and a ``more:`` line
with the feed's cursor. What the client dropped from the page (ids no node of yours
serves, events that are not posts, repeats) and what a serving node did wrong are
one ``! feed:`` line each; ``--json`` has them under ``feed``, and ``--explain``
adds why the feed chose each item.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from client.actions import announce_feed
from client.api import FeedInfo, NodeClient
from client.cli.mod_cmds import viewer
from client.cli.output import Context, Result, warn
from client.cli.pageview import (
    judged_items,
    moderation_args,
    open_moderation,
    posts_text,
    split,
    view_doc,
    view_footer,
    view_text,
)
from client.cli.post_cmds import publish_result
from client.cli.session import Session, node_url_arg, run
from client.errors import NodeTimeoutError
from client.feeds.config import (
    FeedsConfig,
    LocalFeed,
    SubscribedFeed,
    check_feed_name,
    check_feed_nodes,
    non_public_nodes,
)
from client.feeds.source import ReaderSource
from client.feeds.view import DROP_REASONS, SERVER_DEADLINE_S, FeedView, feed_view
from client.moderation.core import ViewContext
from client.moderation.settings import parse_param
from client.reader import MAX_FEED_PAGES, PAGE, Reader, latest_by_seq
from client.textsafety import safe_line, safe_name
from client.views import follow_set, profiles_of
from protocol import kinds
from protocol.errors import BadRequestError, FeedLoadError, FeedNotFoundError, ProtocolError
from protocol.events import Event
from protocol.feeds import MAX_LIMIT, MAX_WHY_CHARS
from protocol.feeds.load import check_feed_type
from protocol.limits import MAX_FEED_DESCRIPTION_BYTES

__all__ = ["register"]

#: ``--limit`` of ``murmur feed`` unless it says otherwise (the timeline's).
DEFAULT_LIMIT = 30
#: Most ``feed`` events ``murmur feeds discover`` reads.
MAX_DISCOVER = 500


def _feed_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return value


def _local_type(type_: str) -> str:
    """A feed type as stored: a file one with an absolute path (the command may run
    from anywhere later)."""
    if ".py:" in type_ and not type_.startswith("entry:"):
        path, _, cls = type_.rpartition(":")
        return f"{Path(path).expanduser().resolve()}:{cls}"
    return type_


def _entry_line(doc: dict[str, Any]) -> str:
    if doc["kind"] == "local":
        return f"{safe_name(doc['name'])}  local  {safe_line(doc['type'])}"
    nodes = ", ".join(safe_line(n) for n in doc["nodes"])
    line = f"{safe_name(doc['name'])}  subscribed  {safe_line(doc['author'])}/{doc['feed']}"
    line += f"\n    served by {nodes}"
    if doc["description"]:
        line += f"\n    {safe_line(doc['description'])}"
    return line


async def _announced(reader: Reader, did: str, name: str) -> Event | None:
    """``did``'s newest verified ``feed`` event named ``name`` (deleted ones do not
    count), from every node."""
    await reader.fetch_feed(
        authors=[did], kinds_=[kinds.FEED], limit=PAGE, max_pages=MAX_FEED_PAGES
    )
    deleted = reader.deleted_ids()
    return latest_by_seq(
        e
        for e in reader.of_author(did)
        if e.kind == kinds.FEED
        and e.body is not None
        and e.id not in deleted
        and e.body.get("name") == name
    )


# -- feeds add|remove|list -------------------------------------------------------------


def cmd_feeds_add(args: argparse.Namespace, ctx: Context) -> Result:
    name = check_feed_name(args.name)
    config = FeedsConfig.load(ctx.home)
    if any(f.name == name for f in config.feeds):
        raise FeedLoadError(f"a feed named {name!r} exists; remove it or pick another name")
    if args.source is not None:
        entry: LocalFeed | SubscribedFeed = _subscribe(args, ctx, name)
    else:
        if not args.type:
            raise BadRequestError("give a feed TYPE (a built-in, PATH.py:Class) or --from DID/FEED")
        type_ = _local_type(args.type)
        check_feed_type(type_)  # runs none of the feed's code
        entry = LocalFeed(
            name=name, type=type_, params=dict(parse_param(p) for p in args.param or ())
        )
    config.add(entry)
    config.save()
    doc = entry.to_json()
    return Result({"added": doc}, f"Added feed {safe_name(name)}: read it with murmur feed {name}")


def _subscribe(args: argparse.Namespace, ctx: Context, name: str) -> SubscribedFeed:
    if args.type or args.param:
        raise BadRequestError("--from subscribes to a served feed: no TYPE or --param with it")
    who, sep, remote = str(args.source).rpartition("/")
    if not sep or not who:
        raise BadRequestError(f"--from {args.source!r}: write DID/FEED (or ALIAS/FEED)")
    remote = check_feed_name(remote)
    session = Session.open(ctx)
    did = session.resolve(who)

    async def go() -> Event | None:
        async with session.reader() as reader:
            return await _announced(reader, did, remote)

    event = run(go)
    if event is None or event.body is None:
        raise FeedNotFoundError(
            f"no node of yours serves a feed event {remote!r} by {did}: see murmur feeds discover"
        )
    nodes = check_feed_nodes(list(event.body["nodes"]), "the feed event's nodes")
    private = non_public_nodes(nodes, session.node_urls())
    if private and not args.allow_private:
        raise BadRequestError(
            f"the feed event names node(s) at a local or private address that are not your "
            f"nodes: {', '.join(safe_line(u) for u in private)}; a stranger's announcement "
            "must not make your client reach into your own network. If you trust it, add "
            "--allow-private"
        )
    return SubscribedFeed(
        name=name,
        author=did,
        feed=remote,
        nodes=nodes,
        description=str(event.body.get("description", "")),
        event=event.id_hex,
    )


def cmd_feeds_remove(args: argparse.Namespace, ctx: Context) -> Result:
    config = FeedsConfig.load(ctx.home)
    entry = config.remove(args.name)
    config.save()
    return Result({"removed": entry.to_json()}, f"Removed feed {safe_name(entry.name)}")


def cmd_feeds_list(args: argparse.Namespace, ctx: Context) -> Result:
    config = FeedsConfig.load(ctx.home)
    rows = [f.to_json() for f in config.feeds]
    if not rows:
        text = (
            "No feeds yet. Add one: murmur feeds add NAME TYPE (e.g. tag --param tag=python), "
            "or subscribe: murmur feeds add NAME --from DID/FEED (see murmur feeds discover)"
        )
    else:
        text = "\n".join(_entry_line(r) for r in rows)
    return Result({"feeds": rows}, text)


# -- feeds discover|announce -----------------------------------------------------------


def cmd_feeds_discover(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)

    async def go() -> tuple[list[Event], dict[str, Event]]:
        async with session.reader() as reader:
            events = await ReaderSource(reader).events(kinds=[kinds.FEED], limit=MAX_DISCOVER)
            latest: dict[tuple[str, str], Event] = {}
            for e in events:
                key = (e.author, str((e.body or {}).get("name")))
                best = latest_by_seq([e, *([latest[key]] if key in latest else [])])
                if best is not None:
                    latest[key] = best
            found = sorted(latest.values(), key=lambda e: (-e.ts, e.author))
            return found, await profiles_of(reader, {e.author for e in found})

    found, profiles = run(go)
    names = session.names(profiles)
    rows = []
    lines = []
    for e in found:
        body = e.body or {}
        ref = f"{e.author}/{body.get('name')}"
        rows.append(
            {
                "ref": ref,
                "author": e.author,
                "name": body.get("name"),
                "description": body.get("description", ""),
                "nodes": list(body.get("nodes", [])),
                "id": e.id_hex,
                "ts": e.ts,
            }
        )
        said = safe_line(str(body.get("description", "")))
        lines.append(
            f"{names.display(e.author)}/{safe_name(str(body.get('name')))}  {safe_line(ref)}\n"
            + (f"    {said}\n" if said.strip() else "")
            + f"    subscribe: murmur feeds add NAME --from {safe_line(ref)}"
        )
    text = "\n".join(lines) if lines else "No feed announced on your nodes yet."
    return Result({"feeds": rows}, text)


async def _served_description(
    session: Session, name: str, nodes: list[str]
) -> tuple[str | None, list[str]]:
    """Ask each of ``nodes`` whether it serves feed ``name`` (``GET /v1/feeds``, 2 s
    together): the first one's description of it, and a note for each node that does
    not answer. A node that answers without it is ``feed-not-found``: announcing it
    would send every subscriber to a node that cannot serve them."""

    async def ask(http: httpx.AsyncClient, url: str) -> list[FeedInfo] | ProtocolError:
        try:
            return await NodeClient(url, http, timeout=SERVER_DEADLINE_S).feeds()
        except ProtocolError as exc:
            return exc

    async with _servers_http(session) as http:
        try:
            async with asyncio.timeout(2 * SERVER_DEADLINE_S):
                answers = await asyncio.gather(*(ask(http, url) for url in nodes))
        except TimeoutError:
            answers = [NodeTimeoutError(f"{url}: no answer within 2 s") for url in nodes]
    description: str | None = None
    notes: list[str] = []
    for url, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, ProtocolError):
            notes.append(f"{url} did not say whether it serves {name!r}: {answer.message}")
            continue
        served = {f.name: f.description for f in answer}
        if name not in served:
            others = ", ".join(sorted(served)) or "none"
            raise FeedNotFoundError(
                f"{url} serves no feed {name!r} (it serves: {others}); add it to that "
                "node's node.toml [[feeds]], or leave the node out (--no-check to announce anyway)"
            )
        if description is None:
            description = served[name]
    return description, notes


def cmd_feeds_announce(args: argparse.Namespace, ctx: Context) -> Result:
    name = check_feed_name(args.name)
    nodes = check_feed_nodes(list(args.node or []), "--node")
    description = " ".join((args.description or "").split())
    if len(description.encode()) > MAX_FEED_DESCRIPTION_BYTES:
        raise BadRequestError(f"--description is at most {MAX_FEED_DESCRIPTION_BYTES} bytes")
    session = Session.open(ctx)
    notes: list[str] = []
    if not args.no_check:
        served, notes = run(lambda: _served_description(session, name, nodes))
        if not description and served:
            description = safe_line(served)
            while len(description.encode()) > MAX_FEED_DESCRIPTION_BYTES:
                description = description[:-1]
    for note in notes:
        warn(ctx, note)
    done = run(lambda: announce_feed(session, name=name, nodes=nodes, description=description))
    result = done.result
    out = publish_result(session, result, f"Announced feed {name!r} served by {len(nodes)} node(s)")
    ref = f"{result.event.author}/{name}"
    out.data.update(name=name, ref=ref, served_by=nodes)
    hint = f"\nreaders subscribe with: murmur feeds add NAME --from {ref}"
    return Result(out.data, out.text + hint)


# -- feed NAME -------------------------------------------------------------------------


@asynccontextmanager
async def _servers_http(session: Session) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client serving nodes are asked over: the session's, else one of its
    own (an untrusted server shares no connection pool with the reader's nodes)."""
    if session.http is not None:
        yield session.http
        return
    async with httpx.AsyncClient(timeout=SERVER_DEADLINE_S, follow_redirects=False) as http:
        yield http


def _more_line(ctx: Context, args: argparse.Namespace, cursor: str | None) -> str:
    if cursor is None:
        return ""
    head = ["murmur", *(["--as", ctx.as_name] if ctx.as_name else [])]
    words = [*head, "feed", args.name]
    if args.limit != DEFAULT_LIMIT:
        words += ["--limit", str(args.limit)]
    if args.no_filters:
        words.append("--no-filters")
    return "more: " + safe_line(shlex.join([*words, "--cursor", cursor]))


def _explain_lines(fv: FeedView, shown: list[Event]) -> str:
    """``--explain``: where the page came from, every drop reason with its example
    ids, and why the feed chose each shown item."""
    report = fv.report
    origin = "run here" if report.node is None else f"served by {report.node}"
    lines = [
        f"Feed (--explain): {safe_name(report.name)}, {report.kind} "
        f"({safe_line(report.source)}), {origin}, {report.pages} page(s)"
    ]
    for reason, text in DROP_REASONS.items():
        if reason in report.dropped:
            ids = ", ".join(i.hex() for i in report.examples.get(reason, []))
            more = report.dropped[reason] - len(report.examples.get(reason, []))
            lines.append(f"  dropped, {text}: {ids}" + (f" and {more} more" if more > 0 else ""))
    why = [
        f"  {e.id_hex[:12]}  {safe_line(report.why[e.id][:MAX_WHY_CHARS])}"
        for e in shown
        if e.id in report.why
    ]
    if why:
        lines += ["  why the feed chose them:", *("  " + w for w in why)]
    return "\n".join(lines)


def cmd_feed(args: argparse.Namespace, ctx: Context) -> Result:
    """One page of a local or subscribed feed, checked, moderated, shown as a timeline."""
    entry = FeedsConfig.load(ctx.home).find(args.name)
    session = Session.open(ctx)
    me = viewer(session)

    async def go() -> FeedView:
        async with session.reader() as reader, _servers_http(session) as http:
            if args.no_filters:
                return await feed_view(
                    reader, entry, viewer=me or None, limit=args.limit, cursor=args.cursor,
                    http=http,
                )  # fmt: skip
            follows = frozenset(await follow_set(reader, me, mark=False)) if me else frozenset()
            moderation = await open_moderation(session, reader, me, ViewContext.FEED, follows)
            async with moderation:
                return await feed_view(
                    reader, entry, viewer=me or None, limit=args.limit, cursor=args.cursor,
                    moderation=moderation, http=http,
                )  # fmt: skip

    fv = run(go)
    view, mod, report = fv.view, fv.mod, fv.report
    names = session.names(view.profiles)
    shown, hidden = split(view, mod)
    body = posts_text(view, mod, names, shown)
    if not view.items:
        body = f"Nothing in feed {safe_name(entry.name)} for now."
    elif not shown:
        body = "Nothing to show: your filters hid every item."
    footer = view_footer(args, mod, names, judged_items(view, mod), len(hidden))
    warnings = "\n".join(f"! {line}" for line in report.summary())
    if args.explain:
        warnings = "\n\n".join(p for p in (warnings, _explain_lines(fv, shown)) if p)
    footer = "\n\n".join(p for p in (warnings, footer) if p)
    feed_doc = report.to_json()
    doc = view_doc(view, names, mod, shown, hidden, feed=feed_doc, cursor=report.cursor)
    for post in doc["posts"]:
        post["why"] = report.why.get(bytes.fromhex(post["id"]), "")
    more = _more_line(ctx, args, report.cursor)
    text = view_text(body, view, names, footer, explain=args.explain, more=more)
    return Result(doc, text)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    feed = sub.add_parser(
        "feed",
        parents=[common],
        help="one page of a feed you added (murmur feeds add): checked, then your filters",
    )
    feed.add_argument("name", metavar="NAME", help="the feed's name in murmur feeds list")
    feed.add_argument(
        "--limit",
        type=_feed_limit,
        default=DEFAULT_LIMIT,
        help=f"at most N items (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})",
    )
    feed.add_argument(
        "--cursor",
        metavar="X",
        help="the next page: the cursor the page before printed (its 'more:' line)",
    )
    moderation_args(feed)
    feed.set_defaults(handler=cmd_feed)

    feeds = sub.add_parser(
        "feeds", help="the feeds you read: local ones run here, subscribed ones on a node"
    )
    fsub = feeds.add_subparsers(dest="feeds_command", metavar="ACTION", required=True)
    add = fsub.add_parser(
        "add",
        parents=[common],
        help="add a local feed (NAME TYPE) or subscribe to a served one (NAME --from DID/FEED)",
    )
    add.add_argument("name", metavar="NAME", help="what murmur feed takes (1-64 of a-z 0-9 _ . -)")
    add.add_argument(
        "type",
        metavar="TYPE",
        nargs="?",
        help="a built-in (whats-hot, friends-of-friends, tag), PATH.py:Class or entry:NAME",
    )
    add.add_argument(
        "--param",
        metavar="KEY=VALUE",
        action="append",
        help="a parameter of a local feed (VALUE as JSON when it parses); repeatable",
    )
    add.add_argument(
        "--from",
        dest="source",
        metavar="DID/FEED",
        help="subscribe to the feed FEED announced by DID (or an alias): its newest "
        "verified feed event on your nodes names the nodes serving it",
    )
    add.add_argument(
        "--allow-private",
        action="store_true",
        help="with --from: accept serving nodes at local or private addresses that are not "
        "your nodes (refused by default: spec 0007 #feed-private)",
    )
    add.set_defaults(handler=cmd_feeds_add)
    remove = fsub.add_parser("remove", parents=[common], help="remove a feed")
    remove.add_argument("name", metavar="NAME", help="the feed's name in murmur feeds list")
    remove.set_defaults(handler=cmd_feeds_remove)
    listing = fsub.add_parser(
        "list", parents=[common], help="your feeds: local ones with their type, subscribed "
        "ones with their author and serving nodes"
    )  # fmt: skip
    listing.set_defaults(handler=cmd_feeds_list)
    discover = fsub.add_parser(
        "discover",
        parents=[common],
        help="feeds announced (signed feed events) on your nodes, newest first",
    )
    discover.set_defaults(handler=cmd_feeds_discover)
    announce = fsub.add_parser(
        "announce",
        parents=[common],
        help="sign and publish a feed event: the feed NAME is served by these nodes",
    )
    announce.add_argument(
        "name", metavar="NAME", help="the feed's name on the nodes (their node.toml [[feeds]])"
    )
    announce.add_argument(
        "--node",
        metavar="URL",
        action="append",
        required=True,
        type=node_url_arg,
        help="a node serving GET /v1/feeds/NAME (repeatable, 1-8, tried in this order)",
    )
    announce.add_argument(
        "--description",
        default="",
        help="one line saying what the feed shows (300 bytes; default: the first node's)",
    )
    announce.add_argument(
        "--no-check",
        action="store_true",
        help="announce without asking the nodes whether they serve NAME (GET /v1/feeds)",
    )
    announce.set_defaults(handler=cmd_feeds_announce)
