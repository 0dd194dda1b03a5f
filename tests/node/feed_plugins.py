"""Feed plugins the node feed tests serve: real classes, loaded by path
(``str(PLUGINS) + ":Latest"``) in a node.toml, or built directly in-process.

Only ``protocol`` is imported: this is what an operator's feed file looks like.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from protocol.feeds import (
    FeedContext,
    FeedItem,
    Page,
    Source,
    read_time_cursor,
    time_cursor,
)

PLUGINS: Final = Path(__file__)


class Latest:
    """Posts, newest first"""

    name = "latest"

    def __init__(self, kinds: tuple[str, ...] = ("post",)) -> None:
        self.kinds = list(kinds)
        self.calls = 0

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        self.calls += 1
        before = read_time_cursor(ctx.cursor)
        got = await src.events(kinds=self.kinds, before=before, limit=ctx.limit)
        last = time_cursor(got[-1]) if len(got) == ctx.limit else None
        return Page.of(got, cursor=last, why={e.id: f"by {e.author[-6:]}" for e in got})


class Gated:
    """Waits for ``gate`` before answering one item: tests hold it to overlap requests."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = 0

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        self.entered += 1
        n = self.entered
        await self.gate.wait()
        return Page((FeedItem(bytes([n]) * 32, "gated"),), None)


class Forever:
    """Never answers."""

    name = "forever"

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Boom:
    """Raises in its own code."""

    name = "boom"

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        raise ValueError("secret detail the reader must not see")


class TooMany:
    """Answers one item more than asked."""

    name = "too-many"

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        return Page(tuple(FeedItem(bytes([i]) * 32) for i in range(ctx.limit + 1)))


class BadCursor:
    """Answers a cursor with a space in it."""

    name = "bad-cursor"

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        return Page((), "two words")


class NotAPage:
    """Answers a list."""

    name = "not-a-page"

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        return [b"\x01" * 32]  # type: ignore[return-value]


class Echo:
    """Any cursor is fine: one item made of the cursor (a hostile client's distinct
    cursors each make a distinct page)."""

    name = "echo"

    async def page(self, ctx: FeedContext, src: Source) -> Page:
        seed = (ctx.cursor or "").encode()[:32].ljust(32, b"\x00")
        return Page((FeedItem(seed, "echo"),), ctx.cursor)


class BrokenCtor:
    """Fails while being built."""

    name = "broken"

    def __init__(self) -> None:
        raise RuntimeError("cannot start")
