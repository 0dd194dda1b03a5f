"""Reconcile: two nodes of n events differing by d%: negentropy round trips, bytes each
way and wall time, next to the bytes of sending the whole id list; and time to converge.

``murmur bench reconcile [--sizes 10000,100000] [--diffs 0.1,1,10]
[--spreads random,recent] [--converge-at 1] [--quick]``

A shared set of ``n`` realistic events (:mod:`bench.dataset`) is split so that A lacks
``d/2 %`` of it and B lacks another, disjoint ``d/2 %``: the symmetric difference is
``d %`` of ``n``. Where the differences lie is a column, because it decides the cost:

* **random**: spread uniformly over the whole history (the worst case for
  range-based reconciliation: almost every bucket mismatches);
* **recent**: the newest events (a node that was down or partitioned for a while,
  the usual case), interleaved between the two sides.

For each case a real node B holds its part (ingested over HTTP), and this process acts
as node A's sync client: exactly what a node does in ``reconcile_with``
(node/federation/sync.py), negentropy v1 (protocol/negentropy.py, the reference
splitting rules, byte-compatible with nostr-tools and strfry) against B's
``POST /v1/sync``, frame size limit the node's default. Reported: round trips, message
bytes each way (bodies, as the node counts them; HTTP headers not included), their sum
against ``n x 32`` bytes (shipping one side's id list), and the wall time of the
reconciliation, first with B's sync snapshot cold (B just changed, as in federation)
then warm. A's own storage is built beforehand (a node caches it too). The have/need
sets found are checked against the true difference, so a wrong answer fails the run.

B's missing sets are nested (0.1% within 1% within 10%), so one node B per size and
spread serves every diff, largest first, by adding events. At ``--converge-at`` (1%)
the whole federation path is also timed: a copy of B and a real node A holding its
part, A configured with B as its peer; from the moment A's stream to B is live to the
moment both hold all ``n`` events (reconcile, fetch what A lacks, offer what B lacks).

The design target: 100k events differing by 1%, under 2 s (the end-to-end convergence
when measured, else the reconciliation) and under 5% of the id list's bytes. It is
judged for each spread.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    NodeProcess,
    add_common_args,
    free_ports,
    print_table,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from bench.dataset import generate
from bench.ingest import post_all
from node.config import FederationConfig
from node.federation.sync import MAX_ROUNDS, SYNC_CONTENT_TYPE
from protocol.encoding import encode_bins
from protocol.events import decode_unverified
from protocol.negentropy import Negentropy, NegentropyStorage

__all__ = ["main"]

ID_BYTES = 32
SPREADS = ("random", "recent")
TARGET_EVENTS = 100_000
TARGET_DIFF_PCT = 1.0
TARGET_S = 2.0
TARGET_BYTES_SHARE = 0.05
#: Reconnect fast; the convergence run is the sync on connect, not a periodic one.
FEDERATION = {"backoff_min_ms": 100, "backoff_max_ms": 1000}
INGEST_BATCH = 500
INGEST_CONCURRENCY = 4
CONVERGE_DEADLINE_S = 120.0
POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class Shared:
    """The shared event set: wires, ids and ``(ts, id)`` items, in posting order."""

    wires: list[bytes]
    ids: list[bytes]
    ts: list[int]


Plan = dict[float, tuple[set[int], set[int]]]


def plan(n: int, diffs: list[float], spread: str, seed: int = 7) -> Plan:
    """For each diff (%), (indices A lacks, indices B lacks): disjoint halves of
    ``diff % x n`` events, nested from one diff to the next larger one."""
    counts = {d: max(2, round(n * d / 100)) for d in diffs}
    most = max(counts.values())
    rng = random.Random(f"{seed}/{n}/{spread}")
    if spread == "random":
        order = rng.sample(range(n), most)
    elif spread == "recent":
        order = list(range(n - 1, n - 1 - most, -1))  # newest first (ts grows with index)
    else:
        raise ValueError(spread)
    side = []  # each consecutive pair: one to A, one to B, at random
    for _ in range(0, most, 2):
        side += [0, 1] if rng.random() < 0.5 else [1, 0]
    out: dict[float, tuple[set[int], set[int]]] = {}
    for d, k in counts.items():
        out[d] = (
            {order[j] for j in range(k) if side[j] == 0},
            {order[j] for j in range(k) if side[j] == 1},
        )
    return out


def ingest(url: str, wires: list[bytes]) -> float:
    """Post ``wires`` over HTTP (all must be accepted); seconds it took."""
    bodies = [encode_bins(wires[i : i + INGEST_BATCH]) for i in range(0, len(wires), INGEST_BATCH)]
    elapsed = asyncio.run(post_all(url, bodies, INGEST_CONCURRENCY, expect=len(wires))).seconds
    return elapsed


def reconcile(
    client: httpx.Client, url: str, storage: NegentropyStorage, frame_limit: int
) -> dict[str, Any]:
    """One negentropy session against ``url``'s ``POST /v1/sync``, as a node runs it."""
    engine = Negentropy(storage, frame_limit)
    have: set[bytes] = set()
    need: set[bytes] = set()
    rounds = sent = received = 0
    client_s = server_s = 0.0
    start = time.perf_counter()
    message: bytes | None = engine.initiate()
    client_s += time.perf_counter() - start
    while message is not None:
        if rounds >= MAX_ROUNDS:
            raise RuntimeError(f"reconciliation did not finish in {MAX_ROUNDS} rounds")
        rounds += 1
        sent += len(message)
        t0 = time.perf_counter()
        resp = client.post(
            url + "/v1/sync",
            content=message,
            headers={"content-type": SYNC_CONTENT_TYPE, "accept": SYNC_CONTENT_TYPE},
        )
        resp.raise_for_status()
        answer = resp.content
        t1 = time.perf_counter()
        received += len(answer)
        message, h, nd = engine.reconcile_client(answer)
        have.update(h)
        need.update(nd)
        server_s += t1 - t0
        client_s += time.perf_counter() - t1
    wall = time.perf_counter() - start
    return {
        "rounds": rounds,
        "bytes_sent": sent,
        "bytes_received": received,
        "wall_ms": round(wall * 1000, 1),
        "client_ms": round(client_s * 1000, 1),
        "http_ms": round(server_s * 1000, 1),
        "have": have,
        "need": need,
    }


