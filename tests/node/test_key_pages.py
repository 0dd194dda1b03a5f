"""Key histories are read in bounded pieces (spec 0004 #author-keys, #keys-batch): the
batch form defers an author whose history does not fit without reading it, and the
single-author form reads one page at a time."""

from __future__ import annotations

from typing import Any

import pytest

import node.store.sqlite as sqlite_store
from node.state import STORE
from tests.adversarial.test_key_odds import _rotations
from tests.node.backends import both_backends
from tests.node.conftest import Node
from tests.rotatable import Rotatable


@both_backends()
async def test_a_deferred_history_is_never_read_in_full(
    node: Node, monkeypatch: pytest.MonkeyPatch, store_backend: str
) -> None:
    """spec 0004 #keys-batch: the answer's bound holds per author in the store: a
    history longer than what is left of it is counted on the index (at most bound + 1
    entries) and deferred; only the histories that fit are read."""
    big, small = Rotatable("pages-big"), Rotatable("pages-small")
    await node.ingest(*_rotations(big, 12), small.genesis)
    reads: list[tuple[str, int]] = []
    if store_backend == "sqlite":
        real = sqlite_store._key_page

        def spy(c: Any, author: str, after: Any, limit: int) -> Any:
            reads.append((author, limit))
            return real(c, author, after, limit)

        monkeypatch.setattr(sqlite_store, "_key_page", spy)
    else:
        from node.store import pg_keyreads

        real_pg = pg_keyreads.key_page

        async def spy_pg(c: Any, author: str, after: Any, limit: int) -> Any:
            reads.append((author, limit))
            return await real_pg(c, author, after, limit)

        monkeypatch.setattr(pg_keyreads, "key_page", spy_pg)
        real_whole = pg_keyreads.whole_histories

        async def spy_whole(c: Any, authors: list[str]) -> Any:
            # The batch read of whole histories: what it read, as (author, events).
            got = await real_whole(c, authors)
            reads.extend((a, len(h.events)) for a, h in got.items())
            return got

        monkeypatch.setattr(pg_keyreads, "whole_histories", spy_whole)
    store = node.app[STORE]
    histories, deferred = await store.key_histories([big.did, small.did], max_events=5)
    assert deferred == [big.did] and list(histories) == [small.did]
    assert reads == [(small.did, 1)]
    page = await store.key_history(big.did, limit=4)
    assert page is not None and page.more and len(page.events) == 4
    assert reads[-1] == (big.did, 4)
