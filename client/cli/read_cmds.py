"""``murmur timeline|author|thread``: verified reads merged from every node, moderated.

Every read prints, after the posts, one line per problem the read found: a node that
failed or timed out, events a node withheld that another node served, events that
failed verification (dropped), seqs no node served, forks. ``--json`` carries the same
as ``nodes`` (one report per node), ``gaps`` and ``forks`` (spec 0007 §report).

Then the reader's filters run (spec 0006; ``--no-filters`` skips them): hidden items
are left out, warned ones are collapsed to one line that never shows their text,
badged ones carry a note. A filter that crashed or ran out of time is always reported
in one line; ``--explain`` adds every decision, and ``--json`` a ``moderation`` verdict
per post and a top-level ``moderation`` with the hidden items and the warnings.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from client.cli.listing import (
    add_paging_args,
    counts_doc,
    counts_failures,
    cursor_arg,
    more_line,
    with_counts,
)
from client.cli.mod_cmds import viewer
from client.cli.output import Context, Result
from client.cli.render import (
    Names,
    event_doc,
    format_explain,
    format_judged,
    format_report,
    indented,
)
from client.cli.session import Session, limit_arg, run
from client.counts import CountsReport
from client.moderation.apply import Moderated, Moderation, moderate_page
from client.moderation.config import ModerationConfig
from client.moderation.core import ViewContext
from client.moderation.pipeline import Verdict
from client.pages import MergedCursor
from client.paging import boundary_after
from client.reader import Reader, reply_root
from client.shortids import parse_event_ref
from client.textsafety import safe_line
from client.views import View, author_view, follow_set, thread_view, timeline, timeline_feed
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
    follows = view.follows  # the timeline already fetched it
    if follows is None:
        follows = frozenset(await follow_set(reader, viewer, mark=False)) if viewer else frozenset()
    moderation = await _moderation(session, reader, viewer, context, follows)
    async with moderation:
        return await moderation.judge(view)


async def _moderation(
    session: Session, reader: Reader, viewer: str, context: ViewContext, follows: frozenset[str]
) -> Moderation:
    return await Moderation.open(
        reader,
        viewer=viewer,
        context=context,
        config=ModerationConfig.load(session.ctx.home),
        follows=follows,
        home=session.ctx.home,
    )


async def _page(
    args: argparse.Namespace,
    session: Session,
    reader: Reader,
    build: Callable[[int], Awaitable[View]],
    viewer: str,
    context: ViewContext,
    follows: frozenset[str],
) -> tuple[View, Moderated | None]:
    """``--limit`` items after moderation: hidden ones do not eat the page (spec 0007
    #limit-after-moderation); with ``--no-filters``, just the window."""
    if args.no_filters:
        return await build(args.limit), None
    moderation = await _moderation(session, reader, viewer, context, follows)
    async with moderation:
        return await moderate_page(build, args.limit, moderation)


def _verdict(mod: Moderated | None, e: Event) -> Verdict | None:
    return None if mod is None else mod.verdicts.get(e.id)


def _post_doc(
    e: Event, names: Names, related: Mapping[bytes, Event], mod: Moderated | None
) -> dict[str, Any]:
    """An event's JSON form with its verdict (and its embedded events' verdicts, if judged)."""
    doc = event_doc(e, names, related)
    v = _verdict(mod, e)
    doc["moderation"] = None if v is None else v.to_json()
    for key in ("reposted", "parent", "quoted"):
        sub = doc.get(key)
        if isinstance(sub, dict) and mod is not None:
            judged = mod.verdicts.get(bytes.fromhex(sub["id"]))
            sub["moderation"] = None if judged is None else judged.to_json()
    return doc


def _mod_doc(
    mod: Moderated | None,
    names: Names,
    related: Mapping[bytes, Event],
    hidden: list[tuple[Event, Verdict]],
) -> dict[str, Any]:
    if mod is None:
        return {"enabled": False, "hidden": [], "warnings": []}
    return {
        "enabled": True,
        "hidden": [_post_doc(e, names, related, mod) for e, _ in hidden],
        "warnings": list(mod.warnings),
    }


def _doc(
    view: View,
    names: Names,
    mod: Moderated | None,
    shown: list[Event],
    hidden: list[tuple[Event, Verdict]],
    **extra: Any,
) -> dict[str, Any]:
    posts = [_post_doc(e, names, view.related, mod) for e in shown]
    for doc, e in zip(posts, shown, strict=True):
        doc["counts"] = counts_doc(e, view.counts)  # spec 0007 #counts
    return {
        **extra,
        "posts": posts,
        "moderation": _mod_doc(mod, names, view.related, hidden),
        **view.report.to_json(),
    }


def _warnings(mod: Moderated | None) -> list[str]:
    """The view's warnings: a filter that failed is one line, however many items it
    failed on (spec 0006 #failure-summary); ``--explain`` shows each item's."""
    if mod is None:
        return []
    return list(dict.fromkeys(mod.warnings))


def _footer(
    args: argparse.Namespace,
    mod: Moderated | None,
    names: Names,
    judged: list[tuple[Event, Verdict]],
    hidden: int,
) -> str:
    """What moderation adds after the posts: --explain, or a short always-on summary."""
    if mod is None:
        return ""
    if args.explain:
        return format_explain(judged, _warnings(mod), names)
    lines = [f"! moderation: {safe_line(w)}" for w in _warnings(mod)]
    if hidden:
        lines.append(f"({hidden} item(s) hidden by your filters; --explain says why)")
    return "\n".join(lines)


def _text(
    body: str,
    view: View,
    names: Names,
    footer: str = "",
    *,
    explain: bool = False,
    more: str = "",
) -> str:
    report = format_report(view.report, names, explain=explain)
    failed = "\n".join(counts_failures(CountsReport(failed=view.counts_failed)))
    report = "\n".join(p for p in (report, failed) if p)
    parts = [p for p in (body, footer, report, more) if p]
    return "\n\n".join(parts)


def _names(session: Session, view: View) -> Names:
    return session.names(view.profiles)


def _judged(view: View, mod: Moderated | None) -> list[tuple[Event, Verdict]]:
    if mod is None:
        return []
    events = ([view.root] if view.root is not None else []) + view.items
    return [(e, mod.verdicts[e.id]) for e in events if e.id in mod.verdicts]


def _split(view: View, mod: Moderated | None) -> tuple[list[Event], list[tuple[Event, Verdict]]]:
    """The items to show, in order, and the hidden ones with their verdicts."""
    if mod is None:
        return list(view.items), []
    return [e for e, _ in mod.shown], list(mod.hidden)


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

            view, mod = await _page(
                args, session, reader, build, me, ViewContext.TIMELINE, frozenset(follows)
            )
            return view, mod, feed.next_cursor(view.items)

    view, mod, nxt = run(go)
    names = _names(session, view)
    shown, hidden = _split(view, mod)
    body = "\n\n".join(
        with_counts(format_judged(e, _verdict(mod, e), names, view.related), e, view.counts)
        for e in shown
    )
    if not view.items:
        body = "Your timeline is empty. Follow someone: murmur follow DID --alias NAME"
    elif not shown:
        body = "Nothing to show: your filters hid every item."
    footer = _footer(args, mod, names, _judged(view, mod), len(hidden))
    more = more_line(ctx, ["timeline", *_repeat(args)], nxt)
    return Result(
        _doc(view, names, mod, shown, hidden, cursor=None if nxt is None else nxt.encode()),
        _text(body, view, names, footer, explain=args.explain, more=more),
    )


def _repeat(args: argparse.Namespace) -> list[str]:
    """The options a next page repeats."""
    out = [] if args.limit == 30 else ["--limit", str(args.limit)]
    return out + (["--no-filters"] if args.no_filters else [])


def cmd_author(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)
    me = viewer(session)
    # The whole log is read, so the cursor is just where the page ended (#paging).
    cursor = cursor_arg(args, f"author:{did}")
    after = None if cursor is None else cursor.boundary

    async def go() -> tuple[View, list[Event], Moderated | None]:
        async with session.reader() as reader:
            fetched = False

            async def build(n: int) -> View:
                nonlocal fetched
                view = await author_view(reader, did, limit=n, fetch=not fetched, after=after)
                fetched = True
                return view

            follows: frozenset[str] = frozenset()
            if me and not args.no_filters:
                follows = frozenset(await follow_set(reader, me, mark=False))
            view, mod = await _page(args, session, reader, build, me, ViewContext.AUTHOR, follows)
            return view, reader.of_author(did), mod

    view, log_events, mod = run(go)
    names = _names(session, view)
    shown, hidden = _split(view, mod)
    nxt = (
        MergedCursor(list=f"author:{did}", nodes={}, boundary=boundary_after(view.items, after))
        if view.more and view.items
        else None
    )
    chain = analyze_chain(log_events)
    p = view.profiles.get(did)
    profile = {
        "name": p.body.get("name") if p is not None and p.body else None,
        "bio": p.body.get("bio") if p is not None and p.body else None,
    }
    doc = _doc(
        view,
        names,
        mod,
        shown,
        hidden,
        author=did,
        alias=session.config.alias_of(did),
        profile=profile,
        chain={"head_seq": chain.head_seq, "max_seq": chain.max_seq, "events": len(log_events)},
        cursor=None if nxt is None else nxt.encode(),
    )
    header = f"{names.display(did)}  {did}"
    if profile["bio"]:
        header += "\n" + indented(str(profile["bio"]), "  ")
    header += f"\n  {chain.max_seq} event(s), verified chain up to seq {chain.head_seq}"
    posts = "\n\n".join(
        with_counts(format_judged(e, _verdict(mod, e), names, view.related), e, view.counts)
        for e in shown
    )
    footer = _footer(args, mod, names, _judged(view, mod), len(hidden))
    body = header + ("\n\n" + posts if posts else "\n\n(no posts)")
    more = more_line(ctx, ["author", args.who, *_repeat(args)], nxt)
    return Result(doc, _text(body, view, names, footer, explain=args.explain, more=more))


def _tree(root: Event | None, replies: list[Event], root_id: bytes) -> list[tuple[int, Event]]:
    """Depth-first (depth, event) order; orphans (parent unknown) hang under the root."""
    ids = {e.id for e in replies} | {root_id}
    children: dict[bytes, list[Event]] = {}
    for e in replies:
        assert e.body is not None  # noqa: S101 - replies are visible posts
        parent = e.body["reply"]["parent"]
        children.setdefault(parent if parent in ids else root_id, []).append(e)
    out: list[tuple[int, Event]] = []
    stack: list[tuple[int, Event]] = [(1, c) for c in reversed(children.get(root_id, []))]
    seen: set[bytes] = set()
    while stack and len(out) < len(replies):
        depth, e = stack.pop()
        if e.id in seen:
            continue
        seen.add(e.id)
        out.append((depth, e))
        stack.extend((depth + 1, c) for c in reversed(children.get(e.id, [])))
    return out


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
    shown, hidden = _split(view, mod)
    root_id = (
        view.root.id
        if view.root is not None
        else (reply_root(view.items[0]) if view.items else eid) or eid
    )
    root_verdict = None if view.root is None else _verdict(mod, view.root)
    root_hidden = root_verdict is not None and root_verdict.hidden
    if root_hidden:
        assert view.root is not None and root_verdict is not None  # noqa: S101
        hidden = [(view.root, root_verdict), *hidden]
    order = _tree(view.root, shown, root_id)
    root_doc = (
        None if view.root is None or root_hidden else _post_doc(view.root, names, view.related, mod)
    )
    if root_doc is not None and view.root is not None:
        root_doc["counts"] = counts_doc(view.root, view.counts)
    doc = _doc(view, names, mod, shown, hidden, root=root_doc)
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
            _verdict(mod, e),
            names,
            view.related,
            indent="    " * depth,
            context=False,
            expand=e.id == eid,  # the post asked for is shown behind its warning
        )
        lines.append(with_counts(text, e, view.counts, "    " * depth))
    footer = _footer(args, mod, names, _judged(view, mod), len(hidden))
    return Result(doc, _text("\n\n".join(lines), view, names, footer, explain=args.explain))


