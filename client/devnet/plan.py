"""What a devnet is before anything runs: nodes, ports, directories and who peers with whom.

Everything here is pure except :func:`check_ports` (it binds sockets to find out
whether a port is free). A :class:`DevnetPlan` is made once by :func:`make_plan` and
then drives the supervisor; :func:`node_argv` is the exact ``python -m node run``
command line of one node, and :func:`node_config_toml` its config file (the settings
that have no flag: rate limits and reconnect backoff).

Topologies (each node is given its peers with ``--peer``; see specs/0005 §peers):

- ``mesh``: every node peers with every other; peer exchange stays on.
- ``line``: node *i* peers with *i-1* and *i+1*; ``--no-peer-exchange`` so that the
  line stays a line (a node ignores announcements and gossip, spec 0005 §exchange),
  which makes an event from node 1 reach node N hop by hop.
- ``star``: node 1 is the hub and peers with every other node; the others peer with
  the hub only; ``--no-peer-exchange`` for the same reason.
"""

from __future__ import annotations

import enum
import errno
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomli_w

from client.errors import ClientError
from protocol.errors import BadRequestError, ProtocolError
from protocol.kinds import is_feed_name

__all__ = [
    "DEFAULT_BASE_PORT",
    "DEFAULT_DIR",
    "HOST",
    "MAX_NODES",
    "MIN_NODES",
    "SYNC_INTERVAL_S",
    "DevnetError",
    "DevnetPlan",
    "NodePlan",
    "Topology",
    "check_ports",
    "make_plan",
    "node_argv",
    "node_config_toml",
    "peer_indices",
    "port_in_use",
]

#: Fewest and most nodes of one devnet (20 processes is plenty on a laptop).
MIN_NODES = 1
MAX_NODES = 20
#: Node 1 listens here (the port of ``murmur node run``), node K on base + K - 1.
DEFAULT_BASE_PORT = 8701
#: Relative to the current directory; .gitignore lists it.
DEFAULT_DIR = Path(".murmur-dev")
#: Devnets listen on loopback only.
HOST = "127.0.0.1"
#: Anti-entropy period of devnet nodes: short, so a restarted node catches up quickly.
SYNC_INTERVAL_S = 5

#: Settings without a flag, written to each node's ``node.toml``. Every node, the
#: supervisor and the client share 127.0.0.1, so the per-IP rate limit would see them
#: as one busy client; and a peer that comes back should be reconnected within seconds.
#: Several nodes share one machine at a developer's rates: signatures are checked on
#: threads, not in worker processes (~40 MB each, spec 0004 #verify-workers).
_NODE_TOML: dict[str, dict[str, Any]] = {
    "node": {"verify_in": "threads"},
    "limits": {"rate_per_ip": 100_000, "rate_burst": 100_000},
    "federation": {
        "backoff_min_ms": 250,
        "backoff_max_ms": 5_000,
        "gossip_interval_ms": 10_000,
        "connect_timeout_ms": 2_000,
    },
}


#: The feeds every devnet node serves (spec 0009 #builtins, 0004 #feeds): what's hot and
#: friends of friends, at ``/v1/feeds/hot`` and ``/v1/feeds/friends``. ``--feed`` adds more.
DEVNET_FEEDS: Final = (("hot", "whats-hot"), ("friends", "friends-of-friends"))


class DevnetError(ClientError):
    """A devnet cannot be started, found or stopped; the message says how to fix it."""

    code = "devnet-error"


class Topology(enum.StrEnum):
    MESH = "mesh"
    LINE = "line"
    STAR = "star"


def peer_indices(topology: Topology, n: int) -> list[list[int]]:
    """For each of ``n`` nodes (0-based), the 0-based indices of its configured peers."""
    if topology is Topology.MESH:
        return [[j for j in range(n) if j != i] for i in range(n)]
    if topology is Topology.LINE:
        return [[j for j in (i - 1, i + 1) if 0 <= j < n] for i in range(n)]
    if topology is Topology.STAR:
        return [list(range(1, n))] + [[0] for _ in range(1, n)]
    raise ValueError(f"unknown topology {topology!r}")  # pragma: no cover - enum is closed


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePlan:
    """One node of the devnet: its name (``node1``...), port, URL, directory and peers."""

    index: int  # 1-based, as in the name
    name: str
    port: int
    url: str
    data_dir: Path
    peers: tuple[str, ...]  # peer URLs
    peer_names: tuple[str, ...]
    peer_exchange: bool

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "node.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class DevnetPlan:
    """The whole devnet: where it lives and its nodes, in order."""

    dir: Path  # absolute
    topology: Topology
    base_port: int
    nodes: tuple[NodePlan, ...]
    #: ``(name, type)`` of the feeds every node serves: :data:`DEVNET_FEEDS`, then
    #: those of ``--feed`` (a file's path made absolute).
    feeds: tuple[tuple[str, str], ...] = DEVNET_FEEDS

    @property
    def state_path(self) -> Path:
        return self.dir / "devnet.json"

    @property
    def client_home(self) -> Path:
        """The ``MURMUR_HOME`` of ``--seed-demo`` (and a suggestion for the user)."""
        return self.dir / "client"

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]


