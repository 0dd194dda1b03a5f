"""A stranger against the batched reads of a real node process: ``POST
/v1/authors/events`` (spec 0004 #author-ranges) and ``POST /v1/stats`` (spec 0004
#stats-batch). Both are bounded (ranges, range width, dids, one limit of events for the
whole answer), refuse anything else with 400, and never answer a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.adversarial.conftest import Probe, new_identity, start_node
from tests.adversarial.test_social_flood import Chain, _ingest
from tests.e2e.nodeproc import NodeProcess


@pytest.fixture(scope="module")
def batch_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    node: NodeProcess = start_node(tmp_path_factory.mktemp("batch-node"))
    try:
        with Probe(node) as probe:
            yield probe
    finally:
        node.stop()


def _ranges(probe: Probe, body: Any) -> tuple[int, Any]:
    r = probe.http.post("/v1/authors/events", json=body)
    return r.status_code, r.json()


def test_author_ranges_answer_each_range_under_one_limit(batch_node: Probe) -> None:
    """spec 0004 #author-ranges: one log per range in the order asked, each as the
    author log answers it; at most ``limit`` events in all, the ranges past it unread
    (``next_from_seq`` = ``from_seq``); bad bodies are 400, never a 5xx."""
    probe = batch_node
    errors_before = probe.internal_errors()
    a, b = Chain(new_identity()), Chain(new_identity())
    wires = []
    for chain in (a, b):
        first, _ = chain.sign("post", {"text": "one"})
        wires.append(first)
        for i in range(5):
            wires.append(chain.sign("post", {"text": f"more {i}"})[0])
    _ingest(probe, wires)
    status, doc = _ranges(
        probe,
        {
            "ranges": [
                {"author": a.did, "from_seq": 2, "to_seq": 4},
                {"author": b.did, "from_seq": 1, "to_seq": 6},
            ]
        },
    )
    assert status == 200, doc
    assert [lg["author"] for lg in doc["logs"]] == [a.did, b.did]
    assert len(doc["logs"][0]["events"]) == 3 and doc["logs"][0]["next_from_seq"] is None
    assert len(doc["logs"][1]["events"]) == 6
    # One limit for the whole answer: the first range uses it up, the second is unread.
    status, doc = _ranges(
        probe,
        {
            "ranges": [
                {"author": a.did, "from_seq": 1, "to_seq": 6},
                {"author": b.did, "from_seq": 1, "to_seq": 6},
            ],
            "limit": 4,
        },
    )
    assert status == 200, doc
    assert len(doc["logs"][0]["events"]) == 4 and doc["logs"][0]["next_from_seq"] == 5
    assert doc["logs"][1]["events"] == [] and doc["logs"][1]["next_from_seq"] == 1
    one = {"author": a.did, "from_seq": 1, "to_seq": 1}
    for bad in (
        {"ranges": []},
        {"ranges": [one] * 201},
        {"ranges": [{**one, "to_seq": 501}]},  # 501 seqs: a range is at most 500 wide
        {"ranges": [{**one, "from_seq": 0}]},
        {"ranges": [{**one, "to_seq": 0}]},
        {"ranges": [{**one, "from_seq": True}]},
        {"ranges": [{**one, "author": "not a did"}]},
        {"ranges": [{**one, "extra": 1}]},
        {"ranges": [one], "limit": 0},
        {"ranges": [one], "other": 1},
        [one],
    ):
        status, doc = _ranges(probe, bad)
        assert status == 400, (bad, doc)
    assert probe.internal_errors() == errors_before
    assert probe.healthy()


def test_stats_batch_answers_every_did_asked(batch_node: Probe) -> None:
    """spec 0004 #stats-batch: every did asked has its #author-stats figures (null for a
    did with no held event); at most max_feed_authors dids; bad bodies are 400."""
    probe = batch_node
    errors_before = probe.internal_errors()
    carol, nobody = Chain(new_identity()), new_identity()
    _ingest(probe, [carol.sign("post", {"text": "hi"})[0]])
    r = probe.http.post("/v1/stats", json={"authors": [carol.did, nobody.did, carol.did]})
    assert r.status_code == 200, r.text
    stats = r.json()["stats"]
    assert set(stats) == {carol.did, nobody.did}
    assert isinstance(stats[carol.did]["first_seen_ms"], int)
    assert stats[carol.did]["first_ts"] == carol.t0 + 1
    assert stats[nobody.did] == {
        "followers": 0,
        "following": 0,
        "first_ts": None,
        "first_seen_ms": None,
    }
    many = [new_identity().did for _ in range(501)]
    for bad in ({"authors": []}, {"authors": many}, {"authors": ["x"]}, {"dids": [carol.did]}):
        r = probe.http.post("/v1/stats", json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert probe.internal_errors() == errors_before
