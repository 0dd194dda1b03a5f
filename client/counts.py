"""Likes, reposts, replies and quotes of the posts a view shows (spec 0007 #counts).

Counts are what the reader's nodes hold, not a global truth (spec 0004
#counts-local): each node is asked once per view, in one ``POST /v1/counts`` for the
page's ids (at most :data:`MAX_COUNTS_IDS` a request), all at once and under the
read's per-node timeout; a node that fails or answers nonsense is left out and
named in :attr:`CountsReport.failed` — counts never fail a view, and never mark a
node failed for the rest of the read. The merged count is the largest any node
claims for each figure: every node counts only what it holds, so the largest honest
answer is a lower bound of the truth, but one dishonest node can inflate it, so a
count is the nodes' claim, not verified (``murmur likes ID`` lists the verified
events). Values are checked (non-negative integers) and capped at :data:`MAX_COUNT`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from client.api import NodeClient
from client.reader import Reader
from protocol.errors import ProtocolError

__all__ = [
    "FIGURES",
    "MAX_COUNT",
    "MAX_COUNTS_IDS",
    "Counts",
    "CountsReport",
    "counts_report",
    "fetch_counts",
]

log = logging.getLogger("murmur.client.counts")

#: The figures of ``POST /v1/counts``, in display order.
FIGURES: Final = ("likes", "reposts", "replies", "quotes")
#: Most ids in one ``POST /v1/counts`` (spec 0004 #counts).
MAX_COUNTS_IDS: Final = 500
#: Largest count shown; a node's larger claim is capped here and marked.
MAX_COUNT: Final = 10**9


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """One event's merged counts: the largest each node claimed."""

    likes: int = 0
    reposts: int = 0
    replies: int = 0
    quotes: int = 0
    #: Nodes that answered for this event.
    nodes: int = 0
    #: The nodes that answered did not all claim the same figures.
    differ: bool = False
    #: A node claimed more than :data:`MAX_COUNT` of some figure.
    capped: bool = False

    def get(self, figure: str) -> int:
        value: int = getattr(self, figure)
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            **{f: self.get(f) for f in FIGURES},
            "nodes": self.nodes,
            "differ": self.differ,
            "capped": self.capped,
        }


@dataclass(slots=True)
class CountsReport:
    """The counts a read gathered, and the nodes that gave none."""

    counts: dict[bytes, Counts] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # url -> error code


_reports: weakref.WeakKeyDictionary[Reader, CountsReport] = weakref.WeakKeyDictionary()


def counts_report(reader: Reader) -> CountsReport:
    """The counts gathered so far in ``reader``'s read (one per read)."""
    report = _reports.get(reader)
    if report is None:
        report = _reports[reader] = CountsReport()
    return report


def _figures(raw: object) -> tuple[dict[str, int], bool] | None:
    """A node's counts of one id, checked; None when malformed."""
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, int] = {}
    capped = False
    for f in FIGURES:
        v = raw.get(f)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return None
        capped |= v > MAX_COUNT
        out[f] = min(v, MAX_COUNT)
    return out, capped


async def _ask(node: NodeClient, ids: list[bytes]) -> dict[bytes, tuple[dict[str, int], bool]]:
    out: dict[bytes, tuple[dict[str, int], bool]] = {}
    for start in range(0, len(ids), MAX_COUNTS_IDS):
        chunk = ids[start : start + MAX_COUNTS_IDS]
        answer = await node.counts([i.hex() for i in chunk])
        for eid in chunk:
            checked = _figures(answer.get(eid.hex()))
            if checked is not None:
                out[eid] = checked
    return out


async def fetch_counts(reader: Reader, ids: Iterable[bytes]) -> dict[bytes, Counts]:
    """The counts of ``ids`` (those not counted yet in this read) from every healthy
    node at once, each within the reader's timeout; returns every id's counts known."""
    report = counts_report(reader)
    wanted = [i for i in dict.fromkeys(ids) if i not in report.counts]
    if wanted:
        nodes = [n for n in reader.nodes if reader.report.node(n.url).ok]

        async def one(node: NodeClient) -> dict[bytes, tuple[dict[str, int], bool]]:
            try:
                return await asyncio.wait_for(_ask(node, wanted), timeout=reader.timeout)
            except TimeoutError:
                report.failed[node.url] = "node-timeout"
            except ProtocolError as exc:
                report.failed[node.url] = exc.code
            log.info("counts failed url=%s code=%s", node.url, report.failed[node.url])
            return {}

        answers = await asyncio.gather(*(one(n) for n in nodes))
        for eid in wanted:
            claims = [a[eid] for a in answers if eid in a]
            merged = {f: max((c[0][f] for c in claims), default=0) for f in FIGURES}
            report.counts[eid] = Counts(
                **merged,
                nodes=len(claims),
                differ=len({tuple(c[0].values()) for c in claims}) > 1,
                capped=any(c[1] for c in claims),
            )
    return {i: report.counts[i] for i in dict.fromkeys(ids) if i in report.counts}
