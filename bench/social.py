"""Social reads: notifications (and the other social queries) over N stored events.

``murmur bench social [--events N] [--repeat R] [--flood F] [--quick]``

The node holds the corpus of :mod:`bench.corpus` (1,000,000 events by 10,000 authors
by default; quick: 50,000, built if missing). A corpus built by an older node is
upgraded when the node opens it (schema v5 fills the social indexes from the held
events): the startup is timed and reported. Each **query type** is timed
``--repeat`` times over HTTP (keep-alive), each time for another random reader or
page. The flooded reader's query runs on a copy of the corpus (the corpus stays as
the other benchmarks expect it) in which a stranger sent one reader ``--flood``
mentions and likes, the newest events held (the adversarial case: the reader's
notifications must stay one bounded index read).

- ``notifications``: ``GET /v1/notifications?did=&limit=50`` of a random corpus
  author (spec 0004 #notifications), the target of issue #16 item 8: p95 < 50 ms;
- ``notifications-flooded``: the flooded reader, all reasons, and ``kinds=follow``
  (the flood sits in other reasons: it must not be walked);
- ``followers``: ``GET /v1/followers/{did}?limit=100`` of a random author;
- ``counts``: ``POST /v1/counts`` of 50 random held ids (a timeline page's counts).

A query type is a function ``(client, url, state, rng) -> items`` in :data:`QUERIES`:
a new one (post search) is one more entry, timed and reported the same way.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from bench.search_queries import SEARCH_QUERIES, SEARCH_TARGET
from protocol.encoding import encode
from protocol.events import sign_event
from protocol.identity import Identity

__all__ = ["QUERIES", "State", "main"]

TARGET_P95_MS = 50.0
PAGE = 50
#: Held ids sampled for the counts query (from the newest feed pages).
_ID_SAMPLE = 2_000
#: A node upgrading a large corpus fills its new indexes before it answers /health.
_STARTUP_DEADLINE_S = 3_600.0


@dataclass
class State:
    """What the queries draw from: the corpus's authors, some held ids, the flooded
    reader."""

    authors: list[str]
    ids: list[str] = field(default_factory=list)
    flooded: str = ""


def _get(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> Any:
    resp = client.get(url, params=params)
    if resp.status_code != 200:
        raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def _notifications(client: httpx.Client, url: str, state: State, rng: random.Random) -> int:
    doc = _get(client, url + "/v1/notifications", {"did": rng.choice(state.authors), "limit": PAGE})
    return len(doc["notifications"])


def _flooded(client: httpx.Client, url: str, state: State, rng: random.Random) -> int:
    params: dict[str, Any] = {"did": state.flooded, "limit": PAGE}
    if rng.random() < 0.5:
        params["kinds"] = "follow"
    doc = _get(client, url + "/v1/notifications", params)
    return len(doc["notifications"])


def _followers(client: httpx.Client, url: str, state: State, rng: random.Random) -> int:
    doc = _get(client, url + f"/v1/followers/{rng.choice(state.authors)}", {"limit": 100})
    return len(doc["events"])


def _counts(client: httpx.Client, url: str, state: State, rng: random.Random) -> int:
    ids = rng.sample(state.ids, min(PAGE, len(state.ids)))
    resp = client.post(url + "/v1/counts", json={"ids": ids})
    if resp.status_code != 200:
        raise RuntimeError(f"counts answered {resp.status_code}: {resp.text[:300]}")
    return len(resp.json()["counts"])


Query = Callable[[httpx.Client, str, State, random.Random], int]

#: name -> (what one request is, the function timing it). ``notifications`` carries
#: the target.
QUERIES: dict[str, tuple[str, Query]] = {
    "notifications": ("GET /v1/notifications, random reader, 50", _notifications),
    "notifications-flooded": ("... the flooded reader (all, or kinds=follow)", _flooded),
    "followers": ("GET /v1/followers/{did}, random author, 100", _followers),
    "counts": ("POST /v1/counts, 50 random ids", _counts),
    **SEARCH_QUERIES,  # post search (spec 0004 #search)
}


def _held_ids(client: httpx.Client, url: str) -> list[str]:
    ids: list[str] = []
    before: str | None = None
    while len(ids) < _ID_SAMPLE:
        params: dict[str, Any] = {"limit": 500, **({"before": before} if before else {})}
        doc = _get(client, url + "/v1/feed", params)
        ids += [e["id"] for e in doc["events"]]
        before = doc["next"]
        if before is None:
            break
    return ids


def _flood(client: httpx.Client, url: str, state: State, count: int) -> None:
    """A stranger's ``count`` events at one reader: mentions (facets) and likes of its
    held posts, half each, signed now."""
    target = state.authors[0]
    state.flooded = target
    posts = [
        e["id"]
        for e in _get(client, url + "/v1/feed", {"authors": target, "kinds": "post", "limit": 50})[
            "events"
        ]
    ]
    stranger = Identity.from_seed(random.Random(f"flood/{time.time_ns()}").randbytes(32))
    text = "hey @you"
    mention = [{"type": "mention", "start": 4, "end": len(text), "did": target}]
    now = int(time.time() * 1000) - count
    prev: bytes | None = None
    wires: list[bytes] = []
    for seq in range(1, count + 1):
        body: dict[str, Any]
        if posts and seq % 2:  # likes of its posts; the rest mention it
            kind, body = "like", {"target": bytes.fromhex(posts[seq % len(posts)])}
        else:
            kind, body = "post", {"text": text, "facets": mention}
        ev = sign_event(stranger, kind=kind, body=body, seq=seq, prev=prev, ts=now + seq)
        prev = ev.id
        wires.append(ev.wire)
    for i in range(0, len(wires), 500):
        resp = client.post(
            url + "/v1/events",
            content=encode(wires[i : i + 500]),
            headers={"Content-Type": "application/msgpack"},
        )
        doc = resp.json()
        if resp.status_code != 200 or doc["accepted"] != len(doc["results"]):
            raise RuntimeError(f"flood ingest answered {resp.status_code}: {resp.text[:300]}")


def _time(
    client: httpx.Client,
    url: str,
    state: State,
    rng: random.Random,
    names: list[str],
    repeat: int,
    samples: dict[str, list[float]],
    items: dict[str, list[int]],
) -> None:
    for name in names:
        fn = QUERIES[name][1]
        fn(client, url, state, rng)  # warm-up
        progress(f"timing {repeat} x {name}")
        for _ in range(repeat):
            t = time.perf_counter()
            items[name].append(fn(client, url, state, rng))
            samples[name].append((time.perf_counter() - t) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="murmur bench social",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, help="stored events (default 1000000; quick 50000)")
    parser.add_argument("--authors", type=int, default=10_000, help="authors in the corpus")
    parser.add_argument(
        "--repeat", type=int, help="requests timed per query (default 500; quick 100)"
    )
    parser.add_argument(
        "--flood", type=int, help="a stranger's events at one reader (default 20000; quick 2000)"
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="where corpora are kept")
    parser.add_argument(
        "--only", choices=list(QUERIES), action="append", help="time only these queries"
    )
    add_common_args(parser, "social")
    args = parser.parse_args(argv)
    n = args.events or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (100 if args.quick else 500)
    flood = args.flood if args.flood is not None else (2_000 if args.quick else 20_000)
    corpus = cached_corpus(n, args.authors, args.cache)
    if corpus is None:
        progress(f"no corpus of {n:,} events yet: building it (bench memory does too)")
        corpus = build_corpus(n, args.authors, cache=args.cache)
    rng = random.Random(7)
    state = State(authors=list(corpus.authors))
    names = args.only or list(QUERIES)
    samples: dict[str, list[float]] = {name: [] for name in names}
    items: dict[str, list[int]] = {name: [] for name in names}
    plain = [name for name in names if name != "notifications-flooded"]
    with scratch_dir("social") as where:
        config = write_config(where / "node.toml")
        t0 = time.perf_counter()
        with NodeProcess(
            corpus.data_dir, "--config", str(config), deadline_s=_STARTUP_DEADLINE_S
        ) as node:
            startup_s = time.perf_counter() - t0
            progress(f"node up in {startup_s:.1f} s (includes any schema upgrade)")
            with httpx.Client(timeout=60) as client:
                state.ids = _held_ids(client, node.url)
                _time(client, node.url, state, rng, plain, repeat, samples, items)
        if "notifications-flooded" in names:
            progress("copying the corpus for the flood")
            copy = where / "flooded"
            shutil.copytree(corpus.data_dir, copy)
            with NodeProcess(copy, "--config", str(config)) as node:
                with httpx.Client(timeout=60) as client:
                    progress(f"a stranger floods one reader with {flood:,} mentions and likes")
                    _flood(client, node.url, state, flood)
                    _time(
                        client, node.url, state, rng, ["notifications-flooded"], repeat,
                        samples, items,
                    )
    doc: dict[str, Any] = {
        "events": n,
        "authors": args.authors,
        "repeat": repeat,
        "flood": flood,
        "startup_s": round(startup_s, 2),
        "queries": {},
    }
    rows = []
    for name in names:
        p50, p95 = percentile(samples[name], 50), percentile(samples[name], 95)
        mean_items = sum(items[name]) / len(items[name])
        doc["queries"][name] = {
            "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "items_mean": round(mean_items, 1)
        }
        rows.append([QUERIES[name][0], p50, p95, round(mean_items, 1)])
    doc["target_p95_ms"] = TARGET_P95_MS
    if "notifications" in doc["queries"]:
        doc["target_met"] = doc["queries"]["notifications"]["p95_ms"] < TARGET_P95_MS
    if SEARCH_TARGET in doc["queries"]:
        doc["search_target_met"] = doc["queries"][SEARCH_TARGET]["p95_ms"] < TARGET_P95_MS
    print_table(
        f"social reads over {n:,} stored events (+{flood:,} flood), {repeat} requests each, "
        "over HTTP",
        rows,
        ["query", "p50 ms", "p95 ms", "items"],
    )
    if "target_met" in doc:
        p95 = doc["queries"]["notifications"]["p95_ms"]
        verdict = "met" if doc["target_met"] else "NOT met"
        print(f"  target: notifications p95 < {TARGET_P95_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
    if "search_target_met" in doc:
        p95 = doc["queries"][SEARCH_TARGET]["p95_ms"]
        verdict = "met" if doc["search_target_met"] else "NOT met"
        print(f"  target: search p95 < {TARGET_P95_MS:.0f} ms: {verdict} ({p95:.1f} ms)")
    print(f"  node startup on the corpus: {startup_s:.1f} s (a schema upgrade fills indexes)")
    write_result(args.out, "social", doc)
    return 0
