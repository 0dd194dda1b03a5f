"""Ingest: events/s a node accepts, verifies and durably stores over HTTP.

``murmur bench ingest [--events N] [--batch B] [--concurrency C] [--one-event N]
[--clients 8,64] [--lone-posts N] [--store postgresql] [--quick]``

A separate client process (this one) posts pre-signed, realistic events (see
:mod:`bench.dataset`) to a fresh node as msgpack batches, ``C`` requests in flight,
and times from the first request to the last acknowledgement; every event must come
back ``accepted``. Two node set-ups are measured:

* **one core**: the node pinned to one CPU with one verification worker (a thread:
  ``verify_in = "auto"`` on one CPU), the client on another CPU;
* **all cores**: the node free on every CPU, verification in one worker process per
  CPU (``verify_in = "auto"``, spec 0004 #verify-workers); the node's CPU counts its
  workers'.

Next to them, in the same run, the physical limits: the raw Ed25519 verify rate of
``cryptography`` on one core (keys already loaded, nothing but ``verify``) and the
raw rate of inserting the same rows into SQLite with the node's schema and durability
settings (WAL, ``synchronous=FULL``, one transaction per batch). The ratios are the
result; the absolute rates depend on the machine.

Unless ``--no-rotatable``, each set-up also ingests, into another fresh node, the same
kind of corpus written by ``did:murmur`` authors (spec 0008: v2 events with ``kev``,
each chain starting with its genesis, about 1% rotations), and the ratio of its rate to
the did:key corpus's is reported (issue #15: the key check is a lookup, so at least
:data:`TARGET_V2_RATIO`).

Then, unless ``--clients 0``, each set-up again with **one event per request**, as
users post (:mod:`bench.one_event`, issue #19): the first ``--one-event`` events of the
did:key corpus, each a request of its own, by 8 and by 64 concurrent posters (each on
its own keep-alive connection, posting its next event when its last is acknowledged),
each run into a fresh node; events/s against raw verify (issue #19: 64 clients on one
core at least :data:`~bench.one_event.TARGET_RATIO`) and against the batched rate of
the same set-up, node CPU per event, p50/p99 acknowledgement latency (p99 under
:data:`~bench.one_event.TARGET_P99_MS` ms), the client's own CPU share; then, on the
same node once idle, ``--lone-posts`` posts one at a time (spec 0004 #group-commit: a
lone post is not delayed). The node's admission gate is widened so that every poster
of the one client address fits (:func:`bench.one_event.measure_one_event`).

With ``--store postgresql``, the same run then measures PostgreSQL nodes
(:mod:`bench.pg_ingest`).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    NodeProcess,
    add_common_args,
    cpu_count,
    percentile,
    print_table,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from bench.dataset import Dataset, generate
from bench.one_event import CLIENTS, TARGET_P99_MS, TARGET_RATIO, measure_one_event
from node.store.migrations import migrate
from protocol.encoding import decode, encode_bins
from protocol.errors import UnknownKeyEventError
from protocol.events import decode_unverified, signing_message
from protocol.identity import PublicKey

__all__ = [
    "TARGET_V2_RATIO",
    "Posted",
    "batches",
    "main",
    "post_all",
    "raw_commit_ms",
    "raw_sqlite_rate",
    "raw_verify_rate",
]

MSGPACK = "application/msgpack"
#: Rotatable authors' events/s over did:key authors' events/s, same set-up, same run.
TARGET_V2_RATIO = 0.90
#: A batch shed (429/503) is retried after its Retry-After this many times at most.
_MAX_TRIES = 20
#: Rounds of sending again what was refused as "not yet", and their batch size.
_MAX_ROUNDS = 5
_RETRY_BATCH = 500
_NOT_YET = frozenset({UnknownKeyEventError.code})


def raw_verify_rate(data: Dataset, limit: int) -> float:
    """Ed25519 verifications per second on one core: keys loaded, only ``verify``."""
    events = [decode_unverified(w) for w in data.wires[:limit]]
    keys = {did: PublicKey.from_did(did) for did in {e.author for e in events}}
    jobs = [(keys[e.author]._key, e.sig, signing_message(e.id)) for e in events]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for key, sig, msg in jobs:
            key.verify(sig, msg)
        best = max(best, len(jobs) / (time.perf_counter() - start))
    return best


def raw_sqlite_rate(data: Dataset, limit: int, batch: int, where: Path) -> float:
    """Rows per second into the node's ``events`` table: WAL, FULL sync, batched."""
    events = [decode_unverified(w) for w in data.wires[:limit]]
    rows = [
        (e.id, e.author, e.seq, e.prev, e.ts, e.kind, e.header_bytes, e.sig, e.body_bytes, 0, 0)
        for e in events
    ]
    path = where / "raw.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn)
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO events (id, author, seq, prev, ts, kind, header, sig, body, deleted, "
            "received_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows[i : i + batch],
        )
        conn.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - start)
    conn.close()
    return rate


