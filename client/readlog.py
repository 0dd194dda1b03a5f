"""What the reader saw from each node over the last reads of a long-running face (the
web client): a bounded history of read reports (spec 0007 §report, #web-nodes).

A :class:`ReadLog` keeps the last :data:`MAX_READS` :class:`~client.reader.ReadReport`s
with when and what was read. :meth:`ReadLog.by_node` sums them up per node: the events
it withheld (another node served them, verified, and this one should have: spec 0007
#withheld), the invalid events it served and dropped (by code), its failures; and,
for the whole set, the gaps no node could fill, the repairs that did fill one (a gap
in what one node served that another node's events closed), and the forks seen. It
keeps only what the reports say (ids, authors, seqs, codes), never event bodies, and
nothing survives the process.
"""

from __future__ import annotations

import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from client.reader import ReadReport
from client.textsafety import safe_line

__all__ = ["MAX_READS", "NodeSeen", "ReadLog", "ReadRecord", "Withheld", "reading"]

#: Read reports a log keeps (the newest).
MAX_READS: Final = 50
#: Withheld events and invalid ones kept per node (the newest first).
MAX_PER_NODE: Final = 100

#: What is being read, for the records (a page's path): set by the face around a read.
reading: ContextVar[str] = ContextVar("murmur_reading", default="")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRecord:
    """One read: when (ms since the epoch), what (a page path, a command), its report."""

    at_ms: int
    what: str
    report: ReadReport


@dataclass(frozen=True, slots=True, kw_only=True)
class Withheld:
    """An event a node should have served and did not (or served without its body)."""

    id_hex: str
    author: str
    seq: int
    kind: str
    at_ms: int
    what: str


@dataclass(slots=True)
class NodeSeen:
    """One node over the logged reads."""

    url: str
    reads: int = 0
    answered: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    served: int = 0
    withheld: list[Withheld] = field(default_factory=list)
    invalid: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reads": self.reads,
            "answered": self.answered,
            "failures": dict(self.failures),
            "served": self.served,
            "withheld": [
                {"id": w.id_hex, "author": w.author, "seq": w.seq, "kind": w.kind}
                for w in self.withheld
            ],
            "invalid": dict(self.invalid),
        }


class ReadLog:
    """The last ``limit`` read reports (see the module doc)."""

    def __init__(self, limit: int = MAX_READS) -> None:
        self.records: deque[ReadRecord] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self.records)

    def record(self, report: ReadReport, what: str = "", *, at_ms: int | None = None) -> None:
        stamp = at_ms if at_ms is not None else time.time_ns() // 1_000_000
        self.records.append(ReadRecord(at_ms=stamp, what=safe_line(what)[:200], report=report))

    def by_node(self, urls: list[str] | None = None) -> list[NodeSeen]:
        """Per node (``urls`` first, in their order, then any other node read), newest
        read first within each list."""
        seen: dict[str, NodeSeen] = {u: NodeSeen(url=u) for u in urls or []}
        ids: dict[str, set[str]] = {}
        for rec in reversed(self.records):
            for n in rec.report.nodes:
                s = seen.setdefault(n.url, NodeSeen(url=n.url))
                s.reads += 1
                s.answered += n.answered
                s.served += len(n.served)
                if n.error is not None:
                    s.failures[n.error.code] = s.failures.get(n.error.code, 0) + 1
                    if s.last_error is None:
                        s.last_error = f"{n.error.code}: {safe_line(n.error.message)}"
                known = ids.setdefault(n.url, set())
                for e in sorted(n.withheld, key=lambda e: (e.author, e.seq, e.id)):
                    if e.id_hex in known or len(s.withheld) >= MAX_PER_NODE:
                        continue
                    known.add(e.id_hex)
                    s.withheld.append(
                        Withheld(
                            id_hex=e.id_hex,
                            author=e.author,
                            seq=e.seq,
                            kind=e.kind,
                            at_ms=rec.at_ms,
                            what=rec.what,
                        )
                    )
                for i in n.invalid:
                    code = safe_line(str(i.get("code")))
                    s.invalid[code] = s.invalid.get(code, 0) + 1
        return list(seen.values())

    def gaps(self) -> list[dict[str, Any]]:
        """Unrepaired gaps of the logged reads, newest read first, each once."""
        return self._unique("gaps", ("author", "first", "last"))

    def forks(self) -> list[dict[str, Any]]:
        """Forks (and broken links) seen, newest read first, each once."""
        return self._unique("forks", ("author", "seq"))

    def repaired(self) -> list[dict[str, Any]]:
        """Gaps the reads' repairs filled (who served the missing events), newest first."""
        return self._unique("repaired", ("author", "seqs"))

    def _unique(self, attr: str, key: tuple[str, ...]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        done: set[tuple[Any, ...]] = set()
        for rec in reversed(self.records):
            for item in getattr(rec.report, attr):
                k = tuple(repr(item.get(f)) for f in key)
                if k not in done:
                    done.add(k)
                    out.append({**item, "at_ms": rec.at_ms, "what": rec.what})
        return out
