"""A node data directory holding N realistic events, built over HTTP and kept for reuse.

``bench memory`` builds one (and measures the node while it does); ``bench timeline``
reuses the newest one of the same size if there is one, so a full run ingests its
million events once. The corpus lives in ``bench/results/cache/`` (git-ignored) with
a ``corpus.json`` that records how it was made; a directory without it is incomplete
and is never reused.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS, NodeProcess, progress, write_config
from bench.dataset import Dataset, generate
from bench.ingest import post_all
from protocol.encoding import encode_bins

__all__ = ["Corpus", "build_corpus", "cached_corpus", "corpus_dir"]

CACHE = RESULTS / "cache"


@dataclass(frozen=True, slots=True)
class Corpus:
    data_dir: Path
    events: int
    authors: list[str]
    info: dict[str, Any]


def corpus_dir(events: int, authors: int, cache: Path = CACHE) -> Path:
    return cache / f"corpus-{events}-{authors}"


def cached_corpus(events: int, authors: int, cache: Path = CACHE) -> Corpus | None:
    """The finished corpus of this size, if one was built before."""
    root = corpus_dir(events, authors, cache)
    meta = root / "corpus.json"
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text())
    return Corpus(root / "data", info["events"], info["authors"], info)


def _sampler(node: NodeProcess, stop: threading.Event, peaks: list[int]) -> None:
    while not stop.wait(0.2):
        try:
            peaks.append(node.rss_bytes()[0])
        except OSError:
            return


def build_corpus(
    events: int,
    authors: int,
    *,
    batch: int = 500,
    concurrency: int = 4,
    on_node: Callable[[NodeProcess, Dataset], dict[str, Any]] | None = None,
    cache: Path = CACHE,
) -> Corpus:
    """Ingest ``events`` over HTTP into a fresh node; keep its data dir as the corpus.

    ``on_node`` runs against the still-running node once everything is stored, and
    what it returns is added to the corpus info (the memory benchmark's readings).
    """
    root = corpus_dir(events, authors, cache)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    # Spread over the last 30 days, the way a timeline's posts are.
    span_ms = 30 * 24 * 3600 * 1000
    step = max(1, span_ms // max(1, events))
    start = int(time.time() * 1000) - step * events - 60_000
    progress(f"signing {events:,} events by {authors:,} authors")
    t0 = time.perf_counter()
    data = generate(events, authors=authors, ts_start=start, ts_step=step)
    progress(f"signed in {time.perf_counter() - t0:.0f} s; ingesting over HTTP")
    config = write_config(root / "node.toml")
    bodies = [encode_bins(data.wires[i : i + batch]) for i in range(0, events, batch)]
    info: dict[str, Any] = {"events": events, "authors": data.authors}
    with NodeProcess(root / "data", "--config", str(config)) as node:
        stop, samples = threading.Event(), [node.rss_bytes()[0]]
        sampler = threading.Thread(target=_sampler, args=(node, stop, samples), daemon=True)
        sampler.start()
        try:
            elapsed = asyncio.run(post_all(node.url, bodies, concurrency, expect=events)).seconds
        finally:
            stop.set()
            sampler.join()
        info["ingest_s"] = round(elapsed, 1)
        info["ingest_per_s"] = round(events / elapsed, 1)
        every = max(1, len(samples) // 50)
        info["rss_samples_mb"] = [round(s / 2**20, 1) for s in samples[::every]]
        if on_node is not None:
            info.update(on_node(node, data))
    (root / "corpus.json").write_text(json.dumps(info) + "\n")
    return Corpus(root / "data", events, data.authors, info)
