"""The foreground process of ``murmur devnet up``: start the nodes, keep them up, stop them.

:func:`run_devnet` runs one asyncio loop until SIGINT or SIGTERM:

1. spawn every node (``python -m node run``, its output appended to
   ``DIR/nodeK/node.log``, in its own session so that a Ctrl-C in the terminal reaches
   the supervisor only) and write ``DIR/devnet.json``;
2. wait until every node answers ``GET /health`` (a deadline loop; a node that exits
   or stays silent fails the start with the tail of its log, and the others are
   stopped);
3. call ``on_ready`` and, in a worker thread, ``after_ready`` (the demo seeding);
4. restart a node that exits while nobody asked it to, after a delay that doubles with
   each crash in a row (:func:`restart_delay`), so a crash-looping node does not spin;
5. on the signal: SIGTERM to every node, wait up to :data:`STOP_DEADLINE_S`, SIGKILL
   what is left, remove ``devnet.json``.

What happens is reported through ``notify`` (one line each) and logged; printing is
the CLI's business. ``node/`` is never imported (the layers rule in DESIGN.md): the
node runs as ``python -m node``, found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from client.devnet.plan import DevnetError, DevnetPlan, NodePlan, node_argv, node_config_toml
from client.devnet.state import DevnetState

__all__ = [
    "RESTART_BASE_S",
    "RESTART_MAX_S",
    "STABLE_AFTER_S",
    "STARTUP_DEADLINE_S",
    "STOP_DEADLINE_S",
    "StopReport",
    "log_tail",
    "node_env",
    "restart_delay",
    "run_devnet",
]

log = logging.getLogger("murmur.devnet")

#: How long a node may take from spawn to a healthy ``/health``.
STARTUP_DEADLINE_S = 30.0
#: How long stopping nodes get after SIGTERM (a node drains for up to 10 s) before SIGKILL.
STOP_DEADLINE_S = 15.0
#: Restart delays: 0.5 s after a crash, doubling with each crash in a row, at most 30 s.
RESTART_BASE_S = 0.5
RESTART_MAX_S = 30.0
#: A node that ran this long before it exited starts its crash count afresh.
STABLE_AFTER_S = 30.0
#: Poll interval of the health deadline loop.
HEALTH_POLL_S = 0.1
#: Lines of a node's log quoted in an error.
LOG_TAIL_LINES = 20


def restart_delay(crashes: int) -> float:
    """Seconds to wait before restarting a node that crashed ``crashes`` times in a row."""
    return float(min(RESTART_MAX_S, RESTART_BASE_S * 2 ** max(0, crashes - 1)))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` (a node log), indented; a note if unreadable."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"  (cannot read {path}: {exc.strerror})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) if tail else "  (the log is empty)"


def node_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of node processes: ``PYTHONPATH`` leads to this ``node`` package."""
    spec = importlib.util.find_spec("node")
    if spec is None or spec.origin is None:
        raise DevnetError(
            "the node package is not installed, so there is nothing to run: "
            "install Murmur with its node (pip install -e . in the source tree)"
        )
    root = str(Path(spec.origin).resolve().parent.parent)
    env = dict(os.environ if base is None else base)
    paths = [root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@dataclass(frozen=True, slots=True, kw_only=True)
class StopReport:
    """How the devnet ended: nodes stopped by SIGTERM, and those that needed SIGKILL."""

    stopped: tuple[str, ...]
    killed: tuple[str, ...]


@dataclass(slots=True)
class _Node:
    plan: NodePlan
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    crashes: int = 0
    restarts: int = 0


class Supervisor:
    """The node processes of one devnet (the async engine of :func:`run_devnet`)."""

    def __init__(
        self,
        plan: DevnetPlan,
        http: httpx.AsyncClient,
        *,
        notify: Callable[[str], None],
        python: str = sys.executable,
        startup_deadline_s: float = STARTUP_DEADLINE_S,
    ) -> None:
        self.plan = plan
        self.http = http
        self.notify = notify
        self.python = python
        self.startup_deadline_s = startup_deadline_s
        self.env = node_env()
        self.state = DevnetState.from_plan(plan, supervisor_pid=os.getpid())
        self.nodes = [_Node(n) for n in plan.nodes]
        self.stopping = asyncio.Event()  # set once shutdown() begins

    async def start(self) -> None:
        """Spawn every node and wait until all are healthy; ``DevnetError`` if one is not."""
        for node in self.nodes:
            node.plan.data_dir.mkdir(parents=True, exist_ok=True)
            node.plan.config_path.write_text(node_config_toml(self.plan.feeds))
        for node in self.nodes:
            await self._spawn(node)
        results = await asyncio.gather(
            *(self._wait_healthy(n) for n in self.nodes), return_exceptions=True
        )
        failed = [(n, r) for n, r in zip(self.nodes, results, strict=True) if r is not None]
        for _, error in failed:
            if not isinstance(error, DevnetError):
                raise error
        if failed:
            first = failed[0][1]
            assert isinstance(first, DevnetError)  # noqa: S101 - checked just above
            others = ", ".join(n.plan.name for n, _ in failed[1:])
            raise DevnetError(
                first.message + (f"\n(also failed to start: {others})" if others else "")
            )
        log.info("devnet up dir=%s nodes=%d", self.plan.dir, len(self.nodes))

    async def _spawn(self, node: _Node) -> None:
        p = node.plan
        argv = node_argv(p, python=self.python)
        stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        with p.log_path.open("ab") as out:
            out.write(f"--- murmur devnet: starting {p.name} at {stamp} ---\n".encode())
            out.flush()
            node.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.plan.dir,
                start_new_session=True,  # Ctrl-C in the terminal is the supervisor's to handle
            )
        node.started = time.monotonic()
        entry = self.state.node(p.name)
        entry.pid, entry.restarts = node.proc.pid, node.restarts
        self.state.save()
        log.info("node spawned name=%s pid=%d url=%s", p.name, node.proc.pid, p.url)

    async def _wait_healthy(self, node: _Node) -> None:
        p, proc = node.plan, node.proc
        assert proc is not None  # noqa: S101 - spawned before
        end = time.monotonic() + self.startup_deadline_s
        while True:
            if proc.returncode is not None:
                raise DevnetError(
                    f"{p.name} exited with code {proc.returncode} while starting on port "
                    f"{p.port}; the end of {p.log_path}:\n{log_tail(p.log_path)}"
                )
            try:
                response = await self.http.get(p.url + "/health", timeout=1.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= end:
                raise DevnetError(
                    f"{p.name} did not answer {p.url}/health within "
                    f"{self.startup_deadline_s:g} s; the end of {p.log_path}:\n"
                    f"{log_tail(p.log_path)}"
                )
            await asyncio.sleep(HEALTH_POLL_S)  # poll interval of a deadline loop

    async def watch(self, node: _Node, stop: asyncio.Event) -> None:
        """Restart ``node`` whenever it exits, until the devnet stops."""
        p = node.plan
        while not self.stopping.is_set():
            assert node.proc is not None  # noqa: S101 - spawned by start()
            code = await node.proc.wait()
            if self.stopping.is_set():
                return
            ran = time.monotonic() - node.started
            node.crashes = node.crashes + 1 if ran < STABLE_AFTER_S else 1
            delay = restart_delay(node.crashes)
            log.info("node exited name=%s code=%s ran_s=%.1f", p.name, code, ran)
            self.notify(
                f"{p.name} exited (code {code}); restarting"
                + (f" in {delay:g} s (crash {node.crashes} in a row)" if delay >= 1 else "")
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)  # a backoff, cut short by stop
            if self.stopping.is_set() or stop.is_set():
                return
            node.restarts += 1
            await self._spawn(node)
            try:
                await self._wait_healthy(node)
            except DevnetError as exc:
                self.notify(f"{p.name} did not come back: {exc.message}")
                if node.proc.returncode is None:
                    node.proc.kill()  # hung: counts as a crash, restarted after the backoff
                continue
            self.notify(f"{p.name} is back at {p.url} (pid {node.proc.pid})")

    async def shutdown(self) -> StopReport:
        """SIGTERM every node, SIGKILL those still running after the deadline."""
        self.stopping.set()
        running = [n for n in self.nodes if n.proc is not None and n.proc.returncode is None]
        for n in running:
            assert n.proc is not None  # noqa: S101
            with contextlib.suppress(ProcessLookupError):
                n.proc.send_signal(signal.SIGTERM)
        waits = {asyncio.ensure_future(n.proc.wait()): n for n in running if n.proc is not None}
        killed: list[str] = []
        if waits:
            _, pending = await asyncio.wait(waits, timeout=STOP_DEADLINE_S)
            for task in pending:
                n = waits[task]
                assert n.proc is not None  # noqa: S101
                log.warning("node did not stop in time name=%s; killing it", n.plan.name)
                with contextlib.suppress(ProcessLookupError):
                    n.proc.kill()
                killed.append(n.plan.name)
            if pending:
                await asyncio.wait(pending)
        self.state.remove()
        stopped = tuple(n.plan.name for n in running if n.plan.name not in killed)
        return StopReport(stopped=stopped, killed=tuple(killed))


def run_devnet(
    plan: DevnetPlan,
    *,
    notify: Callable[[str], None],
    on_ready: Callable[[DevnetState], None],
    after_ready: Callable[[threading.Event], None] | None = None,
    python: str = sys.executable,
) -> StopReport:
    """Run the devnet of ``plan`` in the foreground until SIGINT or SIGTERM.

    ``on_ready`` is called once every node is healthy; then ``after_ready`` runs in a
    worker thread (it may block and call ``asyncio.run``); the event it gets is set
    when the devnet stops, so it can give up early. Raises ``DevnetError`` (after
    stopping whatever started) when the devnet cannot start.
    """

    async def main() -> StopReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        cancelled = threading.Event()
        tasks: list[asyncio.Task[None]] = []
        async with httpx.AsyncClient(follow_redirects=False) as http:
            sup = Supervisor(plan, http, notify=notify, python=python)
            try:
                starting = asyncio.ensure_future(sup.start())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not starting.done():  # interrupted while starting
                    starting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await starting
                else:
                    starting.result()  # raises DevnetError
                    on_ready(sup.state)
                    tasks = [asyncio.create_task(sup.watch(n, stop)) for n in sup.nodes]
                    if after_ready is not None:
                        tasks.append(asyncio.create_task(_in_thread(after_ready, cancelled)))
                    await stop.wait()
                log.info("devnet stopping dir=%s", plan.dir)
            finally:
                cancelled.set()
                for task in tasks:
                    task.cancel()
                report = await sup.shutdown()
                await asyncio.gather(*tasks, return_exceptions=True)
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        return report

    return asyncio.run(main())


async def _in_thread(fn: Callable[[threading.Event], None], cancelled: threading.Event) -> None:
    try:
        await asyncio.to_thread(fn, cancelled)
    except Exception:  # the devnet outlives a failed seeding; say why in the log
        log.exception("after_ready failed")