def _watch(a_url: str, b_url: str, n: int, marks: dict[str, float], stop: threading.Event) -> None:
    """Stamp when A's stream to B is live, then when both nodes hold all ``n`` events."""
    with httpx.Client(timeout=5) as client:

        def get(url: str) -> dict[str, Any] | None:
            try:
                resp = client.get(url)
            except httpx.TransportError:
                return None
            doc: dict[str, Any] | None = resp.json() if resp.status_code == 200 else None
            return doc

        while not stop.is_set() and "live" not in marks:
            doc = get(a_url + "/v1/peers")
            if doc and any(p["url"] == b_url and p["state"] == "live" for p in doc["peers"]):
                marks["live"] = time.perf_counter()
                marks["live_wall_ms"] = time.time() * 1000  # to compare with A's at_ms
            else:
                time.sleep(POLL_S)
        while not stop.is_set():
            docs = [get(u + "/v1/info") for u in (a_url, b_url)]
            if all(d is not None and d["counts"]["events"] == n for d in docs):
                marks["converged"] = time.perf_counter()
                return
            time.sleep(POLL_S)


def converge(
    b_dir: Path, a_wires: list[bytes], n: int, config: Path, where: Path
) -> dict[str, Any]:
    """Start B (from ``b_dir``) and A (holding ``a_wires``) linked A -> B; time until
    both hold ``n`` events, and what A's sync reported."""
    with NodeProcess(b_dir, "--config", str(config), "--no-peer-exchange") as b:
        with NodeProcess(where / "a", "--config", str(config), "--no-peer-exchange") as a:
            ingest(a.url, a_wires)
        port = free_ports(1)[0]
        a_url = f"http://127.0.0.1:{port}"
        marks: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(a_url, b.url, n, marks, stop), daemon=True)
        watcher.start()
        try:
            with NodeProcess(
                where / "a", "--config", str(config), "--no-peer-exchange",
                "--allow-private-peers", "--peer", b.url, port=port,
            ) as a:
                watcher.join(CONVERGE_DEADLINE_S)
                if "converged" not in marks:
                    raise RuntimeError(f"A and B did not converge in {CONVERGE_DEADLINE_S:.0f} s")
                last = _last_sync(a.url, b.url)
        finally:
            stop.set()
            watcher.join()
    return {
        "converge_s": round(marks["converged"] - marks["live"], 3),
        # From live to the end of A's sync run (reconcile, fetch, offer), by A's clock.
        "sync_run_end_s": round((last["at_ms"] - marks["live_wall_ms"]) / 1000, 3),
        "node_sync": last,
    }


