"""The reader's side of a custom filter's worker process: the call protocol and closing
(spec 0006 #custom-worker, #filter-deadline; issue #14 finding 6 follow-up).

The filters here are honest; what is under test is that the worker and the reader
stay in step when a ``latest_list`` lookup is slow, that the worker times a check by
the check's own budget, and that closing a worker cannot hang. Hostile filters are in
``tests/adversarial/test_hostile_filters.py``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.moderation.core import Env, Item, ViewContext
from client.moderation.isolation import GRACE_S, IsolatedFilter, encode_frame
from protocol.events import Event
from tests.client.conftest import Author

NOW = 1_750_000_000_000
ME, ALICE = Author.new(), Author.new()
#: A hang detector for one ``await`` on a worker, far above what it takes (well under
#: a second); never a measure.
HANG_GUARD_S = 30.0

FILTERS = textwrap.dedent(
    """
    import signal
    from pathlib import Path
    from client.moderation.core import Action, Decision, SourceKind

    class Tagger:
        '''Hides posts that say "bad"; on posts that start with "new:" it first looks
        up a list (and notes in MARKER if that wait was interrupted).'''
        name = "tagger"
        def __init__(self, marker=""):
            self.marker, self.env = marker, None
        def prepare(self, env):
            self.env = env
        async def check(self, item):
            text = item.event.body["text"]
            if text.startswith("new:"):
                try:
                    await self.env.latest_list(item.author, "mute")
                except BaseException:
                    Path(self.marker).write_text("interrupted")
                    raise
            if "bad" in text:
                return Decision(Action.HIDE, f"bad: {text}", "tagger", SourceKind.USER)
            return None

    class Timer:
        '''Says how long its process's interval timer has left, while checking.'''
        name = "timer"
        def prepare(self, env):
            pass
        def check(self, item):
            left = signal.getitimer(signal.ITIMER_REAL)[0]
            return Decision(Action.BADGE, repr(left), "timer", SourceKind.USER)
    """
)


def item(text: str) -> Item:
    return Item(event=ALICE.post(text), context=ViewContext.TIMELINE, viewer=ME.did, now_ms=NOW)


@pytest.fixture
def filters(tmp_path: Path) -> Path:
    path = tmp_path / "honest.py"
    path.write_text(FILTERS)
    return path


async def test_a_slow_lookup_does_not_shift_later_answers(tmp_path: Path, filters: Path) -> None:
    """spec 0006 #custom-worker: a check whose ``latest_list`` lookup is slower than its
    budget fails alone; every later item gets its own decision (before: the worker
    stopped waiting, the lookup's answer stayed in the pipe, was read as the next
    request, and each later item got the previous item's decision)."""
    marker = tmp_path / "marker"
    budget_s = 0.1
    flt = IsolatedFilter(
        f"{filters}:Tagger", {"marker": str(marker)}, label="tagger", budget_ms=budget_s * 1000
    )

    async def slow_lookup(author: str, name: str) -> Event | None:
        # A slow node: answers once the worker gave up on the check, or after 4 budgets
        # if it does not give up while waiting (still well inside budget + GRACE_S).
        loop = asyncio.get_running_loop()
        until = loop.time() + 4 * budget_s
        while not marker.exists() and loop.time() < until:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.01)
        return None

    env = Env(viewer=ME.did, now_ms=NOW, context=ViewContext.TIMELINE, latest_list=slow_lookup)
    assert 4 * budget_s < budget_s + GRACE_S
    texts = ["new: hello", "fine post", "bad post", "good post", "another bad", "ok"]
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await flt.start()
            await flt.prepare_within(env, 10 * budget_s)
            with pytest.raises(TimeoutError):
                await flt.check_within(item(texts[0]), budget_s)
            got = {}
            for text in texts[1:]:
                decision = await flt.check_within(item(text), budget_s)
                got[text] = None if decision is None else decision.reason
    finally:
        await flt.close()
    assert got == {
        "fine post": None,
        "bad post": "bad: bad post",
        "good post": None,
        "another bad": "bad: another bad",
        "ok": None,
    }


async def test_a_stale_lookup_answer_is_not_read_as_a_request(filters: Path) -> None:
    """spec 0006 #custom-worker: an answer to a lookup of a call that has ended is
    dropped by the worker, not taken for the next request."""
    flt = IsolatedFilter(f"{filters}:Tagger", {}, label="tagger", budget_ms=2000)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await flt.start()
            await flt.prepare_within(
                Env(viewer=ME.did, now_ms=NOW, context=ViewContext.TIMELINE), 5.0
            )
            proc = flt._proc
            assert proc is not None and proc.stdin is not None
            proc.stdin.write(encode_frame(pickle.dumps(("list", 1, 1, None))))
            decision = await flt.check_within(item("bad post"), 2.0)
            assert decision is not None and decision.reason == "bad: bad post"
            assert await flt.check_within(item("fine post"), 2.0) is None
    finally:
        await flt.close()
    assert flt.starts == 1


async def test_the_first_check_after_prepare_is_timed_by_its_own_budget(filters: Path) -> None:
    """spec 0006 #filter-deadline: in the worker, a check's interruption is armed for
    the check's budget, not left to the timer of the ``prepare`` before it (10 x the
    budget away). The filter reads its own interval timer, so nothing is timed here."""
    flt = IsolatedFilter(f"{filters}:Timer", {}, label="timer", budget_ms=100)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await flt.start()
            await flt.prepare_within(
                Env(viewer=ME.did, now_ms=NOW, context=ViewContext.TIMELINE), 1.0
            )
            decision = await flt.check_within(item("x"), 0.1)
    finally:
        await flt.close()
    assert decision is not None
    left = float(decision.reason)
    assert 0 < left <= 0.1 + 0.05  # the budget plus the worker's alarm slack


def open_pipe_ends(pid: int) -> list[int]:
    """Write ends of every pipe process ``pid`` has open but this one's stderr."""
    fds = Path(f"/proc/{pid}/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc")
    mine = os.readlink("/proc/self/fd/2")
    links = {fd: os.readlink(fd) for fd in fds.iterdir()}
    return [
        os.open(fd, os.O_WRONLY | os.O_NONBLOCK)
        for fd, link in links.items()
        if link.startswith("pipe:") and link != mine
    ]


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes that hold a worker's pipes; killed at the end whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


async def test_close_is_bounded_when_another_process_holds_the_worker_pipes(
    filters: Path, holders: list[subprocess.Popen[bytes]]
) -> None:
    """spec 0006 #custom-worker: closing a worker does not wait for processes outside its
    process group that hold its pipes, as a filter's forked and ``setsid`` child would
    (the worker refuses to fork where it can, so such a holder is made from outside:
    a process in its own session given the worker's pipe ends through ``/proc``)."""
    flt = IsolatedFilter(f"{filters}:Tagger", {}, label="tagger", budget_ms=2000)
    async with asyncio.timeout(HANG_GUARD_S):
        await flt.start()
    proc = flt._proc
    assert proc is not None
    held = open_pipe_ends(proc.pid)
    try:
        holder = subprocess.Popen(  # noqa: ASYNC220 - started, never waited on here
            ["sleep", "3600"], pass_fds=held, start_new_session=True
        )
    finally:
        for fd in held:
            os.close(fd)
    holders.append(holder)
    async with asyncio.timeout(HANG_GUARD_S):
        await flt.close()
    assert holder.poll() is None  # it was out of reach, and still holds the pipes
    assert proc.returncode == -signal.SIGKILL  # the worker itself was killed and reaped
