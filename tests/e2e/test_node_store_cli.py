"""``murmur node run --store`` failures a node operator must be able to read (spec 0004
§configuration): one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import ROOT, free_port

pytestmark = pytest.mark.e2e


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MURMUR_HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "node", "run", "--port", "0", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_an_unreachable_postgresql_server_is_one_clear_line(tmp_path: Path) -> None:
    # A free port nothing listens on: the connection is refused at once.
    url = f"postgresql://murmur:hunter2@127.0.0.1:{free_port()}/node"
    done = _run(tmp_path, "--store", url)
    assert done.returncode == 1
    assert "cannot reach PostgreSQL at postgresql://murmur:***@127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_a_bad_store_url_is_a_usage_error(tmp_path: Path) -> None:
    done = _run(tmp_path, "--store", "mysql://x@h/db")
    assert done.returncode == 2
    assert "must be a postgresql://USER@HOST:PORT/DB URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_need_a_postgresql_store(tmp_path: Path) -> None:
    done = _run(tmp_path, "--workers", "2")
    assert done.returncode == 2
    assert "--workers needs a PostgreSQL store" in done.stderr
