"""Feed plugins (spec 0009): shared helpers for the feed tests, and the interface itself.

:class:`World` signs real events for a few people (chains with seq and prev), and
:func:`read_all` pages a feed to its end through :func:`check_page`, as a client or a
node does (spec 0009 #page, #check-page).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from protocol.errors import BadCursorError, FeedError
from protocol.events import Event, sign_event
from protocol.feeds import (
    MAX_WHY_CHARS,
    Feed,
    FeedContext,
    FeedItem,
    Page,
    Source,
    TimeMark,
    check_page,
    read_time_cursor,
    time_cursor,
)
from protocol.feeds.memory import MemorySource
from protocol.identity import Identity

from .conftest import NOW

HOUR = 3_600_000


class World:
    """People who sign events in order (seq 1, 2, ... linked by prev)."""

    def __init__(self) -> None:
        self.people: dict[str, Identity] = {}
        self.heads: dict[str, tuple[int, bytes | None]] = {}
        self.events: list[Event] = []

    def who(self, name: str) -> Identity:
        if name not in self.people:
            seed = name.encode().ljust(32, b"\x00")[:32]
            self.people[name] = Identity.from_seed(seed)
        return self.people[name]

    def did(self, name: str) -> str:
        return self.who(name).did

    def sign(self, name: str, kind: str, body: dict[str, Any], ts: int) -> Event:
        ident = self.who(name)
        seq, prev = self.heads.get(name, (0, None))
        event = sign_event(ident, kind=kind, body=body, seq=seq + 1, prev=prev, ts=ts)
        self.heads[name] = (event.seq, event.id)
        self.events.append(event)
        return event

    def post(self, name: str, text: str, ts: int, **more: Any) -> Event:
        return self.sign(name, "post", {"text": text, **more}, ts)

    def like(self, name: str, target: Event | bytes, ts: int) -> Event:
        tid = target.id if isinstance(target, Event) else target
        return self.sign(name, "like", {"target": tid}, ts)

    def repost(self, name: str, target: Event | bytes, ts: int) -> Event:
        tid = target.id if isinstance(target, Event) else target
        return self.sign(name, "repost", {"target": tid}, ts)

    def follow(self, name: str, other: str, ts: int, *, kind: str = "follow") -> Event:
        return self.sign(name, kind, {"subject": self.did(other)}, ts)

    def delete(self, name: str, target: Event, ts: int) -> Event:
        return self.sign(name, "delete", {"target": target.id}, ts)

    def source(self) -> MemorySource:
        return MemorySource(self.events)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def read_all(
    feed: Feed,
    src: Source,
    *,
    limit: int = 50,
    viewer: str | None = None,
    now_ms: int = NOW,
    max_pages: int = 1000,
) -> list[Page]:
    """Every page of ``feed`` from the first to the one whose cursor is None, each
    checked by :func:`check_page`; fails if the feed does not end."""
    pages: list[Page] = []
    cursor: str | None = None
    for _ in range(max_pages):
        ctx = FeedContext(viewer=viewer, now_ms=now_ms, limit=limit, cursor=cursor)
        page = check_page(await feed.page(ctx, src), limit=limit, name=feed.name)
        pages.append(page)
        cursor = page.cursor
        if cursor is None:
            return pages
    raise AssertionError(f"{feed.name} did not end within {max_pages} pages")


def ids_of(pages: Sequence[Page]) -> list[bytes]:
    return [eid for page in pages for eid in page.ids]


# -- the interface ------------------------------------------------------------------------


def test_feed_modules_import_no_io_framework() -> None:
    """spec 0009 #interface: the feed modules are protocol/, so sans-IO at import."""
    code = (
        "import sys, protocol.feeds, protocol.feeds.builtins, protocol.feeds.memory, "
        "protocol.feeds.load\n"
        "print(','.join(m for m in ('aiohttp', 'httpx', 'sqlite3', 'asyncio', 'node', "
        "'client', 'socket') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_time_cursor_round_trips_and_refuses_others() -> None:
    """spec 0009 #cursors."""
    world = World()
    event = world.post("ann", "hi", NOW)
    assert read_time_cursor(time_cursor(event)) == TimeMark(event.ts, event.id)
    assert read_time_cursor(None) is None
    for bad in ("", "x", "t", "tAAAA", "t" + "A" * 80, "t!!!!", "h" + time_cursor(event)[1:]):
        with pytest.raises(BadCursorError):
            read_time_cursor(bad)


def test_time_cursor_past_the_largest_ts_is_refused() -> None:
    """spec 0009 #cursors: a time no event can have (ts > 2^63 - 1) is not a cursor."""
    huge = TimeMark(2**64 - 1, b"\x00" * 32)
    with pytest.raises(BadCursorError):
        read_time_cursor(time_cursor(huge))
    assert read_time_cursor(time_cursor(TimeMark(2**63 - 1))) == TimeMark(2**63 - 1)


def test_check_page_bounds_what_a_feed_returns() -> None:
    """spec 0009 #check-page: more items than asked, bad ids, bad cursors are errors;
    repeats are kept once and why is made one line and cut."""
    a, b = b"\x01" * 32, b"\x02" * 32
    with pytest.raises(FeedError, match="more than 1"):
        check_page(Page((FeedItem(a), FeedItem(b))), limit=1)
    with pytest.raises(FeedError, match="not a Page"):
        check_page([a], limit=5)
    with pytest.raises(FeedError, match="32-byte"):
        check_page(Page((FeedItem(b"\x01" * 31),)), limit=5)
    with pytest.raises(FeedError, match="32-byte"):
        check_page(Page((FeedItem(a.hex()),)), limit=5)  # type: ignore[arg-type]
    for cursor in ("", "a b", "é", "x" * 513, "\x00"):
        with pytest.raises(FeedError, match="cursor"):
            check_page(Page((), cursor), limit=5)
    page = check_page(
        Page((FeedItem(a, "two\nlines\x00" + "w" * 500), FeedItem(b), FeedItem(a, "again"))),
        limit=3,
    )
    assert page.ids == [a, b]
    assert page.items[0].why.startswith("two lines ") and len(page.items[0].why) == MAX_WHY_CHARS
    assert check_page(Page((), "x" * 512), limit=1).cursor == "x" * 512


def test_every_spec_0009_anchor_named_by_the_feed_code_and_tests_exists() -> None:
    """The anchors ``spec 0009 #...`` named in protocol/feeds and these tests are real."""
    import re
    from pathlib import Path

    root = Path(__file__).parents[2]
    text = (root / "specs" / "0009-feeds.md").read_text(encoding="utf-8")
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    files = [
        *(root / "protocol" / "feeds").glob("*.py"),
        *Path(__file__).parent.glob("test_feed*.py"),
    ]
    named: set[str] = set()
    for path in files:
        for chunk in re.findall(
            r"spec 0009 ((?:#[a-z-]+[ ,]*)+)", path.read_text(encoding="utf-8")
        ):
            named.update(re.findall(r"#([a-z-]+)", chunk))
    assert named and named <= anchors, sorted(named - anchors)
