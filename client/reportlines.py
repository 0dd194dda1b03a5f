"""A read's report as lines for people, one problem a line (spec 0007 §report), for
every face: the CLI prints them under a view (``! `` before a problem), the web lists
them in the page's "What this read found" box.

Each :class:`ReportLine` says what it is about (``kind``) and whether it is a problem
(a confirmed move, listed only with ``explain``, is not), so a face can render, cap or
leave out a kind — the CLI shows at most ten events not shown for their key state
unless ``--explain``. The text is one line with every peer-supplied field made safe
(:func:`client.textsafety.safe_line`, names through :class:`client.names.Names`);
a face escapes it for its medium (HTML autoescape).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from client.names import Names, short_id
from client.reader import ReadReport
from client.textsafety import safe_line

__all__ = ["EXCLUDED", "MAX_NAMED", "ReportLine", "report_lines"]

#: Events listed by name in one "withheld" line.
MAX_NAMED: Final = 5
#: The kind of the lines about events not shown as their author's (spec 0008 §8.7).
EXCLUDED: Final = "excluded"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLine:
    """One thing a read found. ``kind``: ``node-error``, ``withheld``, ``invalid``,
    ``gap``, ``fork``, ``move``, ``moved`` (a confirmed move: not a problem),
    ``excluded``, ``no-counts``."""

    kind: str
    text: str
    problem: bool = True


def report_lines(
    report: ReadReport,
    names: Names,
    *,
    explain: bool = False,
    full_ids: bool = False,
    counts_failed: Mapping[str, str] | None = None,
) -> list[ReportLine]:
    """Failed nodes, withheld and invalid events, gaps, forks, moves that are not
    confirmed (confirmed ones too with ``explain``), every event of a did:murmur
    author not shown as theirs (its id in full with ``full_ids``, else short), and the
    nodes that gave no counts (``counts_failed``: URL → code)."""
    lines: list[ReportLine] = []

    def add(kind: str, text: str, *, problem: bool = True) -> None:
        lines.append(ReportLine(kind=kind, text=text, problem=problem))

    for n in report.nodes:
        url = safe_line(n.url)
        if n.error is not None:
            add("node-error", f"{url}: {safe_line(n.error.code)}: {safe_line(n.error.message)}")
        if n.withheld:
            what = ", ".join(
                f"{names.display(e.author)} seq {e.seq}" for e in n.withheld[:MAX_NAMED]
            )
            more = len(n.withheld) - MAX_NAMED
            add(
                "withheld",
                f"{url} withheld {len(n.withheld)} event(s): {what}"
                + (f" and {more} more" if more > 0 else ""),
            )
        if n.invalid:
            codes = sorted({safe_line(str(i["code"])) for i in n.invalid})
            add(
                "invalid",
                f"{url} served {len(n.invalid)} invalid event(s), dropped: " + ", ".join(codes),
            )
    for g in report.gaps:
        span = f"{g['first']}" + (f"-{g['last']}" if g["last"] != g["first"] else "")
        add("gap", f"no node served {names.display(g['author'])} seq {span}")
    for f in report.forks:
        add("fork", f"{names.display(f['author'])} signed two histories at seq {f['seq']}")
    for source, move in sorted(report.moves.items()):
        if move.status != "confirmed":
            add(
                "move",
                f"{names.display(source)}'s move is {move.status}: {safe_line(move.reason)}",
            )
        elif explain:
            add(
                "moved",
                f"{names.display(source)} moved: {safe_line(move.reason)}; followed",
                problem=False,
            )
    excluded = sorted(
        report.excluded.values(), key=lambda x: (x.event.author, x.event.seq, x.event.id)
    )
    for x in excluded:
        e = x.event
        eid = e.id_hex if full_ids else short_id(e.id)
        add(
            EXCLUDED,
            f"not shown as {names.display(e.author)}'s: {safe_line(e.kind)} seq {e.seq} "
            f"{eid}: {safe_line(x.why())}",
        )
    for url, code in sorted((counts_failed or {}).items()):
        add("no-counts", f"{safe_line(url)} gave no counts: {safe_line(code)}")
    return lines
