"""A page of a read view as every read command prints it (timeline, author, thread,
likes, reposts, replies, quotes, search posts, tag): moderated by the reader's
filters, as a ``--json`` document and as text (spec 0007 §views, #paging; 0006).

The reader's filters run over the page (``--no-filters`` skips them): hidden items
are left out and do not take places on the page (spec 0007
#limit-after-moderation), warned ones are collapsed to one line that never shows their
text, badged ones carry a note. A filter that crashed or ran out of time is reported
in one line (spec 0006 #failure-summary); ``--explain`` adds every decision, and
``--json`` a ``moderation`` verdict per post and a top-level ``moderation`` with the
hidden items and the warnings. A list that has more ends with its ``more:`` line and
``--json`` carries the same cursor as ``cursor``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from client.cli.listing import counts_doc, counts_failures, more_line, with_counts
from client.cli.output import Context, Result, emit
from client.cli.render import Names, event_doc, format_explain, format_judged, format_report
from client.cli.session import Session, limit_arg
from client.counts import CountsReport
from client.moderation.apply import Moderated, Moderation, moderate_page
from client.moderation.config import ModerationConfig
from client.moderation.core import ViewContext
from client.moderation.pipeline import Verdict
from client.paging import MergedCursor
from client.reader import Reader
from client.textsafety import safe_line
from client.views import View, follow_set
from protocol.events import Event

__all__ = [
    "cursor_doc",
    "judged_items",
    "list_result",
    "moderated_page",
    "moderation_args",
    "open_moderation",
    "post_doc",
    "posts_text",
    "repeat_args",
    "split",
    "verdict_of",
    "view_doc",
    "view_footer",
    "view_text",
    "viewer_follows",
    "watch_args",
    "watch_page",
    "watch_status",
]

#: ``--limit`` of a list view unless it says otherwise.
DEFAULT_LIMIT = 30


def watch_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--watch`` and ``--exit-after N`` (spec 0007 #watch-reconnect)."""
    p.add_argument(
        "--watch",
        action="store_true",
        help=f"after the page, follow your nodes live: new {what} appear as they come "
        "(Ctrl-C stops)",
    )
    p.add_argument(
        "--exit-after",
        type=limit_arg,
        metavar="N",
        help=f"with --watch: stop after N new {what}",
    )


def watch_page(ctx: Context, page: Result, what: str) -> None:
    """A watch's first page: with ``--json`` one JSON line (each new item is one line
    after it), else the page and a line saying the watch goes on."""
    if ctx.json:
        ctx.stdout.write(json.dumps(page.data, separators=(",", ":"), ensure_ascii=True) + "\n")
    else:
        emit(ctx, Result(page.data, f"{page.text}\n\nWatching for new {what} (Ctrl-C to stop)…"))
    ctx.stdout.flush()


def watch_status(ctx: Context) -> Callable[[str, str | None], None]:
    """How a watch tells that a node's stream is down or back: one line on stderr
    (stdout stays the page and the new items, JSON lines with ``--json``)."""

    def report(url: str, why: str | None) -> None:
        if why is None:
            ctx.stderr.write(f"watch: {safe_line(url)} is back\n")
        else:
            ctx.stderr.write(
                f"! watch: {safe_line(url)} is down ({safe_line(why)}); still retrying\n"
            )
        ctx.stderr.flush()

    return report


def moderation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--explain",
        action="store_true",
        help="after the posts, say what your filters hid, warned or badged, and why, "
        "and list every event not shown as its author's for its key state (revoked, "
        "disputed or pending, spec 0008)",
    )
    p.add_argument("--no-filters", action="store_true", help="show everything, unmoderated")


