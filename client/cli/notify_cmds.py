"""``murmur notifications`` and ``murmur followers`` (spec 0007 #notifications,
#followers).

``notifications`` lists what others did with the reader's identity — replies,
mentions, quotes, likes, reposts, follows — merged from every node, verified, checked
to really concern the reader and moderated by the reader's filters, newest first, one
page at a time (the cursor of the next page is printed). What a page shows (or hides)
is remembered as seen (``state/notifications/``) unless ``--no-mark``; ``--unread``
lists only what no view showed yet; ``--watch`` then follows the nodes live.
``followers`` lists who follows a did, each one's current follow event verified.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from client.cli.listing import add_paging_args, cursor_arg, more_line
from client.cli.output import Context, Result
from client.cli.pageview import cursor_doc, open_moderation, watch_args, watch_page, watch_status
from client.cli.render import Names, event_doc, format_report, relative_time, short_id, snippet
from client.cli.session import Session, limit_arg, run
from client.followers import FollowersPage, followers_list, followers_page
from client.moderation.apply import Moderation
from client.moderation.core import Action, ViewContext
from client.moderation.pipeline import Verdict
from client.notifications import (
    NOTIFICATIONS_LIST,
    REASON_TEXT,
    REASONS,
    Notification,
    NotificationPage,
    Notifier,
)
from client.notify_state import SeenState
from client.paging import Outcome
from client.reader import Reader, ReadReport
from client.textsafety import safe_line, safe_text
from client.views import View, profiles_of
from client.watch import NotificationWatch, start_cursors
from protocol.events import Event

__all__ = ["register"]

#: What each reason says, after the author's name.
VERBS = REASON_TEXT
SNIPPET = 100
#: ``--limit`` unless given.
NOTIFICATIONS_LIMIT = 30
FOLLOWERS_LIMIT = 50


def kinds_arg(text: str) -> list[str]:
    """argparse type for ``--kinds``: comma-separated reasons."""
    asked = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in asked if k not in REASONS]
    if not asked or unknown:
        raise argparse.ArgumentTypeError(
            f"{(unknown or [text])[0]!r} is not one of {', '.join(REASONS)}"
        )
    return asked


# -- notifications --------------------------------------------------------------------


def _verdict_doc(v: Verdict | None) -> dict[str, Any] | None:
    return None if v is None else v.to_json()


def _notification_doc(
    n: Notification, names: Names, page: NotificationPage, unread: bool
) -> dict[str, Any]:
    return {
        "reason": n.reason,
        "id": n.event.id_hex,
        "unread": unread,
        "event": event_doc(n.event, names, page.related),
        "subject": None if n.subject is None else event_doc(n.subject, names),
        "moderation": _verdict_doc(page.verdicts.get(n.event.id)),
    }


def _notification_text(n: Notification, names: Names, verdict: Verdict | None, unread: bool) -> str:
    e = n.event
    mark = "● " if unread else "  "
    head = (
        f"{mark}{names.display(e.author)} {VERBS[n.reason]} · {relative_time(e.ts)} · "
        f"{short_id(e.id)}"
    )
    final = None if verdict is None else verdict.final
    lines = [head]
    if final is not None and final.action is Action.WARN:
        lines.append(f"    ⚠ hidden behind a warning: {safe_line(final.reason)}")
    elif n.reason in ("reply", "quote", "mention"):
        lines.append(f"    {snippet(e, names, SNIPPET)}")
    if n.subject is not None:
        lines.append(f"    ↳ your post: {snippet(n.subject, names, SNIPPET)}")
    if final is not None and final.action is Action.BADGE:
        lines.append(f"    [badge: {safe_line(final.reason)}]")
    return "\n".join(lines)


def _page_parts(
    args: argparse.Namespace,
    session: Session,
    page: NotificationPage,
    reader: Reader,
    unread: dict[bytes, bool],
) -> tuple[dict[str, Any], str]:
    names = session.names(page.profiles)
    me = session.stored_identity().did
    doc: dict[str, Any] = {
        "did": me,
        "notifications": [
            _notification_doc(n, names, page, unread.get(n.event.id, False)) for n in page.shown
        ],
        "cursor": cursor_doc(page.next),
        "unread": sum(1 for n in page.shown if unread.get(n.event.id)),
        "marked": not args.no_mark,
        "moderation": {
            "enabled": not args.no_filters,
            "hidden": [
                {
                    "id": n.event.id_hex,
                    "author": n.event.author,
                    "reason": n.reason,
                    "moderation": _verdict_doc(page.verdicts.get(n.event.id)),
                }
                for n in page.hidden
            ],
            "warnings": page.warnings,
        },
        **reader.report.to_json(),
    }
    blocks = [
        _notification_text(n, names, page.verdicts.get(n.event.id), unread.get(n.event.id, False))
        for n in page.shown
    ]
    if not blocks:
        blocks = ["No unread notifications." if args.unread else "No notifications."]
    tail = [f"! moderation: {safe_line(w)}" for w in page.warnings]
    if page.hidden:
        tail.append(f"({len(page.hidden)} notification(s) hidden by your filters)")
    report = format_report(reader.report, names)
    more = more_line(session.ctx, ["notifications", *_repeat(args)], page.next)
    text = "\n\n".join(p for p in ("\n".join(blocks), "\n".join(tail), report, more) if p)
    return doc, text


def _repeat(args: argparse.Namespace) -> list[str]:
    """The options the next page of notifications repeats."""
    out = [] if args.limit == NOTIFICATIONS_LIMIT else ["--limit", str(args.limit)]
    for reasons in args.kinds or []:
        out += ["--kinds", ",".join(reasons)]
    flags = (("--unread", args.unread), ("--no-mark", args.no_mark))
    out += [flag for flag, on in (*flags, ("--no-filters", args.no_filters)) if on]
    return out


def cmd_notifications(args: argparse.Namespace, ctx: Context) -> Result | int:
    session = Session.open(ctx)
    me = session.stored_identity().did
    cursor = cursor_arg(args, NOTIFICATIONS_LIST)
    state = SeenState.load(ctx.home, me)
    reasons = [r for chunk in (args.kinds or [list(REASONS)]) for r in chunk]

    def mark(events: list[Event]) -> None:
        if not args.no_mark:
            state.mark(events)
            state.save()

    async def go() -> Result | int:
        async with session.reader() as reader:
            starts = await start_cursors(reader.nodes) if args.watch else {}
            moderation = (
                None
                if args.no_filters
                else await open_moderation(session, reader, me, ViewContext.NOTIFICATIONS)
            )
            try:
                notifier = Notifier(
                    reader,
                    me,
                    reasons=reasons,
                    moderation=moderation,
                    keep=state.unread if args.unread else None,
                )
                stop = (lambda e: e.ts <= state.floor) if args.unread else None
                page = await notifier.page(limit=args.limit, cursor=cursor, stop=stop)
                walked = [n.event for n in [*page.shown, *page.hidden]]
                unread = {e.id: state.unread(e) for e in walked}
                mark(walked)
                doc, text = _page_parts(args, session, page, reader, unread)
                if not args.watch:
                    return Result(doc, text)
                reader.report.require_answer()  # spec 0007 #no-answer, before any output
                await _watch(
                    args, session, reader, moderation, reasons, (doc, text), page, mark, starts
                )
                return 0
            finally:
                if moderation is not None:
                    await moderation.aclose()

    return run(go)


async def _watch(
    args: argparse.Namespace,
    session: Session,
    reader: Reader,
    moderation: Moderation | None,
    reasons: list[str],
    shown_first: tuple[dict[str, Any], str],
    first: NotificationPage,
    mark: Callable[[list[Event]], None],
    starts: dict[str, int | None],
) -> None:
    """Print the first page, then new notifications as they come (spec 0007
    #notifications-watch): text blocks, or with ``--json`` one JSON object a line."""
    ctx = session.ctx
    watch_page(ctx, Result(*shown_first), "notifications")
    me = session.stored_identity().did

    def make(keep: Callable[[Event], bool]) -> Notifier:
        fresh = Reader(
            reader.nodes, net=reader.net, timeout=reader.timeout, keycache=reader.keycache
        )
        return Notifier(fresh, me, reasons=reasons, moderation=moderation, keep=keep)

    async def on_new(new: list[Notification], page: NotificationPage) -> None:
        names = session.names(page.profiles)
        for n in new:
            if ctx.json:
                line = {"notification": _notification_doc(n, names, page, True)}
                ctx.stdout.write(json.dumps(line, separators=(",", ":"), ensure_ascii=True) + "\n")
            else:
                shown = _notification_text(n, names, page.verdicts.get(n.event.id), True)
                ctx.stdout.write(safe_text(shown) + "\n\n")
        ctx.stdout.flush()
        mark([n.event for n in [*new, *page.hidden]])

    shown = {n.event.id for n in [*first.shown, *first.hidden]}
    watch = NotificationWatch(
        reader.nodes,
        me,
        make,
        on_new,
        net=reader.net,
        shown=shown,
        max_new=args.exit_after,
        on_status=watch_status(ctx),
    )
    await watch.run(starts)


# -- followers --------------------------------------------------------------------------


def cmd_followers(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who) if args.who else session.stored_identity().did
    cursor = cursor_arg(args, followers_list(did))
    me = session.me() or ""

    async def go() -> tuple[FollowersPage, dict[str, Event], ReadReport]:
        async with session.reader() as reader:
            moderation = (
                None
                if args.no_filters
                else await open_moderation(session, reader, me, ViewContext.PROFILE)
            )
            profiles: dict[str, Event] = {}
            try:

                async def moderate(batch: list[Event]) -> list[Outcome]:
                    assert moderation is not None  # noqa: S101 - only passed with one
                    profiles.update(await profiles_of(reader, {e.author for e in batch}))
                    view = View(items=batch, report=reader.report, profiles=profiles)
                    judged = await moderation.judge(view)
                    return [
                        Outcome.HIDE if judged.verdicts[e.id].hidden else Outcome.SHOW
                        for e in batch
                    ]

                page = await followers_page(
                    reader,
                    did,
                    limit=args.limit,
                    cursor=cursor,
                    moderate=None if moderation is None else moderate,
                )
            finally:
                if moderation is not None:
                    await moderation.aclose()
            wanted = {e.author for e in page.shown} | {did}
            profiles.update(await profiles_of(reader, wanted - set(profiles)))
            return page, profiles, reader.report

    page, profiles, report = run(go)
    names = session.names(profiles)
    rows = [
        {
            "did": e.author,
            "alias": session.config.alias_of(e.author),
            "name": names.profile_name(e.author),
            "since": e.ts,
            "id": e.id_hex,
        }
        for e in page.shown
    ]
    doc: dict[str, Any] = {
        "did": did,
        "followers": rows,
        "cursor": cursor_doc(page.next),
        "stats": {
            "nodes_followers": page.node_figure("followers"),
            "nodes_following": page.node_figure("following"),
        },
        "moderation": {
            "enabled": not args.no_filters,
            "hidden": [{"did": e.author, "id": e.id_hex} for e in page.hidden],
        },
        **report.to_json(),
    }
    whose = "You have" if did == me else f"{names.display(did)} has"
    lines = [
        f"{names.display(e.author)}  {e.author}  (since {relative_time(e.ts)})" for e in page.shown
    ] or [f"{whose} no followers on the configured nodes." if cursor is None else "No more."]
    tail = []
    if page.hidden:
        tail.append(f"({len(page.hidden)} follower(s) hidden by your filters)")
    figure = page.node_figure("followers")
    if figure is not None:
        tail.append(f"(your nodes count {figure} follower(s); each one shown was verified)")
    command = ["followers", *([args.who] if args.who else [])]
    if args.limit != FOLLOWERS_LIMIT:
        command += ["--limit", str(args.limit)]
    command += ["--no-filters"] if args.no_filters else []
    more = more_line(ctx, command, page.next)
    report_text = format_report(report, names)
    shown = "\n\n".join(p for p in ("\n".join(lines), "\n".join(tail), report_text, more) if p)
    return Result(doc, shown)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "notifications",
        parents=[common],
        help="replies, mentions, quotes, likes, reposts and follows of you",
        description="What others did with your identity, from every configured node, "
        "verified and filtered by your moderation, newest first. A page marks what it "
        "shows as seen (--no-mark does not).",
    )
    p.add_argument(
        "--limit",
        type=limit_arg,
        default=NOTIFICATIONS_LIMIT,
        help=f"at most N items (default {NOTIFICATIONS_LIMIT})",
    )
    add_paging_args(p)
    p.add_argument(
        "--kinds",
        type=kinds_arg,
        action="append",
        metavar="REASON,...",
        help=f"only these reasons ({', '.join(REASONS)})",
    )
    p.add_argument("--unread", action="store_true", help="only what no view showed you yet")
    p.add_argument("--no-mark", action="store_true", help="do not mark what is shown as seen")
    watch_args(p, "notifications")
    p.add_argument("--no-filters", action="store_true", help="show everything, unmoderated")
    p.set_defaults(handler=cmd_notifications)

    f = sub.add_parser(
        "followers",
        parents=[common],
        help="who follows you (or DID), each follow verified",
    )
    f.add_argument("who", nargs="?", metavar="DID|ALIAS")
    f.add_argument(
        "--limit",
        type=limit_arg,
        default=FOLLOWERS_LIMIT,
        help=f"at most N (default {FOLLOWERS_LIMIT})",
    )
    add_paging_args(f)
    f.add_argument("--no-filters", action="store_true", help="list everyone, unmoderated")
    f.set_defaults(handler=cmd_followers)
