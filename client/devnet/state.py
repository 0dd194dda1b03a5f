"""``DIR/devnet.json`` and the process checks built on it.

The supervisor writes the state file when its nodes are spawned and rewrites it on
every restart (a node's pid changes); it removes the file when it stops cleanly. The
file is how other terminals find the devnet: ``murmur devnet status`` reads URLs from
it, ``murmur devnet down`` the pids to signal.

A pid in the file may be stale (the process died, the pid was reused by something
else). Before signalling a pid, :func:`is_supervisor` and :func:`is_node` check on
Linux that its command line is the one the devnet started (``/proc/PID/cmdline``); a
zombie counts as gone. Where ``/proc`` does not exist the pid is trusted.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client.devnet.plan import DevnetError, DevnetPlan
from client.files import atomic_write

__all__ = [
    "STATE_FILE",
    "DevnetState",
    "NodeState",
    "is_node",
    "is_supervisor",
    "kill_quietly",
    "pid_alive",
    "wait_gone",
]

STATE_FILE = "devnet.json"
#: Poll interval of the deadline loops that wait for processes to exit.
POLL_S = 0.05
_PROC = Path("/proc")


@dataclass(slots=True, kw_only=True)
class NodeState:
    name: str
    url: str
    port: int
    pid: int | None
    data_dir: str
    log: str
    peers: list[str]
    restarts: int = 0


@dataclass(slots=True, kw_only=True)
class DevnetState:
    """What ``devnet.json`` holds: the supervisor's pid and each node's pid and URL."""

    dir: Path
    supervisor_pid: int
    topology: str
    base_port: int
    started_ms: int
    client_home: str
    nodes: list[NodeState] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.dir / STATE_FILE

    @classmethod
    def from_plan(cls, plan: DevnetPlan, *, supervisor_pid: int) -> DevnetState:
        return cls(
            dir=plan.dir,
            supervisor_pid=supervisor_pid,
            topology=plan.topology.value,
            base_port=plan.base_port,
            started_ms=time.time_ns() // 1_000_000,
            client_home=str(plan.client_home),
            nodes=[
                NodeState(
                    name=n.name,
                    url=n.url,
                    port=n.port,
                    pid=None,
                    data_dir=str(n.data_dir),
                    log=str(n.log_path),
                    peers=list(n.peers),
                )
                for n in plan.nodes
            ],
        )

    def node(self, name: str) -> NodeState:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": str(self.dir),
            "supervisor_pid": self.supervisor_pid,
            "topology": self.topology,
            "base_port": self.base_port,
            "started_ms": self.started_ms,
            "client_home": self.client_home,
            "nodes": [asdict(n) for n in self.nodes],
        }

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_json(), indent=2).encode() + b"\n"
        atomic_write(self.path, data, mode=0o644)

    @classmethod
    def load(cls, dir: Path) -> DevnetState | None:
        """The state in ``dir``, None when there is none; ``DevnetError`` when unreadable."""
        path = dir / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DevnetError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            doc = json.loads(raw)
            return cls(
                dir=dir,
                supervisor_pid=int(doc["supervisor_pid"]),
                topology=str(doc["topology"]),
                base_port=int(doc["base_port"]),
                started_ms=int(doc["started_ms"]),
                client_home=str(doc["client_home"]),
                nodes=[NodeState(**n) for n in doc["nodes"]],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DevnetError(
                f"{path} is not a devnet state file ({type(exc).__name__}: {exc}); "
                "stop any node it started by hand and delete it"
            ) from exc

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# -- processes ---------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (exited, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as someone else's process
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return not _PROC.is_dir()  # it went away meanwhile, or there is no /proc
    except OSError:
        return True
    # "pid (comm) state ...": comm may contain spaces and parentheses, state follows the last ")".
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _cmdline(pid: int) -> list[str] | None:
    """The arguments of ``pid``; None where that cannot be known (no /proc)."""
    if not _PROC.is_dir():
        return None
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_supervisor(pid: int) -> bool:
    """Whether ``pid`` is alive and is a ``murmur devnet`` process."""
    if not pid_alive(pid):
        return False
    args = _cmdline(pid)
    return args is None or "devnet" in args


def is_node(pid: int | None, data_dir: str) -> bool:
    """Whether ``pid`` is alive and is the node process serving ``data_dir``."""
    if pid is None or not pid_alive(pid):
        return False
    args = _cmdline(pid)
    return args is None or data_dir in args


def kill_quietly(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``; a process that is already gone is not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pids: Iterable[int], deadline_s: float) -> list[int]:
    """Poll until none of ``pids`` is alive or ``deadline_s`` passes; the ones still alive."""
    waiting = [p for p in pids if pid_alive(p)]
    end = time.monotonic() + deadline_s
    while waiting and time.monotonic() < end:
        time.sleep(POLL_S)  # poll interval of a deadline loop on process exit
        waiting = [p for p in waiting if pid_alive(p)]
    return waiting
