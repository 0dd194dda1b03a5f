"""``murmur timeline|author|thread``: verified reads merged from every node, moderated.

Every read prints, after the posts, one line per problem the read found: a node that
failed or timed out, events a node withheld that another node served, events that
failed verification (dropped), seqs no node served, forks. ``--json`` carries the same
as ``nodes`` (one report per node), ``gaps`` and ``forks`` (spec 0007 §report).

Then the reader's filters run (spec 0006; ``--no-filters`` skips them): hidden items
are left out, warned ones are collapsed to one line that never shows their text,
badged ones carry a note. A filter that crashed or ran out of time is always reported
in one line; ``--explain`` adds every decision, and ``--json`` a ``moderation`` verdict
per post and a top-level ``moderation`` with the hidden items and the warnings
(:mod:`client.cli.pageview`, shared by every read view).
"""

from __future__ import annotations

import argparse

from client.cli.listing import add_paging_args, counts_doc, cursor_arg, with_counts
from client.cli.mod_cmds import viewer
from client.cli.output import Context, Result
from client.cli.pageview import (
    judged_items,
    list_result,
    moderated_page,
    moderation_args,
    open_moderation,
    post_doc,
    posts_text,
    repeat_args,
    split,
    verdict_of,
    view_doc,
    view_footer,
    view_text,
    viewer_follows,
    watch_args,
)
from client.cli.render import Names, format_judged, indented
from client.cli.session import Session, limit_arg, run
from client.moderation.apply import Moderated
from client.moderation.core import ViewContext
from client.paging import MergedCursor
from client.reader import Reader
from client.shortids import parse_event_ref
from client.threadtree import reply_tree
from client.views import (
    AuthorPages,
    View,
    author_list,
    follow_set,
    thread_root_id,
    thread_view,
    timeline,
    timeline_feed,
)
from protocol.chain import analyze_chain
from protocol.events import Event

__all__ = ["register"]


async def _moderate(
    args: argparse.Namespace,
    session: Session,
    reader: Reader,
    view: View,
    viewer: str,
    context: ViewContext,
) -> Moderated | None:
    if args.no_filters:
        return None
    moderation = await open_moderation(session, reader, viewer, context, view.follows)
    async with moderation:
        return await moderation.judge(view)


def _names(session: Session, view: View) -> Names:
    return session.names(view.profiles)


def cmd_timeline(args: argparse.Namespace, ctx: Context) -> Result | int:
    """The timeline page (``--watch``: then new items live, an exit status)."""
    session = Session.open(ctx)
    me = session.stored_identity().did
    if getattr(args, "watch", False):
        from client.cli.browse_cmds import watch_timeline

        return watch_timeline(args, ctx, session, me)
    cursor = cursor_arg(args, "timeline")  # spec 0007 #paging

    async def go() -> tuple[View, Moderated | None, MergedCursor | None]:
        async with session.reader() as reader:
            follows = await follow_set(reader, me, mark=False)  # `following` reports those
            feed = timeline_feed(reader, me, follows, cursor=cursor)

            async def build(n: int) -> View:
                return await timeline(reader, me, limit=n, follows=follows, feed=feed)

            view, mod = await moderated_page(
                args, session, reader, build, me, ViewContext.TIMELINE, frozenset(follows)
            )
            return view, mod, feed.next_cursor(view.items)

    view, mod, nxt = run(go)
    names = _names(session, view)
    shown, _ = split(view, mod)
    body = posts_text(view, mod, names, shown)
    if not view.items:
        body = "Your timeline is empty. Follow someone: murmur follow DID --alias NAME"
    elif not shown:
        body = "Nothing to show: your filters hid every item."
    command = ["timeline", *repeat_args(args)]
    return list_result(args, ctx, view, names, mod, body, command=command, cursor=nxt)


