"""Custom filters in a worker process with a hard deadline (spec 0006 #filter-deadline).

A custom filter is someone else's code. In the reader's process, a synchronous call
can only be interrupted by a signal, which a bare ``except:`` swallows; an ``async``
check that blocks the event loop, or that swallows its cancellation, cannot be
interrupted at all. So each custom filter runs in its own worker process
(:mod:`client.moderation.worker`, started with ``python -c``: no fork of the reader,
no inherited state), and every call to it has a deadline the reader enforces by
killing the worker's process group.

Two tiers per call: the worker interrupts the filter itself at the call's budget
(a ``SIGALRM`` for synchronous code, ``asyncio.wait_for`` for awaitables) and answers
"timed out", keeping the filter's state; if no answer comes within the budget plus
:data:`GRACE_S`, the reader kills the worker, reports the call as over budget, and
starts a fresh worker (building and preparing the filter again) before that filter's
next call. A worker that dies by itself (``os._exit``, a signal) is reported the same
way. Workers run with an address-space limit (:data:`WORKER_MEMORY_BYTES`), no core
dumps, in their own session, and die with the reader (Linux ``PR_SET_PDEATHSIG``).

Wire: each message is a 4-byte big-endian length and a payload, over the worker's
stdin (requests) and stdout (replies; a filter's own prints go to stderr). Requests
are pickles ``(kind, call id, *arguments)`` (the reader is trusted by the worker);
replies are JSON objects carrying the same ``id``, checked field by field: the reader
never unpickles anything the filter's process wrote. While it serves a call, the
worker may ask for ``latest_list`` (``{"id", "call", "lookup", ...}``), answered by a
``("list", call id, lookup, event)`` frame. A reply to any other call than the one
in progress breaks the protocol: the worker is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from client.errors import FilterLoadError, FilterNotFoundError
from client.moderation.core import Action, Decision, Env, Item, SourceKind

__all__ = [
    "AHEAD_BATCH",
    "CLOSE_WAIT_S",
    "GRACE_S",
    "MAX_REPLY_BYTES",
    "START_TIMEOUT_S",
    "WORKER_MEMORY_BYTES",
    "IsolatedFailure",
    "IsolatedFilter",
]

log = logging.getLogger("murmur.client.moderation")

#: How long past a call's budget the reader waits for the worker before killing it:
#: room for the worker's own interruption, the pipe and a busy machine.
GRACE_S = 1.0
#: Starting a worker: the interpreter, importing the filter's module, building it.
START_TIMEOUT_S = 10.0
#: Address space of a worker (``RLIMIT_AS``): the interpreter needs about 50 MiB and
#: each thread reserves some more; a filter that allocates past this gets MemoryError.
WORKER_MEMORY_BYTES = 1 << 30
#: Checks sent ahead in one write (:meth:`IsolatedFilter.check_ahead`).
AHEAD_BATCH = 64
#: A reply larger than this is a protocol violation (a decision is a few hundred bytes).
MAX_REPLY_BYTES = 1 << 20
#: How long closing waits for a killed worker to be reaped. Never unbounded: a process
#: the filter started and that left the worker's process group keeps running.
CLOSE_WAIT_S = 2.0
_HEADER = struct.Struct(">I")
#: Only lets the worker find the same modules and distributions as the reader.
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from client.moderation.worker import main; main()"
)


class IsolatedFailure(Exception):
    """A call to an isolated filter failed; the message says how (``raised ...``,
    ``returned T, not a Decision or None``, ``its worker process died ...``)."""


class _Broken(Exception):
    """The worker cannot be talked to any more (it died, or broke the protocol)."""


def encode_frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


class IsolatedFilter:
    """A custom filter ``type_`` built as ``Class(**params)`` in a worker process.

    Nothing of the filter runs in this process. :meth:`start` loads and builds it;
    :meth:`prepare_within` and :meth:`check_within` call it with a deadline; a worker
    killed at a deadline or dead on its own is replaced before the next call, the
    filter built again and prepared again with the last ``Env`` (its state is lost).
    :meth:`close` ends the worker; so does the end of this process.
    """

    def __init__(
        self,
        type_: str,
        params: Mapping[str, Any],
        *,
        label: str,
        budget_ms: float,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.type = type_
        self.params = dict(params)
        #: The filter's own ``name`` once built (its default decision source).
        self.name = label
        self._label = label
        self._budget_s = budget_ms / 1000
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._transport: asyncio.SubprocessTransport | None = None
        self._calls = 0
        self._env: Env | None = None
        self._prepare_s = 0.0
        #: Why the filter cannot be restarted (every later call fails with it).
        self._broken: str | None = None
        # Items the worker holds, by id(): the object (kept alive) and its index there.
        self._sent: dict[int, tuple[Item, int]] = {}
        self._follows: dict[int, tuple[frozenset[str], int]] = {}
        #: Workers started, including the first (restarts = starts - 1).
        self.starts = 0
        #: Replies to checks sent ahead (:meth:`check_ahead`), by ``id()`` of the item
        #: (kept alive beside its reply) until :meth:`check_within` takes them.
        self._ahead: dict[int, tuple[Item, dict[str, Any]]] = {}
        #: What the last reply taken from ``_ahead`` says its check took, in seconds
        #: (the pipeline counts it against the item's budget); 0 after a live call.
        self.replayed_s = 0.0

    # -- lifecycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether its worker is up and usable (not given up on after a failed restart)."""
        return self._proc is not None and self._proc.returncode is None and self._broken is None

    async def start(self) -> None:
        """Start the worker and build the filter in it; raises ``FilterLoadError`` or
        ``FilterNotFoundError`` (also when building does not finish in time)."""
        await self.close()
        self._sent.clear()
        self._follows.clear()
        self._broken = None
        self.starts += 1
        loop = asyncio.get_running_loop()
        try:
            # As asyncio.create_subprocess_exec, keeping the transport: close() must
            # close the pipes itself (see there).
            self._transport, protocol = await loop.subprocess_exec(
                lambda: asyncio.subprocess.SubprocessStreamProtocol(limit=1 << 16, loop=loop),
                sys.executable,
                "-c",
                _BOOT,
                json.dumps(sys.path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as one
            )
            self._proc = asyncio.subprocess.Process(self._transport, protocol, loop)
        except OSError as exc:  # no more processes, no memory, ...
            raise FilterLoadError(
                f"filter {self._label} ({self.type}): cannot start its worker: {exc}"
            ) from None
        try:
            reply = await self._exchange(
                ("start", self.type, self.params, self._label, WORKER_MEMORY_BYTES),
                self._start_timeout_s,
                None,
            )
        except TimeoutError:
            raise FilterLoadError(
                f"filter {self._label} ({self.type}): loading and building it did not "
                f"finish within {self._start_timeout_s:g} s; its worker was stopped"
            ) from None
        except _Broken as exc:
            raise FilterLoadError(f"filter {self._label} ({self.type}): {exc}") from None
        if "error" in reply:
            await self.close()
            message = _text(reply, "message")
            if reply["error"] == FilterNotFoundError.code:
                raise FilterNotFoundError(message)
            raise FilterLoadError(message)
        self.name = _text(reply, "name") or self._label

    async def close(self) -> None:
        """Kill the worker (its whole process group) and reap it, within
        :data:`CLOSE_WAIT_S`; idempotent.

        The pipes are closed before waiting: asyncio's ``wait()`` returns only once
        every pipe is closed at the far end too, and a process the filter forked and
        moved out of the group (``os.setsid``) holds the worker's ends for as long as
        it lives. The worker blocks forking (spec 0006 #custom-worker) where it can."""
        proc, self._proc = self._proc, None
        transport, self._transport = self._transport, None
        if proc is None or transport is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # if it left its process group
        transport.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await proc.wait()
        except TimeoutError:
            log.warning("filter worker not reaped filter=%s pid=%d", self._label, proc.pid)

    async def _restart(self) -> None:
        """A fresh worker after a kill or a crash: built and prepared again."""
        if self._broken is not None:
            raise IsolatedFailure(self._broken)
        try:
            await self.start()
            if self._env is not None:
                await self.prepare_within(self._env, self._prepare_s)
        except (FilterLoadError, FilterNotFoundError) as exc:
            self._broken = f"restarting its worker failed: {exc.message}"
        except (TimeoutError, IsolatedFailure) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            self._broken = f"restarting its worker failed: preparing it {what}"
        if self._broken is not None:
            await self.close()
            raise IsolatedFailure(self._broken[:300])

    async def ensure_running(self) -> None:
        """Start or restart the worker if it is not running (outside any item budget)."""
        if self._proc is None:
            if self.starts == 0:
                await self.start()
            else:
                await self._restart()

    # -- calls ----------------------------------------------------------------------

    async def prepare_within(self, env: Env, seconds: float) -> None:
        """``prepare(env)`` in the worker, if the filter has one; raises TimeoutError
        past ``seconds`` or IsolatedFailure."""
        self._env, self._prepare_s = env, seconds
        await self.ensure_running()
        # A prepare begins a view: the worker forgets the last view's items (a worker
        # kept across views, spec 0006 #worker-reuse, must not hold them all).
        self._sent.clear()
        self._follows.clear()
        request = (
            "prepare",
            env.viewer,
            env.now_ms,
            env.context.value,
            env.follows,
            env.home,
            seconds,
        )
        reply = await self._call(request, seconds, env)
        if "failed" in reply:
            raise IsolatedFailure(_text(reply, "failed"))
        if reply.get("timeout") is True:
            raise TimeoutError
        if reply.get("ok") is not True:
            await self.close()
            raise IsolatedFailure("its worker sent a malformed reply; it was stopped")

    async def check_ahead(
        self, items: Sequence[Item], seconds: float, *, max_failures: int
    ) -> None:
        """:meth:`_check_ahead` in slices of :data:`AHEAD_BATCH` items (what is in
        flight stays well within the pipes' buffers); stops after ``max_failures``
        failed replies (the pipeline skips the filter then: spec 0006
        #max-failures), the worker stopped so that it does no more of them."""
        self._ahead.clear()
        unique = list({id(i): i for i in items}.values())
        failures = 0
        for start in range(0, len(unique), AHEAD_BATCH):
            if not await self._check_ahead(unique[start : start + AHEAD_BATCH], seconds):
                return
            for item in unique[start : start + AHEAD_BATCH]:
                reply = self._ahead.get(id(item), (item, {}))[1]
                spent = reply.get("spent_s", 0.0)
                slow = isinstance(spent, float) and spent > seconds
                if "failed" in reply or "timeout" in reply or slow:
                    failures += 1
            if failures >= max_failures:
                await self.close()
                return

    async def _check_ahead(self, items: Sequence[Item], seconds: float) -> bool:
        """Send the checks of ``items`` to a running worker at once, each with
        ``seconds``, and keep the replies for :meth:`check_within` (one write and a
        burst of replies instead of a round trip per item; spec 0006 #worker-reuse).

        Each reply must come within ``seconds`` + :data:`GRACE_S` of the one before (a
        call's deadline: the worker serves them in turn); past it the worker is
        killed, that item's reply is a timeout, and the items after it get none (they
        are checked live, after a restart). A worker that dies or breaks the
        protocol fails the item it was serving the same way. True when every item
        got its reply."""
        proc = self._proc
        if not self.running or proc is None or proc.stdin is None or proc.stdout is None:
            return False
        calls: list[tuple[int, Item]] = []
        frames: list[bytes] = []
        for item in items:
            records, root = self._records(item)
            self._calls += 1
            calls.append((self._calls, item))
            request = ("check", self._calls, records, root, seconds)
            frames.append(encode_frame(pickle.dumps(request)))
        env = self._env
        try:
            proc.stdin.write(b"".join(frames))
            await proc.stdin.drain()
        except ConnectionError:
            await self.close()
            return False
        for call_id, item in calls:
            try:
                async with asyncio.timeout(seconds + GRACE_S):
                    reply = await self._final_reply(proc, call_id, env)
            except TimeoutError:
                log.warning("filter worker killed at its deadline filter=%s", self._label)
                await self.close()
                self._ahead[id(item)] = (item, {"timeout": True})
                return False
            except (ConnectionError, asyncio.IncompleteReadError, _Broken) as exc:
                await self.close()
                code = proc.returncode
                if (code is not None and code != 0) or isinstance(
                    exc, asyncio.IncompleteReadError
                ):
                    why = f"its worker process died ({_exit_text(code)})"
                else:
                    why = f"its worker process broke the protocol ({exc})"
                self._ahead[id(item)] = (item, {"failed": why})
                return False
            except BaseException:  # cancelled from outside: the worker's state is unknown
                await self.close()
                raise
            self._ahead[id(item)] = (item, reply)
        return True

    async def check_within(self, item: Item, seconds: float) -> Decision | None:
        """``check(item)`` in the worker; raises TimeoutError past ``seconds`` (the
        worker killed if it did not answer) or IsolatedFailure. The reply sent ahead
        for it (:meth:`check_ahead`) is taken if there is one: past ``seconds`` by
        its own measure, it is a timeout, as the live call would have been."""
        self.replayed_s = 0.0
        ahead = self._ahead.pop(id(item), None)
        if ahead is not None:
            reply = ahead[1]
            spent = reply.get("spent_s", 0.0)
            ok = isinstance(spent, int | float) and not isinstance(spent, bool)
            self.replayed_s = min(max(float(spent), 0.0), seconds) if ok else 0.0
            if ok and spent > seconds and "decision" in reply:
                raise TimeoutError
        else:
            await self.ensure_running()
            records, root = self._records(item)
            reply = await self._call(("check", records, root, seconds), seconds, self._env)
        if "failed" in reply:
            raise IsolatedFailure(_text(reply, "failed"))
        if reply.get("timeout") is True:
            raise TimeoutError
        if "decision" not in reply:
            await self.close()
            raise IsolatedFailure("its worker sent a malformed reply; it was stopped")
        try:
            return _decision(reply["decision"])
        except (KeyError, TypeError, ValueError):
            await self.close()
            raise IsolatedFailure("its worker sent a malformed decision; it was stopped") from None

    async def check(self, item: Item) -> Decision | None:
        """The :class:`~client.moderation.core.Filter` interface, within the budget."""
        return await self.check_within(item, self._budget_s)

    async def _call(
        self, request: tuple[Any, ...], seconds: float, env: Env | None
    ) -> dict[str, Any]:
        try:
            return await self._exchange(request, seconds + GRACE_S, env)
        except TimeoutError:
            log.warning("filter worker killed at its deadline filter=%s", self._label)
            raise
        except _Broken as exc:
            raise IsolatedFailure(str(exc)) from None

    async def _exchange(
        self, request: tuple[Any, ...], seconds: float, env: Env | None
    ) -> dict[str, Any]:
        """Send ``request`` and return the worker's final reply, serving the worker's
        ``latest_list`` calls meanwhile. The worker is killed on a timeout, a broken
        protocol, or if this task is cancelled: its state is then unknown."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise _Broken("its worker is not running")
        self._calls += 1
        call_id = self._calls
        try:
            async with asyncio.timeout(seconds):
                proc.stdin.write(encode_frame(pickle.dumps((request[0], call_id, *request[1:]))))
                await proc.stdin.drain()
                return await self._final_reply(proc, call_id, env)
        except (ConnectionError, asyncio.IncompleteReadError, _Broken) as exc:
            await self.close()
            code = proc.returncode
            if (code is not None and code != 0) or isinstance(exc, asyncio.IncompleteReadError):
                raise _Broken(f"its worker process died ({_exit_text(code)})") from None
            raise _Broken(f"its worker process broke the protocol ({exc})") from None
        except BaseException:  # a timeout, or cancelled from outside
            await self.close()
            raise

    async def _final_reply(
        self, proc: asyncio.subprocess.Process, call_id: int, env: Env | None
    ) -> dict[str, Any]:
        """The worker's reply to ``call_id``, serving its ``latest_list`` calls meanwhile."""
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - piped
        while True:
            reply = await self._receive(proc.stdout)
            if reply.get("id") != call_id:
                raise _Broken("a reply to another call")
            if reply.get("call") != "latest_list":
                return reply
            lookup = reply.get("lookup")
            if not isinstance(lookup, int):
                raise _Broken("a lookup without its number")
            event = None
            author, name = _text(reply, "author"), _text(reply, "name")
            if env is not None and author and name:
                event = await env.latest_list(author, name)
            answer = ("list", call_id, lookup, event)
            proc.stdin.write(encode_frame(pickle.dumps(answer)))
            await proc.stdin.drain()

    async def _receive(self, stdout: asyncio.StreamReader) -> dict[str, Any]:
        (size,) = _HEADER.unpack(await stdout.readexactly(_HEADER.size))
        if size > MAX_REPLY_BYTES:
            raise _Broken(f"a reply of {size} bytes")
        try:
            reply = json.loads(await stdout.readexactly(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Broken("a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise _Broken("a reply that is not an object")
        return reply

    def _records(self, item: Item) -> tuple[list[tuple[Any, ...]], int]:
        """The records of ``item`` and its embeds that the worker does not hold yet
        (embeds first), and ``item``'s index. The worker rebuilds the same items."""
        records: list[tuple[Any, ...]] = []
        stack: list[tuple[Item, bool]] = [(item, False)]
        while stack:  # iterative post-order: a thread's parent chain can be long
            it, ready = stack.pop()
            if id(it) in self._sent:
                continue
            if not ready:
                stack.append((it, True))
                stack.extend((e, False) for e in it.embeds.values() if id(e) not in self._sent)
                continue
            follows = self._follows.get(id(it.follows))
            if follows is None:  # one follow set per view: sent once, then by index
                follows = (it.follows, len(self._follows))
                self._follows[id(it.follows)] = follows
                follows_ref: Any = ("new", it.follows)
            else:
                follows_ref = follows[1]
            index = len(self._sent)
            records.append(
                (
                    it.event,
                    it.context.value,
                    it.viewer,
                    follows_ref,
                    None if it.profile is None else dict(it.profile),
                    it.labels,
                    {role: self._sent[id(e)][1] for role, e in it.embeds.items()},
                    it.now_ms,
                    (it.author_first_seen_ms, it.author_first_ts),
                )
            )
            self._sent[id(it)] = (it, index)
        return records, self._sent[id(item)][1]


def _text(reply: Mapping[str, Any], key: str) -> str:
    value = reply.get(key)
    return value[:1000] if isinstance(value, str) else ""


def _decision(doc: object) -> Decision | None:
    """A decision from the worker's JSON, every field checked (raises on anything else)."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise TypeError("not an object")
    reason, source = doc["reason"], doc["source"]
    if not isinstance(reason, str) or not isinstance(source, str):
        raise TypeError("reason and source must be text")
    return Decision(
        action=Action(doc["action"]),
        reason=reason,
        source=source,
        source_kind=SourceKind(doc["source_kind"]),
    )


def _exit_text(code: int | None) -> str:
    if code is None:
        return "closed its pipe"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
