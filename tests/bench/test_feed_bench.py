"""Smoke test of ``murmur bench feed`` (issue #21 point 5): it runs small over a real
node serving what's hot and writes its figures (never asserted as timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import feed
from bench.cli import BENCHMARKS
from bench.corpus import build_corpus

#: The whole range of the tiny corpus (spread over 30 days): what's hot's longest window.
_WINDOW_MS = 28 * 86_400_000


@pytest.mark.e2e
def test_feed_benchmark_runs_over_a_node_serving_whats_hot(tmp_path: Path) -> None:
    """spec 0004 #feeds, #feed-cache: the node serves what's hot cached and uncached,
    page 2 by the cursor; the client's whole page goes through feed_view."""
    cache = tmp_path / "cache"
    build_corpus(400, 20, cache=cache)
    out = tmp_path / "feed.json"
    argv = ["--events", "400", "--authors", "20", "--cache", str(cache), "--repeat", "3"]
    argv += ["--pages", "2", "--window-ms", str(_WINDOW_MS), "--out", str(out)]
    assert feed.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "feed" and doc["events"] == 400 and doc["page"] == 50
    node = doc["node"]
    assert set(node) >= {"first", "cold", "served", "reacted_slice", "reacted_window"}
    assert node["cold"]["requests"] == node["served"]["requests"] == 3
    # A page of the corpus's reacted posts, the same whether computed or cached.
    assert 0 < node["cold"]["items"] == node["served"]["items"] <= 50
    assert node["cold"]["p95_ms"] >= node["cold"]["p50_ms"] > 0
    for name in ("hot", "hot-nocache"):
        page = doc["client"][name]
        assert page["shown_min"] > 0 and page["dropped_max"] == 0
        assert page["requests_mean"] >= 2  # the skeleton, then the events
        assert page["total"]["p95_ms"] >= page["skeleton"]["p95_ms"] > 0
        assert page["events"]["p50_ms"] > 0 and page["verify"]["p50_ms"] > 0
    assert isinstance(doc["target_node_met"], bool) and isinstance(doc["target_page_met"], bool)
    assert doc["target_node_p95_ms"] == 50.0 and doc["target_page_p95_ms"] == 100.0
    assert BENCHMARKS["feed"][0] == "bench.feed"
