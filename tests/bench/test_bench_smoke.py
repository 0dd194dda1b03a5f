"""Smoke tests: each benchmark runs in quick mode and writes valid JSON (no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import ingest, memory, moderation, timeline


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
    assert ingest.main(["--events", "600", "--batch", "100", "--out", str(out)]) == 0
    doc = _doc(out, "ingest")
    assert doc["raw_verify_per_s"] > 0 and doc["raw_sqlite_insert_per_s"] > 0
    setups = [doc[k] for k in ("one_core", "all_cores") if k in doc]
    assert setups and all(s["events"] == 600 and s["events_per_s"] > 0 for s in setups)
    assert isinstance(doc["target_met"], bool)


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


def test_bench_cli_lists_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import BENCHMARKS, main

    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in BENCHMARKS)
