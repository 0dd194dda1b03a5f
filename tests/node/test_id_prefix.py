"""The store's lookup by id prefix (spec 0004 #events-by-prefix): what resolves the
short ids the client prints. Bounded, exact, and one range of the unique id index."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from node.store import SqliteStore
from node.store.sqlite import id_prefix_range
from protocol.events import decode_event
from tests.node.conftest import T0, Clock, new_author


def test_the_range_of_a_prefix() -> None:
    """Even and odd lengths, and a prefix of only ``f`` (no upper bound)."""
    assert id_prefix_range("ab") == (bytes([0xAB]) + bytes(31), bytes([0xAC]) + bytes(31))
    assert id_prefix_range("abc") == (bytes([0xAB, 0xC0]) + bytes(30),
                                      bytes([0xAB, 0xD0]) + bytes(30))  # fmt: skip
    assert id_prefix_range("0f") == (bytes([0x0F]) + bytes(31), bytes([0x10]) + bytes(31))
    assert id_prefix_range("ff") == (bytes([0xFF]) + bytes(31), None)
    assert id_prefix_range("f") == (bytes([0xF0]) + bytes(31), None)
    full = "12" * 32
    low, high = id_prefix_range(full)
    assert low == bytes.fromhex(full) and high == bytes.fromhex("12" * 31 + "13")


async def test_prefix_lookup_is_exact_bounded_and_one_index_range(
    tmp_path: Path, clock: Clock
) -> None:
    author = new_author(clock)
    events = [decode_event(author.post(f"post {i}").wire, now_ms=T0) for i in range(120)]
    store = SqliteStore(tmp_path, synchronous="normal", now_ms=clock)
    await store.open()
    plans: list[str] = []
    real: Callable[[Any], Awaitable[Any]] = store._read

    async def traced(fn: Callable[[Any], Any]) -> Any:
        """Run the store's own SQL, and EXPLAIN QUERY PLAN of every statement of it."""

        def wrapped(c: sqlite3.Connection) -> Any:
            class Explained:
                def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
                    rows = c.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
                    plans.append("; ".join(str(r[-1]) for r in rows))
                    return c.execute(sql, args)

            return fn(Explained())

        return await real(wrapped)

    try:
        await store.apply_batch(events)
        by_hex = sorted(e.id_hex for e in events)
        store._read = traced  # type: ignore[method-assign]
        for e in events[:20]:
            found = await store.events_by_id_prefix(e.id_hex[:8], limit=5)
            assert [f.id.hex() for f in found] == [h for h in by_hex if h[:8] == e.id_hex[:8]]
            odd = await store.events_by_id_prefix(e.id_hex[:9], limit=5)
            assert e.id in {f.id for f in odd}
            assert all(f.id.hex().startswith(e.id_hex[:9]) for f in odd)
            assert [f.id for f in await store.events_by_id_prefix(e.id_hex, limit=5)] == [e.id]
        # A short prefix matches many: the answer is the first `limit` of them by id.
        digit = by_hex[0][0]
        many = await store.events_by_id_prefix(digit, limit=5)
        assert [f.id.hex() for f in many] == [h for h in by_hex if h.startswith(digit)][:5]
        top = await store.events_by_id_prefix("f", limit=5)  # the open-ended range
        assert [f.id.hex() for f in top] == [h for h in by_hex if h.startswith("f")][:5]
        assert await store.events_by_id_prefix("0" * 63, limit=5) == []
    finally:
        await store.close()
    assert plans, "the lookup ran no SQL"
    for plan in plans:
        # One search of the unique index on id over a range: no scan, no sort.
        assert "USING INDEX sqlite_autoindex_events_1 (id>? AND id<?)" in plan or (
            "USING INDEX sqlite_autoindex_events_1 (id>?)" in plan
        ), plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
