"""Partition and heal, Jepsen style: a set of acknowledged posts survives a nemesis.

Five real nodes form a full mesh in which every node-to-node link goes through its own
:class:`~tests.e2e.fedproc.TcpProxy` (peer exchange off, anti-entropy every second).
Client threads post batches to random nodes directly and record what they were told
(:class:`~tests.adversarial.chaos.Ledger`), while a nemesis (seeded, seed printed)
cuts and heals links, splits the mesh into halves and ``kill -9``s and restarts nodes.
Then everything is healed, every node is killed and restarted at once, and the test
waits for one common set. Spec 0005 §convergence: "between any two nodes connected by a path of live
peers, every stored event is therefore eventually stored by both".

The set check: every node holds the same set S, with
acknowledged ⊆ S ⊆ acknowledged ∪ indeterminate (nothing lost, nothing invented),
and no event of a request whose connection was refused (nothing was sent) is in S.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest

from tests.adversarial.chaos import (
    Ledger,
    Mesh,
    Nemesis,
    Poster,
    chaos_rng,
    integrity_check,
    report,
    soak_param,
    stored_ids,
)
from tests.e2e.fedproc import Cluster, event_id_list, wait_until

pytestmark = pytest.mark.e2e


@dataclass(frozen=True, slots=True, kw_only=True)
class JepsenPlan:
    nodes: int
    clients: int
    #: How long the nemesis runs, and its random pause between operations (seconds).
    duration_s: float
    gap_s: tuple[float, float]
    #: Most nodes down at once.
    max_down: int
    #: Convergence deadline once everything is healed and up.
    converge_s: float
    #: Each client's pause between requests (seconds).
    pause_s: tuple[float, float] = (0.0, 0.1)


DEFAULT = JepsenPlan(nodes=5, clients=3, duration_s=14, gap_s=(0.2, 0.9), max_down=2, converge_s=60)
SOAK = JepsenPlan(
    nodes=5,
    clients=4,
    duration_s=300,
    gap_s=(0.1, 1.5),
    max_down=3,
    converge_s=180,
    pause_s=(0.0, 0.3),
)

#: Deadline for the mesh to come up before the run.
STARTUP_S = 30


@pytest.mark.parametrize("plan", [pytest.param(DEFAULT, id="default"), soak_param(SOAK)])
def test_partitions_and_crashes_converge_to_the_acknowledged_set(
    cluster: Cluster, plan: JepsenPlan, request: pytest.FixtureRequest
) -> None:
    """Clients post to random nodes while the nemesis partitions and crashes them; after
    the heal every node holds the same set: all acknowledged events, no invented one.
    Spec 0005 §convergence; DESIGN §node ("kill -9 loses nothing acknowledged")."""
    rng, seed = chaos_rng("partition/heal set check")
    started = time.monotonic()
    mesh = Mesh(cluster, [f"n{i}" for i in range(plan.nodes)])
    mesh.start_all()
    cluster.wait_until(mesh.all_live, "full mesh live", STARTUP_S)
    urls = mesh.urls()

    ledger = Ledger()
    posters = [
        Poster(
            f"c{i}",
            lambda r: r.choice(urls),
            ledger,
            seed=rng.getrandbits(32),
            batch=(1, 20),
            pause_s=plan.pause_s,
            timeout_s=5,
        )
        for i in range(plan.clients)
    ]
    nemesis = Nemesis(
        mesh, rng, duration_s=plan.duration_s, gap_s=plan.gap_s, max_down=plan.max_down
    )
    for poster in posters:
        poster.start()
    nemesis.start()
    try:
        nemesis.join()
    finally:
        nemesis.stop()
        for poster in posters:
            poster.stop()
    history = nemesis.history()

    # Heal everything, then crash and restart every node at once (the live ones with a
    # last kill -9); from here the network is quiet.
    heal_start = time.monotonic()
    mesh.heal_all()
    for name in mesh.names:
        if name not in nemesis.down:
            cluster.kill(name)
    final_checks = {n: integrity_check(cluster.data_dir(n)) for n in mesh.names}
    on_disk = set[str]().union(*(stored_ids(cluster.data_dir(n)) for n in mesh.names))
    mesh.restart(mesh.names)
    all_up = time.monotonic()
    common = wait_until(
        mesh.converged,
        plan.converge_s,
        "all nodes hold one set",
        logs=lambda: f"nemesis:\n{history}\n{cluster.logs()}",
    )
    converge_s = time.monotonic() - heal_start
    from_up_s = time.monotonic() - all_up

    acked, maybe, never = ledger.snapshot()
    assert acked <= on_disk, f"{len(acked - on_disk)} acknowledged events in no store file"
    lost = acked - common
    unexpected = common - acked - maybe
    figures = nemesis.figures
    assert not ledger.rejected, f"valid events rejected: {ledger.rejected[:5]}"
    assert not ledger.phantoms, f"duplicate on first delivery: {sorted(ledger.phantoms)[:3]}"
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:3]}\n{history}"
    assert not unexpected, f"{len(unexpected)} events nobody posted\n{history}"
    assert not never & common, "events of a request that never connected are stored"
    for url in urls:
        served = event_id_list(url)
        assert set(served) == common, f"{url} serves another set than its store holds"
        assert len(served) == len(common), f"{url} serves duplicates"
    bad = [v for v in [*figures.integrity, *final_checks.values()] if v != "ok"]
    assert not bad, f"corrupt store after kill -9: {bad[:3]}\n{history}"
    for name in mesh.names:
        assert integrity_check(cluster.data_dir(name)) == "ok", f"{name}'s store at the end"

    ops = Counter(op.split()[1] for op in figures.ops)
    summary = {
        "seed": seed,
        "nodes": plan.nodes,
        "nemesis_ops": len(figures.ops),
        "link_cuts": figures.link_cuts,
        "link_heals": figures.link_heals,
        "partitions": figures.partitions,
        "heal_alls": ops["heal-all"],
        "kills": figures.kills + plan.nodes - len(nemesis.down),
        "restarts": figures.restarts,
        "requests": ledger.requests,
        "failed_requests": ledger.errors,
        "acknowledged": len(acked),
        "indeterminate": len(maybe),
        "indeterminate_present": len(maybe & common),
        "not_delivered": len(never),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "integrity_ok": len(figures.integrity) + 2 * plan.nodes,
        "converge_s": round(converge_s, 2),
        "converge_after_up_s": round(from_up_s, 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    report(request, "partition", summary)