async def open_moderation(
    session: Session,
    reader: Reader,
    viewer: str,
    context: ViewContext,
    follows: frozenset[str] | None = None,
) -> Moderation:
    """The reader's filters for one view (``follows``: the viewer's follow set, read
    here when not given)."""
    if follows is None:
        follows = frozenset(await follow_set(reader, viewer, mark=False)) if viewer else frozenset()
    return await Moderation.open(
        reader,
        viewer=viewer,
        context=context,
        config=ModerationConfig.load(session.ctx.home),
        follows=follows,
        home=session.ctx.home,
    )


async def viewer_follows(args: argparse.Namespace, reader: Reader, viewer: str) -> frozenset[str]:
    """The viewer's follow set for the filters (empty without a viewer or filters)."""
    if not viewer or args.no_filters:
        return frozenset()
    return frozenset(await follow_set(reader, viewer, mark=False))


async def moderated_page(
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
    moderation = await open_moderation(session, reader, viewer, context, follows)
    async with moderation:
        return await moderate_page(build, args.limit, moderation)


def verdict_of(mod: Moderated | None, e: Event) -> Verdict | None:
    return None if mod is None else mod.verdicts.get(e.id)


def post_doc(
    e: Event, names: Names, related: Mapping[bytes, Event], mod: Moderated | None
) -> dict[str, Any]:
    """An event's JSON form with its verdict (and its embedded events' verdicts, if judged)."""
    doc = event_doc(e, names, related)
    v = verdict_of(mod, e)
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
        "hidden": [post_doc(e, names, related, mod) for e, _ in hidden],
        "warnings": list(mod.warnings),
    }


def cursor_doc(cursor: MergedCursor | None) -> str | None:
    """The ``cursor`` field of a list's ``--json`` (null on the last page)."""
    return None if cursor is None else cursor.encode()


def view_doc(
    view: View,
    names: Names,
    mod: Moderated | None,
    shown: list[Event],
    hidden: list[tuple[Event, Verdict]],
    **extra: Any,
) -> dict[str, Any]:
    posts = [post_doc(e, names, view.related, mod) for e in shown]
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


def view_footer(
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


def view_text(
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


def posts_text(view: View, mod: Moderated | None, names: Names, shown: Sequence[Event]) -> str:
    """The shown items, each with its verdict's form and its counts line."""
    return "\n\n".join(
        with_counts(format_judged(e, verdict_of(mod, e), names, view.related), e, view.counts)
        for e in shown
    )


def repeat_args(args: argparse.Namespace, default_limit: int = DEFAULT_LIMIT) -> list[str]:
    """The options the next page of a list repeats (its ``more:`` line)."""
    out = [] if args.limit == default_limit else ["--limit", str(args.limit)]
    return out + (["--no-filters"] if args.no_filters else [])


def judged_items(view: View, mod: Moderated | None) -> list[tuple[Event, Verdict]]:
    if mod is None:
        return []
    events = ([view.root] if view.root is not None else []) + view.items
    return [(e, mod.verdicts[e.id]) for e in events if e.id in mod.verdicts]


def split(view: View, mod: Moderated | None) -> tuple[list[Event], list[tuple[Event, Verdict]]]:
    """The items to show, in order, and the hidden ones with their verdicts."""
    if mod is None:
        return list(view.items), []
    return [e for e, _ in mod.shown], list(mod.hidden)


def list_result(
    args: argparse.Namespace,
    ctx: Context,
    view: View,
    names: Names,
    mod: Moderated | None,
    body: str,
    *,
    command: Sequence[str],
    cursor: MergedCursor | None,
    **extra: Any,
) -> Result:
    """A list page's result: ``--json`` with its ``cursor``, and the text with the
    moderation footer, the read report and the ``more:`` line (``command`` is what
    the next page repeats, without ``murmur``)."""
    shown, hidden = split(view, mod)
    footer = view_footer(args, mod, names, judged_items(view, mod), len(hidden))
    doc = view_doc(view, names, mod, shown, hidden, **extra, cursor=cursor_doc(cursor))
    more = more_line(ctx, command, cursor)
    return Result(doc, view_text(body, view, names, footer, explain=args.explain, more=more))
