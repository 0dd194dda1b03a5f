"""The cost of reader-side moderation: 10 active filters over 1,000 timeline items.

``python -m bench moderation [--items 1000] [--repeat 7]`` builds realistic items
(signed posts from 500 authors: text, tags, languages, self-labels, replies, quotes,
labels from two subscribed labelers), runs the moderation pipeline with ten filters
(eight built-ins and two of the example custom filters) and reports the median wall
time per run, per item and per 50-item timeline page, next to the cost of verifying
the same events' signatures (what the client does anyway before filtering). The two
custom filters run twice: in-process (objects given to the pipeline directly) and as a
reader's ``filters.toml`` gets them, each in its worker process (spec 0006
#filter-deadline): that run includes starting the workers, also measured alone (a run
over no items). Writes ``bench/results/moderation.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from client.moderation.apply import build_filter
from client.moderation.builtins import BUILTINS
from client.moderation.config import FilterSpec, LabelerSub, load_filter_class
from client.moderation.core import Item, Label, ViewContext
from client.moderation.pipeline import Configured, Pipeline
from protocol.events import Event, decode_event, sign_event
from protocol.identity import Identity

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the of and to in is you that it he was for on are as with his they at be this".split()


def _authors(n: int, rng: random.Random) -> list[Identity]:
    return [Identity.from_seed(rng.randbytes(32)) for _ in range(n)]


def _items(count: int, rng: random.Random) -> tuple[list[Item], list[Event]]:
    authors = _authors(500, rng)
    labelers = [a.did for a in authors[:2]]
    viewer = authors[-1].did
    follows = frozenset(a.did for a in authors[:400])
    events: list[Event] = []
    items: list[Item] = []
    for i in range(count):
        who = authors[rng.randrange(len(authors))]
        body: dict[str, Any] = {
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 40))),
            "tags": [rng.choice(["news", "art", "dev", "music"])] if i % 3 == 0 else [],
            "langs": [rng.choice(["en", "fr", "de", "pt-BR"])],
        }
        if i % 17 == 0:
            body["warn"] = ["spoiler"]
        if not body["tags"]:
            del body["tags"]
        ev = sign_event(who, kind="post", body=body, seq=1, prev=None, ts=1_700_000_000_000 + i)
        events.append(ev)
        labels = tuple(
            Label(labeler=labelers[i % 2], subject=ev.id_hex, val=rng.choice(["spam", "satire"]))
            for _ in range(1 if i % 10 == 0 else 0)
        )
        embeds: dict[str, Item] = {}
        if i % 5 == 0 and items:
            embeds["quoted"] = items[rng.randrange(len(items))]
        items.append(
            Item(
                event=ev,
                context=ViewContext.TIMELINE,
                viewer=viewer,
                follows=follows,
                profile={"name": f"user{i}"},
                labels=labels,
                embeds=embeds,
                now_ms=1_800_000_000_000,
            )
        )
    return items, events


def _filters(
    rng: random.Random, labelers: list[str], *, isolated: bool = False
) -> list[Configured]:
    muted = [Identity.from_seed(rng.randbytes(32)).did for _ in range(50)]
    specs: list[tuple[str, dict[str, Any]]] = [
        (
            "mute-words",
            {"words": ["crypto", "giveaway", "buy now"], "regexes": ["(?i)free .*coins"]},
        ),
        ("mute-authors", {"dids": muted[:25]}),
        ("block-authors", {"dids": muted[25:]}),
        (
            "labelers",
            {
                "subs": [
                    LabelerSub(did=d, labels={"spam": "hide", "satire": "badge"}) for d in labelers
                ]
            },
        ),
        ("self-labels", {}),
        ("languages", {"allow": ["en", "fr", "pt"]}),
        ("replies-from-non-follows", {}),
        ("allow", {"dids": muted[:2]}),
    ]
    out = [Configured(name, BUILTINS[name](**params)) for name, params in specs]
    if isolated:  # as built from filters.toml: each in its worker process
        for name, type_ in [
            ("shouting", f"{ROOT}/examples/filters/keyword.py:ShoutingFilter"),
            ("label-pile-up", f"{ROOT}/examples/filters/labels.py:LabelPileUp"),
        ]:
            out.append(build_filter(FilterSpec(name=name, type=type_)))
        return out
    keyword = load_filter_class(f"{ROOT}/examples/filters/keyword.py:ShoutingFilter", {})
    labels = load_filter_class(f"{ROOT}/examples/filters/labels.py:LabelPileUp", {})
    out.append(Configured("shouting", keyword()))
    out.append(Configured("label-pile-up", labels()))
    return out


async def _run(pipeline: Pipeline, items: list[Item]) -> float:
    start = time.perf_counter()
    await pipeline.run(items)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench moderation", description=__doc__)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "moderation.json"))
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    rng = random.Random(1)
    items, events = _items(args.items, rng)
    labelers = sorted({lab.labeler for it in items for lab in it.labels})
    pipeline = Pipeline(_filters(rng, labelers))
    times = [asyncio.run(_run(pipeline, items)) for _ in range(repeat)]
    isolated = Pipeline(_filters(random.Random(1), labelers, isolated=True))
    iso_times = [asyncio.run(_run(isolated, items)) for _ in range(repeat)]
    iso_start = [asyncio.run(_run(isolated, [])) for _ in range(repeat)]
    start = time.perf_counter()
    for ev in events:
        decode_event(ev.wire, net=ev.net, now_ms=1_800_000_000_000)
    verify_s = time.perf_counter() - start
    median = statistics.median(times)
    result = {
        "benchmark": "moderation",
        "items": len(items),
        "filters": len(pipeline.filters),
        "repeat": repeat,
        "run_ms_median": round(median * 1000, 2),
        "run_ms_min": round(min(times) * 1000, 2),
        "per_item_us": round(median / len(items) * 1e6, 1),
        "per_50_item_page_ms": round(median / len(items) * 50 * 1000, 2),
        "verify_ms_same_events": round(verify_s * 1000, 2),
        "filtering_vs_verification": round(median / verify_s, 2),
        "isolated_run_ms_median": round(statistics.median(iso_times) * 1000, 2),
        "isolated_per_item_us": round(statistics.median(iso_times) / len(items) * 1e6, 1),
        "isolated_start_ms_median": round(statistics.median(iso_start) * 1000, 2),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    print(f"moderation: {result['filters']} filters over {result['items']} items")
    print(f"  {'run (median)':<28}{result['run_ms_median']:>10.2f} ms")
    print(f"  {'per item':<28}{result['per_item_us']:>10.1f} us")
    print(f"  {'per 50-item timeline page':<28}{result['per_50_item_page_ms']:>10.2f} ms")
    print(f"  {'verifying the same events':<28}{result['verify_ms_same_events']:>10.2f} ms")
    print(f"  {'filtering / verification':<28}{result['filtering_vs_verification']:>10.2f} x")
    print(f"  {'custom filters isolated:':<28}")
    print(f"  {'  run (median)':<28}{result['isolated_run_ms_median']:>10.2f} ms")
    print(f"  {'  per item':<28}{result['isolated_per_item_us']:>10.1f} us")
    print(f"  {'  starting the workers':<28}{result['isolated_start_ms_median']:>10.2f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written to {out}")
    return 0
