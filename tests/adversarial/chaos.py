"""Chaos helpers: seeded randomness, a client ledger, posting threads, store checks, a mesh.

Built on :mod:`tests.e2e.fedproc` (real ``python -m node run`` processes, ``kill -9``,
:class:`~tests.e2e.fedproc.TcpProxy` links). What this module adds:

- :func:`chaos_rng`: one seeded :class:`random.Random` per test, its seed printed so a
  failing schedule can be replayed with ``MURMUR_CHAOS_SEED``;
- :class:`Ledger`: what clients were told, Jepsen style. An event is *acknowledged*
  when a ``200`` answer said ``accepted`` or ``duplicate``; *indeterminate* when the
  request may have reached the node but no answer came (reset, timeout, 5xx); *not
  delivered* when the connection was never established (nothing was sent);
- :class:`Poster`: a thread posting signed batches continuously into a ledger;
- :func:`integrity_check`, :func:`stored_ids`: a read-only look at a node's SQLite
  file (after a ``kill -9``: exactly what the next incarnation will open);
- :func:`present_ids`: which ids a node serves, by ``GET /v1/events?ids=``;
- :class:`Mesh`: ``n`` nodes, every ordered pair linked through its own proxy, with
  link cuts, partitions and crashes for a nemesis.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.store.sqlite import DB_FILENAME
from protocol.events import Event
from tests.e2e.fedproc import Author, Cluster, TcpProxy, peers

__all__ = [
    # modes
    "SOAK",
    "soak_param",
    "chaos_rng",
    "report",
    # client side
    "Ledger",
    "Poster",
    "submit",
    # node side
    "event_count",
    "integrity_check",
    "present_ids",
    "stored_ids",
    # topology and faults
    "Mesh",
    "Nemesis",
]

#: Long variants run only when asked for (``MURMUR_SOAK=1``).
SOAK = os.environ.get("MURMUR_SOAK") == "1"
#: Most ids in one ``GET /v1/events?ids=`` (node/api/events.py ``MAX_IDS``).
IDS_PER_REQUEST = 100


def soak_param(value: object, *, timeout_s: int = 1800) -> Any:
    """A ``pytest.param`` id'd ``soak``: marked, skipped without ``MURMUR_SOAK=1``."""
    return pytest.param(
        value,
        id="soak",
        marks=[
            pytest.mark.soak,
            pytest.mark.timeout(timeout_s),
            pytest.mark.skipif(not SOAK, reason="soak run: set MURMUR_SOAK=1"),
        ],
    )


def chaos_rng(what: str) -> tuple[random.Random, int]:
    """A seeded RNG for one test; the seed comes from ``MURMUR_CHAOS_SEED`` or is fresh.

    The seed is printed (``-s`` shows it; pytest shows it for a failing test anyway).
    It fixes the *schedule* (delays, targets, operations), not the OS's timing.
    """
    env = os.environ.get("MURMUR_CHAOS_SEED")
    seed = int(env) if env else secrets.randbits(32)
    print(f"\n{what}: seed={seed} (replay: MURMUR_CHAOS_SEED={seed})")
    return random.Random(seed), seed


def report(request: pytest.FixtureRequest, label: str, figures: Mapping[str, object]) -> None:
    """Print ``figures`` on one line (``-s`` shows it) and attach them to the test's
    report as ``user_properties`` (for hooks and report plugins)."""
    request.node.user_properties.extend(figures.items())
    print(f"{label} " + " ".join(f"{k}={v}" for k, v in figures.items()))


# -- client side -----------------------------------------------------------------------


