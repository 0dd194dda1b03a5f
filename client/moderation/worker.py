"""The worker process that runs one custom filter (spec 0006 #filter-deadline).

Started by :class:`client.moderation.isolation.IsolatedFilter` as ``python -c``; reads
pickled requests on fd 0 and writes JSON replies on fd 1 (see that module for the
wire). Before any of the filter's code runs it moves the protocol off the standard
streams (so a filter's ``print`` or ``input`` cannot corrupt it), limits its address
space, turns off core dumps and asks to die with the reader.

It keeps one filter instance, one event loop and the items it was sent for as long
as it lives (one view, or until the reader kills it). Each call runs under the same
interruption the in-process pipeline uses: a ``SIGALRM`` at the call's budget raising
a ``BaseException``, and ``asyncio.wait_for`` for the awaitable part. A filter that
defeats both is the reader's to kill.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import inspect
import json
import os
import pickle
import resource
import signal
import sys
import time
from typing import Any

from client.errors import FilterError
from client.moderation.config import FilterSpec, instantiate
from client.moderation.core import Decision, Env, Item, ViewContext
from client.moderation.isolation import encode_frame
from client.moderation.pipeline import _alarm_handler, _interrupt_after, _Interrupted
from protocol.events import Event

__all__ = ["main"]

#: The SIGALRM fires this long after the budget, so an honest awaitable meets
#: ``wait_for``'s cleaner timeout first.
_ALARM_SLACK_S = 0.05
#: Exit status of a worker that got a request while waiting for a lookup's answer.
_OUT_OF_STEP = 70


class _Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd

    def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            chunk = os.read(self.rfd, n)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> tuple[Any, ...]:
        """One frame from the reader: ``(kind, call id, *arguments)``."""
        size = int.from_bytes(self._read(4), "big")
        frame = pickle.loads(self._read(size))  # noqa: S301 - from the reader, trusted
        if not isinstance(frame, tuple) or len(frame) < 2 or not isinstance(frame[1], int):
            raise EOFError  # not the reader speaking: stop
        return frame

    def send(self, doc: dict[str, Any]) -> None:
        data = memoryview(encode_frame(json.dumps(doc).encode("utf-8")))
        while data:
            data = data[os.write(self.wfd, data) :]


def _isolate_streams() -> _Channel:
    channel = _Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # a filter's prints go to the reader's stderr
    return channel


def _limit(memory_bytes: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the reader
            _forbid_new_processes(libc)
        if os.getppid() != parent:  # the reader died before the prctl
            os._exit(0)


#: Per machine (``os.uname().machine``): the seccomp ``AUDIT_ARCH`` value, and the
#: numbers of the system calls that create processes: fork, vfork (x86-64 only),
#: clone, clone3.
_PROCESS_SYSCALLS = {
    "x86_64": (0xC000003E, (57, 58), 56, 435),
    "aarch64": (0xC00000B7, (), 220, 435),
}


def _forbid_new_processes(libc: ctypes.CDLL) -> bool:
    """Make every way of creating a process fail with ``EAGAIN`` in this process and
    its threads, while threads still work (spec 0006 #custom-worker): a seccomp
    filter, so it holds for root too (``RLIMIT_NPROC`` does not bind root, and counts
    threads). ``clone3`` answers ``ENOSYS``, so the C library falls back to ``clone``,
    allowed only with ``CLONE_THREAD``. Linux on x86-64 and aarch64 only; elsewhere
    the reader's bounded close is what remains. True if installed."""
    spec = _PROCESS_SYSCALLS.get(os.uname().machine)
    if spec is None:
        return False
    arch, forks, clone, clone3 = spec
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF opcodes
    allow, deny = 0x7FFF0000, 0x00050000  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    # (opcode, k, label if true, label if false); labels resolved below.
    program: list[tuple[int, int, str, str]] = [
        (ld, 4, "", ""),  # seccomp_data.arch
        (jeq, arch, "", "enosys"),  # another ABI (i386 on x86-64): none of it
        (ld, 0, "", ""),  # seccomp_data.nr
        (jge, 0x40000000, "eagain", ""),  # the x32 ABI
        *((jeq, nr, "eagain", "") for nr in forks),
        (jeq, clone3, "enosys", ""),
        (jeq, clone, "", "allow"),
        (ld, 16, "", ""),  # low half of args[0], the clone flags (little-endian)
        (jset, 0x00010000, "allow", "eagain"),  # CLONE_THREAD
    ]
    returns = {"allow": allow, "eagain": deny | errno.EAGAIN, "enosys": deny | errno.ENOSYS}
    at = {name: len(program) + i for i, name in enumerate(returns)}

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [
            ("len", ctypes.c_ushort),
            ("filter", ctypes.POINTER(SockFilter)),
        ]

    def jump(pc: int, label: str) -> int:
        return at[label] - pc - 1 if label else 0

    code = [SockFilter(op, jump(pc, t), jump(pc, f), k) for pc, (op, k, t, f) in enumerate(program)]
    code += [SockFilter(ret, 0, 0, k) for k in returns.values()]
    filters = (SockFilter * len(code))(*code)
    prog = SockFprog(len(code), filters)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, required without root
        return False
    return bool(libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0)  # PR_SET_SECCOMP, FILTER


def _describe(exc: BaseException, *, prepare: bool) -> str:
    """What the pipeline says about a filter's exception (its ``str`` is the filter's
    code too, so a failing one is contained)."""
    try:
        text = f"raised {exc!r}" if prepare else f"raised {type(exc).__name__}: {exc}"
    except Exception:
        text = f"raised {type(exc).__name__}"
    return text[:300]


def _call(
    loop: asyncio.AbstractEventLoop, fn: Any, arg: Any, seconds: float, *, prepare: bool
) -> dict[str, Any]:
    """Call ``fn(arg)`` (awaiting what it returns) within ``seconds``: the reply."""
    start = time.monotonic()
    try:
        with _interrupt_after(seconds + _ALARM_SLACK_S):
            result = fn(arg)
            if inspect.isawaitable(result):
                left = max(seconds - (time.monotonic() - start), 0.0)
                result = loop.run_until_complete(asyncio.wait_for(_awaited(result), left))
    except (TimeoutError, _Interrupted):
        return {"timeout": True}
    except BaseException as exc:  # someone else's code: contain it
        return {"failed": _describe(exc, prepare=prepare)}
    if prepare:
        return {"ok": True}
    # How long the check took: a check answered ahead counts it against the item's
    # budget as a live call would have (spec 0006 #worker-reuse).
    spent = time.monotonic() - start
    if result is None:
        return {"decision": None, "spent_s": spent}
    if not isinstance(result, Decision):
        return {"failed": f"returned {type(result).__name__}, not a Decision or None"}
    try:
        return {
            "decision": {
                "action": str(result.action.value),
                "reason": str(result.reason),
                "source": str(result.source),
                "source_kind": str(result.source_kind.value),
            },
            "spent_s": spent,
        }
    except Exception:  # a Decision built with fields of the wrong types
        return {"failed": "returned a Decision with bad fields"}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _Session:
    def __init__(self, channel: _Channel, instance: Any) -> None:
        self.channel = channel
        self.instance = instance
        self.items: list[Item] = []
        self.follows: list[frozenset[str]] = []
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        #: The id of the reader's request being served (every reply carries it).
        self.call_id = 0
        #: Checks the reader sent ahead, read while waiting for a lookup's answer.
        self.pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._lookups = 0

    async def latest_list(self, author: str, name: str) -> Event | None:
        """``Env.latest_list``, answered by the reader (blocking this worker meanwhile).

        The call's ``SIGALRM`` is held back until the answer is read: interrupting the
        wait would leave the answer in the pipe, to be read in place of the next
        request (the reader is itself bounded by its hard deadline). Should an answer
        to another lookup come first anyway, it is dropped: the answer is matched by
        call id and lookup number (spec 0006 #custom-worker)."""
        self._lookups += 1
        call_id, lookup = self.call_id, self._lookups
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self.channel.send(
                {
                    "id": call_id,
                    "call": "latest_list",
                    "lookup": lookup,
                    "author": str(author),
                    "name": str(name),
                }
            )
            while True:
                frame = self.channel.receive()
                if frame[0] == "check":  # sent ahead by the reader (check_ahead): later
                    self.pending.append(frame)
                    continue
                if frame[0] != "list":
                    os._exit(_OUT_OF_STEP)  # a request while one is served: not the reader
                if frame[1:3] == (call_id, lookup):
                    break
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        event = frame[3]
        return event if isinstance(event, Event) else None

    def prepare(self, request: tuple[Any, ...]) -> dict[str, Any]:
        _, _, viewer, now_ms, context, follows, home, seconds = request
        # A new view: the reader sends its items afresh (spec 0006 #worker-reuse).
        self.items.clear()
        self.follows.clear()
        prepare = getattr(self.instance, "prepare", None)
        if not callable(prepare):
            return {"ok": True}
        env = Env(
            viewer=viewer,
            now_ms=now_ms,
            context=ViewContext(context),
            follows=follows,
            home=home,
            latest_list=self.latest_list,
        )
        return _call(self.loop, prepare, env, seconds, prepare=True)

    def check(self, request: tuple[Any, ...]) -> dict[str, Any]:
        _, _, records, root, seconds = request
        for record in records:
            event, context, viewer, follows_ref, profile, labels, embeds, now_ms, age = record
            if isinstance(follows_ref, tuple):
                self.follows.append(follows_ref[1])
                follows = follows_ref[1]
            else:
                follows = self.follows[follows_ref]
            self.items.append(
                Item(
                    event=event,
                    context=ViewContext(context),
                    viewer=viewer,
                    follows=follows,
                    profile=profile,
                    labels=labels,
                    embeds={role: self.items[i] for role, i in embeds.items()},
                    now_ms=now_ms,
                    author_first_seen_ms=age[0],
                    author_first_ts=age[1],
                )
            )
        return _call(self.loop, self.instance.check, self.items[root], seconds, prepare=False)


def main() -> None:
    channel = _isolate_streams()
    try:
        request = channel.receive()
    except EOFError:
        return
    _, call_id, type_, params, label, memory_bytes = request
    _limit(memory_bytes)
    with _alarm_handler():
        try:
            instance = instantiate(FilterSpec(name=label, type=type_, params=params), {})
        except FilterError as exc:
            channel.send({"id": call_id, "error": exc.code, "message": exc.message})
            return
        try:
            name = getattr(instance, "name", "")
            name = name if isinstance(name, str) else ""
        except Exception:
            name = ""
        channel.send({"id": call_id, "ok": True, "name": name[:200]})
        session = _Session(channel, instance)
        while True:
            try:
                request = session.pending.popleft() if session.pending else channel.receive()
            except EOFError:
                return
            kind, session.call_id = request[0], request[1]
            if kind == "list":
                continue  # the answer to a lookup of a call that ended: stale, dropped
            if kind == "prepare":
                reply = session.prepare(request)
            elif kind == "check":
                reply = session.check(request)
            else:
                reply = {"failed": f"unknown request {kind!r}"}
            channel.send({**reply, "id": session.call_id})