def make_plan(
    *,
    nodes: int,
    base_port: int = DEFAULT_BASE_PORT,
    topology: Topology | str = Topology.MESH,
    dir: Path = DEFAULT_DIR,
    feeds: Sequence[str] = (),
) -> DevnetPlan:
    """The plan of a devnet; ``BadRequestError`` for a count or port range that cannot
    work, or a ``--feed NAME=TYPE`` that names no feed (checked without running it)."""
    if not MIN_NODES <= nodes <= MAX_NODES:
        raise BadRequestError(f"--nodes must be from {MIN_NODES} to {MAX_NODES}, got {nodes}")
    if base_port < 1 or base_port + nodes - 1 > 65535:
        raise BadRequestError(
            f"ports {base_port}..{base_port + nodes - 1} are not all valid TCP ports "
            "(1-65535); pick another --base-port"
        )
    try:
        topo = Topology(topology)
    except ValueError:
        known = ", ".join(t.value for t in Topology)
        raise BadRequestError(f"unknown topology {topology!r} (one of {known})") from None
    root = dir.expanduser().absolute()
    urls = [f"http://{HOST}:{base_port + i}" for i in range(nodes)]
    names = [f"node{i + 1}" for i in range(nodes)]
    plans = tuple(
        NodePlan(
            index=i + 1,
            name=names[i],
            port=base_port + i,
            url=urls[i],
            data_dir=root / names[i],
            peers=tuple(urls[j] for j in peers),
            peer_names=tuple(names[j] for j in peers),
            peer_exchange=topo is Topology.MESH,
        )
        for i, peers in enumerate(peer_indices(topo, nodes))
    )
    return DevnetPlan(
        dir=root, topology=topo, base_port=base_port, nodes=plans,
        feeds=(*DEVNET_FEEDS, *_feed_args(feeds)),
    )  # fmt: skip


def _feed_args(feeds: Sequence[str]) -> list[tuple[str, str]]:
    """``--feed NAME=TYPE`` values as ``(name, type)``, a file's path made absolute."""
    from protocol.feeds.load import check_feed_type

    out: list[tuple[str, str]] = []
    taken = {name for name, _ in DEVNET_FEEDS}
    for arg in feeds:
        name, sep, type_ = arg.partition("=")
        name, type_ = name.strip(), type_.strip()
        if not sep or not is_feed_name(name) or not type_:
            raise BadRequestError(
                f"--feed {arg!r}: use NAME=TYPE, NAME 1-64 of a-z 0-9 _ . - and TYPE a "
                "built-in feed, PATH.py:Class or entry:NAME"
            )
        if name in taken:
            raise BadRequestError(f"--feed {arg!r}: a devnet node already serves a feed {name!r}")
        if ".py:" in type_ and not type_.startswith("entry:"):
            path, _, cls = type_.rpartition(":")
            type_ = f"{Path(path).expanduser().absolute()}:{cls}"
        try:
            check_feed_type(type_)
        except ProtocolError as exc:
            raise BadRequestError(f"--feed {arg!r}: {exc.message}") from None
        taken.add(name)
        out.append((name, type_))
    return out


def node_argv(node: NodePlan, *, python: str = sys.executable) -> list[str]:
    """The command that runs ``node`` (a ``python -m node run`` process)."""
    argv = [
        python,
        "-m",
        "node",
        "run",
        "--host",
        HOST,
        "--port",
        str(node.port),
        "--data",
        str(node.data_dir),
        "--config",
        str(node.config_path),
        "--allow-private-peers",
        "--sync-interval",
        str(SYNC_INTERVAL_S),
        "--log-level",
        "info",
    ]
    for peer in node.peers:
        argv += ["--peer", peer]
    if not node.peer_exchange:
        argv.append("--no-peer-exchange")
    return argv


def node_config_toml(feeds: Sequence[tuple[str, str]] = DEVNET_FEEDS) -> str:
    """The ``node.toml`` every devnet node reads (limits, backoff and the feeds it serves;
    flags do the rest)."""
    doc: dict[str, Any] = {
        **_NODE_TOML,
        "feeds": [{"name": name, "type": type_} for name, type_ in feeds],
    }
    return "# Written by murmur devnet up; flags on the command line override it.\n" + (
        tomli_w.dumps(doc)
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether a server could not bind ``host:port`` now.

    ``SO_REUSEADDR`` is set as the node's server sets it, so a port that only has
    connections in TIME_WAIT from an earlier run counts as free (the node can bind it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise DevnetError(f"cannot check port {port} on {host}: {exc.strerror}") from exc
    return False


def check_ports(ports: Iterable[int], *, base_port: int, count: int) -> None:
    """Raise ``DevnetError`` naming the first port of ``ports`` that is taken."""
    busy: Sequence[int] = [p for p in ports if port_in_use(p)]
    if busy:
        last = base_port + count - 1
        raise DevnetError(
            f"port {busy[0]} on {HOST} is already in use"
            + (f" (also: {', '.join(map(str, busy[1:]))})" if len(busy) > 1 else "")
            + f"; the devnet needs ports {base_port}..{last}: "
            "stop what uses it or pick other ports with --base-port PORT"
        )
