"""Helpers for federation end-to-end tests: clusters of real nodes on 127.0.0.1.

A :class:`Cluster` gives every node a fixed port before any node starts (peers are
configured by URL, so a node must know its neighbours' ports up front), writes each
node's TOML config (fast backoff and sync, generous rate limits unless a test asks for
tight ones), starts ``python -m node run`` through :class:`~tests.e2e.nodeproc.NodeProcess`
and can ``kill -9`` and restart a node on the same port and data directory.
A :class:`TcpProxy` sits between two nodes and can be cut and healed, to partition
them the way a network does (live connections die, new ones are reset).

Synchronisation is always :func:`wait_until` on an observable condition with a
deadline; its failure message carries the tail of every node's log.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import tomli_w

from bench.common import free_port
from node.store.sqlite import DB_FILENAME
from protocol.events import Event, sign_event
from protocol.identity import Identity
from tests.e2e.nodeproc import NodeProcess

__all__ = [
    # settings
    "FAST_FEDERATION",
    "GENEROUS_LIMITS",
    "free_port",
    "write_config",
    # processes
    "Cluster",
    "NodeSpec",
    # observing nodes
    "event_ids",
    "event_id_list",
    "metric",
    "peers",
    "peer_entry",
    "persisted_cursor",
    "wait_until",
    # events
    "Author",
    "post_events",
    # network faults
    "TcpProxy",
]

#: Federation settings that make a cluster react in well under a second: reconnects
#: within 0.1-1 s, anti-entropy every second, peer exchange every half second.
FAST_FEDERATION: dict[str, Any] = {
    "backoff_min_ms": 100,
    "backoff_max_ms": 1000,
    "sync_interval_ms": 1000,
    "gossip_interval_ms": 500,
    "connect_timeout_ms": 2000,
    "total_timeout_ms": 10_000,
}
#: Every node and the test itself share 127.0.0.1, so the per-IP limiters (requests,
#: peer announcements) would see them as one client; only the tests of those limits
#: want them tight.
GENEROUS_LIMITS: dict[str, Any] = {
    "rate_per_ip": 100_000,
    "rate_burst": 100_000,
    "announce_per_minute": 100_000,
    "announce_burst": 100_000,
}

#: Poll interval of deadline loops (not synchronisation: the loop waits on a condition).
POLL_S = 0.05
#: Lines of each node's log shown when a wait times out.
LOG_TAIL = 60

T = TypeVar("T")


def write_config(
    path: Path,
    *,
    limits: dict[str, Any] | None = None,
    federation: dict[str, Any] | None = None,
) -> Path:
    """Write a node TOML config with ``[limits]`` and ``[federation]`` tables."""
    doc: dict[str, Any] = {}
    if limits:
        doc["limits"] = dict(limits)
    if federation:
        doc["federation"] = dict(federation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


# -- waiting ---------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    deadline_s: float,
    what: str,
    *,
    logs: Callable[[], str] | None = None,
    interval_s: float = POLL_S,
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that.

    HTTP errors count as "not yet" (a node may be restarting). On timeout, raise
    AssertionError naming ``what``, the last value or error, and the nodes' logs.
    """
    end = time.monotonic() + deadline_s
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except httpx.HTTPError as exc:
            error = exc
        else:
            if value:
                return value
            last, error = value, None
        if time.monotonic() >= end:
            break
        time.sleep(interval_s)  # poll interval of a deadline loop
    detail = f"last error: {error!r}" if error is not None else f"last value: {last!r}"[:2000]
    message = f"timed out after {deadline_s:g} s waiting for {what}; {detail}"
    if logs is not None:
        message += "\n" + logs()
    raise AssertionError(message)


# -- observing nodes -------------------------------------------------------------------


