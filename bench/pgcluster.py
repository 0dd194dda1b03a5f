"""A real PostgreSQL cluster of its own, for the tests and the benchmarks (issue #18).

One implementation of "start a PostgreSQL server here": ``initdb`` and ``pg_ctl`` of
Debian's ``postgresql`` package (``make pg-deps``), a data directory of our own,
listening on a free 127.0.0.1 port only (its Unix socket in that directory), trust
authentication for the superuser :data:`SUPERUSER`. PostgreSQL refuses to run as root,
so a root process runs it as the system user :data:`PG_USER` (made by ``make pg-deps``,
or here when missing), owner of the directory. ``pg_ctl start -w -t`` is the readiness
wait: bounded by its deadline, no sleeps.

Two kinds of settings: :data:`TEST_SETTINGS` (durability off: a crash of a test cluster
loses nothing a test checks) for ``tests/pg.py``, and :data:`BENCH_SETTINGS` (durability
ON, as a production node must run, with memory raised for a benchmark) for ``murmur
bench ingest --store postgresql`` and ``bench timeline``. A cluster is throwaway (a
temp dir, stopped ``-m immediate`` and removed) unless given a ``root`` to keep, as the
timeline benchmark keeps its migrated corpus: then it is stopped ``-m fast`` (a clean
shutdown, no recovery at the next start) and left in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BENCH_SETTINGS",
    "ActivitySampler",
    "PG_USER",
    "SUPERUSER",
    "TEST_SETTINGS",
    "PgCluster",
    "find_bindir",
    "running_cluster",
    "start_cluster",
]

PG_USER: Final = "murmur-pg"
#: The cluster's superuser (trust authentication on loopback: a cluster of our own).
SUPERUSER: Final = "murmur"
#: pg_ctl's own deadline for start and stop, in seconds.
_PG_CTL_TIMEOUT_S: Final = 60
#: Tries with a fresh free port (another process may take one between probe and bind).
_START_TRIES: Final = 3

#: The tests' cluster: durability settings off (the node's own kill -9 tests kill node
#: processes, not PostgreSQL).
TEST_SETTINGS: Final[Mapping[str, str]] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
#: The benchmarks' cluster: every durability setting at its safe default (an
#: ``accepted`` answer means committed and flushed, as on SQLite with
#: ``synchronous=FULL``), memory and checkpoint spacing raised as an operator would
#: for a node of a million events, JIT off (it compiles the feed's big plans on every
#: query: tens of ms for a query of a few), random reads priced as on an SSD.
BENCH_SETTINGS: Final[Mapping[str, str]] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
    "shared_buffers": "512MB",
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "random_page_cost": "1.1",
    "jit": "off",
}


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
    """One cluster: connect as :data:`SUPERUSER` to ``127.0.0.1:port``."""

    bindir: Path
    root: Path
    port: int
    user: pwd.struct_passwd | None
    settings: Mapping[str, str] = field(default_factory=lambda: dict(TEST_SETTINGS))

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

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def init(self) -> None:
        self._check(
            self._run(
                "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
                "--no-locale", "--encoding=UTF8", "--no-sync",
            ),
            "initdb",
        )  # fmt: skip

    def running(self) -> bool:
        """Whether a server runs on this data directory (``pg_ctl status``)."""
        return self._run("pg_ctl", "-D", str(self.datadir), "status").returncode == 0

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} " + " ".join(
            f"-c {k}={v}" for k, v in self.settings.items()
        )
        self._check(
            self._run(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "postgres.log"),
                "-o", options, "-w", "-t", str(_PG_CTL_TIMEOUT_S), "start",
            ),
            "pg_ctl start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop``: ``immediate`` for a throwaway cluster, ``fast`` for one kept
        (a clean shutdown: its next start needs no crash recovery)."""
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-m", mode, "-w",
            "-t", str(_PG_CTL_TIMEOUT_S), "stop",
        )  # fmt: skip

    async def create_database(self, name: str) -> str:
        """Create the database ``name`` (it must not exist); return its URL."""
        import asyncpg

        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        import asyncpg

        admin = await asyncpg.connect(self.url())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far: the postmaster, its
        live processes (backends, WAL writer, checkpointer...) and the ones it reaped.
        Compare two readings taken while the clients stay connected (a backend that
        exits between them moves its time into the postmaster's reaped-children sum,
        which stays counted)."""
        lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        master = int(lines[0])
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in Path("/proc").iterdir():
            if not pid.name.isdigit():
                continue
            try:
                fields = (pid / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(pid.name) == master:
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            elif int(fields[1]) == master:
                total += int(fields[11]) + int(fields[12])
        return total / ticks


def _own(root: Path, user: pwd.struct_passwd | None) -> None:
    """Make ``root`` the server user's; refuse a place that user cannot reach."""
    if user is None:
        return
    os.chown(root, user.pw_uid, user.pw_gid)
    for parent in root.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(
                f"{parent} is not searchable by others: PostgreSQL, run as {PG_USER}, "
                f"cannot reach {root} (keep the cluster elsewhere or chmod o+x {parent})"
            )


