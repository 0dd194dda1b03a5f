"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fedproc import Cluster

#: The throwaway PostgreSQL cluster and a database per test (tests/pg.py); the store
#: backend fixtures, sqlite or postgresql when parametrized (tests/node/backends.py).
pytest_plugins = ["tests.pg", "tests.node.backends"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Real node processes on 127.0.0.1 (``tests/e2e/fedproc.py``), all stopped after
    the test, killed ones included."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
