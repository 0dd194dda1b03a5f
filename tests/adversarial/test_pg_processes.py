"""One node served by several real processes on one PostgreSQL database (issue #18).

Spec 0004 #store-processes: processes on one database are one node (one node id, one
set of events); a commit through any of them reaches every process's live stream
through LISTEN/NOTIFY; an acknowledged event survives ``kill -9`` of the process that
acknowledged it; exactly one process runs the federation, and another takes it over
when that one dies. And a 3-node federation of a SQLite node, a PostgreSQL node and a
2-process PostgreSQL node converges, through the kill -9 of that node's leader.

The PostgreSQL server is the throwaway cluster of :mod:`tests.pg` (never a mock, never
skipped in CI). Every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.events import Event, sign_event
from tests.adversarial.chaos import Ledger, Poster, present_ids
from tests.e2e.fedproc import (
    Author,
    Cluster,
    event_ids,
    metric,
    peer_entry,
    post_events,
    wait_until,
)
from tests.e2e.nodeproc import NodeProcess
from tests.pg import PgCluster

pytestmark = pytest.mark.e2e

#: Deadline of every wait (processes start, notify and federate in well under it).
DEADLINE_S = 30
_dbs = itertools.count(1)


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh database of the session's cluster for one node (dropped afterwards)."""
    import asyncpg

    name = f"procs{os.getpid()}_{next(_dbs)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_cluster.url())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield pg_cluster.url(name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def info(url: str) -> dict[str, Any]:
    response = httpx.get(url + "/v1/info", timeout=5)
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


class StreamWatch:
    """A thread reading ``GET /v1/stream`` of one process; the event ids it delivered."""

    def __init__(self, url: str) -> None:
        self.ids: set[str] = set()
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=None))
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            with self._client.stream("GET", url + "/v1/stream") as response:
                self.opened.set()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("data: "):
                        self.ids.add(json.loads(line[6:])["event"]["id"])
        except httpx.HTTPError:
            return

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def test_commits_through_one_process_reach_the_others_stream(
    cluster: Cluster, pg_db: str
) -> None:
    """spec 0004 #store-processes: one node id; an event ingested through process A
    is delivered by process B's live stream, woken by A's NOTIFY (B counts it)."""
    a = cluster.start("a", extra=("--store", pg_db))
    b = cluster.start("b", extra=("--store", pg_db))
    assert info(a.url)["node_id"] == info(b.url)["node_id"]
    assert info(a.url)["store"] == "postgresql"
    watch = StreamWatch(b.url)
    try:
        assert watch.opened.wait(DEADLINE_S), "B's stream did not open"
        events = Author(random.getrandbits(60) + 1).posts(3)
        accepted = post_events(a.url, events)
        assert len(accepted) == 3
        cluster.wait_until(lambda: set(accepted) <= watch.ids, "A's events on B's stream")
        assert metric(b.url, "murmur_cluster_notifications_total") >= 1
        cluster.wait_until(lambda: info(b.url)["counts"]["events"] == 3, "B counting them")
    finally:
        watch.close()


def test_kill_9_of_the_ingesting_process_loses_nothing_acknowledged(
    cluster: Cluster, pg_db: str
) -> None:
    """spec 0004 #store-processes, #store-contract: posting flat out through process A,
    A is killed with kill -9; every event A acknowledged is served by process B."""
    a = cluster.start("a", extra=("--store", pg_db))
    b = cluster.start("b", extra=("--store", pg_db))
    ledger = Ledger()
    poster = Poster("p", lambda rng: a.url, ledger, seed=random.getrandbits(32)).start()
    try:
        cluster.wait_until(lambda: ledger.acked_count() >= 200, "A acknowledging posts")
    finally:
        cluster.kill("a")
        poster.stop()
    acked, _, _ = ledger.snapshot()
    assert not ledger.rejected
    lost = acked - present_ids(b.url, acked)
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events lost"


