"""Hostile custom filters cannot hang or crash a view (issue #14 finding 6).

Spec 0006 #filter-deadline: every entry point of a custom filter (loading it, building
it, ``prepare``, ``check``, sync or async) has a hard deadline; a filter that overruns
it, crashes its process or exhausts its memory is reported as failed, and the view is
shown. Each test configures a reader's ``filters.toml`` with one hostile filter next to
an honest built-in one, runs the view in a **child process** (the filters as ``murmur``
builds them: :func:`client.moderation.apply.build_pipeline`, or the real ``murmur
timeline`` against a real node), and asserts on the outcome: every item judged, the
honest filter's decision made, the hostile filter reported failed. The child's
wall-clock guard (:data:`GUARD_S`, generous) is only a hang detector: a hung view fails
the test instead of hanging the suite. Nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.conftest import start_node
from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess

ROOT = Path(__file__).resolve().parents[2]
#: The hang detector: far above what a contained view takes (a few seconds), so a busy
#: machine never trips it; a view that hangs trips it.
GUARD_S = 90.0

#: Runs in a child process: build the pipeline from ``HOME/filters.toml`` as a view
#: does, judge ITEMS posts (the first mentions "spoiler"), print the outcome as JSON.
VIEW_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from client.moderation.apply import build_pipeline
    from client.moderation.config import ModerationConfig
    from client.moderation.core import Env, Item, ViewContext
    from protocol.events import sign_event
    from protocol.identity import Identity

    home, count = Path(sys.argv[1]), int(sys.argv[2])
    me = Identity.from_seed(bytes([200]) * 32)
    texts = ["a spoiler here"] + [f"post {i}" for i in range(1, count)]
    items = [
        Item(
            event=sign_event(
                Identity.from_seed(bytes([i + 1]) * 32),
                kind="post", body={"text": t}, seq=1, prev=None, ts=1,
            ),
            context=ViewContext.TIMELINE, viewer=me.did, now_ms=2,
        )
        for i, t in enumerate(texts)
    ]
    pipeline, warnings = build_pipeline(ModerationConfig.load(home))
    env = Env(viewer=me.did, now_ms=2, context=ViewContext.TIMELINE, home=home)
    verdicts = asyncio.run(pipeline.run(items, env))
    print(json.dumps({
        "verdicts": [v.to_json() for v in verdicts],
        "warnings": warnings + pipeline.warnings,
    }))
    """
)

HOSTILE = textwrap.dedent(
    """
    import asyncio, ctypes, os, time

    class PrepareLoops:
        name = "prepare-loops"
        def prepare(self, env):
            while True:
                pass
        def check(self, item):
            return None

    class BareExceptLoop:
        name = "bare-except"
        def check(self, item):
            while True:
                try:
                    while True:
                        pass
                except:  # swallows every interruption
                    pass

    class AsyncSleeps:
        name = "async-sleeps"
        async def check(self, item):
            time.sleep(3600)  # blocks the event loop

    class AsyncSpins:
        name = "async-spins"
        async def check(self, item):
            while True:
                pass

    class SwallowsCancel:
        name = "swallows-cancel"
        async def check(self, item):
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass

    class Exits:
        name = "exits"
        def check(self, item):
            os._exit(3)

    class Segfaults:
        name = "segfaults"
        def check(self, item):
            ctypes.string_at(0)

    class Forks:
        name = "forks"
        def check(self, item):
            pid = os.fork()
            if pid == 0:  # out of the worker's process group, holding its pipes
                os.setsid()
                time.sleep(3600)
                os._exit(0)
            with open(os.environ["FORKED_PIDS"], "a") as pids:
                pids.write(f"{pid}\\n")
            return None

    class Allocates:
        name = "allocates"
        def check(self, item):
            self.hoard = bytearray(3 << 30)  # 3 GiB of address space
            return None
    """
)


def write_filters(home: Path, hostile_class: str, *, budget_ms: int = 100) -> None:
    """``filters.toml``: the hostile filter, then an honest built-in muting "spoiler"."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "hostile.py"
    path.write_text(HOSTILE)
    (home / "filters.toml").write_text(
        textwrap.dedent(
            f"""
            [[filters]]
            name = "hostile"
            type = "{path}:{hostile_class}"
            budget_ms = {budget_ms}

            [[filters]]
            name = "mute"
            type = "mute-words"
            params = {{ words = ["spoiler"] }}
            """
        )
    )


def run_guarded(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; a child still running after :data:`GUARD_S` is a hung view."""
    try:
        return subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=GUARD_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the view hung: no result within the {GUARD_S:g} s guard")


def view(home: Path, count: int = 5) -> dict[str, Any]:
    proc = run_guarded([sys.executable, "-c", VIEW_SCRIPT, str(home), str(count)])
    assert proc.returncode == 0, f"the view crashed (exit {proc.returncode}): {proc.stderr}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert len(doc["verdicts"]) == count  # every item judged
    # The honest filter still decided: the first post is hidden by it.
    first = doc["verdicts"][0]
    assert first["action"] == "hide" and first["final"]["filter"] == "mute"
    assert all(v["action"] is None for v in doc["verdicts"][1:])
    return doc


def failures(doc: dict[str, Any]) -> list[str]:
    """Every warning of the view and its items that names the hostile filter."""
    found = [w for w in doc["warnings"] if "filter hostile" in w]
    for v in doc["verdicts"]:
        found += [w for w in v["warnings"] if "filter hostile" in w]
    return found