def _moderation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--explain",
        action="store_true",
        help="after the posts, say what your filters hid, warned or badged, and why, "
        "and list every event not shown as its author's for its key state (revoked, "
        "disputed or pending, spec 0008)",
    )
    p.add_argument("--no-filters", action="store_true", help="show everything, unmoderated")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tl = sub.add_parser(
        "timeline", parents=[common], help="posts, replies and reposts of the people you follow"
    )
    tl.add_argument("--limit", type=limit_arg, default=30, help="at most N items (default 30)")
    _moderation_args(tl)
    add_paging_args(tl)
    tl.add_argument(
        "--watch",
        action="store_true",
        help="after the page, follow your nodes live: new posts of the people you follow "
        "appear as they come (Ctrl-C stops)",
    )
    tl.set_defaults(handler=cmd_timeline)
    author = sub.add_parser(
        "author", parents=[common], help="one author's posts, from their verified log"
    )
    author.add_argument("who", metavar="DID|ALIAS")
    author.add_argument("--limit", type=limit_arg, default=30, help="at most N items (default 30)")
    _moderation_args(author)
    add_paging_args(author)
    author.set_defaults(handler=cmd_author)
    thread = sub.add_parser("thread", parents=[common], help="a post with all its replies")
    thread.add_argument(
        "id", help="id of the root or any reply: as the views print it (at least 8 hex) or all 64"
    )
    _moderation_args(thread)
    thread.set_defaults(handler=cmd_thread)
