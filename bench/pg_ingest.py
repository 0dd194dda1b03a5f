"""PostgreSQL nodes in ``murmur bench ingest --store postgresql`` (issue #18).

With ``--store postgresql``, the same run then starts a throwaway PostgreSQL cluster
(:mod:`bench.pgcluster`, :data:`~bench.pgcluster.BENCH_SETTINGS`: fsync and synchronous
commit on, as a durable node must run) and measures, each into a fresh database, with
the did:key corpus, the same batches and requests in flight: one node process, then
one node served by two processes on one database (spec 0004 #store-processes). The two
are started separately on two ports and the client's senders are spread over them
(two connections each, each sender taking the next batch when its last is
acknowledged), as a load balancer would: ``--workers 2`` shares one port through
``SO_REUSEPORT``, whose kernel hash can put all four keep-alive connections on one
process, which would measure one process half the time. Nothing is pinned: the client,
the node processes and the PostgreSQL server share the machine's cores as the client
and the node do in the "all cores" SQLite set-up they are compared with. Reported:
events/s, the ratio to that SQLite node (issue #18: the two processes at least
:data:`TARGET_PG_RATIO`), and CPU per event of the node processes, the PostgreSQL
server and the client, with the share of the machine's CPU time they used.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import NodeProcess, cpu_count, print_table, progress, write_config
from bench.dataset import Dataset
from bench.ingest import batches, post_all
from bench.pgcluster import BENCH_SETTINGS, ActivitySampler, PgCluster, running_cluster

__all__ = ["TARGET_PG_RATIO", "measure_pg", "measure_postgresql", "print_postgresql"]

#: PostgreSQL, one node served by 2 processes, over the SQLite node on all cores (#18).
TARGET_PG_RATIO = 1.0


def measure_pg(
    data: Dataset, batch: int, concurrency: int, *, cluster: PgCluster, processes: int,
    where: Path,
) -> dict[str, Any]:  # fmt: skip
    """Start ``processes`` node processes on one fresh database of ``cluster`` (each on
    its own port: one node, spec 0004 #store-processes), post everything spread over
    them, report the rate and where the CPU went (node processes, PostgreSQL server,
    this client), nothing pinned."""
    url = asyncio.run(cluster.create_database(f"ingest_{processes}p"))
    config = write_config(where / "node.toml", node={"verify_workers": 0})
    bodies = batches(data, batch)
    with ExitStack() as stack:
        nodes = [
            stack.enter_context(
                NodeProcess(where / f"data{i}", "--store", url, "--config", str(config))
            )
            for i in range(processes)
        ]
        node_before = sum(n.cpu_seconds() for n in nodes)
        pg_before = cluster.cpu_seconds()
        client_before = time.process_time()
        chains = -(-len(data.authors) // batch)
        with ActivitySampler(cluster, url.rsplit("/", 1)[1]) as activity:
            posted = asyncio.run(
                post_all([n.url for n in nodes], bodies, concurrency, expect=len(data.wires),
                         first=chains)
            )  # fmt: skip
        client = time.process_time() - client_before
        pg = cluster.cpu_seconds() - pg_before
        node = sum(n.cpu_seconds() for n in nodes) - node_before
        rss = [n.rss_bytes()[1] for n in nodes]
    accepted = posted.accepted
    return {
        "processes": processes,
        "events": accepted,
        "seconds": round(posted.seconds, 3),
        "events_per_s": round(accepted / posted.seconds, 1),
        "node_cpu_us_per_event": round(node / accepted * 1e6, 1),
        "pg_cpu_us_per_event": round(pg / accepted * 1e6, 1),
        "client_cpu_us_per_event": round(client / accepted * 1e6, 1),
        # Of all the CPU time the machine had during the run: near 1.0 = CPU-bound.
        "cpu_busy": round((node + pg + client) / (posted.seconds * cpu_count()), 3),
        "node_peak_rss_mb": [round(r / 2**20, 1) for r in rss],
        # The node's connections to the server, on average, by what they were doing.
        "pg_connections": activity.shares(),
    }


def measure_postgresql(
    data: Dataset, args: argparse.Namespace, sqlite_rate: float, where: Path
) -> dict[str, Any]:
    """One node process, then one node served by two, each into a fresh database of a
    throwaway cluster with the benchmarks' durable settings; their rates against the
    SQLite node's on all cores, same corpus, same run."""
    out: dict[str, Any] = {}
    progress("starting a throwaway PostgreSQL cluster (fsync and synchronous commit on)")
    with running_cluster(BENCH_SETTINGS) as cluster:
        for key, processes in (("one_process", 1), ("two_processes", 2)):
            progress(f"PostgreSQL node, {processes} process{'es' if processes > 1 else ''}")
            (where / key).mkdir()
            r = measure_pg(data, args.batch, args.concurrency, cluster=cluster,
                           processes=processes, where=where / key)  # fmt: skip
            r["vs_sqlite"] = round(r["events_per_s"] / sqlite_rate, 3)
            out[key] = r
    out["settings"] = dict(BENCH_SETTINGS)
    out["target_vs_sqlite"] = TARGET_PG_RATIO
    out["target_met"] = out["two_processes"]["vs_sqlite"] >= TARGET_PG_RATIO
    return out


def print_postgresql(pg: dict[str, Any], sqlite_rate: float, cpus: int) -> None:
    rows: list[list[Any]] = [[f"SQLite node, {cpus} cores (above)", sqlite_rate, 1.0,
                              "-", "-", "-", "-"]]  # fmt: skip
    for key, label in (("one_process", "1 process"), ("two_processes", "2 processes")):
        r = pg[key]
        rows.append([f"PostgreSQL node, {label}", r["events_per_s"], r["vs_sqlite"],
                     r["node_cpu_us_per_event"], r["pg_cpu_us_per_event"],
                     r["client_cpu_us_per_event"], r["cpu_busy"]])  # fmt: skip
    print_table(
        f"ingest into PostgreSQL (same corpus, one database, nothing pinned on {cpus} "
        "cores, fsync + synchronous_commit on)",
        rows,
        ["what", "events/s", "x SQLite", "node CPU us/ev", "PG CPU us/ev",
         "client CPU us/ev", "CPU busy"],
    )  # fmt: skip
    for key, label in (("one_process", "1 process"), ("two_processes", "2 processes")):
        states = ", ".join(f"{k} {v:.2f}" for k, v in pg[key]["pg_connections"].items())
        print(f"  server connections of {label} (average number): {states}")
    ratio = pg["two_processes"]["vs_sqlite"]
    print(f"  target: PostgreSQL, 2 processes >= {TARGET_PG_RATIO:.2f}x SQLite ({cpus} cores): "
          f"{'met' if pg['target_met'] else 'NOT met'} ({ratio:.2f}x)")  # fmt: skip
