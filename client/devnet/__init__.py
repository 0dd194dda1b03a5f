"""A local network of real Murmur nodes in one command (``murmur devnet``).

``murmur devnet up`` starts N ``python -m node run`` processes on 127.0.0.1 (ports
``--base-port`` and up, data under ``DIR/nodeK``), wires them as a mesh, a line or a
star, waits until they are healthy and supervises them in the foreground (restarting
crashed nodes) until Ctrl-C, SIGTERM or ``murmur devnet down``; ``DIR/devnet.json``
tells the other commands where everything is. ``--seed-demo`` publishes a small
conversation through the client commands.

- :mod:`client.devnet.plan`: the pure part — topologies, ports, command lines.
- :mod:`client.devnet.state`: ``devnet.json`` and process checks.
- :mod:`client.devnet.supervisor`: the foreground supervisor.
- :mod:`client.devnet.control`: the checks before ``up``, ``status`` and ``down``.
- :mod:`client.devnet.seed`: the demo, through the client library (import it directly).
"""

from __future__ import annotations

from client.devnet.control import DownReport, devnet_status, prepare, stop_devnet
from client.devnet.plan import (
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    MAX_NODES,
    MIN_NODES,
    DevnetError,
    DevnetPlan,
    NodePlan,
    Topology,
    check_ports,
    make_plan,
    node_argv,
    peer_indices,
    port_in_use,
)
from client.devnet.state import DevnetState, NodeState
from client.devnet.supervisor import StopReport, restart_delay, run_devnet

__all__ = [
    # planning
    "DEFAULT_BASE_PORT",
    "DEFAULT_DIR",
    "MAX_NODES",
    "MIN_NODES",
    "DevnetPlan",
    "NodePlan",
    "Topology",
    "make_plan",
    "node_argv",
    "peer_indices",
    # checks
    "check_ports",
    "port_in_use",
    "prepare",
    # running
    "StopReport",
    "restart_delay",
    "run_devnet",
    # state, status, down
    "DevnetState",
    "NodeState",
    "DownReport",
    "devnet_status",
    "stop_devnet",
    # errors
    "DevnetError",
]