@dataclass
class Ledger:
    """Thread-safe record of what posting clients were told, per event id (hex)."""

    acked: set[str] = field(default_factory=set)
    #: Acknowledged ids in the order their answers arrived (for "acked since ...").
    acked_order: list[str] = field(default_factory=list)
    indeterminate: set[str] = field(default_factory=set)
    not_delivered: set[str] = field(default_factory=set)
    #: ``(id, code)`` of every event a node rejected: valid events never should be.
    rejected: list[tuple[str, str]] = field(default_factory=list)
    #: Ids a retry found ``duplicate`` after an unanswered attempt: committed, unacked.
    committed_unacked: set[str] = field(default_factory=set)
    #: Ids first answered ``duplicate`` though no earlier attempt can have reached a
    #: node (never sent, or only refused connections): stored from nowhere.
    phantoms: set[str] = field(default_factory=set)
    requests: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked_order)

    def acked_since(self, mark: int) -> list[str]:
        with self.lock:
            return self.acked_order[mark:]

    def snapshot(self) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        """``(acked, indeterminate, never delivered)``, each id in exactly one of them."""
        with self.lock:
            acked = frozenset(self.acked)
            maybe = frozenset(self.indeterminate - self.acked)
            never = frozenset(self.not_delivered - self.acked - self.indeterminate)
        return acked, maybe, never

    def record(
        self, ids: Sequence[str], results: list[dict[str, Any]] | None, outcome: str
    ) -> None:
        with self.lock:
            self.requests += 1
            if results is None:
                self.errors += 1
                target = self.indeterminate if outcome == "indeterminate" else self.not_delivered
                target.update(ids)
                return
            for eid, result in zip(ids, results, strict=True):
                if result["status"] in ("accepted", "duplicate"):
                    if result["status"] == "duplicate" and eid not in self.acked:
                        if eid in self.indeterminate:
                            self.committed_unacked.add(eid)
                        else:
                            self.phantoms.add(eid)
                    if eid not in self.acked:
                        self.acked.add(eid)
                        self.acked_order.append(eid)
                else:
                    self.rejected.append((eid, str(result.get("error"))))


def submit(client: httpx.Client, url: str, events: Sequence[Event], ledger: Ledger) -> bool:
    """POST ``events`` to ``url`` as one batch and record the outcome; True if all acked.

    A connection that was never established sent nothing (*not delivered*); any other
    failure, a non-200 answer included, is *indeterminate*.
    """
    ids = [ev.id.hex() for ev in events]
    body = {"events": [base64.b64encode(ev.wire).decode() for ev in events]}
    try:
        response = client.post(url + "/v1/events", json=body)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        ledger.record(ids, None, "not-delivered")
        return False
    except httpx.HTTPError:
        ledger.record(ids, None, "indeterminate")
        return False
    if response.status_code != 200:
        ledger.record(ids, None, "indeterminate")
        return False
    results: list[dict[str, Any]] = response.json()["results"]
    got = [r.get("id") for r in results]
    assert got == ids, f"{url} answered for other ids than it was sent: {got[:3]}..."
    ledger.record(ids, results, "answered")
    return all(r["status"] in ("accepted", "duplicate") for r in results)


class Poster:
    """A thread posting batches of fresh signed posts until :meth:`stop`.

    Each batch is 1 to ``batch`` posts by one of the poster's own ``authors`` (posters
    never fork each other's chains), then a random ``pause_s`` (the request rate).
    ``target`` picks the node URL of each request. With ``retry``, a batch that was not
    fully acknowledged is sent again (to a freshly picked target) until it is, the way
    a client that must not lose a post behaves; a retry that finds ``duplicate`` shows
    the first attempt was committed though never acknowledged. An exception in the
    thread is re-raised by :meth:`stop`.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[random.Random], str],
        ledger: Ledger,
        *,
        seed: int,
        authors: int = 3,
        batch: tuple[int, int] = (1, 50),
        retry: bool = False,
        pause_s: tuple[float, float] = (0.0, 0.0),
        timeout_s: float = 10,
        retry_wait_s: float = 0.02,
    ) -> None:
        self.name = name
        self._target = target
        self._ledger = ledger
        self._rng = random.Random(seed)
        self._authors = [Author(self._rng.getrandbits(64) + 1) for _ in range(authors)]
        self._batch = batch
        self._retry = retry
        self._retry_wait_s = retry_wait_s
        self._pause_s = pause_s
        self._timeout = httpx.Timeout(timeout_s, connect=2.0)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Poster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), f"poster {self.name} did not stop"
        if self._error is not None:
            raise AssertionError(f"poster {self.name} crashed") from self._error

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=self._timeout) as client:
                while not self._stop.is_set():
                    author = self._rng.choice(self._authors)
                    events = author.posts(self._rng.randint(*self._batch), f"{self.name} ")
                    done = submit(client, self._target(self._rng), events, self._ledger)
                    # Retry interval of a client whose node is down, not synchronisation.
                    while self._retry and not done and not self._stop.wait(self._retry_wait_s):
                        done = submit(client, self._target(self._rng), events, self._ledger)
                    # Think time: the client's request rate, not synchronisation.
                    if self._pause_s[1] > 0:
                        self._stop.wait(self._rng.uniform(*self._pause_s))
        except BaseException as exc:  # surfaced by stop()
            self._error = exc


# -- node side -------------------------------------------------------------------------


def _open_ro(data_dir: Path) -> sqlite3.Connection:
    uri = f"file:{data_dir / DB_FILENAME}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=10)


def integrity_check(data_dir: Path) -> str:
    """``PRAGMA integrity_check`` on the node's SQLite file, read-only (``"ok"`` if sound)."""
    with contextlib.closing(_open_ro(data_dir)) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "\n".join(str(r[0]) for r in rows)


