"""Smoke tests: each benchmark runs in quick mode and writes valid JSON (no timings asserted)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import ingest, memory, moderation, timeline
from tests.pg import require_postgres


def test_moderation_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "moderation.json"
    assert moderation.main(["--items", "60", "--quick", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "moderation" and doc["items"] == 60 and doc["filters"] == 10
    assert doc["run_ms_median"] > 0 and doc["per_item_us"] > 0


def _doc(path: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["benchmark"] == name
    assert doc["machine"]["cpus"] >= 1 and doc["machine"]["python"]
    return doc


@pytest.mark.e2e
def test_ingest_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    argv = ["--events", "600", "--authors", "60", "--batch", "100", "--out", str(out)]
    assert ingest.main([*argv, "--clients", "0"]) == 0  # one event a request: below
    doc = _doc(out, "ingest")
    assert doc["raw_verify_per_s"] > 0 and doc["raw_sqlite_insert_per_s"] > 0
    setups = [doc[k] for k in ("one_core", "all_cores") if k in doc]
    assert setups and all(s["events"] == 600 and s["events_per_s"] > 0 for s in setups)
    assert isinstance(doc["target_met"], bool)
    # The same run with did:murmur authors (v2 events, genesis first, some rotations):
    # every event stored, and its rate against the did:key corpus's (issue #15).
    rotatable = [doc[f"{k}_v2"] for k in ("one_core", "all_cores") if k in doc]
    assert len(rotatable) == len(setups)
    assert all(s["events"] == 600 and s["vs_did_key"] > 0 for s in rotatable)
    assert doc["v2_avg_event_bytes"] > doc["avg_event_bytes"] and doc["v2_rotations"] > 0
    assert isinstance(doc["target_v2_met"], bool) and doc["target_v2_ratio"] == 0.9


@pytest.mark.e2e
def test_ingest_benchmark_posts_one_event_a_request_in_the_same_run(tmp_path: Path) -> None:
    """Issue #19 point 4: next to the batched set-ups, one event per request by 8 and
    64 concurrent posters (the node's admission gate widened for 64 from one address),
    every event accepted, each set-up's rate against raw verify and its batched rate,
    p50/p99 acknowledgement latency, then lone posts on the idle node (spec 0004
    #group-commit)."""
    out = tmp_path / "ingest.json"
    argv = ["--events", "400", "--authors", "40", "--batch", "100", "--no-rotatable"]
    assert ingest.main([*argv, "--one-event", "200", "--lone-posts", "20", "--out", str(out)]) == 0
    doc = _doc(out, "ingest")
    one = doc["one_event"]
    assert one["events"] == 200 and one["lone_posts"] == 20
    setups = [k for k in ("one_core", "all_cores") if k in doc]
    assert setups and all(k in one for k in setups)
    for key in setups:
        runs = one[key]
        for clients in (8, 64):
            r = runs[f"clients_{clients}"]
            assert r["clients"] == clients and r["events"] == 200 and r["shed"] == 0
            assert r["events_per_s"] > 0 and r["vs_raw_verify"] > 0 and r["vs_batched"] > 0
            assert r["node_cpu_us_per_event"] > 0 and 0 < r["client_cpu_share"]
            assert r["max_ms"] >= r["p99_ms"] >= r["p50_ms"] > 0
        lone = runs["lone"]
        assert lone["events"] == 20 and lone["p99_ms"] >= lone["p50_ms"] > 0
    # The floor of a lone post, same run: one durable one-row SQLite commit.
    assert one["raw_commit"]["p99_ms"] >= one["raw_commit"]["p50_ms"] > 0
    assert one["target_ratio"] == 0.35 and one["target_p99_ms"] == 50.0
    assert isinstance(one["target_met"], bool) and isinstance(one["target_p99_met"], bool)


@pytest.mark.e2e
def test_memory_then_timeline_benchmarks_run(tmp_path: Path) -> None:
    """memory builds the corpus, timeline reads it (as in a full run)."""
    cache = tmp_path / "cache"
    out = tmp_path / "memory.json"
    argv = ["--events", "1500", "--authors", "60", "--cache", str(cache)]
    assert memory.main([*argv, "--out", str(out)]) == 0
    doc = _doc(out, "memory")
    assert doc["events"] == 1500 and doc["disk_bytes_per_event"] > doc["wire_bytes_per_event"]
    assert doc["peak_rss_mb"] > 0 and isinstance(doc["target_met"], bool)
    out = tmp_path / "timeline.json"
    assert timeline.main([*argv, "--follows", "20", "--repeat", "3", "--out", str(out)]) == 0
    doc = _doc(out, "timeline")
    assert doc["repeat"] == 3 and doc["follows"] == 20 and doc["items_per_page_min"] > 0
    assert doc["total_p95_ms"] >= doc["total_p50_ms"] > 0
    assert doc["keys_verify_p50_ms"] > 0 and doc["keys_cached_p50_ms"] > 0  # 0007 #key-status
    # Whole reads of did:key and did:murmur authors (key cache warm and cold), same run.
    assert doc["read_key_p50_ms"] > 0 and doc["read_warm_p50_ms"] > 0
    assert doc["read_cold_p50_ms"] > 0 and doc["rotatable_authors"] == 40
    assert isinstance(doc["target_murmur_met"], bool) and doc["murmur_warm_ratio"] > 0


def test_bench_cli_lists_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import BENCHMARKS, main

    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in BENCHMARKS)


@pytest.mark.e2e
def test_propagation_benchmark_runs(tmp_path: Path) -> None:
    from bench import propagation

    out = tmp_path / "propagation.json"
    argv = ["--light-events", "10", "--light-rate", "50", "--heavy-events", "100", "--batch", "50"]
    assert propagation.main([*argv, "--out", str(out)]) == 0
    doc = _doc(out, "propagation")
    assert doc["nodes"] == 5 and isinstance(doc["target_met"], bool)
    for phase, events in (("light", 10), ("heavy", 100)):
        assert doc[phase]["events"] == events and doc[phase]["events_per_s"] > 0
        nodes = doc[phase]["nodes"]
        assert [n["hops"] for n in nodes] == [0, 1, 2, 3, 4]
        assert all(n["received"] == events and n["missing"] == 0 for n in nodes)
        assert all(n["p99_ms"] >= n["p95_ms"] >= n["p50_ms"] for n in nodes)


@pytest.mark.e2e
def test_reconcile_benchmark_runs(tmp_path: Path) -> None:
    from bench import reconcile

    out = tmp_path / "reconcile.json"
    assert reconcile.main(["--sizes", "2000", "--diffs", "1,10", "--out", str(out)]) == 0
    doc = _doc(out, "reconcile")
    assert doc["sizes"] == [2000] and doc["target_met"] is None  # the target needs 100k
    rows = {(r["spread"], r["diff_pct"]): r for r in doc["results"]}
    assert set(rows) == {(s, d) for s in ("random", "recent") for d in (1.0, 10.0)}
    for (_, diff), r in rows.items():
        assert r["differ"] == r["a_lacks"] + r["b_lacks"] == round(2000 * diff / 100)
        assert r["rounds"] >= 1 and r["bytes_sent"] > 0 and r["bytes_received"] > 0
        assert r["id_list_bytes"] == 2000 * 32
    for spread in ("random", "recent"):
        conv = rows[(spread, 1.0)]["convergence"]
        assert conv["converge_s"] > 0
        assert conv["node_sync"]["fetched"] == conv["node_sync"]["need"] == 10
        assert conv["node_sync"]["offered"] == conv["node_sync"]["have"] == 10


@pytest.mark.e2e
def test_social_benchmark_runs(tmp_path: Path) -> None:
    """Every social query type is timed, the flooded reader's on a copy (spec 0004
    #social-bounds): the corpus keeps its events."""
    from bench import social
    from bench.corpus import cached_corpus

    out = tmp_path / "social.json"
    cache = tmp_path / "cache"
    argv = ["--events", "600", "--authors", "30", "--repeat", "3", "--flood", "60"]
    assert social.main([*argv, "--cache", str(cache), "--out", str(out)]) == 0
    doc = _doc(out, "social")
    assert set(doc["queries"]) == set(social.QUERIES)
    assert all(q["p95_ms"] >= q["p50_ms"] > 0 for q in doc["queries"].values())
    assert doc["queries"]["counts"]["items_mean"] == 50
    assert doc["queries"]["notifications-flooded"]["items_mean"] > 0
    assert isinstance(doc["target_met"], bool)
    corpus = cached_corpus(600, 30, cache)
    assert corpus is not None
    conn = sqlite3.connect(corpus.data_dir / "murmur.sqlite3")
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 600
    finally:
        conn.close()


@pytest.mark.e2e
def test_web_benchmark_runs(tmp_path: Path) -> None:
    """A tiny ``bench web``: three real nodes, ``murmur web`` as a process, GET / over
    HTTP with the Server-Timing breakdown, and the first page in Chromium (issue #17
    point 6)."""
    from bench import web

    out = tmp_path / "web.json"
    argv = ["--authors", "6", "--posts", "3", "--runs", "3", "--browser-runs", "1"]
    assert web.main([*argv, "--changed-runs", "2", "--out", str(out)]) == 0
    doc = _doc(out, "web")
    assert doc["nodes"] == 3 and doc["filters"] == 10 and doc["authors"] == 6
    http = doc["http"]
    assert http["items"] > 0 and http["runs"] == 3
    assert http["get_p95_ms"] >= http["get_p50_ms"] > 0
    assert {"app", "cpu", "validate", "follows", "page", "render"} <= set(http["server"])
    assert http["node_requests_p50"] == 3 and http["cached_answers_p50"] > 0
    changed = doc["changed"]  # a page after a new post: the nodes asked again
    assert changed["runs"] == 2 and changed["node_requests_p50"] > 3
    browser = doc["browser"]
    assert browser is not None
    if "skipped" not in browser:  # Chromium present (make test installs it)
        assert browser["runs"] == 1 and browser["usable_p50_ms"] > 0
    assert isinstance(doc["target_met"], bool) and doc["target_p95_ms"] == 100.0


@pytest.mark.e2e
def test_ingest_benchmark_measures_postgresql_in_the_same_run(tmp_path: Path) -> None:
    """``--store postgresql`` (issue #18 point 6): after the SQLite set-ups, one
    PostgreSQL node process and one node served by two, each into a fresh database of
    a durable throwaway cluster; every event accepted, rates against SQLite's."""
    require_postgres()
    out = tmp_path / "ingest.json"
    argv = ["--events", "600", "--authors", "60", "--batch", "100", "--no-rotatable"]
    argv += ["--clients", "0"]
    assert ingest.main([*argv, "--store", "postgresql", "--out", str(out)]) == 0
    doc = _doc(out, "ingest")
    pg = doc["postgresql"]
    assert pg["settings"]["fsync"] == "on" and pg["settings"]["synchronous_commit"] == "on"
    for key, processes in (("one_process", 1), ("two_processes", 2)):
        r = pg[key]
        assert r["processes"] == processes and r["events"] == 600
        assert r["events_per_s"] > 0 and r["vs_sqlite"] > 0 and r["pg_cpu_us_per_event"] > 0
        assert len(r["node_peak_rss_mb"]) == processes and r["pg_connections"]
    assert isinstance(pg["target_met"], bool) and pg["target_vs_sqlite"] == 1.0


@pytest.fixture
def reachable_cache() -> Iterator[Path]:
    """A cache dir the PostgreSQL server's own user can reach when the tests run as
    root (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="murmur-bench-cache-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
def test_timeline_benchmark_reads_a_migrated_postgresql_corpus(
    tmp_path: Path, reachable_cache: Path
) -> None:
    """``timeline --store postgresql`` (issue #18 point 6): the corpus moved by
    migrate-store (its check passed), the same pages read from both nodes; the migrated
    cluster is kept and reused while it still matches, migrated again when not."""
    require_postgres()
    argv = ["--events", "1500", "--authors", "60", "--cache", str(reachable_cache)]
    assert memory.main([*argv, "--out", str(tmp_path / "memory.json")]) == 0
    argv += ["--follows", "20", "--store", "postgresql"]

    def run(*more: str) -> dict[str, Any]:
        out = tmp_path / "timeline.json"
        assert timeline.main([*argv, *more, "--out", str(out)]) == 0
        return _doc(out, "timeline")

    doc = run("--repeat", "3")
    pg = doc["postgresql"]
    assert pg["total_p95_ms"] >= pg["total_p50_ms"] > 0 and pg["items_per_page_min"] > 0
    assert pg["read_warm_p50_ms"] > 0 and pg["keys_fetch_p50_ms"] > 0
    assert isinstance(pg["target_met"], bool) and doc["total_p95_ms"] > 0
    migration = pg["migration"]
    assert migration["cached"] is False and migration["check"].startswith("passed")
    assert migration["counts"]["events"] == migration["events"] == 1500 + 40 * 25
    assert migration["seconds"] > 0
    kept = list((reachable_cache / "corpus-1500-60").glob("pg-*/migrated.json"))
    assert len(kept) == 1
    # A second run reuses the kept cluster (verified by counts)...
    again = run("--repeat", "2", "--no-keys")["postgresql"]["migration"]
    assert again["cached"] is True and again["fingerprint"] == migration["fingerprint"]
    # ...and a kept copy that no longer matches its record is migrated again.
    record = json.loads(kept[0].read_text())
    record["counts"]["events"] += 1
    kept[0].write_text(json.dumps(record))
    third = run("--repeat", "2", "--no-keys")["postgresql"]["migration"]
    assert third["cached"] is False and third["counts"]["events"] == migration["events"]


@pytest.mark.e2e
def test_media_benchmark_runs(tmp_path: Path) -> None:
    """A tiny ``bench media`` (issue #20): three real nodes in each topology, pictures
    prepared, uploaded and posted on node 1 through the client library, every one
    served by node 3 (spec 0005 #blob-fetch), each store's growth beyond the images."""
    from bench import media

    out = tmp_path / "media.json"
    argv = ["--images", "2", "--width", "320", "--height", "240", "--out", str(out)]
    assert media.main(argv) == 0
    doc = _doc(out, "media")
    assert doc["nodes"] == 3 and doc["images"] == 2
    for topology in ("mesh", "line"):
        res = doc[topology]
        assert res["images"] == 2 and len(res["replicate_all_ms"]) == 2
        for what in ("replicate", "prepare", "upload"):
            assert res[what]["max_ms"] >= res[what]["p95_ms"] >= res[what]["p50_ms"] > 0
        assert [s["node"] for s in res["stores"]] == [1, 2, 3]
        for store in res["stores"]:  # each node holds one copy of every image's bytes
            assert store["blob_bytes_held"] >= 2 * res["min_image_bytes"]
            assert store["per_image_bytes"] > res["mean_image_bytes"]
            assert store["overhead_bytes"] > 0 and store["overhead_ratio"] > 0
