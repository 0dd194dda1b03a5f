"""Smoke tests: each benchmark runs in quick mode and writes valid JSON (no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import moderation


def test_moderation_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "moderation.json"
    assert moderation.main(["--items", "60", "--quick", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "moderation" and doc["items"] == 60 and doc["filters"] == 10
    assert doc["run_ms_median"] > 0 and doc["per_item_us"] > 0