def event_id_list(url: str, *, timeout_s: float = 10) -> list[str]:
    """Every id in ``url``'s feed, newest first, as served (duplicates would show)."""
    ids: list[str] = []
    before: str | None = None
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        while True:
            params = {"limit": "500"}
            if before is not None:
                params["before"] = before
            response = client.get("/v1/feed", params=params)
            response.raise_for_status()
            doc = response.json()
            ids.extend(ev["id"] for ev in doc["events"])
            before = doc["next"]
            if before is None:
                return ids


def event_ids(url: str) -> set[str]:
    """Every event id ``url`` holds (its feed: the tests never delete)."""
    return set(event_id_list(url))


def peers(url: str) -> list[dict[str, Any]]:
    """``GET /v1/peers``'s peer entries."""
    response = httpx.get(url + "/v1/peers", timeout=5)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["peers"]
    return entries


def peer_entry(url: str, peer_url: str) -> dict[str, Any] | None:
    """``url``'s entry for ``peer_url`` in ``GET /v1/peers``, if it has one."""
    for entry in peers(url):
        if entry["url"] == peer_url:
            return entry
    return None


def metric(url: str, name: str) -> float:
    """One unlabelled sample of ``url``'s ``/metrics`` (never rate limited)."""
    response = httpx.get(url + "/metrics", timeout=5)
    response.raise_for_status()
    match = re.search(rf"^{re.escape(name)} (\S+)$", response.text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"no metric {name} at {url}/metrics")
    return float(match.group(1))


def persisted_cursor(data_dir: Path, peer_url: str) -> int | None:
    """The stream cursor a node has *saved* for ``peer_url`` (read-only look at its DB).

    What ``GET /v1/peers`` shows is the in-memory cursor; this is what survives a
    ``kill -9``.
    """
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
        row = conn.execute("SELECT cursor FROM peers WHERE url = ?", (peer_url,)).fetchone()
    return None if row is None else row[0]


# -- events ----------------------------------------------------------------------------


class Author:
    """One identity posting a hash-linked chain (seq 1, 2, ... with ``prev``)."""

    def __init__(self, seed: int) -> None:
        self.identity = Identity.from_seed(seed.to_bytes(32, "big"))
        self.seq = 0
        self.prev: bytes | None = None

    def post(self, text: str) -> Event:
        self.seq += 1
        ev = sign_event(
            self.identity, kind="post", body={"text": text}, seq=self.seq, prev=self.prev
        )
        self.prev = ev.id
        return ev

    def posts(self, count: int, prefix: str = "") -> list[Event]:
        return [self.post(f"{prefix}{self.seq + 1}") for _ in range(count)]


def post_events(url: str, events: Sequence[Event], *, timeout_s: float = 30) -> list[str]:
    """POST ``events`` to ``url`` in one batch; the ids the node *accepted* (acknowledged)."""
    body = {"events": [base64.b64encode(ev.wire).decode() for ev in events]}
    response = httpx.post(url + "/v1/events", json=body, timeout=timeout_s)
    response.raise_for_status()
    return [r["id"] for r in response.json()["results"] if r["status"] == "accepted"]


