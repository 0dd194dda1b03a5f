"""Choosing and opening the node's store from its configuration (spec 0004 §store).

SQLite under ``data_dir`` is the default; ``[store] url`` (``--store``) names a
PostgreSQL database instead. :mod:`node.store.postgres` and its driver ``asyncpg`` (the
``murmur[postgresql]`` extra) are imported only then. Opening failures a node operator
can fix (no driver, server unreachable, database missing, authentication refused) become
one :class:`StoreOpenError` whose message names the URL without its password, never a
traceback.
"""

from __future__ import annotations

import asyncio
from typing import Final

from node.config import NodeConfig, redact_url
from node.store.base import Store
from node.store.sqlite import SqliteStore

__all__ = ["CONNECT_TIMEOUT_S", "StoreOpenError", "make_store", "open_store"]

#: Seconds to reach a PostgreSQL server (and migrate) before giving up at startup.
CONNECT_TIMEOUT_S: Final = 30.0


class StoreOpenError(RuntimeError):
    """The configured store cannot be opened; the message says why and what to do."""


def make_store(config: NodeConfig) -> Store:
    """The store ``config`` names, not opened yet."""
    if config.store_url is None:
        return SqliteStore(
            config.data_dir, synchronous=config.sqlite_synchronous, now_ms=config.now_ms
        )
    try:
        from node.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreOpenError(
            "a postgresql:// store needs the asyncpg driver: "
            "pip install 'murmur[postgresql]'"
        ) from exc
    return PostgresStore(config.store_url, now_ms=config.now_ms)


async def open_store(store: Store, config: NodeConfig) -> None:
    """``store.open()``, with a PostgreSQL server's failures as :class:`StoreOpenError`."""
    if config.store_url is None:
        await store.open()
        return
    import asyncpg

    where = redact_url(config.store_url)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await store.open()
    except TimeoutError:
        raise StoreOpenError(
            f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except OSError as exc:
        raise StoreOpenError(
            f"cannot reach PostgreSQL at {where}: {exc.strerror or exc}"
        ) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreOpenError(f"PostgreSQL at {where} refused the store: {exc}") from None