def test_federation_leader_killed_another_process_takes_over(
    cluster: Cluster, pg_db: str
) -> None:
    """spec 0004 #store-processes: exactly one process leads the federation (/v1/info
    federation.leader, /metrics murmur_federation_leader); kill -9 of the leader makes
    the other one lead."""
    names = ("a", "b")
    for name in names:
        cluster.start(name, extra=("--store", pg_db))

    def leaders() -> list[str]:
        return [n for n in names if info(cluster.url(n))["federation"]["leader"]]

    first = cluster.wait_until(lambda: (ls := leaders()) and len(ls) == 1 and ls, "one leader")
    assert sum(metric(cluster.url(n), "murmur_federation_leader") for n in names) == 1
    cluster.kill(first[0])
    other = next(n for n in names if n != first[0])
    cluster.wait_until(
        lambda: info(cluster.url(other))["federation"]["leader"], f"{other} taking over"
    )


def _worker_pids(parent: int) -> set[int]:
    path = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(p) for p in path.read_text().split()}


def test_workers_share_the_port_and_a_killed_worker_is_replaced(
    tmp_path: Path, pg_db: str
) -> None:
    """spec 0004 #store-processes: ``--workers 2`` serves one port from two processes;
    kill -9 of one while posting loses nothing acknowledged, and it is started again."""
    node = NodeProcess(tmp_path / "node", "--store", pg_db, "--workers", "2")
    try:
        workers = wait_until(
            lambda: (pids := _worker_pids(node.pid)) and len(pids) == 2 and pids,
            DEADLINE_S,
            "two workers",
        )
        ledger = Ledger()
        poster = Poster(
            "w", lambda rng: node.url, ledger, seed=random.getrandbits(32), retry=True
        ).start()
        try:
            wait_until(lambda: ledger.acked_count() >= 200, DEADLINE_S, "acknowledged posts")
            victim = min(workers)
            os.kill(victim, 9)
            wait_until(
                lambda: len(pids := _worker_pids(node.pid)) == 2 and victim not in pids,
                DEADLINE_S,
                "the killed worker replaced",
                logs=node.more_log,
            )
            mark = ledger.acked_count()
            wait_until(lambda: ledger.acked_count() > mark + 50, DEADLINE_S, "posting again")
        finally:
            poster.stop()
        acked, _, _ = ledger.snapshot()
        lost = acked - present_ids(node.url, acked)
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged events lost"
    finally:
        node.stop()


def test_sqlite_postgresql_and_two_process_postgresql_nodes_converge(
    cluster: Cluster, pg_cluster: PgCluster, pg_db: str
) -> None:
    """Issue #18 point 5 (spec 0004 #store-contract, #store-processes; spec 0005
    #anti-entropy): S (SQLite), P (PostgreSQL) and Q (two processes q1, q2 on one
    database) federate; events posted to each process reach all; after kill -9 of Q's
    federation leader, the other Q process leads and Q still receives new events."""
    import asyncpg

    p_db = pg_db + "_p"

    async def create() -> None:
        conn = await asyncpg.connect(pg_cluster.url())
        try:
            await conn.execute(f'CREATE DATABASE "{p_db.rsplit("/", 1)[1]}"')
        finally:
            await conn.close()

    asyncio.run(create())
    s, p = cluster.url("s"), cluster.url("p")
    q1, q2 = cluster.url("q1"), cluster.url("q2")
    cluster.start("s", peers=[p, q1])
    cluster.start("p", peers=[s, q2], extra=("--store", p_db))
    for q in ("q1", "q2"):
        cluster.start(q, peers=[s, p], extra=("--store", pg_db))
    urls = [s, p, q1, q2]
    expected: set[str] = set()
    for n, url in enumerate(urls):
        expected |= set(post_events(url, Author(1000 + n).posts(5, f"from {url} ")))
    cluster.wait_until(
        lambda: all(event_ids(u) >= expected for u in urls), "all four holding every event"
    )
    leader = cluster.wait_until(
        lambda: [n for n in ("q1", "q2") if info(cluster.url(n))["federation"]["leader"]],
        "a Q leader",
    )[0]
    cluster.kill(leader)
    rest = q2 if leader == "q1" else q1
    cluster.wait_until(lambda: info(rest)["federation"]["leader"], "Q's other process leading")
    later = set(post_events(s, Author(2000).posts(5, "after the kill ")))
    cluster.wait_until(lambda: event_ids(rest) >= expected | later, "Q receiving after it")


