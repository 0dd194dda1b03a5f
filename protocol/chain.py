"""Per-author chains: contiguous head, gaps and forks (spec 0002 §chain).

``seq``/``prev`` make an author's history a hash-linked log. Given whatever subset of
that log a reader holds, :func:`analyze_chain` says how far it is known without holes
(the *contiguous head*: the highest ``s`` such that seqs ``1..s`` are present, each
unambiguous and linked to the one before), which seqs are missing (*gaps*, as
inclusive ranges so a hostile ``seq = 2**62`` cannot blow up memory), which seqs have
more than one event (*forks*: the author signed two histories), and which events do
not link to the single event held at ``seq - 1`` (*broken links*: evidence of a fork
whose other branch we have not seen).

A node can withhold events but cannot hide that it does: a reader holding seq 1 and 3
knows seq 2 exists. The helpers work on anything with ``author``, ``seq``, ``prev``
and ``id`` attributes, so they serve nodes (rows) and clients (events) alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ChainItem", "ChainReport", "analyze_chain"]


class ChainItem(Protocol):
    @property
    def author(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def prev(self) -> bytes | None: ...
    @property
    def id(self) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """What a set of one author's events says about that author's log."""

    author: str | None
    #: Highest s with 1..s present, unforked and linked; 0 if seq 1 is not held.
    head_seq: int
    #: id of the event at ``head_seq`` (None when ``head_seq`` is 0).
    head_id: bytes | None
    #: Highest seq held at all.
    max_seq: int
    #: Missing seqs between 1 and ``max_seq``, as inclusive ``(first, last)`` ranges.
    gaps: tuple[tuple[int, int], ...]
    #: ``(seq, ids)`` for every seq held with more than one distinct event (ids sorted).
    forks: tuple[tuple[int, tuple[bytes, ...]], ...]
    #: seqs whose event's ``prev`` differs from the id of the single event at seq - 1.
    broken_links: tuple[int, ...]

    @property
    def missing_count(self) -> int:
        return sum(last - first + 1 for first, last in self.gaps)

    @property
    def is_complete(self) -> bool:
        """True when every seq up to ``max_seq`` is held, linked and unforked."""
        return self.head_seq == self.max_seq


def analyze_chain(items: Iterable[ChainItem]) -> ChainReport:
    """Report head, gaps and forks of one author's events (any order, duplicates ok).

    Raises ``ValueError`` if the items have more than one author.
    """
    by_seq: dict[int, dict[bytes, bytes | None]] = {}
    author: str | None = None
    for item in items:
        if author is None:
            author = item.author
        elif item.author != author:
            raise ValueError("analyze_chain takes the events of a single author")
        by_seq.setdefault(item.seq, {})[item.id] = item.prev
    if not by_seq:
        return ChainReport(
            author=None, head_seq=0, head_id=None, max_seq=0, gaps=(), forks=(), broken_links=()
        )

    seqs = sorted(by_seq)
    max_seq = seqs[-1]

    gaps: list[tuple[int, int]] = []
    expected = 1
    for s in seqs:
        if s > expected:
            gaps.append((expected, s - 1))
        expected = s + 1

    forks = tuple(
        (s, tuple(sorted(by_seq[s]))) for s in seqs if len(by_seq[s]) > 1
    )

    broken: list[int] = []
    for s in seqs:
        below = by_seq.get(s - 1)
        if below is None or len(below) != 1:
            continue
        (below_id,) = below
        if any(prev != below_id for prev in by_seq[s].values()):
            broken.append(s)

    head_seq, head_id = 0, None
    s = 1
    while True:
        at = by_seq.get(s)
        if at is None or len(at) != 1:
            break
        ((eid, prev),) = at.items()
        if prev != head_id:  # for s == 1 both are None
            break
        head_seq, head_id = s, eid
        s += 1

    return ChainReport(
        author=author,
        head_seq=head_seq,
        head_id=head_id,
        max_seq=max_seq,
        gaps=tuple(gaps),
        forks=forks,
        broken_links=tuple(broken),
    )