def raw_commit_ms(data: Dataset, count: int, where: Path) -> list[float]:
    """Milliseconds of each of ``count`` transactions of one row into the node's
    ``events`` table (WAL, FULL sync): a durable commit, the floor of a lone post."""
    events = [decode_unverified(w) for w in data.wires[:count]]
    conn = sqlite3.connect(where / "commit.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn)
    out = []
    for e in events:
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events (id, author, seq, prev, ts, kind, header, sig, body, deleted, "
            "received_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.author, e.seq, e.prev, e.ts, e.kind, e.header_bytes, e.sig, e.body_bytes,
             0, 0),
        )  # fmt: skip
        conn.execute("COMMIT")
        out.append((time.perf_counter() - start) * 1000)
    conn.close()
    return out


@dataclass(frozen=True, slots=True)
class Posted:
    """What :func:`post_all` did: wall time, events accepted, events sent again."""

    seconds: float
    accepted: int
    #: Events refused with a retryable code and accepted when sent again (see below).
    retried: int = 0


async def post_all(
    url: str | Sequence[str], bodies: list[bytes], concurrency: int, *, expect: int,
    first: int = 0,
) -> Posted:  # fmt: skip
    """POST every batch body with ``concurrency`` in flight, then what was refused as
    "not yet" (a retryable code: with requests in flight a did:murmur author's event can
    reach the writer before the key event its ``kev`` names, spec 0008 #nodes), as a
    peer would; every event must end up accepted. The ``first`` bodies are all
    acknowledged before the others are sent (the batches that start the chains: a
    genesis is held before the events relying on it, as a peer's stream has them).

    Several URLs (the processes of one node) share the requests in flight: sender
    ``i`` posts to ``url[i % len(url)]``, each taking the next batch when its last is
    acknowledged, as a load balancer holding a fixed set of connections would."""
    urls = [url] if isinstance(url, str) else list(url)
    accepted = retried = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    waves = [bodies[:first], bodies[first:]]
    again: list[bytes] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker(url: str) -> None:
            nonlocal accepted
            while not queue.empty():
                body = queue.get_nowait()
                for _ in range(_MAX_TRIES):
                    resp = await client.post(
                        url + "/v1/events",
                        content=body,
                        headers={"content-type": MSGPACK, "accept": "application/json"},
                    )
                    if resp.status_code in (429, 503):  # shed: honour Retry-After
                        await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                        continue
                    resp.raise_for_status()
                    doc = resp.json()
                    accepted += doc["accepted"]
                    if doc["accepted"] + doc["duplicate"] != len(doc["results"]):
                        again.extend(_refused_not_yet(body, doc["results"]))
                    break
                else:
                    raise RuntimeError(f"batch still refused after {_MAX_TRIES} tries")

        start = time.perf_counter()
        for wave in waves:
            for b in wave:
                queue.put_nowait(b)
            await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(concurrency)))
        for _ in range(_MAX_ROUNDS):
            if not again:
                break
            retried += len(again)
            for at in range(0, len(again), _RETRY_BATCH):
                queue.put_nowait(encode_bins(again[at : at + _RETRY_BATCH]))
            again.clear()
            await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    if accepted != expect:
        raise RuntimeError(f"node accepted {accepted} of {expect} events")
    return Posted(elapsed, accepted, retried)


def _refused_not_yet(body: bytes, results: list[dict[str, Any]]) -> list[bytes]:
    """The wires of ``body`` answered with a retryable code; raise on any other refusal."""
    wires = decode(body)
    out = []
    for wire, result in zip(wires, results, strict=True):
        if result["status"] != "rejected":
            continue
        if result["error"] not in _NOT_YET:
            raise RuntimeError(f"node rejected an event: {result['error']}: {result['message']}")
        out.append(wire)
    return out