def test_migrate_store_moves_a_stopped_sqlite_node(cluster: Cluster, pg_db: str) -> None:
    """spec 0004 #store-migrate, end to end: a SQLite node process ingests, is killed
    (kill -9), ``murmur node migrate-store`` copies it, and a node process on the
    PostgreSQL database serves the same node id and events."""
    import subprocess
    import sys

    from bench.common import ROOT

    s = cluster.start("s")
    node_id = info(s.url)["node_id"]
    posted = set(post_events(s.url, Author(3000).posts(40, "moving ")))
    cluster.kill("s")
    done = subprocess.run(
        [sys.executable, "-m", "node", "migrate-store",
         "--from", str(cluster.data_dir("s")), "--to", pg_db],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "done: 40 events" in done.stderr
    p = cluster.start("p", extra=("--store", pg_db))
    assert info(p.url)["node_id"] == node_id
    assert event_ids(p.url) == posted


def test_a_peer_announced_to_a_follower_is_followed_by_the_leader_at_once(
    cluster: Cluster, pg_db: str
) -> None:
    """spec 0004 #store-processes: a peer announced (POST /v1/peers) to a process that
    does not run the federation is taken by the one that does, without a leadership
    change: the leader follows it and receives its events."""
    c = cluster.start("c")
    posted = set(post_events(c.url, Author(4000).posts(3, "announced ")))
    names = ("a", "b")
    for name in names:
        cluster.start(name, peer_exchange=True, extra=("--store", pg_db))
    def leaders() -> list[str]:
        found = [n for n in names if info(cluster.url(n))["federation"]["leader"]]
        return found if len(found) == 1 else []

    (leader,) = cluster.wait_until(leaders, "one leader")
    follower = next(n for n in names if n != leader)
    response = httpx.post(cluster.url(follower) + "/v1/peers", json={"url": c.url}, timeout=5)
    assert response.status_code == 202 and response.json() == {"status": "added"}
    cluster.wait_until(
        lambda: (entry := peer_entry(cluster.url(leader), c.url)) and entry["state"] == "live",
        "the leader following the announced peer",
    )
    cluster.wait_until(lambda: event_ids(cluster.url(leader)) >= posted, "its events")
    assert info(cluster.url(leader))["federation"]["leader"]


def _delete(author: Author, target: bytes) -> Event:
    """``author``'s next event: a delete of ``target``."""
    author.seq += 1
    ev = sign_event(
        author.identity, kind="delete", body={"target": target}, seq=author.seq, prev=author.prev
    )
    author.prev = ev.id
    return ev


def _cut_listener(db_url: str, pid: int) -> int:
    """Terminate the LISTEN connection of node process ``pid`` (as a network cut or a
    server restart would end it); how many backends were ended."""
    import asyncpg

    async def cut() -> int:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                f"murmur listen {pid}",
            )
            return len(rows)
        finally:
            await conn.close()

    return asyncio.run(cut())


def test_counts_agree_after_the_listen_connection_is_cut(cluster: Cluster, pg_db: str) -> None:
    """spec 0004 #store-processes: process B's LISTEN connection is ended; what A
    commits meanwhile is not heard by B (no notification), yet once B listens again
    its counts (events, authors, deleted) are the database's, as A's are."""
    a = cluster.start("a", extra=("--store", pg_db))
    b = cluster.start("b", extra=("--store", pg_db))
    author = Author(5000)
    for attempt in range(5):
        heard = metric(b.url, "murmur_cluster_notifications_total")
        assert _cut_listener(pg_db, b.pid) == 1
        events = author.posts(4, f"unheard {attempt} ")
        events.append(_delete(author, events[0].id))
        assert len(post_events(a.url, events)) == 5
        top: int = info(a.url)["cursor"]

        def caught_up(top: int = top) -> bool:
            return bool(info(b.url)["cursor"] >= top)

        cluster.wait_until(caught_up, "B's cursor catching up")
        if metric(b.url, "murmur_cluster_notifications_total") == heard:
            break  # B missed them (else it listened again first: cut again)
    else:
        raise AssertionError("B heard every commit: the cut never landed")
    cluster.wait_until(
        lambda: info(b.url)["counts"] == info(a.url)["counts"], "B's counts agreeing with A's"
    )
    assert info(b.url)["counts"]["deleted"] >= 1
    assert metric(b.url, "murmur_cluster_count_reloads_total") >= 1
