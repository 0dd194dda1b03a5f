"""Chain analysis (spec 0002 §chain): contiguous head, gaps, forks, broken links."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.chain import analyze_chain
from protocol.events import Event, sign_event
from protocol.identity import Identity

from .conftest import NOW


@dataclass(frozen=True)
class Item:
    author: str
    seq: int
    prev: bytes | None
    id: bytes


def chain(identity: Identity, n: int) -> list[Event]:
    events: list[Event] = []
    prev = None
    for seq in range(1, n + 1):
        e = sign_event(identity, kind="post", body={"text": str(seq)}, seq=seq, prev=prev, ts=NOW)
        events.append(e)
        prev = e.id
    return events


def test_empty() -> None:
    report = analyze_chain([])
    assert report.head_seq == 0 and report.max_seq == 0 and report.gaps == () and report.is_complete


def test_complete_chain_any_order_with_duplicates(alice: Identity) -> None:
    events = chain(alice, 5)
    report = analyze_chain(list(reversed(events)) + events[:2])
    assert report.head_seq == 5 and report.head_id == events[-1].id
    assert report.gaps == () and report.forks == () and report.broken_links == ()
    assert report.is_complete and report.author == alice.did


def test_gap(alice: Identity) -> None:
    events = chain(alice, 6)
    held = [events[0], events[2], events[5]]  # seqs 1, 3, 6
    report = analyze_chain(held)
    assert report.head_seq == 1 and report.max_seq == 6
    assert report.gaps == ((2, 2), (4, 5)) and report.missing_count == 3
    assert not report.is_complete


def test_missing_first(alice: Identity) -> None:
    events = chain(alice, 3)
    report = analyze_chain(events[1:])
    assert report.head_seq == 0 and report.head_id is None and report.gaps == ((1, 1),)


def test_fork(alice: Identity) -> None:
    events = chain(alice, 3)
    other2 = sign_event(alice, kind="post", body={"text": "fork"}, seq=2, prev=events[0].id, ts=NOW)
    report = analyze_chain([*events, other2])
    assert report.forks == ((2, tuple(sorted([events[1].id, other2.id]))),)
    assert report.head_seq == 1  # ambiguous past seq 1


def test_broken_link_reveals_an_unseen_branch(alice: Identity) -> None:
    events = chain(alice, 3)
    other2 = sign_event(alice, kind="post", body={"text": "fork"}, seq=2, prev=events[0].id, ts=NOW)
    report = analyze_chain([events[0], other2, events[2]])  # 3 links to the unseen 2
    assert report.broken_links == (3,) and report.head_seq == 2 and report.forks == ()


def test_hostile_seq_does_not_blow_up_memory() -> None:
    report = analyze_chain([Item("a", 1, None, b"1" * 32), Item("a", 2**62, b"x" * 32, b"2" * 32)])
    assert report.gaps == ((2, 2**62 - 1),) and report.head_seq == 1


def test_single_author_only() -> None:
    with pytest.raises(ValueError, match="single author"):
        analyze_chain([Item("a", 1, None, b"1" * 32), Item("b", 1, None, b"2" * 32)])


@given(st.sets(st.integers(min_value=1, max_value=40)))
def test_gaps_and_head_match_a_naive_model(present: set[int]) -> None:
    ids = {s: s.to_bytes(32, "big") for s in range(1, 41)}
    items = [Item("a", s, ids[s - 1] if s > 1 else None, ids[s]) for s in present]
    report = analyze_chain(items)
    top = max(present, default=0)
    missing = [s for s in range(1, top + 1) if s not in present]
    expanded = [s for first, last in report.gaps for s in range(first, last + 1)]
    assert expanded == missing
    head = 0
    while head + 1 in present:
        head += 1
    assert report.head_seq == head
