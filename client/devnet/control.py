"""Commands that act on a devnet from outside: check before ``up``, ``status``, ``down``.

:func:`prepare` runs before anything starts: a ``devnet.json`` whose supervisor is
alive means a devnet already runs in the directory (an error); one whose supervisor is
gone is stale (its surviving nodes are stopped, the file is removed, and a note says
so); then every port must be free. :func:`stop_devnet` is ``down``: SIGTERM to the
supervisor, which stops its nodes, and a deadline after which whatever is left gets
SIGKILL. :func:`devnet_status` asks every node for its health, event count and peers.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from client.devnet.plan import DevnetError, DevnetPlan, check_ports
from client.devnet.state import (
    DevnetState,
    NodeState,
    is_node,
    is_supervisor,
    kill_quietly,
    pid_alive,
    wait_gone,
)
from client.devnet.supervisor import STOP_DEADLINE_S

__all__ = ["DownReport", "devnet_status", "prepare", "stop_devnet"]

#: ``down`` waits this long for the supervisor (which itself waits up to
#: ``STOP_DEADLINE_S`` for its nodes) before it kills what is left.
DOWN_DEADLINE_S = STOP_DEADLINE_S + 5.0
#: Timeout of each status request.
STATUS_TIMEOUT_S = 2.0


def _live_nodes(state: DevnetState) -> list[tuple[str, int]]:
    return [
        (n.name, n.pid) for n in state.nodes if n.pid is not None and is_node(n.pid, n.data_dir)
    ]


def prepare(plan: DevnetPlan) -> list[str]:
    """Make ``plan.dir`` ready for ``up``; notes for the user. ``DevnetError`` if it is not."""
    notes: list[str] = []
    state = DevnetState.load(plan.dir)
    if state is not None:
        if is_supervisor(state.supervisor_pid):
            raise DevnetError(
                f"a devnet is already running in {plan.dir} (pid {state.supervisor_pid}); "
                f"stop it with: murmur devnet down --dir {plan.dir}"
            )
        leftovers = _live_nodes(state)
        for _, pid in leftovers:
            kill_quietly(pid, signal.SIGTERM)
        stuck = wait_gone([pid for _, pid in leftovers], STOP_DEADLINE_S)
        for pid in stuck:
            kill_quietly(pid, signal.SIGKILL)
        wait_gone(stuck, 5.0)
        state.remove()
        note = (
            f"removed a stale {state.path.name} (its supervisor, pid {state.supervisor_pid}, "
            "is gone)"
        )
        if leftovers:
            note += f" and stopped its leftover node(s) {', '.join(n for n, _ in leftovers)}"
        notes.append(note)
    check_ports([n.port for n in plan.nodes], base_port=plan.base_port, count=len(plan.nodes))
    return notes


@dataclass(frozen=True, slots=True, kw_only=True)
class DownReport:
    """What ``down`` did: whether a devnet was there, and what needed SIGKILL."""

    dir: Path
    found: bool
    supervisor_pid: int | None = None
    supervisor_was_running: bool = False
    nodes: tuple[str, ...] = ()
    killed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": str(self.dir),
            "found": self.found,
            "supervisor_pid": self.supervisor_pid,
            "supervisor_was_running": self.supervisor_was_running,
            "nodes": list(self.nodes),
            "killed": list(self.killed),
        }


def stop_devnet(dir: Path, *, deadline_s: float = DOWN_DEADLINE_S) -> DownReport:
    """Stop the devnet in ``dir`` and wait until its supervisor and nodes are gone."""
    root = dir.expanduser().absolute()
    state = DevnetState.load(root)
    if state is None:
        return DownReport(dir=root, found=False)
    sup = state.supervisor_pid
    names = tuple(n.name for n in state.nodes)
    nodes = _live_nodes(state)
    killed: list[str] = []
    sup_running = is_supervisor(sup)
    if sup_running:
        kill_quietly(sup, signal.SIGTERM)  # it stops its nodes and removes the state file
        if wait_gone([sup], deadline_s):
            kill_quietly(sup, signal.SIGKILL)
            killed.append(f"supervisor (pid {sup})")
            wait_gone([sup], 5.0)
        # A restart may have happened meanwhile: the file (if still there) has the latest pids.
        latest = DevnetState.load(root)
        nodes = list(dict.fromkeys(nodes + (_live_nodes(latest) if latest else [])))
    # Nodes without a supervisor (it was gone, or had to be killed): stop them directly.
    nodes = [(name, pid) for name, pid in nodes if pid_alive(pid)]
    for _, pid in nodes:
        kill_quietly(pid, signal.SIGTERM)
    stuck = set(wait_gone([pid for _, pid in nodes], STOP_DEADLINE_S))
    for name, pid in nodes:
        if pid in stuck:
            kill_quietly(pid, signal.SIGKILL)
            killed.append(f"{name} (pid {pid})")
    remaining = wait_gone(stuck, 5.0)
    if remaining:
        raise DevnetError(
            f"could not stop process(es) {', '.join(map(str, remaining))} of the devnet in {root}"
        )
    state.remove()
    return DownReport(
        dir=root,
        found=True,
        supervisor_pid=sup,
        supervisor_was_running=sup_running,
        nodes=names,
        killed=tuple(killed),
    )


async def _get(http: httpx.AsyncClient, url: str) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object at ``url``, or the reason there is none."""
    try:
        response = await http.get(url, timeout=STATUS_TIMEOUT_S)
    except httpx.TimeoutException:
        return None, "timeout"
    except httpx.HTTPError as exc:
        return None, f"unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    try:
        doc = response.json()
    except ValueError:
        return None, "not JSON"
    return (doc, None) if isinstance(doc, dict) else (None, "not a JSON object")


async def _node_status(http: httpx.AsyncClient, node: NodeState) -> dict[str, Any]:
    health, info, peers = await asyncio.gather(
        _get(http, node.url + "/health"),
        _get(http, node.url + "/v1/info"),
        _get(http, node.url + "/v1/peers"),
    )
    counts = (info[0] or {}).get("counts") or {}
    peer_rows = (peers[0] or {}).get("peers") or []
    return {
        "name": node.name,
        "url": node.url,
        "pid": node.pid,
        "running": is_node(node.pid, node.data_dir),
        "healthy": health[0] is not None and health[0].get("status") == "ok",
        "error": health[1],
        "events": counts.get("events") if isinstance(counts, dict) else None,
        "peers": [
            {"url": p.get("url"), "state": p.get("state")} for p in peer_rows if isinstance(p, dict)
        ],
        "restarts": node.restarts,
        "data_dir": node.data_dir,
        "log": node.log,
    }


def devnet_status(dir: Path) -> dict[str, Any]:
    """The devnet in ``dir``: supervisor and, per node, process, health, events and peers."""
    root = dir.expanduser().absolute()
    state = DevnetState.load(root)
    if state is None:
        raise DevnetError(
            f"no devnet in {root} (no devnet.json): start one with murmur devnet up --dir {root}"
        )

    async def gather() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            return list(await asyncio.gather(*(_node_status(http, n) for n in state.nodes)))

    nodes = asyncio.run(gather())
    return {
        "dir": str(root),
        "topology": state.topology,
        "supervisor": {"pid": state.supervisor_pid, "running": is_supervisor(state.supervisor_pid)},
        "client_home": state.client_home,
        "nodes": nodes,
    }