def stored_ids(data_dir: Path) -> set[str]:
    """Every event id committed to the node's SQLite file (read-only; WAL included)."""
    with contextlib.closing(_open_ro(data_dir)) as conn:
        return {bytes(r[0]).hex() for r in conn.execute("SELECT id FROM events")}


def present_ids(url: str, ids: Iterable[str], *, timeout_s: float = 10) -> set[str]:
    """Which of ``ids`` ``url`` serves, asked by ``GET /v1/events?ids=`` 100 at a time."""
    wanted = sorted(set(ids))
    found: set[str] = set()
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        for start in range(0, len(wanted), IDS_PER_REQUEST):
            chunk = wanted[start : start + IDS_PER_REQUEST]
            response = client.get("/v1/events", params={"ids": ",".join(chunk)})
            response.raise_for_status()
            doc = response.json()
            served = {ev["id"] for ev in doc["events"]}
            assert served | set(doc["missing"]) == set(chunk), "ids answer does not add up"
            found |= served
    return found


def event_count(url: str) -> int:
    """``GET /v1/info``'s ``counts.events``."""
    response = httpx.get(url + "/v1/info", timeout=5)
    response.raise_for_status()
    return int(response.json()["counts"]["events"])


# -- topology --------------------------------------------------------------------------


class Mesh:
    """``names`` as a full mesh: node ``i`` reaches node ``j`` only via ``link[i, j]``.

    Clients talk to the nodes directly; only node-to-node traffic crosses proxies, so a
    partition splits the federation while every node keeps taking posts.
    """

    def __init__(self, cluster: Cluster, names: Sequence[str]) -> None:
        self.cluster = cluster
        self.names = list(names)
        self.link: dict[tuple[str, str], TcpProxy] = {
            (a, b): cluster.proxy(b) for a, b in itertools.permutations(self.names, 2)
        }

    def urls(self) -> list[str]:
        return [self.cluster.url(n) for n in self.names]

    def peer_urls(self, name: str) -> list[str]:
        return [self.link[name, other].url for other in self.names if other != name]

    def start_all(self) -> None:
        """Start every node at once (each start waits for ``/health``)."""

        def start(name: str) -> None:
            self.cluster.start(name, peers=self.peer_urls(name))

        with ThreadPoolExecutor(max_workers=len(self.names)) as pool:
            list(pool.map(start, self.names))

    def restart(self, names: Iterable[str]) -> None:
        """Restart ``names`` (dead nodes) at once, on their ports and data."""
        with ThreadPoolExecutor(max_workers=len(self.names)) as pool:
            list(pool.map(self.cluster.restart, names))

    def converged(self) -> frozenset[str]:
        """The common event set of all nodes if they hold the same one, else empty.

        Counts are compared first (``GET /v1/info``, one cheap request a node), then the
        store files, read-only (cheap at any size); callers compare what the nodes
        serve once, after.
        """
        counts = {event_count(url) for url in self.urls()}
        if len(counts) != 1 or counts == {0}:
            return frozenset()
        sets = [frozenset(stored_ids(self.cluster.data_dir(n))) for n in self.names]
        return sets[0] if all(s == sets[0] for s in sets[1:]) else frozenset()

    def all_live(self) -> bool:
        """Every node has a live stream to each of its peers."""
        for name in self.names:
            states = {p["url"]: p["state"] for p in peers(self.cluster.url(name))}
            if any(states.get(u) != "live" for u in self.peer_urls(name)):
                return False
        return True

    def cut(self, a: str, b: str) -> None:
        """Cut the link between ``a`` and ``b``, both directions."""
        self.link[a, b].cut()
        self.link[b, a].cut()

    def heal(self, a: str, b: str) -> None:
        self.link[a, b].heal()
        self.link[b, a].heal()

    def pairs(self) -> list[tuple[str, str]]:
        return list(itertools.combinations(self.names, 2))

    def is_cut(self, a: str, b: str) -> bool:
        return self.link[a, b].is_cut()

    def heal_all(self) -> None:
        for proxy in self.link.values():
            proxy.heal()