# -- processes -------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class NodeSpec:
    """How to (re)start one node: the same port, data directory and arguments."""

    name: str
    port: int
    data_dir: Path
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(slots=True)
class Cluster:
    """Named nodes with fixed ports under ``root``; ``close()`` stops everything."""

    root: Path
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    procs: dict[str, NodeProcess] = field(default_factory=dict)
    #: Processes that were killed, kept for their logs.
    history: list[tuple[str, NodeProcess]] = field(default_factory=list)
    proxies: list[TcpProxy] = field(default_factory=list)

    def port(self, name: str) -> int:
        """The fixed port of ``name`` (reserved on first use, before it starts)."""
        spec = self.specs.get(name)
        if spec is None:
            spec = NodeSpec(name=name, port=free_port(), data_dir=self.root / name / "node")
            self.specs[name] = spec
        return spec.port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name)}"

    def data_dir(self, name: str) -> Path:
        self.port(name)
        return self.specs[name].data_dir

    def start(
        self,
        name: str,
        *,
        peers: Iterable[str] = (),
        peer_exchange: bool = False,
        limits: dict[str, Any] | None = None,
        federation: dict[str, Any] | None = None,
        extra: Iterable[str] = (),
    ) -> NodeProcess:
        """Write ``name``'s config and start it on its fixed port.

        Every node gets ``--allow-private-peers`` (they are all on loopback),
        :data:`FAST_FEDERATION` and :data:`GENEROUS_LIMITS` under any overrides.
        """
        self.port(name)
        spec = self.specs[name]
        config = write_config(
            self.root / name / "node.toml",
            limits={**GENEROUS_LIMITS, **(limits or {})},
            federation={**FAST_FEDERATION, **(federation or {})},
        )
        args = ["--port", str(spec.port), "--allow-private-peers", "--config", str(config)]
        for peer in peers:
            args += ["--peer", peer]
        if not peer_exchange:
            args.append("--no-peer-exchange")
        spec.args = (*args, *extra)
        return self._launch(spec)

    def _launch(self, spec: NodeSpec) -> NodeProcess:
        # NodeProcess passes ``--port 0`` first; argparse keeps the last ``--port``.
        proc = NodeProcess(spec.data_dir, *spec.args)
        if proc.url != spec.url:
            proc.stop()
            raise AssertionError(f"{spec.name} listens on {proc.url}, not {spec.url}")
        self.procs[spec.name] = proc
        return proc

    def kill(self, name: str) -> None:
        """``kill -9`` the node (no graceful shutdown) and wait for it to be gone."""
        proc = self.procs.pop(name)
        proc.proc.kill()
        proc.proc.wait(timeout=10)
        proc.more_log()
        self.history.append((name, proc))

    def restart(self, name: str) -> NodeProcess:
        """Start ``name`` again with the same port, data directory and arguments."""
        if name in self.procs:
            self.kill(name)
        return self._launch(self.specs[name])

    def proxy(self, name: str) -> TcpProxy:
        """A new :class:`TcpProxy` to ``name``'s port (stopped by ``close()``)."""
        proxy = TcpProxy(self.port(name))
        self.proxies.append(proxy)
        return proxy

    def logs(self) -> str:
        """The tail of every node's log, killed incarnations included."""
        parts: list[str] = []
        for name, proc in [*self.history, *self.procs.items()]:
            lines = proc.more_log().splitlines()[-LOG_TAIL:]
            state = "running" if proc.proc.poll() is None else f"exit {proc.proc.returncode}"
            parts.append(f"--- {name} {proc.url} ({state}) ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def wait_until(self, predicate: Callable[[], T], what: str, deadline_s: float = 30) -> T:
        """:func:`wait_until` with this cluster's logs in the failure message."""
        return wait_until(predicate, deadline_s, what, logs=self.logs)

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        for proc in self.procs.values():
            proc.stop()
        self.procs.clear()


# -- network faults --------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (SO_LINGER 0), waking any thread blocked on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """A thread-based TCP relay ``127.0.0.1:port`` → ``127.0.0.1:target_port``.

    :meth:`cut` resets every open connection and resets each new one right after
    accepting it (peers see "connection reset", as across a broken link);
    :meth:`heal` forwards again.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # lets the accept loop notice close()
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._cut = False
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_cut(self) -> bool:
        """Whether the link is cut (a method: it changes under other threads' feet)."""
        return self._cut

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            pairs, self._pairs = self._pairs, set()
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self.is_cut():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)  # an idle stream may stay silent for a long time
            pair = (client, upstream)
            with self._lock:
                if self.is_cut():  # cut while connecting upstream
                    _reset(client)
                    _reset(upstream)
                    continue
                self._pairs.add(pair)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        # One side is done (or the link was cut): tear the whole connection down.
        with self._lock:
            self._pairs.discard(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