def test_sync_prepare_that_loops_forever(tmp_path: Path) -> None:
    """spec 0006 #filter-deadline: a synchronous ``prepare`` has a hard deadline."""
    write_filters(tmp_path, "PrepareLoops")
    doc = view(tmp_path)
    assert doc["warnings"] == ["filter hostile skipped: preparing it timed out"]
    assert failures(doc) == doc["warnings"]  # skipped for the whole view, said once


@pytest.mark.parametrize(
    "hostile_class",
    ["BareExceptLoop", "AsyncSleeps", "AsyncSpins", "SwallowsCancel"],
    ids=["check-bare-except-loop", "async-check-sleeps", "async-check-spins",
         "async-check-swallows-cancel"],
)  # fmt: skip
def test_check_that_never_returns(tmp_path: Path, hostile_class: str) -> None:
    """spec 0006 #filter-deadline: a ``check`` that cannot be interrupted, or blocks the
    event loop, or ignores cancellation, fails at its deadline; after #max-failures the
    filter is skipped for the rest of the view."""
    write_filters(tmp_path, hostile_class)
    doc = view(tmp_path)
    per_item = [w for v in doc["verdicts"] for w in v["warnings"]]
    assert per_item == ["filter hostile skipped: exceeded its 100 ms budget"] * 3
    assert doc["warnings"] == [
        "filter hostile skipped for the rest of this view: failed on 3 item(s), not run on "
        "2 more (first: exceeded its 100 ms budget)"
    ]


@pytest.mark.parametrize("hostile_class", ["Exits", "Segfaults"], ids=["os-exit", "segfault"])
def test_check_that_kills_its_process(tmp_path: Path, hostile_class: str) -> None:
    """spec 0006 #filter-deadline: a filter that ends its own process (``os._exit``,
    a segfault) fails; the view survives and the filter is reported."""
    write_filters(tmp_path, hostile_class)
    doc = view(tmp_path)
    per_item = [w for v in doc["verdicts"] for w in v["warnings"]]
    assert len(per_item) == 3
    assert all(w.startswith("filter hostile skipped: its worker process died") for w in per_item)
    assert doc["warnings"][0].startswith("filter hostile skipped for the rest of this view")


@pytest.fixture
def forked_pids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the ``Forks`` filter notes the processes it started; any of them still
    alive at the end is killed (it would otherwise outlive the test by an hour)."""
    path = tmp_path / "forked-pids"
    monkeypatch.setenv("FORKED_PIDS", str(path))
    yield path
    if path.exists():
        for line in path.read_text().split():
            try:
                os.kill(int(line), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_check_that_forks_a_process_out_of_its_group(tmp_path: Path, forked_pids: Path) -> None:
    """spec 0006 #custom-worker: a filter cannot start a process (on Linux x86-64 and
    aarch64 a seccomp filter in the worker makes ``fork`` fail with ``EAGAIN``, for
    root too: ``RLIMIT_NPROC`` would not bind root, and would forbid threads). Where
    it could, a child that left the worker's process group (``os.setsid``) and holds
    its pipes would still not hold the view: closing a worker is bounded (spec 0006
    #filter-deadline); the test's fixture then kills that child. Before: ``fork``
    worked and the view waited for the child (an hour)."""
    write_filters(tmp_path, "Forks")
    doc = view(tmp_path)
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "aarch64"):
        per_item = [w for v in doc["verdicts"] for w in v["warnings"]]
        assert (
            per_item
            == [
                "filter hostile skipped: raised BlockingIOError: [Errno 11] "
                "Resource temporarily unavailable"
            ]
            * 3
        )
        assert not forked_pids.exists()


def test_check_that_allocates_beyond_its_memory_limit(tmp_path: Path) -> None:
    """spec 0006 #filter-deadline: a custom filter's process has a memory limit; going
    past it is a failure of that filter (MemoryError), not of the reader's machine."""
    write_filters(tmp_path, "Allocates", budget_ms=2000)
    doc = view(tmp_path, count=2)
    per_item = [w for v in doc["verdicts"] for w in v["warnings"]]
    assert per_item == ["filter hostile skipped: raised MemoryError: "] * 2


# -- through the real CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory.mktemp("hostile-filters-node"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize(
    "hostile_class", ["BareExceptLoop", "PrepareLoops"], ids=["check", "prepare"]
)
def test_murmur_timeline_is_shown_despite_a_hanging_filter(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    node: NodeProcess,
    hostile_class: str,
) -> None:
    """spec 0006 #filter-deadline through ``murmur timeline`` against a real node: the
    timeline is printed, the honest filter hides its post, the hostile filter is a
    visible warning, and the command exits 0."""
    monkeypatch.setenv("MURMUR_PASSPHRASE", "hostile filters test")  # for sealed keys
    home = tmp_path / "home"
    cli = Cli(home, capsys)
    for name in ("amy", "bob"):
        cli.json("id", "new", name)
    cli.json("nodes", "add", node.url)
    cli.json("follow", cli.json("id", "show", "bob")["did"], "--alias", "bob")
    cli.post("bob", "a spoiler here")
    for i in range(4):
        cli.post("bob", f"readable post {i}")
    write_filters(home, hostile_class)

    proc = run_guarded(
        [sys.executable, "-m", "client.cli.main", "--home", str(home), "timeline", "--json"]
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert sorted(p["text"] for p in doc["posts"]) == [f"readable post {i}" for i in range(4)]
    assert [h["text"] for h in doc["moderation"]["hidden"]] == ["a spoiler here"]
    warned = doc["moderation"]["warnings"] + [
        w for p in doc["posts"] for w in p["moderation"]["warnings"]
    ]
    assert any(w.startswith("filter hostile skipped") for w in warned), warned
