"""A real, throwaway PostgreSQL cluster for the tests (issue #18 point 5: never a mock).

``pg_cluster`` (session-scoped) starts a cluster of Debian's ``postgresql`` (installed by
``make pg-deps``) in a fresh temp dir through :mod:`bench.pgcluster` (the one
implementation, shared with the benchmarks): ``initdb`` + ``pg_ctl start -w -t`` on a
free 127.0.0.1 port, as the system user ``murmur-pg`` when the tests run as root,
durability settings off (:data:`bench.pgcluster.TEST_SETTINGS`); it is stopped with
``pg_ctl stop -m immediate`` and removed when the session ends, failed or not.
``pg_url`` gives each test a database of its own.

Missing PostgreSQL (or asyncpg) FAILS the tests that need it, in CI and everywhere:
only ``MURMUR_SKIP_POSTGRES=1``, a developer's explicit opt-out that CI never sets,
turns that into a skip (:func:`require_postgres`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Final

import pytest

from bench.pgcluster import PG_USER, SUPERUSER, PgCluster, find_bindir, start_cluster

__all__ = [
    "PG_USER",
    "SKIP_ENV",
    "SUPERUSER",
    "PgCluster",
    "find_bindir",
    "pg_cluster",
    "pg_url",
    "require_postgres",
    "start_cluster",
]

SKIP_ENV: Final = "MURMUR_SKIP_POSTGRES"
_dbs = itertools.count(1)


def require_postgres() -> None:
    """Skip under ``MURMUR_SKIP_POSTGRES=1``; fail when asyncpg is missing."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: PostgreSQL tests skipped (a developer opt-out, never CI)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.fail("asyncpg is not installed: run `make dev` (it installs murmur[postgresql])")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster, started on first use, stopped at the end."""
    require_postgres()
    try:
        cluster = start_cluster()
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(
            f"cannot start a PostgreSQL test cluster: {exc} "
            f"(or set {SKIP_ENV}=1 to skip the PostgreSQL tests, never in CI)"
        )
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """A fresh, empty database of the session's cluster, dropped after the test."""
    name = f"t{os.getpid()}_{next(_dbs)}"
    url = await pg_cluster.create_database(name)
    yield url
    await pg_cluster.drop_database(name)
