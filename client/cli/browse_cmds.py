"""``murmur likes|reposts|replies|quotes ID``, ``murmur search posts|people``, ``murmur
tag NAME`` and ``murmur timeline --watch`` (spec 0007 #who, #post-search, #watch).

Lists are merged from the reader's nodes, verified, checked to be what was asked
(:mod:`client.browse`), moderated like every view (hidden items do not take places on
the page), and paged with ``--cursor``/``--before`` (:mod:`client.paging`): the last
line of a page that has more is ``more: murmur ... --cursor X``, and ``--json`` has
the same as ``cursor``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from typing import Any

from client.browse import (
    REACTIONS,
    reaction_list,
    reactions_view,
    search_list,
    search_view_posts,
)
from client.cli.listing import add_paging_args, cursor_arg, with_counts
from client.cli.mod_cmds import viewer
from client.cli.output import Context, Result
from client.cli.pageview import (
    DEFAULT_LIMIT,
    list_result,
    moderated_page,
    moderation_args,
    open_moderation,
    posts_text,
    repeat_args,
    split,
    verdict_of,
    viewer_follows,
    watch_page,
    watch_status,
)
from client.cli.render import event_doc, format_judged, relative_time, short_id, snippet
from client.cli.session import Session, limit_arg, run
from client.cli.social_cmds import cmd_search as cmd_search_people
from client.moderation.core import ViewContext
from client.paging import MergedCursor
from client.shortids import parse_event_ref
from client.textsafety import safe_line, safe_text
from client.views import View, follow_set
from client.watch import TimelineWatch, start_cursors
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.events import Event

__all__ = ["register", "watch_timeline"]

log = logging.getLogger("murmur.client.cli.browse")

# -- who reacted ------------------------------------------------------------------------


def cmd_reactions(args: argparse.Namespace, ctx: Context) -> Result:
    """Who liked / reposted a post, or its replies / quotes (spec 0007 #who)."""
    session = Session.open(ctx)
    kind = REACTIONS[args.command]
    ref = parse_event_ref(args.id)
    me = viewer(session)

    async def go() -> tuple[bytes, View, Any, MergedCursor | None]:
        async with session.reader() as reader:
            eid = await session.event_id(reader, ref)  # spec 0007 #short-ids
            cursor = cursor_arg(args, f"{kind}:{eid.hex()}")
            lst = reaction_list(reader, eid, kind, cursor=cursor)
            follows = await viewer_follows(args, reader, me)
            build = reactions_view(reader, lst, eid, kind)
            view, mod = await moderated_page(
                args, session, reader, build, me, ViewContext.TIMELINE, follows
            )
            return eid, view, mod, lst.next_cursor(view.items)

    eid, view, mod, nxt = run(go)
    names = session.names(view.profiles)
    shown, _ = split(view, mod)
    target = view.related.get(eid)
    counted = view.counts.get(eid)
    if target is None:
        head = f"{args.command} of {short_id(eid)} (the post itself is not on your nodes)"
    else:
        head = (
            f"{args.command} of {names.display(target.author)} · "
            f"{relative_time(target.ts)} · {short_id(eid)}: {snippet(target, names)}"
        )
    if counted is not None:
        head += f"\n  your nodes count {counted.get(args.command)} (the most one claims)"
    if kind in (kinds.LIKE, kinds.REPOST):
        listed = "\n".join(_reactor_line(e, names, mod) for e in shown)
    else:
        listed = posts_text(view, mod, names, shown)
    body = head + "\n\n" + (listed or f"(no {args.command} on your nodes)")
    return list_result(
        args,
        ctx,
        view,
        names,
        mod,
        body,
        command=[args.command, eid.hex()[:12], *repeat_args(args)],
        cursor=nxt,
        target=None if target is None else event_doc(target, names),
        kind=kind,
        target_counts=None if counted is None else counted.to_json(),
    )


def _reactor_line(e: Event, names: Any, mod: Any) -> str:
    verdict = verdict_of(mod, e)
    mark = "⚠ " if verdict is not None and verdict.final is not None else ""
    return f"{mark}{names.display(e.author)} · {relative_time(e.ts)} · {short_id(e.id)}"


# -- search and tags --------------------------------------------------------------------


def cmd_search(args: argparse.Namespace, ctx: Context) -> Result:
    """``search posts WORDS...``, ``search people NAME``, and ``search NAME`` (people)."""
    terms = list(args.terms)
    if len(terms) > 1 and terms[0] == "posts":
        return _posts(args, ctx, q=" ".join(terms[1:]), tag=None)
    if len(terms) > 1 and terms[0] == "people":
        terms = terms[1:]
    if args.cursor or args.before:
        raise BadRequestError("people search has one page: --cursor and --before are for posts")
    args.name = " ".join(terms)
    return cmd_search_people(args, ctx)


def cmd_tag(args: argparse.Namespace, ctx: Context) -> Result:
    return _posts(args, ctx, q=None, tag=args.name)


def _posts(args: argparse.Namespace, ctx: Context, *, q: str | None, tag: str | None) -> Result:
    """Posts of a search or a hashtag, newest first (spec 0007 #post-search)."""
    session = Session.open(ctx)
    me = viewer(session)

    async def go() -> tuple[View, Any, MergedCursor | None]:
        async with session.reader() as reader:
            probe = search_list(reader, q=q, tag=tag, cursor=None)  # checks the query
            lst = search_list(reader, q=q, tag=tag, cursor=cursor_arg(args, probe.list_name))
            follows = await viewer_follows(args, reader, me)
            build = search_view_posts(reader, lst)
            view, mod = await moderated_page(
                args, session, reader, build, me, ViewContext.TIMELINE, follows
            )
            return view, mod, lst.next_cursor(view.items)

    view, mod, nxt = run(go)
    names = session.names(view.profiles)
    shown, _ = split(view, mod)
    what = f"#{tag.strip().removeprefix('#')}" if tag is not None else repr(q)
    body = posts_text(view, mod, names, shown)
    if not view.items:
        body = f"No post on your nodes matches {safe_line(what)}."
    elif not shown:
        body = "Nothing to show: your filters hid every post found."
    command = ["tag", str(tag)] if tag is not None else ["search", "posts", str(q)]
    return list_result(
        args,
        ctx,
        view,
        names,
        mod,
        body,
        command=[*command, *repeat_args(args, 20 if tag is None else DEFAULT_LIMIT)],
        cursor=nxt,
        query={"q": q, "tag": tag},
    )


# -- timeline --watch -------------------------------------------------------------------


def watch_timeline(args: argparse.Namespace, ctx: Context, session: Session, me: str) -> int:
    """The timeline's page, then new posts of the people followed as they come, until
    Ctrl-C or ``--exit-after N`` new items (spec 0007 #watch). The page is printed as
    ``murmur timeline`` prints it; with ``--json``, then one JSON document a line per
    new item. A node whose stream is down (or back) is said on stderr."""

    async def start() -> tuple[dict[str, int | None], frozenset[str]]:
        async with session.reader() as reader:
            follows = frozenset(await follow_set(reader, me, mark=False))
            return await start_cursors(reader.nodes), follows

    # Where each node's stream starts, and whom to follow, are read before the page,
    # so a post made while the page is read is in the stream (shown once: ids are
    # remembered), and a node that goes away later does not empty the follow set.
    starts, follows = run(start)
    page_args = argparse.Namespace(**{**vars(args), "watch": False})
    from client.cli.read_cmds import cmd_timeline

    page = cmd_timeline(page_args, ctx)
    assert isinstance(page, Result)  # noqa: S101 - without --watch it is a page
    watch_page(ctx, page, "posts")
    shown = {p["id"] for p in page.data.get("posts", [])}

    async def follow() -> None:
        async with session.reader() as reader:
            moderation = None
            if not args.no_filters:
                moderation = await open_moderation(
                    session, reader, me, ViewContext.TIMELINE, follows
                )
            watch = TimelineWatch(
                reader, me, follows, starts=starts, seen=shown, on_status=watch_status(ctx)
            )
            left = args.exit_after
            try:
                async with contextlib.aclosing(watch.views()) as views:
                    async for view in views:
                        printed = await _print_new(ctx, session, view, moderation, left)
                        if left is not None:
                            left -= printed
                            if left <= 0:
                                return
            finally:
                if moderation is not None:
                    await moderation.aclose()

    run(follow)
    return 0


async def _print_new(
    ctx: Context, session: Session, view: View, moderation: Any, most: int | None
) -> int:
    """Print the new items the filters show (at most ``most``); how many."""
    mod = None if moderation is None else await moderation.judge(view)
    names = session.names(view.profiles)
    shown = view.items if mod is None else [e for e, _ in mod.shown]
    shown = shown if most is None else shown[:most]
    for e in shown:
        if ctx.json:
            doc = event_doc(e, names, view.related)
            doc["moderation"] = None if mod is None else mod.verdicts[e.id].to_json()
            ctx.stdout.write(json.dumps(doc, ensure_ascii=True) + "\n")
        else:
            text = format_judged(e, verdict_of(mod, e), names, view.related)
            ctx.stdout.write(safe_text(with_counts(text, e, view.counts)) + "\n\n")
    ctx.stdout.flush()
    return len(shown)


# -- registration -----------------------------------------------------------------------


def _list_args(p: argparse.ArgumentParser, default: int = DEFAULT_LIMIT) -> None:
    p.add_argument(
        "--limit", type=limit_arg, default=default, help=f"at most N items (default {default})"
    )
    moderation_args(p)
    add_paging_args(p)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    helps = {
        "likes": "who liked a post",
        "reposts": "who reposted a post",
        "replies": "the direct replies to a post",
        "quotes": "the posts that quote a post",
    }
    for name, helptext in helps.items():
        p = sub.add_parser(name, parents=[common], help=helptext + " (from your nodes, verified)")
        p.add_argument("id", help="the post: as the views print it (at least 8 hex) or all 64")
        _list_args(p)
        p.set_defaults(handler=cmd_reactions)
    search = sub.add_parser(
        "search",
        parents=[common],
        help="find posts (search posts WORDS) or people by display name (search NAME)",
        description="'murmur search posts WORDS...': posts holding every word, newest "
        "first. 'murmur search NAME' or 'murmur search people NAME': people whose "
        "display name contains NAME.",
    )
    search.add_argument("terms", nargs="+", metavar="posts WORDS | [people] NAME")
    _list_args(search, default=20)
    search.set_defaults(handler=cmd_search)
    tag = sub.add_parser("tag", parents=[common], help="posts with a hashtag, newest first")
    tag.add_argument("name", metavar="TAG", help="the hashtag, with or without '#'")
    _list_args(tag)
    tag.set_defaults(handler=cmd_tag)
