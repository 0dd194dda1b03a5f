"""Memory and disk: node RSS while and after ingesting N events; bytes on disk per event.

``murmur bench memory [--events N] [--authors A] [--quick]``

A fresh node ingests ``N`` realistic events over HTTP (default 1,000,000; quick
50,000). Reported: the node's RSS sampled during ingest (peak), its RSS once done,
its RSS after answering a peer's first anti-entropy message (which builds the sync
snapshot of every ``(ts, id)``, as a federating node does), and the bytes of its data
directory per event against the bytes of the events themselves. The data directory
is kept as the corpus ``bench timeline`` reads (``bench/results/cache/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx

from bench.common import NodeProcess, add_common_args, print_table, write_result
from bench.corpus import CACHE, build_corpus
from bench.dataset import Dataset
from node.federation.sync import SYNC_CONTENT_TYPE
from protocol.negentropy import Negentropy
from protocol.negentropy_storage import NegentropyStorage

__all__ = ["main"]

TARGET_RSS_MB = 200


def _readings(node: NodeProcess, data: Dataset) -> dict[str, Any]:
    rss, peak = node.rss_bytes()
    out: dict[str, Any] = {"rss_after_ingest_mb": round(rss / 2**20, 1)}
    out["peak_rss_during_ingest_mb"] = round(peak / 2**20, 1)
    # A peer's first negentropy message: the node builds its sync snapshot to answer.
    empty = NegentropyStorage.from_items([])
    first = Negentropy(empty, 1_000_000).initiate()
    resp = httpx.post(
        node.url + "/v1/sync",
        content=first,
        headers={"content-type": SYNC_CONTENT_TYPE, "accept": SYNC_CONTENT_TYPE},
        timeout=120,
    )
    resp.raise_for_status()
    rss, peak = node.rss_bytes()
    out["rss_after_sync_snapshot_mb"] = round(rss / 2**20, 1)
    out["peak_rss_mb"] = round(peak / 2**20, 1)
    workers_rss, workers_pss = node.workers_memory_bytes()
    out["workers_rss_mb"] = round(workers_rss / 2**20, 1)
    out["workers_pss_mb"] = round(workers_pss / 2**20, 1)
    out["wire_bytes_per_event"] = round(data.total_bytes / len(data.wires), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, help="events (default 1000000; quick 50000)")
    parser.add_argument("--authors", type=int, default=10_000, help="authors (10000)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where corpora are kept")
    add_common_args(parser, "memory")
    args = parser.parse_args(argv)
    n = args.events or (50_000 if args.quick else 1_000_000)
    corpus = build_corpus(n, args.authors, on_node=_readings, cache=args.cache)
    info = corpus.info
    disk = sum(p.stat().st_size for p in corpus.data_dir.rglob("*") if p.is_file())
    info["disk_bytes"] = disk
    info["disk_bytes_per_event"] = round(disk / n, 1)
    info["disk_vs_wire"] = round(disk / n / info["wire_bytes_per_event"], 2)
    met = info["peak_rss_mb"] < TARGET_RSS_MB
    rows = [
        ["peak RSS while ingesting", info["peak_rss_during_ingest_mb"], "MB"],
        ["RSS after ingest", info["rss_after_ingest_mb"], "MB"],
        ["RSS after sync snapshot", info["rss_after_sync_snapshot_mb"], "MB"],
        ["peak RSS overall", info["peak_rss_mb"], "MB"],
        # Absent from a corpus cached before the verification workers.
        ["worker processes, RSS", info.get("workers_rss_mb", "-"), "MB"],
        ["worker processes, PSS (shared pages split)", info.get("workers_pss_mb", "-"), "MB"],
        ["disk per event", info["disk_bytes_per_event"], "B"],
        ["wire bytes per event", info["wire_bytes_per_event"], "B"],
        ["disk / wire", info["disk_vs_wire"], "x"],
        ["ingest rate (default node)", info["ingest_per_s"], "events/s"],
    ]
    print_table(f"memory: {n:,} events by {args.authors:,} authors", rows, ["what", "value", ""])
    print(
        f"  target: RSS at {n:,} events < {TARGET_RSS_MB} MB: {'met' if met else 'NOT met'} "
        f"(peak {info['peak_rss_mb']:.0f} MB)"
    )
    doc = {k: v for k, v in info.items() if k != "authors"}
    doc.update({"authors": args.authors, "target_rss_mb": TARGET_RSS_MB, "target_met": met})
    write_result(args.out, "memory", doc)
    return 0