def _last_sync(a_url: str, b_url: str) -> dict[str, Any]:
    """A's report of its sync with B (set once the run, fetch and offer included, ended)."""
    end = time.monotonic() + 10
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < end:
            for p in client.get(a_url + "/v1/peers").json()["peers"]:
                if p["url"] == b_url and p["last_sync"] is not None:
                    return p["last_sync"]  # type: ignore[no-any-return]
            time.sleep(POLL_S)
    raise RuntimeError("A never reported its sync with B")


def _checked(found: dict[str, Any], shared: Shared, a_lacks: set[int], b_lacks: set[int]) -> None:
    """The reconciliation must find exactly the true difference (not a timing)."""
    want_have = {shared.ids[i] for i in b_lacks}  # A holds them, B lacks them
    want_need = {shared.ids[i] for i in a_lacks}
    if found["have"] != want_have or found["need"] != want_need:
        raise RuntimeError(
            f"reconciliation found have={len(found['have'])} need={len(found['need'])}, "
            f"expected {len(want_have)} and {len(want_need)} (or other ids)"
        )


def run_case(
    shared: Shared, n: int, spread: str, diffs: list[float], converge_at: float | None,
    frame_limit: int, where: Path, say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every diff for one size and spread, on one node B, largest diff first."""
    config = write_config(where / "node.toml", federation=FEDERATION)
    cases = plan(n, diffs, spread)
    order = sorted(diffs, reverse=True)
    b_dir = where / "b"
    rows: list[dict[str, Any]] = []
    b: NodeProcess | None = None
    try:
        b = NodeProcess(b_dir, "--config", str(config), "--no-peer-exchange")
        present: set[int] = set()
        for d in order:
            a_lacks, b_lacks = cases[d]
            add = [i for i in range(n) if i not in b_lacks and i not in present]
            say(f"n={n:,} {spread} {d:g}%: B ingests {len(add):,} events")
            ingest(b.url, [shared.wires[i] for i in add])
            present.update(add)
            storage = NegentropyStorage.from_items(
                (shared.ts[i], shared.ids[i]) for i in range(n) if i not in a_lacks
            )
            with httpx.Client(timeout=120) as client:
                cold = reconcile(client, b.url, storage, frame_limit)
                warm = reconcile(client, b.url, storage, frame_limit)
            _checked(cold, shared, a_lacks, b_lacks)
            _checked(warm, shared, a_lacks, b_lacks)
            row: dict[str, Any] = {
                "events": n,
                "spread": spread,
                "diff_pct": d,
                "differ": len(a_lacks) + len(b_lacks),
                "a_lacks": len(a_lacks),
                "b_lacks": len(b_lacks),
                **{k: v for k, v in cold.items() if k not in ("have", "need")},
                "warm_wall_ms": warm["wall_ms"],
                "warm_http_ms": warm["http_ms"],
                "bytes_total": cold["bytes_sent"] + cold["bytes_received"],
                "id_list_bytes": n * ID_BYTES,
            }
            row["share_of_id_list"] = round(row["bytes_total"] / row["id_list_bytes"], 4)
            if d == converge_at:
                say(f"n={n:,} {spread} {d:g}%: timing convergence of two real nodes")
                b.stop()
                shutil.copytree(b_dir, where / "conv-b")
                a_wires = [shared.wires[i] for i in range(n) if i not in a_lacks]
                row["convergence"] = converge(where / "conv-b", a_wires, n, config, where / "conv")
                shutil.rmtree(where / "conv", ignore_errors=True)
                shutil.rmtree(where / "conv-b", ignore_errors=True)
                if d != order[-1]:
                    b = NodeProcess(b_dir, "--config", str(config), "--no-peer-exchange")
            rows.append(row)
    finally:
        if b is not None:
            b.stop()
    return rows


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench reconcile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", help="events per node (default 10000,100000; quick 10000)")
    parser.add_argument("--diffs", default="0.1,1,10",
                        help="symmetric differences, %% of n (0.1,1,10)")
    parser.add_argument("--spreads", default=",".join(SPREADS),
                        help="where the differences lie: random, recent (both)")
    parser.add_argument("--converge-at", type=float, default=TARGET_DIFF_PCT,
                        help="diff (%%) at which convergence of two real nodes is timed "
                             "(1; 0: never)")
    add_common_args(parser, "reconcile")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in _floats(args.sizes)] if args.sizes else (
        [10_000] if args.quick else [10_000, TARGET_EVENTS])
    diffs = _floats(args.diffs)
    spreads = [s for s in args.spreads.split(",") if s]
    if any(s not in SPREADS for s in spreads):
        parser.error(f"--spreads: choose from {', '.join(SPREADS)}")
    converge_at = args.converge_at if args.converge_at in diffs else None
    frame_limit = FederationConfig().sync_frame_bytes
    top = max(sizes)
    progress(f"signing {top:,} realistic events")
    data = generate(top, ts_start=int(time.time() * 1000) - top - 60_000)
    shared = Shared(data.wires, data.ids, [decode_unverified(w).ts for w in data.wires])
    results: list[dict[str, Any]] = []
    for n in sizes:
        for spread in spreads:
            with scratch_dir("reconcile") as where:
                results += run_case(shared, n, spread, diffs, converge_at, frame_limit,
                                    where, progress)
    results.sort(key=lambda r: (r["events"], r["spread"], r["diff_pct"]))
    nan = float("nan")
    rows = [
        [r["events"], r["spread"], f"{r['diff_pct']:g}%", r["differ"], r["rounds"],
         r["bytes_sent"] / 1000, r["bytes_received"] / 1000, r["id_list_bytes"] / 1000,
         f"{r['share_of_id_list']:.2%}", r["wall_ms"], r["warm_wall_ms"],
         r["convergence"]["converge_s"] if "convergence" in r else nan]
        for r in results
    ]
    print_table(
        f"reconcile: two nodes, negentropy v1 (frame limit {frame_limit:,} B), "
        "bytes are message bodies",
        rows,
        ["events", "spread", "diff", "differ", "rounds", "sent KB", "recv KB", "id list KB",
         "of id list", "wall ms", "warm ms", "converge s"],
    )
    targets: dict[str, Any] = {}
    for r in results:
        if r["events"] == TARGET_EVENTS and r["diff_pct"] == TARGET_DIFF_PCT:
            conv = r.get("convergence")
            seconds = conv["converge_s"] if conv else r["wall_ms"] / 1000
            met = seconds < TARGET_S and r["share_of_id_list"] < TARGET_BYTES_SHARE
            timed = "convergence" if conv else "reconciliation"
            targets[r["spread"]] = {"seconds": seconds, "timed": timed,
                                    "share_of_id_list": r["share_of_id_list"], "met": met}
            print(f"  target ({r['spread']}): {TARGET_EVENTS:,} events, {TARGET_DIFF_PCT:g}% "
                  f"apart: < {TARGET_S:g} s and < {TARGET_BYTES_SHARE:.0%} of the id list: "
                  f"{'met' if met else 'NOT met'} ({seconds:.2f} s {timed}, "
                  f"{r['share_of_id_list']:.1%})")
    if not targets:
        print(f"  target: not measured (needs --sizes {TARGET_EVENTS} and diff "
              f"{TARGET_DIFF_PCT:g}%)")
    write_result(args.out, "reconcile", {
        "sizes": sizes,
        "diffs_pct": diffs,
        "spreads": spreads,
        "frame_limit": frame_limit,
        "results": results,
        "target_events": TARGET_EVENTS,
        "target_diff_pct": TARGET_DIFF_PCT,
        "target_s": TARGET_S,
        "target_bytes_share": TARGET_BYTES_SHARE,
        "targets": targets,
        "target_met": all(t["met"] for t in targets.values()) if targets else None,
    })
    return 0
