"""Interop: our negentropy v1 engine against nostr-tools' nip77 (spec 0005 §Set reconciliation).

The nostr-tools harness (``negentropy_harness.mjs``, the line protocol of the reference's
test harnesses) plays the client against our engine as server, in process, for every
combination of set size, difference and frame size limit; have/need must equal the true
differences. Because the client logic is deterministic, the whole transcript of that
session must also be byte-identical to the one our own client produces against our
server: every client message of ours equals nostr-tools' byte for byte.

nip77 has no server role (its ``reconcile`` answers an IdList the way an initiator
does: it reports have/need and sends nothing back), so our client is not run against
it; a test pins that limit so a future nostr-tools that grows a server is noticed.

Timestamps stay below 2^31 here: nip77 encodes varints with 32-bit JavaScript bit
operations, so it cannot carry millisecond timestamps (a nip77 limit, not a protocol
one; Nostr uses seconds).
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from protocol.negentropy import Negentropy, NegentropyStorage

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
JS_HARNESS = HERE / "negentropy_harness.mjs"
NODE = shutil.which("node")
HAVE_NODE_MODULES = (HERE / "node_modules" / "nostr-tools").is_dir()

needs_node = pytest.mark.skipif(
    NODE is None or not HAVE_NODE_MODULES,
    reason=(
        "needs `node` on PATH and tests/interop/node_modules (run `npm ci --prefix tests/interop`)"
    ),
)

Item = tuple[int, bytes]
SECONDS_BASE = 1_677_970_534  # the reference fuzzer's base timestamp
SESSION_TIMEOUT = 100.0  # seconds for one whole session, however many rounds (pytest: 120)


def make_sets(size: int, diff: str, seed: int) -> tuple[list[Item], list[Item]]:
    """Two sets of `size` items; "0", "1%", "50%" of each side replaced, or "disjoint"."""
    rng = random.Random(seed)

    def new_item() -> Item:
        return SECONDS_BASE + rng.randrange(max(1, size // 2)), rng.randbytes(32)

    if diff == "disjoint":
        return [new_item() for _ in range(size)], [new_item() for _ in range(size)]
    shared = [new_item() for _ in range(size)]
    fraction = {"0": 0.0, "1%": 0.01, "50%": 0.5}[diff]
    changed = 0 if fraction == 0 or size == 0 else max(1, round(fraction * size))
    return (
        shared[: size - changed] + [new_item() for _ in range(changed)],
        shared[: size - changed] + [new_item() for _ in range(changed)],
    )


def true_difference(client: list[Item], server: list[Item]) -> tuple[set[str], set[str]]:
    ours = {item_id.hex() for _, item_id in client}
    theirs = {item_id.hex() for _, item_id in server}
    return ours - theirs, theirs - ours


def item_lines(items: list[Item]) -> str:
    return "".join(f"item,{ts},{item_id.hex()}\n" for ts, item_id in items)


class LineProcess:
    """A harness subprocess: write lines, read lines against a deadline (no sleeps)."""

    def __init__(self, argv: list[str], frame_size_limit: int) -> None:
        env = dict(os.environ, FRAMESIZELIMIT=str(frame_size_limit))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def read_line(self, deadline: float) -> str:
        remaining = deadline - time.monotonic()
        try:
            line = self._lines.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            pytest.fail(f"harness silent past the deadline; stderr: {self.stderr()}")
        if line is None:
            pytest.fail(f"harness exited ({self.proc.poll()}); stderr: {self.stderr()}")
        return line

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


def js_client(frame_size_limit: int) -> LineProcess:
    assert NODE is not None
    return LineProcess([NODE, str(JS_HARNESS), "--role", "client"], frame_size_limit)


def py_harness(role: str, frame_size_limit: int) -> LineProcess:
    # Our engine behind the line protocol, as its own process (tests/interop/negentropy_harness.py).
    argv = [sys.executable, "-m", "tests.interop.negentropy_harness", "--role", role]
    return LineProcess(argv, frame_size_limit)


class Session:
    """The outcome of one reconciliation: ids found and every message in order."""

    def __init__(self) -> None:
        self.have: set[str] = set()
        self.need: set[str] = set()
        self.transcript: list[bytes] = []

    @property
    def bytes_up(self) -> int:
        return sum(len(m) for m in self.transcript[0::2])

    @property
    def bytes_down(self) -> int:
        return sum(len(m) for m in self.transcript[1::2])


def drive_client_harness(
    client: LineProcess, client_items: list[Item], server: Negentropy | LineProcess
) -> Session:
    """Run a harness client against a server (in process, or another harness)."""
    deadline = time.monotonic() + SESSION_TIMEOUT
    session = Session()
    client.send(item_lines(client_items) + "seal\ninitiate\n")
    while True:
        line = client.read_line(deadline)
        kind, _, value = line.partition(",")
        if kind == "have":
            session.have.add(value)
        elif kind == "need":
            session.need.add(value)
        elif kind == "done":
            return session
        elif kind == "msg":
            query = bytes.fromhex(value)
            session.transcript.append(query)
            if isinstance(server, Negentropy):
                reply = server.reconcile(query)
            else:
                server.send(f"msg,{value}\n")
                server_kind, _, server_value = server.read_line(deadline).partition(",")
                assert server_kind == "msg"
                reply = bytes.fromhex(server_value)
            session.transcript.append(reply)
            client.send(f"msg,{reply.hex()}\n")
        else:
            pytest.fail(f"unexpected harness line {line!r}")
        assert len(session.transcript) < 100_000, "reconciliation does not terminate"


def run_in_process(client_items: list[Item], server_items: list[Item], limit: int) -> Session:
    client = Negentropy(NegentropyStorage.from_items(client_items), limit)
    server = Negentropy(NegentropyStorage.from_items(server_items), limit)
    session = Session()
    message: bytes | None = client.initiate()
    while message is not None:
        reply = server.reconcile(message)
        session.transcript += [message, reply]
        message, have, need = client.reconcile_client(reply)
        session.have.update(item_id.hex() for item_id in have)
        session.need.update(item_id.hex() for item_id in need)
    return session


@pytest.fixture
def harnesses() -> Iterator[list[LineProcess]]:
    started: list[LineProcess] = []
    yield started
    for harness in started:
        harness.close()


SIZES = [0, 1, 1000, 50_000]
DIFFS = ["0", "1%", "50%", "disjoint"]


@needs_node
@pytest.mark.parametrize("frame_size_limit", [0, 4096])
@pytest.mark.parametrize("diff", DIFFS)
@pytest.mark.parametrize("size", SIZES)
def test_js_client_against_python_server(
    size: int, diff: str, frame_size_limit: int, harnesses: list[LineProcess]
) -> None:
    client_items, server_items = make_sets(size, diff, seed=size + len(diff))
    server = Negentropy(NegentropyStorage.from_items(server_items), frame_size_limit)
    client = js_client(frame_size_limit)
    harnesses.append(client)

    session = drive_client_harness(client, client_items, server)

    assert (session.have, session.need) == true_difference(client_items, server_items)
    if frame_size_limit:
        assert max(len(m) for m in session.transcript) <= frame_size_limit
    # Byte-identical: our client sends exactly what nostr-tools sent, every round.
    ours = run_in_process(client_items, server_items, frame_size_limit)
    assert ours.transcript == session.transcript
    assert (ours.have, ours.need) == (session.have, session.need)


@needs_node
@pytest.mark.parametrize("count", [0, 1, 31, 32, 33, 1000])
def test_initiate_is_byte_identical(count: int, harnesses: list[LineProcess]) -> None:
    # Many items per timestamp, so bucket bounds carry id prefixes.
    rng = random.Random(count)
    items = [(SECONDS_BASE + rng.randrange(3), rng.randbytes(32)) for _ in range(count)]
    client = js_client(0)
    harnesses.append(client)
    client.send(item_lines(items) + "seal\ninitiate\n")
    line = client.read_line(time.monotonic() + SESSION_TIMEOUT)
    ours = Negentropy(NegentropyStorage.from_items(items)).initiate()
    assert line == f"msg,{ours.hex()}"


@needs_node
@pytest.mark.parametrize("frame_size_limit", [0, 4096])
def test_js_client_against_python_harness_server(
    frame_size_limit: int, harnesses: list[LineProcess]
) -> None:
    # Two processes wired line to line, as the reference's fuzz.pl does.
    client_items, server_items = make_sets(1000, "50%", seed=77)
    server = py_harness("server", frame_size_limit)
    client = js_client(frame_size_limit)
    harnesses += [server, client]
    server.send(item_lines(server_items) + "seal\n")

    session = drive_client_harness(client, client_items, server)

    assert (session.have, session.need) == true_difference(client_items, server_items)


@pytest.mark.parametrize("frame_size_limit", [0, 4096])
def test_python_harness_client_against_python_harness_server(
    frame_size_limit: int, harnesses: list[LineProcess]
) -> None:
    client_items, server_items = make_sets(1000, "1%", seed=78)
    server = py_harness("server", frame_size_limit)
    client = py_harness("client", frame_size_limit)
    harnesses += [server, client]
    server.send(item_lines(server_items) + "seal\n")

    session = drive_client_harness(client, client_items, server)

    assert (session.have, session.need) == true_difference(client_items, server_items)
    assert (
        session.transcript
        == run_in_process(client_items, server_items, frame_size_limit).transcript
    )


def test_python_harness_version_negotiation(harnesses: list[LineProcess]) -> None:
    # The reference's protocol-version test, in v1: an unknown version gets our version
    # byte alone; the retry in v1 is answered normally.
    server = py_harness("server", 0)
    harnesses.append(server)
    deadline = time.monotonic() + SESSION_TIMEOUT
    server.send(f"item,12345,{'ee' * 32}\nseal\nmsg,62aabbccddeeff\n")
    assert server.read_line(deadline) == "msg,61"
    server.send("msg,6100000200\n")
    assert server.read_line(deadline) == "msg,6100000201" + "ee" * 32


def test_python_harness_reports_errors(harnesses: list[LineProcess]) -> None:
    server = py_harness("server", 0)
    harnesses.append(server)
    server.send("seal\nmsg,61ff\n")
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    assert server.proc.wait(timeout=SESSION_TIMEOUT) == 1
    assert "negentropy harness:" in server.stderr()


@needs_node
def test_js_harness_has_no_server_role(harnesses: list[LineProcess]) -> None:
    # (c) of the interop plan, Python client vs nostr-tools server, cannot run: nip77
    # answers an IdList like an initiator (reports have/need, sends no ids back).
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(JS_HARNESS), "--role", "server"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "no server role" in result.stderr
