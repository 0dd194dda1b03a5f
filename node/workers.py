"""``murmur node run --workers N``: one node served by N processes sharing its port.

The parent process holds the port (a bound, never listening ``SO_REUSEPORT`` socket, so
``--port 0`` resolves to one port for all) and starts N ``python -m node run`` workers
with the same arguments and ``MURMUR_WORKER`` set; each binds the port with
``SO_REUSEPORT`` and the kernel spreads new connections over them. They share the node
through its PostgreSQL database (spec 0004 #store-processes, :mod:`node.cluster`). A
worker that dies is started again after :data:`RESTART_DELAY_S`; SIGINT or SIGTERM is
passed on to every worker, and the parent exits once they have.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Final

from node.config import NodeConfig

__all__ = ["MAX_WORKERS", "RESTART_DELAY_S", "WORKER_ENV", "run_workers"]

log = logging.getLogger("murmur.node.workers")

#: Set in a worker's environment (to its number): bind with SO_REUSEPORT.
WORKER_ENV: Final = "MURMUR_WORKER"
MAX_WORKERS: Final = 64
#: Seconds before a dead worker is started again (a crash loop stays slow).
RESTART_DELAY_S: Final = 1.0
#: Seconds between the supervisor's looks at its workers.
_TICK_S: Final = 0.2
#: Seconds the workers get to finish after SIGTERM before they are killed.
_STOP_GRACE_S: Final = 15.0


def _hold_port(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """In a worker, before exec: SIGTERM when the supervisor dies (even by kill -9), so
    no worker outlives it holding the port (Linux ``PR_SET_PDEATHSIG``)."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_workers(config: NodeConfig, count: int, argv: list[str]) -> int:
    """Supervise ``count`` workers running ``node run *argv`` until SIGINT/SIGTERM."""
    try:
        holder = _hold_port(config.host, config.port)
    except OSError as exc:
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"murmur node: cannot listen on {config.host}:{config.port}: {reason}",
              file=sys.stderr)  # fmt: skip
        return 1
    port = holder.getsockname()[1]
    cmd = [sys.executable, "-m", "node", "run", *argv, "--port", str(port)]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn(k: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # noqa: S603 - our own argv
            cmd, env={**os.environ, WORKER_ENV: str(k)}, preexec_fn=_die_with_parent
        )
        log.info("worker started n=%d pid=%d port=%d", k, proc.pid, port)
        return proc

    workers = {k: spawn(k) for k in range(count)}
    dead_since: dict[int, float] = {}
    try:
        while not stopping:
            time.sleep(_TICK_S)  # the supervisor's period, not a synchronisation
            now = time.monotonic()
            for k, proc in workers.items():
                code = proc.poll()
                if code is None:
                    continue
                if k not in dead_since:
                    log.warning("worker exited n=%d pid=%d code=%d", k, proc.pid, code)
                    dead_since[k] = now
                elif now - dead_since[k] >= RESTART_DELAY_S and not stopping:
                    del dead_since[k]
                    workers[k] = spawn(k)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + _STOP_GRACE_S
        for proc in workers.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        holder.close()
        log.info("workers stopped")
    return 0
