"""Timeline: a 50-item page for a reader following 500 authors, over N stored events.

``murmur bench timeline [--events N] [--follows 500] [--repeat R] [--quick]``

The node holds the corpus of :mod:`bench.corpus` (1,000,000 events by 10,000 authors
by default; quick: 50,000, built if missing). Each repetition takes another reader
(500 random followed authors) and times the three steps of showing a page:

1. **fetch**: ``POST /v1/feed`` with 500 dids, kinds post and repost, limit 50, over
   HTTP (keep-alive): the node's indexed query and its JSON answer, as the reference
   client asks for a long author list;
2. **verify**: decoding and verifying the 50 events' signatures, as the client does
   (spread over the CPUs, :mod:`client.verify`);
3. **filter**: the moderation pipeline with 10 filters active (eight built-ins and
   two of the example custom filters, as in ``bench moderation``).

Reported: p50 and p95 of each step and of the whole, and the filtering share.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    NodeProcess,
    add_common_args,
    percentile,
    print_table,
    progress,
    scratch_dir,
    write_config,
    write_result,
)
from bench.corpus import CACHE, build_corpus, cached_corpus
from bench.moderation import _filters
from client.moderation.core import Item, ViewContext
from client.moderation.pipeline import Pipeline
from client.verify import verify_many
from protocol.events import Event

__all__ = ["main"]

TARGET_P95_MS = 20.0
PAGE = 50


def _page(client: httpx.Client, url: str, authors: list[str]) -> list[bytes]:
    resp = client.post(
        url + "/v1/feed",
        json={"authors": authors, "kinds": ["post", "repost"], "limit": PAGE},
    )
    if resp.status_code != 200:
        raise RuntimeError(f"feed answered {resp.status_code}: {resp.text[:300]}")
    return [base64.b64decode(item["wire"]) for item in resp.json()["events"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench timeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, help="stored events (default 1000000; quick 50000)")
    parser.add_argument("--authors", type=int, default=10_000, help="authors in the corpus")
    parser.add_argument("--follows", type=int, default=500, help="authors the reader follows")
    parser.add_argument("--repeat", type=int, help="pages timed (default 200; quick 40)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where corpora are kept")
    add_common_args(parser, "timeline")
    args = parser.parse_args(argv)
    n = args.events or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (40 if args.quick else 200)
    corpus = cached_corpus(n, args.authors, args.cache)
    if corpus is None:
        progress(f"no corpus of {n:,} events yet: building it (bench memory does too)")
        corpus = build_corpus(n, args.authors, cache=args.cache)
    rng = random.Random(5)
    follows = min(args.follows, len(corpus.authors))
    pipeline = Pipeline(_filters(rng, corpus.authors[:2]))
    fetch_ms: list[float] = []
    verify_ms: list[float] = []
    filter_ms: list[float] = []
    sizes: list[int] = []
    with scratch_dir("timeline") as where:
        config = write_config(where / "node.toml")
        with NodeProcess(corpus.data_dir, "--config", str(config)) as node:
            progress(f"timing {repeat} timeline pages over {n:,} events")
            with httpx.Client(timeout=60) as client:
                _page(client, node.url, rng.sample(corpus.authors, follows))  # warm-up
                for _ in range(repeat):
                    authors = rng.sample(corpus.authors, follows)
                    viewer = authors[0]
                    t0 = time.perf_counter()
                    wires = _page(client, node.url, authors)
                    t1 = time.perf_counter()
                    checked = asyncio.run(verify_many(wires))
                    events = [e for e in checked if isinstance(e, Event)]
                    t2 = time.perf_counter()
                    follow_set = frozenset(authors)
                    items = [
                        Item(
                            event=e,
                            context=ViewContext.TIMELINE,
                            viewer=viewer,
                            follows=follow_set,
                            now_ms=int(time.time() * 1000),
                        )
                        for e in events
                    ]
                    asyncio.run(pipeline.run(items))
                    t3 = time.perf_counter()
                    fetch_ms.append((t1 - t0) * 1000)
                    verify_ms.append((t2 - t1) * 1000)
                    filter_ms.append((t3 - t2) * 1000)
                    sizes.append(len(events))
    total = [a + b + c for a, b, c in zip(fetch_ms, verify_ms, filter_ms, strict=True)]
    share = statistics.median(filter_ms) / statistics.median(total)
    doc: dict[str, Any] = {
        "events": n,
        "authors": args.authors,
        "follows": follows,
        "page": PAGE,
        "filters": len(pipeline.filters),
        "repeat": repeat,
        "items_per_page_min": min(sizes),
    }
    rows = []
    for name, samples in (
        ("fetch (node, HTTP)", fetch_ms),
        ("verify 50 events", verify_ms),
        ("filter (10 filters)", filter_ms),
        ("total", total),
    ):
        p50, p95 = percentile(samples, 50), percentile(samples, 95)
        key = name.split()[0]
        doc[f"{key}_p50_ms"], doc[f"{key}_p95_ms"] = round(p50, 2), round(p95, 2)
        rows.append([name, p50, p95])
    doc["filtering_share"] = round(share, 3)
    doc["target_p95_ms"] = TARGET_P95_MS
    doc["target_met"] = doc["total_p95_ms"] < TARGET_P95_MS
    print_table(
        f"timeline: {PAGE} items, {follows} followed authors, {n:,} stored events, "
        f"{len(pipeline.filters)} filters ({repeat} pages)",
        rows,
        ["step", "p50 ms", "p95 ms"],
    )
    print(f"  filtering share of the median page: {share:.0%}")
    print(
        f"  target: p95 < {TARGET_P95_MS:.0f} ms: {'met' if doc['target_met'] else 'NOT met'} "
        f"({doc['total_p95_ms']:.1f} ms)"
    )
    write_result(args.out, "timeline", doc)
    return 0
