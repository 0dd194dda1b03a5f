"""The tables and JSON figures of ``murmur bench timeline``, one backend or two.

:func:`summary` turns one node's samples (ms per page step, per whole read, per key
step) into p50/p95 figures and verdicts against the targets; :func:`print_report`
prints them, with one p50/p95 column pair per backend when ``--store postgresql`` adds
a PostgreSQL node next to the SQLite one.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.common import percentile, print_table

__all__ = [
    "BACKENDS",
    "PAGE",
    "SINGLE_REPEAT",
    "TARGET_MURMUR_RATIO",
    "TARGET_P95_MS",
    "print_migration",
    "print_report",
    "summary",
]

TARGET_P95_MS = 20.0
#: A did:murmur reader's whole read, key cache warm, over a did:key reader's (p50).
TARGET_MURMUR_RATIO = 1.10
PAGE = 50
#: Pages timed the older way (one GET per author): 500 requests each.
SINGLE_REPEAT = 5


#: Column titles of each backend in the tables (the keys of ``urls``).
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: The per-page steps: label, JSON key prefix.
STEPS = (
    ("fetch (node, HTTP)", "fetch"),
    ("verify 50 events", "verify"),
    ("filter (10 filters)", "filter"),
    ("total", "total"),
)


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    """p50/p95 (ms) of every sampled step: ``{key}_p50_ms``, ``{key}_p95_ms``."""
    doc: dict[str, Any] = {}
    for key, values in samples.items():
        if values and key != "items":
            doc[f"{key}_p50_ms"] = round(percentile(values, 50), 2)
            doc[f"{key}_p95_ms"] = round(percentile(values, 95), 2)
    if samples.get("items"):
        doc["items_per_page_min"] = min(samples["items"])
    if "total_p95_ms" in doc:
        doc["filtering_share"] = round(
            statistics.median(samples["filter"]) / statistics.median(samples["total"]), 3
        )
        doc["target_p95_ms"] = TARGET_P95_MS
        doc["target_met"] = doc["total_p95_ms"] < TARGET_P95_MS
    if doc.get("read_key_p50_ms"):
        doc["murmur_warm_ratio"] = round(doc["read_warm_p50_ms"] / doc["read_key_p50_ms"], 3)
        doc["murmur_cold_ratio"] = round(doc["read_cold_p50_ms"] / doc["read_key_p50_ms"], 3)
        doc["target_murmur_ratio"] = TARGET_MURMUR_RATIO
        doc["target_murmur_met"] = doc["murmur_warm_ratio"] <= TARGET_MURMUR_RATIO
    return doc


def _rows(
    docs: dict[str, dict[str, Any]], keys: tuple[tuple[str, str], ...], extra: bool = False
) -> list[list[Any]]:
    """Table rows: a label, then p50 and p95 of each backend (and x did:key p50)."""
    rows = []
    for label, key in keys:
        if f"{key}_p50_ms" not in docs["sqlite"]:
            continue
        row: list[Any] = [label]
        for doc in docs.values():
            p50 = doc.get(f"{key}_p50_ms", math.nan)
            row += [p50, doc.get(f"{key}_p95_ms", math.nan)]
            if extra:
                row.append(p50 / (doc.get("read_key_p50_ms") or p50))
        rows.append(row)
    return rows


def _header(first: str, docs: dict[str, Any], extra: str | None = None) -> list[str]:
    if len(docs) == 1:
        return [first, "p50 ms", "p95 ms", *([extra] if extra else [])]
    cols = [first]
    for backend in docs:
        name = BACKENDS[backend]
        cols += [f"{name} p50", f"{name} p95", *([f"{name} {extra}"] if extra else [])]
    return cols


def print_report(docs: dict[str, dict[str, Any]], n: int, follows: int, filters: int,
           repeat: int) -> None:  # fmt: skip
    sqlite = docs["sqlite"]
    both = f", the same readers on the {' and '.join(BACKENDS[b] for b in docs)} nodes"
    print_table(
        f"timeline: {PAGE} items, {follows} followed authors, {n:,} stored events, "
        f"{filters} filters ({repeat} pages{both if len(docs) > 1 else ''})",
        _rows(docs, STEPS),
        _header("step", docs),
    )  # fmt: skip
    for backend, doc in docs.items():
        name = f" ({BACKENDS[backend]})" if len(docs) > 1 else ""
        print(f"  filtering share of the median page{name}: {doc['filtering_share']:.0%}")
        verdict = "met" if doc["target_met"] else "NOT met"
        print(f"  target{name}: p95 < {TARGET_P95_MS:.0f} ms: {verdict} "
              f"({doc['total_p95_ms']:.1f} ms)")  # fmt: skip
    reads = (
        (f"{follows} did:key authors", "read_key"),
        (f"{follows} did:murmur authors, key cache warm", "read_warm"),
        (f"{follows} did:murmur authors, key cache cold", "read_cold"),
    )
    if "read_key_p50_ms" in sqlite:
        print_table(
            f"whole reads, {follows} followed authors of one kind each ({repeat} reads each; "
            f"the store also holds {2 * follows} did:murmur authors)",
            _rows(docs, reads, extra=True),
            _header("reader", docs, "x did:key p50"),
        )
        for backend, doc in docs.items():
            name = f" ({BACKENDS[backend]})" if len(docs) > 1 else ""
            print(
                f"  target{name}: did:murmur read, warm key cache, <= {TARGET_MURMUR_RATIO:.2f}x "
                f"the did:key read (p50): {'met' if doc['target_murmur_met'] else 'NOT met'} "
                f"({doc['murmur_warm_ratio']:.2f}x)"
            )
    keys = (
        ("POST /v1/keys (node, HTTP)", "keys_fetch"),
        ("verify their key events, first read", "keys_verify"),
        ("verify their key events, later reads (cache)", "keys_cached"),
        (f"{follows} x GET .../keys (old way)", "keys_single"),
    )
    if "keys_fetch_p50_ms" in sqlite:
        print_table(
            f"key histories of {follows} followed rotatable authors alone ({repeat} pages, "
            f"old way {SINGLE_REPEAT})",
            _rows(docs, keys),
            _header("step", docs),
        )


def print_migration(info: dict[str, Any]) -> None:
    how = "kept from an earlier run" if info["cached"] else "this run"
    print(f"  PostgreSQL corpus: migrate-store of {info['events']:,} events ({how}, "
          f"{info['date']}): {info['seconds']:.1f} s ({info['events_per_s']:,.0f} events/s), "
          f"{info['renumbered']} under new cursors; check {info['check']}")  # fmt: skip
