"""A real, throwaway PostgreSQL cluster for the tests (issue #18 point 5: never a mock).

``pg_cluster`` (session-scoped) runs ``initdb`` and ``pg_ctl`` of Debian's
``postgresql`` (installed by ``make pg-deps``) in a fresh temp dir, listening on a free
127.0.0.1 port only (its Unix socket in that dir), and stops it with ``pg_ctl stop -m
immediate`` when the session ends, failed or not. PostgreSQL refuses to run as root, so
a root test run starts it as the system user ``murmur-pg`` (made by ``make pg-deps``, or
here when missing), owner of the temp dir. ``pg_ctl start -w -t`` is the readiness wait:
bounded by its deadline, no sleeps. ``pg_url`` gives each test a database of its own.

Missing PostgreSQL (or asyncpg) FAILS the tests that need it, in CI and everywhere:
only ``MURMUR_SKIP_POSTGRES=1``, a developer's explicit opt-out that CI never sets,
turns that into a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

__all__ = ["PG_USER", "SKIP_ENV", "PgCluster", "pg_cluster", "pg_url"]

PG_USER: Final = "murmur-pg"
SKIP_ENV: Final = "MURMUR_SKIP_POSTGRES"
#: The cluster's superuser (trust authentication on loopback: a throwaway cluster).
SUPERUSER: Final = "murmur"
#: pg_ctl's own deadline for start and stop, in seconds.
_PG_CTL_TIMEOUT_S: Final = 60
#: Tries with a fresh free port (another process may take one between probe and bind).
_START_TRIES: Final = 3
_dbs = itertools.count(1)


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding initdb and pg_ctl."""
    found = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            with contextlib.suppress(ValueError):
                found.append((int(bindir.parent.name), bindir))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_as() -> pwd.struct_passwd | None:
    """The OS user to run PostgreSQL as: None (this one) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", PG_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(PG_USER)


@dataclass
class PgCluster:
    """One running cluster: connect as :data:`SUPERUSER` to ``127.0.0.1:port``."""

    bindir: Path
    root: Path
    port: int
    user: pwd.struct_passwd | None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {}
        if self.user is not None:
            kw = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root, capture_output=True, text=True, check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}, **kw,
        )  # fmt: skip

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr}\n{tail}")

    def init(self) -> None:
        self._check(
            self._run(
                "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
                "--no-locale", "--encoding=UTF8", "--no-sync",
            ),
            "initdb",
        )  # fmt: skip

    def start(self) -> None:
        # Durability settings off: a crash of the test cluster loses nothing a test
        # checks (the node's own kill -9 tests kill node processes, not PostgreSQL).
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._check(
            self._run(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "postgres.log"),
                "-o", options, "-w", "-t", str(_PG_CTL_TIMEOUT_S), "start",
            ),
            "pg_ctl start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w",
            "-t", str(_PG_CTL_TIMEOUT_S), "stop",
        )  # fmt: skip


def start_cluster() -> PgCluster:
    """initdb + pg_ctl start on a free port; the caller stops it (:meth:`PgCluster.stop`)."""
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin: run `make pg-deps` "
            f"(or set {SKIP_ENV}=1 to skip the PostgreSQL tests, never in CI)"
        )
    user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="murmur-pg-"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PgCluster(bindir=bindir, root=root, port=0, user=user)
    try:
        cluster.init()
        for attempt in range(_START_TRIES):
            cluster.port = _free_port()
            try:
                cluster.start()
                return cluster
            except RuntimeError:
                if attempt == _START_TRIES - 1:
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster, started on first use, stopped at the end."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: PostgreSQL tests skipped (a developer opt-out, never CI)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.fail("asyncpg is not installed: run `make dev` (it installs murmur[postgresql])")
    try:
        cluster = start_cluster()
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot start a PostgreSQL test cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """A fresh, empty database of the session's cluster, dropped after the test."""
    import asyncpg

    name = f"t{os.getpid()}_{next(_dbs)}"
    admin = await asyncpg.connect(pg_cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_cluster.url(name)
    admin = await asyncpg.connect(pg_cluster.url())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
