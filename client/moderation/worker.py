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
import contextlib
import ctypes
import inspect
import json
import os
import pickle
import resource
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
        size = int.from_bytes(self._read(4), "big")
        request = pickle.loads(self._read(size))  # noqa: S301 - from the reader, trusted
        if not isinstance(request, tuple) or not request:
            raise EOFError  # not the reader speaking: stop
        return request

    def send(self, doc: dict[str, Any]) -> None:
        os.write(self.wfd, encode_frame(json.dumps(doc).encode("utf-8")))


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
        if os.getppid() != parent:  # the reader died before the prctl
            os._exit(0)


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
    if result is None:
        return {"decision": None}
    if not isinstance(result, Decision):
        return {"failed": f"returned {type(result).__name__}, not a Decision or None"}
    try:
        return {
            "decision": {
                "action": str(result.action.value),
                "reason": str(result.reason),
                "source": str(result.source),
                "source_kind": str(result.source_kind.value),
            }
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

    async def latest_list(self, author: str, name: str) -> Event | None:
        """``Env.latest_list``, answered by the reader (blocking this worker meanwhile)."""
        self.channel.send({"call": "latest_list", "author": str(author), "name": str(name)})
        reply = self.channel.receive()
        event = reply[1]
        return event if isinstance(event, Event) else None

    def prepare(self, request: tuple[Any, ...]) -> dict[str, Any]:
        _, viewer, now_ms, context, follows, home, seconds = request
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
        _, records, root, seconds = request
        for event, context, viewer, follows_ref, profile, labels, embeds, now_ms in records:
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
                )
            )
        return _call(self.loop, self.instance.check, self.items[root], seconds, prepare=False)


def main() -> None:
    channel = _isolate_streams()
    try:
        request = channel.receive()
    except EOFError:
        return
    _, type_, params, label, memory_bytes = request
    _limit(memory_bytes)
    with _alarm_handler():
        try:
            instance = instantiate(FilterSpec(name=label, type=type_, params=params), {})
        except FilterError as exc:
            channel.send({"error": exc.code, "message": exc.message})
            return
        try:
            name = getattr(instance, "name", "")
            name = name if isinstance(name, str) else ""
        except Exception:
            name = ""
        channel.send({"ok": True, "name": name[:200]})
        session = _Session(channel, instance)
        while True:
            try:
                request = channel.receive()
            except EOFError:
                return
            if request[0] == "prepare":
                reply = session.prepare(request)
            elif request[0] == "check":
                reply = session.check(request)
            else:
                reply = {"failed": f"unknown request {request[0]!r}"}
            channel.send(reply)
