"""Crash consistency: ``kill -9`` real nodes at random moments, again and again.

DESIGN §node: "An event is acknowledged only after its transaction commits: ``kill -9``
loses nothing acknowledged." Spec 0005 §replication: the stream cursor is saved and
delivery is at least once, so a replicating node that crashes resumes and converges.

After every kill, before the restart, the node's SQLite file is opened read-only (what
the next incarnation will open): ``PRAGMA integrity_check`` must say ``ok`` and every
acknowledged event must be in it. After the restart the node must serve them
(``GET /v1/events?ids=``). Kill moments are random (seeded, seed printed); a kill is
only scheduled once the node is visibly busy, so it lands during ingest or replication.

A ``kill -9`` leaves the OS page cache intact: this checks the commit protocol (no
acknowledgement before commit, recovery of a torn WAL), not ``fsync`` under power loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.adversarial.chaos import (
    Ledger,
    Poster,
    chaos_rng,
    event_count,
    integrity_check,
    present_ids,
    report,
    soak_param,
    stored_ids,
)
from tests.e2e.fedproc import Cluster, event_id_list, event_ids, peer_entry, persisted_cursor

pytestmark = pytest.mark.e2e


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashPlan:
    kills: int
    #: The kill lands this long (uniform, seconds) after the node was seen busy.
    delay_s: tuple[float, float]
    #: Concurrent posting clients, and each one's pause between requests (seconds).
    posters: int
    pause_s: tuple[float, float] = (0.0, 0.0)
    #: Events a request (uniform, inclusive).
    batch: tuple[int, int] = (1, 100)


#: Flat out: about a thousand events a second acknowledged between kills.
DEFAULT = CrashPlan(kills=10, delay_s=(0.0, 0.6), posters=2)
#: Many more kills at a gentler rate, so the store stays in the tens of thousands.
SOAK = CrashPlan(kills=150, delay_s=(0.0, 1.5), posters=2, pause_s=(0.0, 0.3))
#: Many clients posting one event a request: their batches share commits (spec 0004
#: #group-commit), and a kill lands amid a shared transaction.
ONE_EVENT = CrashPlan(kills=6, delay_s=(0.0, 0.6), posters=16, batch=(1, 1))
PLANS = [pytest.param(DEFAULT, id="default"), soak_param(SOAK)]

#: Deadline of every wait (a node restarts and gets busy in a second or two).
DEADLINE_S = 30
#: Convergence deadline after the federation loop (tens of thousands of events).
CONVERGE_S = 90


def _schedule(delay_s: float) -> None:
    """The nemesis's random schedule: how long after "busy" the kill lands."""
    time.sleep(delay_s)


def _above(read: Callable[[], int], base: int) -> Callable[[], bool]:
    """A predicate: ``read()`` has grown past ``base``."""
    return lambda: read() > base


def _check_after_crash(cluster: Cluster, name: str, must_hold: frozenset[str]) -> None:
    """``name`` is dead: its file is sound and holds every id in ``must_hold``."""
    data_dir = cluster.data_dir(name)
    verdict = integrity_check(data_dir)
    assert verdict == "ok", f"{name}'s store is corrupt after kill -9: {verdict}"
    lost = must_hold - stored_ids(data_dir)
    assert not lost, (
        f"{name} lost {len(lost)} of {len(must_hold)} committed events on kill -9, "
        f"e.g. {sorted(lost)[:3]}\n{cluster.logs()}"
    )


