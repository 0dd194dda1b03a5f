"""The PostgreSQL store's event rows: the columns every event read selects, and the
:class:`~node.store.base.StoredEvent` made of one row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from node.store.base import StoredEvent

__all__ = ["COLS", "row"]

#: The columns of :func:`row`, in its order.
COLS: Final = (
    "cursor, id, author, seq, prev, ts, kind, header, sig, body, deleted, status, revoked_by"
)


def row(r: Sequence[Any] | asyncpg.Record) -> StoredEvent:
    """The stored event of one row of :data:`COLS`."""
    return StoredEvent(
        cursor=r[0], id=r[1], author=r[2], seq=r[3], prev=r[4], ts=r[5], kind=r[6],
        header=r[7], sig=r[8], body=r[9], deleted=r[10], status=r[11], revoked_by=r[12],
    )  # fmt: skip
