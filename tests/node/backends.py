"""Store backends for the store contract tests: one fixture, parametrized (issue #18).

A test (or a module, through ``pytestmark``) marked ``@both_backends()`` runs once on
SQLite and once on PostgreSQL (a database of the session's throwaway cluster,
tests/pg.py); unmarked tests run on SQLite only. A test also marked
``@pytest.mark.postgresql_lacks("what")`` has its PostgreSQL run marked
``xfail(strict=True)`` with that reason, so that it turns into a failure the day the
piece lands and the mark must go: never a skip.

``backend.store(key)`` builds an unopened store for ``key`` (a data dir: the same key
gives the same data again, for the reopen tests); ``start_node`` passes it to
``create_app``, which opens and closes it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest

from node.store.base import Store
from node.store.sqlite import SqliteStore

__all__ = ["BACKENDS", "Backend", "both_backends"]

BACKENDS: Final = ("sqlite", "postgresql")
_dbs = itertools.count(1)


def both_backends() -> pytest.MarkDecorator:
    """Run the test once per backend (``store_backend`` is ``sqlite``, ``postgresql``)."""
    return pytest.mark.parametrize("store_backend", list(BACKENDS), indirect=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgresql_lacks(what): the PostgreSQL store does not have WHAT yet; "
        "the test's postgresql run is a strict xfail (tests/node/backends.py)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        lacks = item.get_closest_marker("postgresql_lacks")
        callspec = getattr(item, "callspec", None)
        if lacks is None or callspec is None:
            continue
        if callspec.params.get("store_backend") == "postgresql":
            item.add_marker(
                pytest.mark.xfail(
                    strict=True, reason=f"the PostgreSQL store lacks {lacks.args[0]}"
                )
            )


class Backend:
    """Builds stores of one backend for a test; drops its databases at the end."""

    def __init__(self, kind: str, clock: Callable[[], int], pg_admin_url: str | None) -> None:
        self.kind = kind
        self._clock = clock
        self._admin = pg_admin_url
        self._databases: dict[Path, str] = {}

    async def url(self, key: Path) -> str:
        """The database of ``key`` (created on first use)."""
        import asyncpg

        assert self._admin is not None
        name = self._databases.get(key)
        if name is None:
            name = self._databases[key] = f"n{os.getpid()}_{next(_dbs)}"
            admin = await asyncpg.connect(self._admin)
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
        return self._admin.rsplit("/", 1)[0] + "/" + name

    async def store(self, key: Path) -> Store:
        if self.kind == "sqlite":
            return SqliteStore(key, synchronous="normal", now_ms=self._clock)
        from node.store.postgres import PostgresStore

        return PostgresStore(await self.url(key), now_ms=self._clock)

    async def open(self, key: Path) -> Store:
        s = await self.store(key)
        await s.open()
        return s

    async def aclose(self) -> None:
        if not self._databases:
            return
        import asyncpg

        assert self._admin is not None
        admin = await asyncpg.connect(self._admin)
        try:
            for name in self._databases.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless the test is parametrized by :func:`both_backends` (autouse: so
    that a whole module can be, whichever of its tests start a node)."""
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture
async def backend(
    store_backend: str, clock: Callable[[], int], request: pytest.FixtureRequest
) -> AsyncIterator[Backend]:
    admin = None
    if store_backend == "postgresql":
        admin = request.getfixturevalue("pg_cluster").url()
    b = Backend(store_backend, clock, admin)
    try:
        yield b
    finally:
        await b.aclose()
