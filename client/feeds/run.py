"""Running a local feed's ``page`` under a deadline (spec 0007 #feed-bounds).

``asyncio.wait_for`` ends a feed that awaits too long, but not one stuck in a
synchronous loop inside its coroutine: the event loop never gets control back. So on
the main thread of a Unix process a one-shot ``SIGALRM`` timer is armed for the
deadline; when it fires, the handler looks at the interrupted call stack and raises
:class:`_Overrun` (a ``BaseException``, so the feed's own ``except Exception`` cannot
swallow it) only if a frame of the feed's own source file is on it — i.e. the feed is
running, not the event loop or another task — and otherwise looks again a moment
later. The exception ends the feed's task (``asyncio`` stores it as the task's
result); it never escapes into the event loop. Elsewhere (another thread, no
``setitimer``) a synchronous overrun is only noticed after it ends, which is the
documented limit. What a feed returns is checked by :func:`protocol.feeds.check_page`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

from protocol.errors import FeedError, FeedTimeoutError, ProtocolError
from protocol.feeds import Feed, FeedContext, Page, Source, check_page

__all__ = ["LOCAL_FEED_DEADLINE_S", "feed_files", "run_page"]

log = logging.getLogger("murmur.client.feeds")

#: How long a local feed may take to make one page (its reads of the nodes included).
LOCAL_FEED_DEADLINE_S = 10.0
#: How soon the handler looks again when the feed's code was not running.
_RECHECK_S = 0.02


class _Overrun(BaseException):
    """Raised inside a feed's synchronous code that ran past its deadline."""


def feed_files(feed: object) -> frozenset[str]:
    """The source files whose frames are the feed's own: its class's module."""
    module = sys.modules.get(type(feed).__module__)
    path = getattr(module, "__file__", None)
    return frozenset([path]) if isinstance(path, str) else frozenset()


def _on_stack(frame: FrameType | None, files: frozenset[str]) -> bool:
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _interrupt_sync(files: frozenset[str], deadline: float) -> Iterator[None]:
    """Interrupt the feed's synchronous code once ``deadline`` (``time.monotonic``)
    passed, on the main thread of a Unix process; elsewhere do nothing."""
    if (
        not files
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        left = deadline - time.monotonic()
        if left > 0:
            signal.setitimer(signal.ITIMER_REAL, left)
        elif _on_stack(frame, files):
            raise _Overrun
        else:
            signal.setitimer(signal.ITIMER_REAL, _RECHECK_S)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.monotonic()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


async def run_page(
    feed: Feed, ctx: FeedContext, src: Source, *, deadline_s: float = LOCAL_FEED_DEADLINE_S
) -> Page:
    """``feed.page(ctx, src)`` within ``deadline_s``, checked; every failure of the
    feed's code is a :class:`~protocol.errors.FeedError` naming it (``feed-timeout``
    past the deadline, ``bad-cursor`` when the feed says so), never a crash."""
    name = getattr(feed, "name", type(feed).__name__)
    name = name if isinstance(name, str) else type(feed).__name__
    deadline = time.monotonic() + deadline_s

    async def call() -> object:
        return await feed.page(ctx, src)

    task = asyncio.ensure_future(call())
    try:
        with _interrupt_sync(feed_files(feed), deadline):
            page = await asyncio.wait_for(task, timeout=deadline_s)
    except (TimeoutError, _Overrun):
        raise FeedTimeoutError(
            f"feed {name} did not make its page within {deadline_s:g} s"
        ) from None
    except ProtocolError:
        raise  # FeedError (bad-cursor, ...) or a read that no node answered
    except Exception as exc:  # someone else's code: report, never crash
        log.info("feed failed name=%s error=%r", name, exc)
        raise FeedError(f"feed {name} raised {exc!r}"[:400]) from None
    finally:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: an overrun is reported above, not logged by asyncio
    return check_page(page, limit=ctx.limit, name=name)