def start_cluster(
    settings: Mapping[str, str] = TEST_SETTINGS, root: Path | None = None
) -> PgCluster:
    """Start a cluster on a free port; the caller stops it (:meth:`PgCluster.stop`).

    Without ``root``: a fresh temp dir (initdb each time), removed here if the start
    fails. With ``root``: that directory, initialised the first time and started again
    later (a server still running there from a killed run is stopped first).
    """
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin: run `make pg-deps`"
        )
    user = _run_as()
    throwaway = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="murmur-pg-"))
    else:
        root.mkdir(parents=True, exist_ok=True)
    _own(root, user)
    cluster = PgCluster(bindir=bindir, root=root, port=0, user=user, settings=dict(settings))
    try:
        if not cluster.initialized():
            cluster.init()
        elif cluster.running():
            cluster.stop("fast")
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
        cluster.stop("immediate" if throwaway else "fast")
        if throwaway:
            shutil.rmtree(root, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_cluster(
    settings: Mapping[str, str] = TEST_SETTINGS, root: Path | None = None
) -> Iterator[PgCluster]:
    """A started cluster (:func:`start_cluster`), stopped at the end, failed or not: a
    throwaway one ``-m immediate`` and removed, a kept one (``root``) ``-m fast``."""
    cluster = start_cluster(settings, root)
    try:
        yield cluster
    finally:
        if root is None:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)
        else:
            cluster.stop("fast")


#: What a server process of a benchmark's database is doing, from ``pg_stat_activity``.
_ACTIVITY_SQL = """
SELECT CASE
  WHEN state = 'idle' THEN 'idle'
  WHEN state LIKE 'idle in transaction%' THEN 'in transaction, waiting for the node'
  WHEN wait_event = 'advisory' THEN 'advisory lock (federation leader)'
  WHEN wait_event_type = 'Lock' THEN 'waiting for a lock'
  WHEN wait_event_type IN ('IO', 'LWLock') THEN 'I/O and WAL'
  WHEN wait_event_type IS NULL THEN 'running'
  ELSE lower(wait_event_type) END
FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


class ActivitySampler:
    """Where a database's server processes spend a benchmark, sampled from a thread:
    ``with ActivitySampler(cluster, "db") as s: ...`` then ``s.shares()``, the average
    number of its connections in each state (running, waiting for a lock, for the node
    inside a transaction, I/O and WAL...) over the samples."""

    def __init__(self, cluster: PgCluster, database: str, every_s: float = 0.05) -> None:
        self._url = cluster.url()
        self._database = database
        self._every_s = every_s
        self._stop = threading.Event()
        self._states: Counter[str] = Counter()
        self._samples = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._url)
        try:
            while not self._stop.is_set():
                for (state,) in await conn.fetch(_ACTIVITY_SQL, self._database):
                    self._states[state] += 1
                self._samples += 1
                await asyncio.sleep(self._every_s)  # the sampling period
        finally:
            await conn.close()

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def shares(self) -> dict[str, float]:
        n = max(1, self._samples)
        return {k: round(v / n, 2) for k, v in self._states.most_common()}