def _counts(text: str) -> tuple[int, ...]:
    """``--clients``: comma-separated positive counts; ``0`` for none."""
    try:
        counts = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if counts == (0,):
        return ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("client counts must be positive (or just 0)")
    return counts


def _one_event_report(
    runs: dict[str, dict[str, Any]], batched: dict[str, Any],
    setups: Sequence[tuple[str, str, Any, Any, int]], verify: float, single: int, lone: int,
    commit_ms: Sequence[float],
) -> dict[str, Any]:  # fmt: skip
    """Add the ratios to the one-event runs, print their table and targets, return the
    JSON part (issue #19 point 4)."""
    rows: list[list[Any]] = []
    for key, label, *_ in setups:
        alone = None
        for r in list(runs[key].values()):
            r["vs_raw_verify"] = round(r["events_per_s"] / verify, 3)
            r["vs_batched"] = round(r["events_per_s"] / batched[key]["events_per_s"], 3)
            rows.append([f"node over HTTP, {label}, {r['clients']} clients", r["events_per_s"],
                         r["vs_raw_verify"], r["vs_batched"], r["node_cpu_us_per_event"],
                         r["p50_ms"], r["p99_ms"], r["client_cpu_share"]])  # fmt: skip
            if "lone" in r:
                runs[key]["lone"] = alone = r.pop("lone")
        if alone is not None:
            rows.append([f"lone post, {label} (idle node)", alone["events_per_s"], "-", "-",
                         "-", alone["p50_ms"], alone["p99_ms"],
                         alone["client_cpu_share"]])  # fmt: skip
    commit = {"p50_ms": round(percentile(commit_ms, 50), 2),
              "p99_ms": round(percentile(commit_ms, 99), 2)}  # fmt: skip
    if commit_ms:
        rows.append(["raw SQLite commit of one row (WAL, FULL)", 1000 / statistics.fmean(commit_ms),
                     "-", "-", "-", commit["p50_ms"], commit["p99_ms"], "-"])  # fmt: skip
    print_table(
        f"one event per request: {single:,} events a run (each on a fresh node), "
        f"then {lone:,} lone posts",
        rows,
        ["what", "events/s", "x raw verify", "x batched", "node CPU us/event", "p50 ms",
         "p99 ms", "client CPU share"],
    )  # fmt: skip
    key = "one_core" if "one_core" in runs else "all_cores"
    r64 = runs[key].get("clients_64")
    out: dict[str, Any] = {"events": single, "lone_posts": lone, **runs,
                           "raw_commit": commit if commit_ms else None,
                           "target_ratio": TARGET_RATIO, "target_p99_ms": TARGET_P99_MS,
                           "target_met": None, "target_p99_met": None}  # fmt: skip
    if r64 is not None:
        out["target_met"] = r64["vs_raw_verify"] >= TARGET_RATIO
        out["target_p99_met"] = r64["p99_ms"] < TARGET_P99_MS
        where = key.replace("_", " ")
        print(f"  target: one event per request, 64 clients, {where} >= {TARGET_RATIO:.2f}x "
              f"raw verify: {'met' if out['target_met'] else 'NOT met'} "
              f"({r64['vs_raw_verify']:.2f}x)")  # fmt: skip
        print(f"  target: its p99 acknowledgement latency < {TARGET_P99_MS:.0f} ms: "
              f"{'met' if out['target_p99_met'] else 'NOT met'} ({r64['p99_ms']:.1f} ms)")
    pegged = [f"{label}, {r['clients']} clients" for k, label, *_ in setups
              for name, r in runs[k].items()
              if name != "lone" and r["client_cpu_share"] > 0.8]  # fmt: skip
    if pegged:
        print(f"  warning: the client was near its CPU's limit ({'; '.join(pegged)}): "
              "those rates may be the client's, not the node's")
    return out


def batches(data: Dataset, size: int) -> list[bytes]:
    return [encode_bins(data.wires[i : i + size]) for i in range(0, len(data.wires), size)]


