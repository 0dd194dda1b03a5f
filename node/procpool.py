"""Worker processes fed by the event loop itself, over sockets, without helper threads.

:class:`concurrent.futures.ProcessPoolExecutor` runs two threads in the parent (a queue
feeder and a manager) and wakes them for every job: about 200 µs of the parent's CPU a
job on this class of machine, more than checking one event, and every wake-up contends
for the interpreter lock with the event loop and the store's writer. Here each worker
is a process at the other end of a Unix socket pair; the loop writes a job as one
length-prefixed pickle frame and reads the results from a stream, in the order the
worker took the jobs. The only per-job work in the parent is a pickle, a write and a
read callback.

Workers are started from a clean ``forkserver`` (never a fork of the node, which has
threads and open databases), by :meth:`ProcessPool.start` or else at the first job. A
worker that dies (killed, out of memory) fails only the jobs it held, with
:class:`WorkerDiedError`, and is replaced at the next job. Frames come from our own
children and are bounded only by the jobs we send them; nothing a peer sends reaches a
worker but the wire bytes inside a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Final, Generic, TypeVar

__all__ = ["ProcessPool", "WorkerDiedError"]

log = logging.getLogger("murmur.node.procpool")

J = TypeVar("J")
R = TypeVar("R")

_LEN: Final = struct.Struct("!Q")
#: Seconds a stopping worker gets to exit after its socket is closed.
_STOP_GRACE_S: Final = 5.0


class WorkerDiedError(RuntimeError):
    """The worker process holding a job exited before answering it."""


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _serve(sock: socket.socket, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A worker's life: read a job, answer ``fn(job, *args)``, until the socket closes.

    ^C belongs to the node, which stops its workers; and a worker never outlives its
    parent (Linux ``PR_SET_PDEATHSIG``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    with sock:
        while True:
            try:
                head = _recv_exactly(sock, _LEN.size)
            except OSError:  # reset by the node's end
                return
            if head is None:
                return
            body = _recv_exactly(sock, _LEN.unpack(head)[0])
            if body is None:
                return
            try:
                answer: tuple[bool, Any] = (True, fn(pickle.loads(body), *args))  # noqa: S301 - from our parent
            except Exception as exc:
                answer = (False, exc)
            out = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                sock.sendall(_LEN.pack(len(out)) + out)
            except OSError:  # the node closed its end (stopping): nobody waits for it
                return


@dataclass(eq=False)
class _Worker(Generic[R]):
    process: BaseProcess
    writer: asyncio.StreamWriter
    pending: deque[asyncio.Future[R]] = field(default_factory=deque)
    reader_task: asyncio.Task[None] | None = None
    alive: bool = True


class ProcessPool(Generic[J, R]):
    """``workers`` processes each running ``fn(job, *args)`` on the jobs given to
    :meth:`run`. ``fn`` must be a module-level function (workers import it)."""

    def __init__(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        *,
        workers: int,
        preload: tuple[str, ...] = (),
    ) -> None:
        if workers < 1:
            raise ValueError("a process pool needs at least one worker")
        self._fn = fn
        self._args = args
        self._size = workers
        self._context: ForkServerContext | SpawnContext
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._context = multiprocessing.get_context("forkserver")
            if preload:
                self._context.set_forkserver_preload(list(preload))
        else:
            self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker[R]] = []
        self._starting = asyncio.Lock()
        self._closed = False
        #: Workers that died (each is replaced at the next job).
        self.restarts = 0

    async def start(self) -> None:
        """Start the workers now (else the first job starts them): a node starts its
        before it listens, so that no request waits for a process to start."""
        await self._pick()

    def pids(self) -> list[int]:
        """The live workers' process ids (tests, diagnostics)."""
        return [w.process.pid for w in self._workers if w.alive and w.process.pid is not None]

    async def run(self, job: J) -> R:
        """``fn(job, *args)`` in the least busy worker; raises what it raised, or
        :class:`WorkerDiedError` if the worker died holding the job."""
        if self._closed:
            raise RuntimeError("the process pool is closed")
        worker = await self._pick()
        frame = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        worker.pending.append(done)
        worker.writer.write(_LEN.pack(len(frame)) + frame)
        # Flow control: a worker reads as fast as it works; wait only when its
        # socket's buffer is full. If it died meanwhile, its reader fails ``done``.
        with contextlib.suppress(ConnectionError):
            await worker.writer.drain()
        return await done

    async def _pick(self) -> _Worker[R]:
        if len(self._workers) < self._size or not all(w.alive for w in self._workers):
            async with self._starting:  # one caller starts what is missing
                self._workers = [w for w in self._workers if w.alive]
                while len(self._workers) < self._size:
                    self._workers.append(await self._start())
        return min(self._workers, key=lambda w: len(w.pending))

    async def _start(self) -> _Worker[R]:
        parent, child = socket.socketpair()
        try:
            process = self._context.Process(
                target=_serve, args=(child, self._fn, self._args), daemon=True
            )
            # Starting a worker forks the forkserver (the first time, starts it): done
            # off the loop.
            await asyncio.get_running_loop().run_in_executor(None, process.start)
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker: _Worker[R] = _Worker(process=process, writer=writer)
        worker.reader_task = asyncio.get_running_loop().create_task(
            self._read_answers(worker, reader)
        )
        log.debug("verify worker started pid=%s", process.pid)
        return worker

    async def _read_answers(self, worker: _Worker[R], reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(_LEN.size)
                frame = await reader.readexactly(_LEN.unpack(head)[0])
                ok, value = pickle.loads(frame)  # noqa: S301 - from our own child
                done = worker.pending.popleft()
                if done.done():
                    continue
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            worker.alive = False
            died = not self._closed
            if died:
                self.restarts += 1
                log.warning(
                    "worker process died pid=%s jobs_lost=%d", worker.process.pid,
                    len(worker.pending),
                )  # fmt: skip
            while worker.pending:
                done = worker.pending.popleft()
                if not done.done():
                    done.set_exception(WorkerDiedError("the worker process holding it died"))
            worker.writer.close()
            if died:  # reap it off the loop: it may take a moment to exit
                with contextlib.suppress(RuntimeError):
                    asyncio.get_running_loop().run_in_executor(None, _reap, worker.process)

    async def close(self) -> None:
        """Stop every worker: close their sockets (they exit on EOF once their job is
        done), reap them (killed after a grace period), then their readers."""
        self._closed = True
        workers, self._workers = self._workers, []
        for w in workers:
            w.writer.close()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, _reap, w.process) for w in workers))
        for w in workers:
            if w.reader_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await w.reader_task  # ends at EOF: its process has exited


def _reap(process: BaseProcess) -> None:
    process.join(_STOP_GRACE_S)
    if process.exitcode is None:
        process.kill()
        process.join()