@pytest.mark.parametrize("plan", [*PLANS, pytest.param(ONE_EVENT, id="one-event-posts")])
def test_kill9_during_ingest_loses_nothing_acknowledged(
    cluster: Cluster, plan: CrashPlan, request: pytest.FixtureRequest
) -> None:
    """Posters hammer A with batches (retrying unanswered ones); A is killed -9 at random
    moments. After each kill the file is sound and holds every acknowledged event; after
    each restart A serves them; at the end A holds acknowledged ∪ indeterminate only."""
    rng, seed = chaos_rng("crash during ingest")
    started = time.monotonic()
    a = cluster.url("a")
    cluster.start("a")
    ledger = Ledger()
    posters = [
        Poster(
            f"p{i}",
            lambda _r: a,
            ledger,
            seed=rng.getrandbits(32),
            batch=plan.batch,
            pause_s=plan.pause_s,
            retry=True,
        )
        for i in range(plan.posters)
    ]
    for poster in posters:
        poster.start()
    integrity_ok = 0
    verified = 0  # prefix of ledger.acked_order already checked over HTTP
    try:
        for _ in range(plan.kills):
            mark = ledger.acked_count()
            cluster.wait_until(_above(ledger.acked_count, mark), "A acknowledging", DEADLINE_S)
            _schedule(rng.uniform(*plan.delay_s))
            cluster.kill("a")
            acked, _, _ = ledger.snapshot()  # every answer received was sent before death
            _check_after_crash(cluster, "a", acked)
            integrity_ok += 1
            cluster.restart("a")
            fresh = ledger.acked_since(verified)
            missing = set(fresh) - present_ids(a, fresh)
            assert not missing, f"A does not serve {len(missing)} acknowledged events"
            verified += len(fresh)
    finally:
        for poster in posters:
            poster.stop()

    acked, maybe, never = ledger.snapshot()
    held = event_ids(a)
    lost = acked - held
    unexpected = held - acked - maybe
    assert not ledger.rejected, f"valid events rejected: {ledger.rejected[:5]}"
    assert not ledger.phantoms, f"duplicate on first delivery: {sorted(ledger.phantoms)[:3]}"
    assert not lost, f"{len(lost)} acknowledged events lost"
    assert not unexpected, f"{len(unexpected)} events never acknowledged nor in flight"
    assert not never & held, "events whose request never connected are stored"
    assert len(event_id_list(a)) == len(held), "A serves duplicates"
    figures = {
        "seed": seed,
        "kills": plan.kills,
        "acknowledged": len(acked),
        "indeterminate": len(maybe),
        "committed_unacked": len(ledger.committed_unacked),
        "requests": ledger.requests,
        "failed_requests": ledger.errors,
        "lost": len(lost),
        "unexpected": len(unexpected),
        "integrity_ok": integrity_ok,
        "seconds": round(time.monotonic() - started, 1),
    }
    report(request, "crash/ingest", figures)


@pytest.mark.parametrize("plan", PLANS)
def test_kill9_during_federation_converges(
    cluster: Cluster, plan: CrashPlan, request: pytest.FixtureRequest
) -> None:
    """B replicates from A (stream + anti-entropy) while a poster keeps A busy; B is
    killed -9 at random moments. After each kill B's file is sound, holds everything it
    had committed, and its saved stream cursor never went back; at the end B converges
    to exactly A's set, which is acknowledged ∪ indeterminate."""
    rng, seed = chaos_rng("crash during federation")
    started = time.monotonic()
    a, b = cluster.url("a"), cluster.url("b")
    b_data = cluster.data_dir("b")
    cluster.start("a")
    cluster.start("b", peers=[a])
    cluster.wait_until(
        lambda: (peer_entry(b, a) or {}).get("state") == "live", "B live to A", DEADLINE_S
    )
    ledger = Ledger()
    poster = Poster(
        "fed", lambda _r: a, ledger, seed=rng.getrandbits(32), pause_s=plan.pause_s, retry=True
    )
    poster.start()
    integrity_ok = 0
    cursor: int | None = None
    try:
        for _ in range(plan.kills):
            base = event_count(b)
            cluster.wait_until(_above(lambda: event_count(b), base), "B replicating", DEADLINE_S)
            _schedule(rng.uniform(*plan.delay_s))
            committed = frozenset(stored_ids(b_data))  # B is alive: a consistent snapshot
            cluster.kill("b")
            _check_after_crash(cluster, "b", committed)
            integrity_ok += 1
            saved = persisted_cursor(b_data, a)
            if cursor is not None:
                assert saved is not None and saved >= cursor, f"B's cursor went {cursor}→{saved}"
            cursor = saved
            cluster.restart("b")
    finally:
        poster.stop()

    acked, maybe, _ = ledger.snapshot()
    held = frozenset(event_ids(a))
    assert not ledger.rejected, f"valid events rejected: {ledger.rejected[:5]}"
    assert not ledger.phantoms, f"duplicate on first delivery: {sorted(ledger.phantoms)[:3]}"
    assert acked <= held, f"A lost {len(acked - held)} acknowledged events"
    assert held <= acked | maybe, "A holds events never posted"
    converge_start = time.monotonic()
    # Polled on B's count and file (cheap at any size); B's feed is compared once after.
    cluster.wait_until(
        lambda: event_count(b) == len(held) and stored_ids(b_data) == held,
        "B converged to A after the crashes",
        CONVERGE_S,
    )
    converge_s = time.monotonic() - converge_start
    assert sorted(event_id_list(b)) == sorted(held), "B serves duplicates"
    assert integrity_check(b_data) == "ok"
    figures = {
        "seed": seed,
        "kills": plan.kills,
        "acknowledged": len(acked),
        "indeterminate": len(maybe),
        "on_a": len(held),
        "lost": len(acked - held),
        "unexpected": len(held - acked - maybe),
        "integrity_ok": integrity_ok + 1,
        "final_cursor": cursor,
        "converge_s": round(converge_s, 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    report(request, "crash/federation", figures)