def measure_node(
    data: Dataset, batch: int, concurrency: int, *, node_cpus: set[int] | None,
    client_cpus: set[int] | None, workers: int, where: Path,
) -> dict[str, Any]:
    """Start a fresh node, post everything, report its rate, CPU and memory."""
    import os

    config = write_config(where / "node.toml", node={"verify_workers": workers})
    bodies = batches(data, batch)
    with NodeProcess(where / "data", "--config", str(config), cpus=node_cpus) as node:
        before = node.cpu_seconds()
        old = os.sched_getaffinity(0) if client_cpus else None
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        try:
            # Both corpora alike: the batches of every chain's first event (a did:key's
            # profile, a did:murmur's genesis) before the rest.
            chains = -(-len(data.authors) // batch)
            posted = asyncio.run(
                post_all(node.url, bodies, concurrency, expect=len(data.wires), first=chains)
            )
        finally:
            if old is not None:
                os.sched_setaffinity(0, old)
        cpu = node.cpu_seconds() - before
        rss, peak = node.rss_bytes()
    accepted = posted.accepted
    return {
        "events": accepted,
        "seconds": round(posted.seconds, 3),
        "events_per_s": round(accepted / posted.seconds, 1),
        "retried": posted.retried,
        "node_cpu_s": round(cpu, 2),
        "node_cpu_us_per_event": round(cpu / accepted * 1e6, 1),
        "node_rss_mb": round(rss / 2**20, 1),
        "node_peak_rss_mb": round(peak / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="murmur bench ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events to ingest (default 200000; quick 20000)")
    parser.add_argument("--batch", type=int, default=500, help="events per request (default 500)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--authors", type=int, default=2000, help="distinct authors (2000)")
    parser.add_argument(
        "--no-rotatable", action="store_true",
        help="skip the corpus of did:murmur authors (v2 events)",
    )  # fmt: skip
    parser.add_argument(
        "--one-event", type=int, metavar="N",
        help="events posted one a request, by each client count (default 20000; quick 3000)",
    )  # fmt: skip
    parser.add_argument(
        "--clients", type=_counts, default=CLIENTS, metavar="A,B",
        help="concurrent one-event posters of each run (default 8,64); 0 skips them",
    )  # fmt: skip
    parser.add_argument(
        "--lone-posts", type=int, metavar="N",
        help="posts one at a time on the idle node (default 1000; quick 200)",
    )  # fmt: skip
    parser.add_argument(
        "--store", choices=("sqlite", "postgresql"), default="sqlite",
        help="postgresql: also measure PostgreSQL nodes (1 and 2 processes) in this run",
    )  # fmt: skip
    add_common_args(parser, "ingest")
    args = parser.parse_args(argv)
    n = args.events or (20_000 if args.quick else 200_000)
    cpus = cpu_count()
    ts_start = int(time.time() * 1000) - n - 60_000
    progress(f"signing {n:,} realistic events")
    data = generate(n, authors=args.authors, ts_start=ts_start)
    data_v2 = None
    if not args.no_rotatable:
        progress(f"signing {n:,} realistic events by did:murmur authors")
        data_v2 = generate(n, authors=args.authors, ts_start=ts_start, rotatable=True)
    lone = args.lone_posts if args.lone_posts is not None else min(200 if args.quick else 1000,
                                                                   n // 10)  # fmt: skip
    single = args.one_event or min(3_000 if args.quick else 20_000, n - lone)
    if args.clients and (single < 1 or lone < 0 or single + lone > n):
        parser.error(f"--one-event plus --lone-posts must be from 1 to --events ({n:,})")
    one_event: dict[str, dict[str, Any]] = {}
    sample = min(n, 20_000)
    progress("measuring raw Ed25519 verify and raw SQLite insert")
    verify = raw_verify_rate(data, sample)
    results: dict[str, Any] = {}
    setups: list[tuple[str, str, set[int] | None, set[int] | None, int]] = []
    if cpus >= 2:
        setups.append(("one_core", "1 core", {0}, {1}, 1))
    setups.append(("all_cores", f"{cpus} cores", None, None, 0))
    with scratch_dir("ingest") as where:
        sqlite_rate = raw_sqlite_rate(data, sample, args.batch, where)
        commit_ms = raw_commit_ms(data, lone, where) if args.clients and lone else []
        for key, label, node_cpus, client_cpus, workers in setups:
            # did:key and did:murmur one after the other, so both see the same machine.
            for suffix, corpus in (("", data), ("_v2", data_v2)):
                if corpus is None:
                    continue
                progress(f"node on {label}{' (did:murmur authors)' if suffix else ''}")
                (where / f"{key}{suffix}").mkdir()
                results[f"{key}{suffix}"] = measure_node(
                    corpus, args.batch, args.concurrency, node_cpus=node_cpus,
                    client_cpus=client_cpus, workers=workers, where=where / f"{key}{suffix}",
                )  # fmt: skip
            for i, clients in enumerate(args.clients):
                progress(f"node on {label}: one event per request, {clients} clients"
                         + (f", then {lone} lone posts" if i == len(args.clients) - 1 else ""))
                at = where / f"{key}_one_event_{clients}"
                at.mkdir()
                one_event.setdefault(key, {})[f"clients_{clients}"] = measure_one_event(
                    data.wires[:single], clients, node_cpus=node_cpus, client_cpus=client_cpus,
                    workers=workers, where=at,
                    lone=data.wires[single : single + lone] if i == len(args.clients) - 1 else (),
                )  # fmt: skip
        if args.store == "postgresql":
            from bench.pg_ingest import measure_postgresql  # it imports this module

            pg = measure_postgresql(data, args, results["all_cores"]["events_per_s"], where)
    rows: list[list[Any]] = [
        ["raw Ed25519 verify, 1 core", verify, 1.0, "-", "-"],
        ["raw SQLite insert (same rows)", sqlite_rate, sqlite_rate / verify, "-", "-"],
    ]
    for key, label, *_ in setups:
        r = results[key]
        r["vs_raw_verify"] = round(r["events_per_s"] / verify, 3)
        rows.append([f"node over HTTP, {label}", r["events_per_s"], r["vs_raw_verify"],
                     r["node_cpu_us_per_event"], "-"])  # fmt: skip
        v2 = results.get(f"{key}_v2")
        if v2 is not None:
            v2["vs_raw_verify"] = round(v2["events_per_s"] / verify, 3)
            v2["vs_did_key"] = round(v2["events_per_s"] / r["events_per_s"], 3)
            rows.append([
                f"  ... did:murmur authors (v2), {label}", v2["events_per_s"],
                v2["vs_raw_verify"], v2["node_cpu_us_per_event"], v2["vs_did_key"],
            ])  # fmt: skip
    sizes = f"{data.total_bytes / n:.0f} B avg"
    if data_v2 is not None:
        sizes += f"; v2 {data_v2.total_bytes / n:.0f} B, {data_v2.kinds.count('rotate')} rotations"
    print_table(
        f"ingest: {n:,} events ({sizes}), batches of {args.batch}, {args.concurrency} in flight",
        rows,
        ["what", "events/s", "x raw verify", "node CPU us/event", "v2 / did:key"],
    )
    target = "one_core" if "one_core" in results else "all_cores"
    met = results[target]["vs_raw_verify"] >= 0.7
    print(f"  target: 1-core ingest >= 0.70x raw verify: {'met' if met else 'NOT met'} "
          f"({results[target]['vs_raw_verify']:.2f}x)")
    doc: dict[str, Any] = {
        "events": n,
        "avg_event_bytes": round(data.total_bytes / n, 1),
        "batch": args.batch,
        "concurrency": args.concurrency,
        "raw_verify_per_s": round(verify, 1),
        "raw_sqlite_insert_per_s": round(sqlite_rate, 1),
        **results,
        "target_one_core_ratio": 0.7,
        "target_met": met,
    }
    if data_v2 is not None:
        ratio = results[f"{target}_v2"]["vs_did_key"]
        doc["v2_avg_event_bytes"] = round(data_v2.total_bytes / n, 1)
        doc["v2_rotations"] = data_v2.kinds.count("rotate")
        doc["target_v2_ratio"] = TARGET_V2_RATIO
        doc["target_v2_met"] = ratio >= TARGET_V2_RATIO
        print(f"  target: did:murmur ingest >= {TARGET_V2_RATIO:.2f}x did:key "
              f"({target.replace('_', ' ')}): {'met' if doc['target_v2_met'] else 'NOT met'} "
              f"({ratio:.2f}x)")  # fmt: skip
    if args.store == "postgresql":
        from bench.pg_ingest import print_postgresql

        print_postgresql(pg, results["all_cores"]["events_per_s"], cpus)
        doc["postgresql"] = pg
    if args.clients:
        doc["one_event"] = _one_event_report(
            one_event, results, setups, verify, single, lone, commit_ms
        )
    write_result(args.out, "ingest", doc)
    return 0