@dataclass
class NemesisFigures:
    """What a :class:`Nemesis` did."""

    ops: list[str] = field(default_factory=list)
    link_cuts: int = 0
    link_heals: int = 0
    partitions: int = 0
    kills: int = 0
    restarts: int = 0
    #: ``PRAGMA integrity_check`` verdict of each killed node's file, before restart.
    integrity: list[str] = field(default_factory=list)


class Nemesis:
    """A thread doing random harm to a :class:`Mesh` for ``duration_s``, then stopping.

    Between operations it waits a random ``gap_s`` (its schedule). Operations: cut or
    heal one link, split the nodes into two random halves (every crossing link cut),
    heal everything, ``kill -9`` a node (at most ``max_down`` down at once; its store
    file is checked right after), restart a dead node. Every operation is logged with
    its time in :attr:`figures`. An exception in the thread is re-raised by :meth:`join`.
    """

    def __init__(
        self,
        mesh: Mesh,
        rng: random.Random,
        *,
        duration_s: float,
        gap_s: tuple[float, float],
        max_down: int,
    ) -> None:
        self.mesh = mesh
        self.figures = NemesisFigures()
        self._rng = rng
        self._duration_s = duration_s
        self._gap_s = gap_s
        self._max_down = max_down
        self._down: list[str] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    @property
    def down(self) -> list[str]:
        return list(self._down)

    def start(self) -> Nemesis:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(timeout=self._duration_s + 120)
        assert not self._thread.is_alive(), "nemesis did not stop"
        if self._error is not None:
            raise AssertionError("nemesis crashed:\n" + self.history()) from self._error

    def stop(self) -> None:
        self._stop.set()

    def history(self) -> str:
        return "\n".join(self.figures.ops)

    def _run(self) -> None:
        start = time.monotonic()
        try:
            # The nemesis's random schedule (the only sleep: it is not synchronisation).
            while not self._stop.wait(self._rng.uniform(*self._gap_s)):
                if time.monotonic() - start >= self._duration_s:
                    return
                what = self._step()
                self.figures.ops.append(f"{time.monotonic() - start:7.2f} {what}")
        except BaseException as exc:  # surfaced by join()
            self._error = exc

    def _step(self) -> str:
        mesh, rng, fig = self.mesh, self._rng, self.figures
        up = [n for n in mesh.names if n not in self._down]
        cut = [p for p in mesh.pairs() if mesh.is_cut(*p)]
        whole = [p for p in mesh.pairs() if not mesh.is_cut(*p)]
        choices = ["cut"] * 3 + ["heal"] * 2 + ["partition", "heal-all"]
        if len(self._down) < self._max_down:
            choices += ["kill"] * 2
        if self._down:
            choices += ["restart"] * 2
        op = rng.choice(choices)
        if op == "cut" and whole:
            a, b = rng.choice(whole)
            mesh.cut(a, b)
            fig.link_cuts += 1
            return f"cut {a}-{b}"
        if op == "heal" and cut:
            a, b = rng.choice(cut)
            mesh.heal(a, b)
            fig.link_heals += 1
            return f"heal {a}-{b}"
        if op == "partition":
            names = list(mesh.names)
            rng.shuffle(names)
            k = rng.randint(1, len(names) - 1)
            left, right = set(names[:k]), set(names[k:])
            for a, b in mesh.pairs():
                if (a in left) != (b in left):
                    if not mesh.is_cut(a, b):
                        fig.link_cuts += 1
                    mesh.cut(a, b)
                elif mesh.is_cut(a, b):
                    mesh.heal(a, b)
                    fig.link_heals += 1
            fig.partitions += 1
            return f"partition {sorted(left)} | {sorted(right)}"
        if op == "heal-all":
            fig.link_heals += len(cut)
            mesh.heal_all()
            return f"heal-all ({len(cut)} links)"
        if op == "kill" and up:
            name = rng.choice(up)
            mesh.cluster.kill(name)
            self._down.append(name)
            fig.kills += 1
            verdict = integrity_check(mesh.cluster.data_dir(name))
            fig.integrity.append(verdict)
            return f"kill -9 {name} (integrity: {verdict})"
        if op == "restart" and self._down:
            name = self._down.pop(rng.randrange(len(self._down)))
            mesh.cluster.restart(name)
            fig.restarts += 1
            return f"restart {name}"
        return f"noop ({op})"
