"""What every benchmark shares: node processes, timing helpers, tables and JSON results.

A benchmark is a module with ``main(argv) -> int``. It measures, prints one table
(``print_table``) and writes one JSON document (``write_result``) to
``bench/results/<name>.json`` unless ``--out`` says otherwise. Nothing here asserts a
timing: the figures are reported, and compared as ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from client.verify import usable_cpus as cpu_count

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "RESULTS",
    "TOKEN_URL",
    "ROOT",
    "NodeProcess",
    "add_common_args",
    "cpu_count",
    "free_port",
    "free_ports",
    "machine",
    "percentile",
    "print_table",
    "scratch_dir",
    "write_config",
    "write_result",
]

#: Debian's Chromium (``make browser-deps``), as ``murmur bench web`` and the browser
#: tests (tests/web/harness.py) launch it through Playwright.
CHROMIUM = Path("/usr/bin/chromium")
#: Headless Chromium on a machine with a closed network: without the background
#: networking flags it keeps trying (and failing) to reach Google's services; as root
#: it needs --no-sandbox. Playwright gives every launch a new empty profile directory.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
)
#: The URL ``murmur web`` prints: its origin and its token.
TOKEN_URL = re.compile(r"(http://[\w.\[\]:-]+)/\?token=([A-Za-z0-9_\-.~%]+)")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
_URL_RE = re.compile(r"murmur node listening url=(http://\S+)")

#: Limits that keep a benchmark from measuring the rate limiter instead of the node.
BENCH_LIMITS = {"rate_per_ip": 1_000_000, "rate_burst": 1_000_000}


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ``bind(0)`` and outgoing connections' local ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # the Linux default


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and stays free until a node binds it.

    A node's port is chosen before it starts (its peers are configured with it), and
    meanwhile the other nodes connect out a lot (to it, through proxies): a port from
    the kernel's ephemeral range could be taken as the local port of one of those
    connections. So the port comes from outside that range, checked by binding it,
    and is never handed out twice by this process. (Shared with tests/e2e.)
    """
    low, high = _ephemeral_range()
    candidates = range(10_000, low) if low > 12_000 else range(high + 1, 65_536)
    rng = random.Random()
    for _ in range(500):
        port = rng.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {candidates}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports as :func:`free_port` picks them."""
    return [free_port() for _ in range(count)]


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare a result with another machine's."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def percentile(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by the nearest-rank method."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def add_common_args(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="a small run (about a minute at most)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / f"{name}.json",
        help=f"where to write the JSON result (default bench/results/{name}.json)",
    )


def write_result(path: Path, name: str, doc: dict[str, Any]) -> Path:
    """Write ``doc`` (with the benchmark name and the machine) as JSON; return the path."""
    full = {"benchmark": name, "machine": machine(), **doc}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(full, indent=2) + "\n")
    print(f"  written to {path}")
    return path


def print_table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    """Print ``rows`` as an aligned text table under ``title``."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
        for i, h in enumerate(header)
    ]
    print(title)
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in cells:
        print("  " + "  ".join(_align(c, w) for c, w in zip(r, widths, strict=True)))


def _align(cell: str, width: int) -> str:
    numeric = cell[:1].isdigit() or cell[:1] in "-." or cell.endswith("x")
    return cell.rjust(width) if numeric else cell.ljust(width)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def progress(text: str) -> None:
    """One progress line on stderr (tables go to stdout)."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards (the node's data lives there)."""
    path = Path(tempfile.mkdtemp(prefix=f"murmur-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(
    path: Path, *, node: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
    federation: dict[str, Any] | None = None,
) -> Path:
    """A node TOML config with the rate limiter opened up (see ``BENCH_LIMITS``)."""
    tables = {
        "node": node or {},
        "limits": {**BENCH_LIMITS, **(limits or {})},
        "federation": federation or {},
    }
    lines: list[str] = []
    for table, values in tables.items():
        if not values:
            continue
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _cpu_seconds(pid: int) -> float:
    """A process's user + system seconds, and those of its children it waited for."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[int]:
    """``root`` and every live process under it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


class NodeProcess:
    """A ``python -m node run`` subprocess on 127.0.0.1, optionally pinned to CPUs.

    It starts on ``port`` (0: any), reads its URL from the startup line and waits for
    ``/health`` in a deadline loop (never a fixed sleep); a thread drains stderr into
    ``lines``, so the process never blocks on a full pipe and its log can be read.
    ``stop()`` asks it to shut down (SIGTERM). The end-to-end tests' launcher is this
    class too (``tests/e2e/nodeproc.py``).
    """

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        port: int = 0,
        cpus: set[int] | None = None,
        deadline_s: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        cmd = [sys.executable, "-m", "node", "run", "--port", str(port), "--data", str(data_dir)]
        cmd += args
        if cpus:
            cmd = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.data_dir = data_dir
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_for_url(deadline_s)
        self._wait_healthy(deadline_s)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def _wait_for_url(self, deadline_s: float) -> str:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if m := _URL_RE.search(line):
                return m.group(1)
        self.stop()
        raise RuntimeError("node did not start:\n" + "".join(self.log))

    def _wait_healthy(self, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # the poll interval of a deadline loop
        self.stop()
        raise RuntimeError("node never became healthy")

    def rss_bytes(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the node process, in bytes, from /proc."""
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
        return found.get("VmRSS", 0), found.get("VmHWM", 0)

    def workers_memory_bytes(self) -> tuple[int, int]:
        """(RSS, PSS) summed over the processes under the node (its verification
        workers and their forkserver, spec 0004 #verify-workers), in bytes. PSS
        shares the pages they have in common (they are forked from one server)."""
        rss = pss = 0
        for pid in _tree(self.pid)[1:]:
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0]) * 1024
                elif key == "Pss":
                    pss += int(value.split()[0]) * 1024
        return rss, pss

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the node has used so far: its process and every
        process under it (verification workers, spec 0004 #verify-workers), live or
        reaped."""
        return sum(_cpu_seconds(pid) for pid in _tree(self.pid))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
