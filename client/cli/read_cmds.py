"""``murmur timeline|author|thread``: verified reads merged from every node.

Every read prints, after the posts, one line per problem the read found: a node that
failed or timed out, events a node withheld that another node served, events that
failed verification (dropped), seqs no node served, forks. ``--json`` carries the same
as ``nodes`` (one report per node), ``gaps`` and ``forks`` (spec 0007 §report).
"""

from __future__ import annotations

import argparse
from typing import Any

from client.cli.output import Context, Result
from client.cli.render import Names, event_doc, format_event, format_report
from client.cli.session import Session, limit_arg, parse_event_id, run
from client.reader import reply_root
from client.views import View, author_view, thread_view, timeline
from protocol.chain import analyze_chain
from protocol.events import Event

__all__ = ["register"]


def _doc(view: View, names: Names, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "posts": [event_doc(e, names, view.related) for e in view.items],
        **view.report.to_json(),
    }


def _text(body: str, view: View, names: Names) -> str:
    report = format_report(view.report, names)
    return f"{body}\n\n{report}" if report and body else (report or body)


def _names(session: Session, view: View) -> Names:
    return Names(session.config, view.profiles)


def cmd_timeline(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    me = session.stored_identity().did

    async def go() -> View:
        async with session.reader() as reader:
            return await timeline(reader, me, limit=args.limit)

    view = run(go)
    names = _names(session, view)
    body = "\n\n".join(format_event(e, names, view.related) for e in view.items)
    if not view.items:
        body = "Your timeline is empty. Follow someone: murmur follow DID --alias NAME"
    return Result(_doc(view, names), _text(body, view, names))


def cmd_author(args: argparse.Namespace, ctx: Context) -> Result:
    session = Session.open(ctx)
    did = session.resolve(args.who)

    async def go() -> tuple[View, list[Event]]:
        async with session.reader() as reader:
            view = await author_view(reader, did, limit=args.limit)
            return view, reader.of_author(did)

    view, log_events = run(go)
    names = _names(session, view)
    chain = analyze_chain(log_events)
    p = view.profiles.get(did)
    profile = {
        "name": p.body.get("name") if p is not None and p.body else None,
        "bio": p.body.get("bio") if p is not None and p.body else None,
    }
    doc = _doc(
        view,
        names,
        author=did,
        alias=session.config.alias_of(did),
        profile=profile,
        chain={"head_seq": chain.head_seq, "max_seq": chain.max_seq, "events": len(log_events)},
    )
    header = f"{names.display(did)}  {did}"
    if profile["bio"]:
        header += f"\n  {profile['bio']}"
    header += f"\n  {chain.max_seq} event(s), verified chain up to seq {chain.head_seq}"
    posts = "\n\n".join(format_event(e, names, view.related) for e in view.items)
    return Result(doc, _text(header + ("\n\n" + posts if posts else "\n\n(no posts)"), view, names))


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
    eid = parse_event_id(args.id)

    async def go() -> View:
        async with session.reader() as reader:
            return await thread_view(reader, eid)

    view = run(go)
    names = _names(session, view)
    root_id = (
        view.root.id
        if view.root is not None
        else (reply_root(view.items[0]) if view.items else eid) or eid
    )
    order = _tree(view.root, view.items, root_id)
    doc = _doc(
        view, names, root=None if view.root is None else event_doc(view.root, names, view.related)
    )
    doc["replies"] = doc.pop("posts")
    depth_of = {e.id_hex: d for d, e in order}
    for r in doc["replies"]:
        r["depth"] = depth_of.get(r["id"], 1)
    lines = [
        format_event(view.root, names, view.related)
        if view.root is not None
        else f"(root {root_id.hex()[:12]} not available)"
    ]
    for depth, e in order:
        lines.append(format_event(e, names, view.related, indent="    " * depth, context=False))
    return Result(doc, _text("\n\n".join(lines), view, names))


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    tl = sub.add_parser(
        "timeline", parents=[common], help="posts, replies and reposts of the people you follow"
    )
    tl.add_argument("--limit", type=limit_arg, default=30, help="at most N items (default 30)")
    tl.set_defaults(handler=cmd_timeline)
    author = sub.add_parser(
        "author", parents=[common], help="one author's posts, from their verified log"
    )
    author.add_argument("who", metavar="DID|ALIAS")
    author.add_argument("--limit", type=limit_arg, default=30, help="at most N items (default 30)")
    author.set_defaults(handler=cmd_author)
    thread = sub.add_parser("thread", parents=[common], help="a post with all its replies")
    thread.add_argument("id", help="event id of the root or any reply (64 hex)")
    thread.set_defaults(handler=cmd_thread)
