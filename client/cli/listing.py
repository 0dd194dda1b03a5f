"""What every list view of the CLI shares: counts under each post, and paging
(``--cursor``/``--before``, the "more:" line) (spec 0007 #counts, #paging).

Counts are the nodes' claim (spec 0004 #counts-local), shown as such: a figure is the
largest any node counted, a line says when nodes disagree, and a claim above
:data:`~client.counts.MAX_COUNT` is shown capped with ``+``. Zero figures are left out,
and a post nothing references shows no counts line.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from client.cli.output import Context
from client.counts import FIGURES, MAX_COUNT, Counts, CountsReport
from client.paging import MergedCursor, parse_before
from client.textsafety import safe_line
from protocol import kinds
from protocol.events import Event

__all__ = [
    "add_paging_args",
    "counted_id",
    "counts_doc",
    "counts_failures",
    "counts_line",
    "cursor_arg",
    "more_line",
    "with_counts",
]

_SINGULAR = {"likes": "like", "reposts": "repost", "replies": "reply", "quotes": "quote"}
_MARK = {"likes": "♡", "reposts": "⟳", "replies": "↩", "quotes": "❝"}


def counted_id(e: Event) -> bytes:
    """The event whose counts an item shows: a repost shows its target's."""
    if e.kind == kinds.REPOST and e.body is not None and isinstance(e.body.get("target"), bytes):
        target: bytes = e.body["target"]
        return target
    return e.id


def counts_line(c: Counts | None) -> str:
    """``♡ 3 likes · ↩ 1 reply``; empty when unknown or all zero."""
    if c is None:
        return ""
    parts = []
    for f in FIGURES:
        n = c.get(f)
        if n:
            shown = f"{n}+" if n >= MAX_COUNT else str(n)
            parts.append(f"{_MARK[f]} {shown} {_SINGULAR[f] if n == 1 else f}")
    if not parts:
        return ""
    line = " · ".join(parts)
    if c.differ:
        line += " (nodes differ: the most one counts)"
    return line


def with_counts(text: str, e: Event, counts: Mapping[bytes, Counts], indent: str = "") -> str:
    """An item's lines, then its counts line (if any)."""
    line = counts_line(counts.get(counted_id(e)))
    return f"{text}\n{indent}  {line}" if line else text


def counts_doc(e: Event, counts: Mapping[bytes, Counts]) -> dict[str, Any] | None:
    c = counts.get(counted_id(e))
    return None if c is None else c.to_json()


def counts_failures(report: CountsReport) -> list[str]:
    """One line per node that gave no counts."""
    return [
        f"! {safe_line(url)} gave no counts: {safe_line(code)}"
        for url, code in sorted(report.failed.items())
    ]


# -- paging -----------------------------------------------------------------------------


def add_paging_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--cursor",
        metavar="X",
        help="the next page: the cursor the page before printed (its 'more:' line)",
    )
    group.add_argument(
        "--before",
        metavar="WHEN",
        help="start with items older than WHEN: a date (2024-05-01), a UTC time "
        "(2024-05-01T12:30) or unix seconds (or a cursor, as --cursor)",
    )


def cursor_arg(args: argparse.Namespace, list_name: str) -> MergedCursor | None:
    """The cursor ``--cursor`` or ``--before`` asks for (None: the newest page)."""
    if getattr(args, "cursor", None):
        return MergedCursor.decode(args.cursor, list_name)
    before = getattr(args, "before", None)
    if before:
        # A time, or a cursor (spec 0007 #paging).
        if before.strip().startswith("m1."):
            return MergedCursor.decode(before, list_name)
        return parse_before(before, list_name)
    return None


def more_line(ctx: Context, command: Sequence[str], cursor: MergedCursor | None) -> str:
    """``more: murmur COMMAND --cursor X`` for the next page; empty on the last."""
    if cursor is None:
        return ""
    head = ["murmur", *(["--as", ctx.as_name] if ctx.as_name else [])]
    words = [*head, *command, "--cursor", cursor.encode()]
    return "more: " + safe_line(shlex.join(words))