def cmd_author(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    me = viewer(session)
    # The whole log is read, so the cursor is just where the page ended (#paging).
    cursor = cursor_arg(args, author_list(did))
    after = None if cursor is None else cursor.boundary

    async def go() -> tuple[View, list[Event], Moderated | None, MergedCursor | None]:
        async with session.reader() as reader:
            pages = AuthorPages(reader, did, after=after)
            follows = await viewer_follows(args, reader, me)
            view, mod = await moderated_page(
                args, session, reader, pages.build, me, ViewContext.AUTHOR, follows
            )
            return view, reader.of_author(did), mod, pages.next_cursor(view)

    view, log_events, mod, nxt = run(go)
    names = _names(session, view)
    chain = analyze_chain(log_events)
    p = view.profiles.get(did)
    profile = {
        "name": p.body.get("name") if p is not None and p.body else None,
        "bio": p.body.get("bio") if p is not None and p.body else None,
    }
    header = f"{names.display(did)}  {did}"
    if profile["bio"]:
        header += "\n" + indented(str(profile["bio"]), "  ")
    header += f"\n  {chain.max_seq} event(s), verified chain up to seq {chain.head_seq}"
    posts = posts_text(view, mod, names, split(view, mod)[0])
    body = header + ("\n\n" + posts if posts else "\n\n(no posts)")
    return list_result(
        args,
        ctx,
        view,
        names,
        mod,
        body,
        command=["author", args.who, *repeat_args(args)],
        cursor=nxt,
        author=did,
        alias=session.config.alias_of(did),
        profile=profile,
        chain={"head_seq": chain.head_seq, "max_seq": chain.max_seq, "events": len(log_events)},
    )


def cmd_thread(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    ref = parse_event_ref(args.id)
    me = viewer(session)

    async def go() -> tuple[bytes, View, Moderated | None]:
        async with session.reader() as reader:
            eid = await session.event_id(reader, ref)  # spec 0007 #short-ids
            view = await thread_view(reader, eid)
            mod = await _moderate(args, session, reader, view, me, ViewContext.THREAD)
            return eid, view, mod

    eid, view, mod = run(go)
    names = _names(session, view)
    shown, hidden = split(view, mod)
    root_id = thread_root_id(view, eid)
    root_verdict = None if view.root is None else verdict_of(mod, view.root)
    root_hidden = root_verdict is not None and root_verdict.hidden
    if root_hidden:
        assert view.root is not None and root_verdict is not None  # noqa: S101
        hidden = [(view.root, root_verdict), *hidden]
    order = reply_tree(shown, root_id)
    root_doc = (
        None if view.root is None or root_hidden else post_doc(view.root, names, view.related, mod)
    )
    if root_doc is not None and view.root is not None:
        root_doc["counts"] = counts_doc(view.root, view.counts)
    doc = view_doc(view, names, mod, shown, hidden, root=root_doc)
    doc["replies"] = doc.pop("posts")
    depth_of = {e.id_hex: d for d, e in order}
    for r in doc["replies"]:
        r["depth"] = depth_of.get(r["id"], 1)
    if view.root is None:
        lines = [f"(root {root_id.hex()[:12]} not available)"]
    elif root_hidden:
        lines = [f"(root {root_id.hex()[:12]} hidden by your filters)"]
    else:
        root_text = format_judged(
            view.root, root_verdict, names, view.related, expand=view.root.id == eid
        )
        lines = [with_counts(root_text, view.root, view.counts)]
    for depth, e in order:
        text = format_judged(
            e,
            verdict_of(mod, e),
            names,
            view.related,
            indent="    " * depth,
            context=False,
            expand=e.id == eid,  # the post asked for is shown behind its warning
        )
        lines.append(with_counts(text, e, view.counts, "    " * depth))
    footer = view_footer(args, mod, names, judged_items(view, mod), len(hidden))
    text = view_text("\n\n".join(lines), view, names, footer, explain=args.explain)
    return Result(doc, text)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tl = sub.add_parser(
        "timeline", parents=[common], help="posts, replies and reposts of the people you follow"
    )
    tl.add_argument("--limit", type=limit_arg, default=30, help="at most N items (default 30)")
    moderation_args(tl)
    add_paging_args(tl)
    watch_args(tl, "posts of the people you follow")
    tl.set_defaults(handler=cmd_timeline)
    author = sub.add_parser(
        "author", parents=[common], help="one author's posts, from their verified log"
    )
    author.add_argument("who", metavar="DID|ALIAS")
    author.add_argument("--limit", type=limit_arg, default=30, help="at most N items (default 30)")
    moderation_args(author)
    add_paging_args(author)
    author.set_defaults(handler=cmd_author)
    thread = sub.add_parser("thread", parents=[common], help="a post with all its replies")
    thread.add_argument(
        "id", help="id of the root or any reply: as the views print it (at least 8 hex) or all 64"
    )
    moderation_args(thread)
    thread.set_defaults(handler=cmd_thread)
