"""The pieces of the browser tests (issue #17 item 5) that are not fixtures.

* :func:`murmur` runs one ``murmur --home HOME ... --json`` command in this process
  (the CLI's own parser and handlers, as a user types them) and returns its document:
  the devnet is seeded through the client's public face, not by hand-built events.
* :class:`WebProcess` is ``murmur web`` as a real subprocess on a free loopback port,
  with its own ``MURMUR_HOME``; the token URL it prints at start is read within a
  deadline (never a fixed sleep), and its output is kept for failure messages;
  :class:`TokenURLProcess` is the same for any ``murmur`` command that prints one
  (``devnet up --web``, used by ``scripts/screenshots.py``).
* :class:`PageGuard` collects what a page must never do on its own: open a dialog
  (``alert``: a script ran), log a console error (a CSP violation, a failed load),
  throw an uncaught error, or send a request anywhere but the app's own origin.
* :func:`axe_violations` injects the vendored axe-core (tests/web/node_modules, from
  the pinned package-lock.json) and returns its serious and critical violations.

Chromium is Debian's ``/usr/bin/chromium`` (``make browser-deps``), driven by
Playwright's async API through ``executable_path`` (the sync API marks the main
thread's event loop as running between calls, which breaks every ``asyncio.run`` and
pytest-asyncio test after it in the session); :func:`browser_missing` says why a browser
test cannot run, and the fixtures fail with that message (skip only under
``MURMUR_SKIP_BROWSER=1``, which CI never sets).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bench.common import CHROMIUM, CHROMIUM_ARGS, TOKEN_URL, free_port
from tests.e2e.nodeproc import ROOT

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Dialog, Page, Request
    from playwright.async_api import Error as PlaywrightError

__all__ = [
    "AXE_JS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "OUTPUT",
    "SKIP_ENV",
    "TOKEN_PARAM",
    "VIEWPORTS",
    "PageGuard",
    "TokenURLProcess",
    "WebProcess",
    "axe_violations",
    "browser_missing",
    "describe_violations",
    "murmur",
]

HERE = Path(__file__).resolve().parent
#: A developer's opt-out (never set in CI): browser tests skip instead of failing.
SKIP_ENV = "MURMUR_SKIP_BROWSER"
#: axe-core from the npm registry, pinned by tests/web/package-lock.json.
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
#: Screenshots land in OUTPUT/<test name>/ (git-ignored).
OUTPUT = HERE / "output"
#: The two screen sizes every page is checked at: a phone and a laptop.
VIEWPORTS: dict[str, dict[str, Any]] = {
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
    "desktop": {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1},
}
#: How long ``murmur web`` may take to print its URL (a hang guard, nothing is timed).
WEB_START_DEADLINE_S = 30.0
#: The query parameter of the secret URL ``murmur web`` prints at start.
TOKEN_PARAM = "token"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run `make browser-deps` (Debian's chromium package)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: run `make dev` (pip install -e '.[dev]')"
    return None


def murmur(home: Path, *argv: str, as_name: str | None = None) -> Any:
    """``murmur --home HOME [--as NAME] ARGV --json`` in-process; its JSON document.

    The command must succeed (exit 0); its stderr is in the assertion message if not.
    It runs its own event loop (``asyncio.run``): from an async test (a browser test),
    call it through ``await asyncio.to_thread(murmur, ...)``.
    """
    from client.cli.main import main as murmur_main  # only tests that seed need the CLI

    pre = ["--home", str(home)] + (["--as", as_name] if as_name else [])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = murmur_main([*pre, *argv, "--json"])
    assert code == 0, f"murmur {' '.join(argv)}: exit {code}: {err.getvalue()}{out.getvalue()}"
    return json.loads(out.getvalue())


# -- murmur web ---------------------------------------------------------------------------


class TokenURLProcess:
    """A real ``murmur`` process that serves the web client and prints its token URL
    (``murmur web``, ``murmur devnet up --web``; ``argv`` after ``murmur``).

    ``url`` is the origin it serves (``http://127.0.0.1:P``) and ``token_url`` the
    secret URL it printed; ``stop()`` terminates it (SIGTERM, which ``devnet up``
    takes as Ctrl-C), then kills it after ``stop_timeout_s``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        deadline_s: float = WEB_START_DEADLINE_S,
        stop_timeout_s: float = 10.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.stop_timeout_s = stop_timeout_s
        cmd = [sys.executable, "-m", "client.cli.main", *argv]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
        env.pop("MURMUR_DEBUG", None)
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.url, self.token = self._wait_for_token_url(deadline_s)
        self.token_url = f"{self.url}/?token={self.token}"

    @property
    def host(self) -> str:
        """The ``Host`` header the app serves (``127.0.0.1:P``)."""
        return urlsplit(self.url).netloc

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def _wait_for_token_url(self, deadline_s: float) -> tuple[str, str]:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self._log.append(line)
            if m := TOKEN_URL.search(line):
                return m.group(1), m.group(2)
        self.stop()
        raise AssertionError(
            f"murmur web printed no http://HOST:PORT/?token=... URL within {deadline_s:g} s "
            f"(exit {self.proc.returncode}):\n{self.log()}"
        )

    def log(self) -> str:
        """Everything the process has printed so far (stdout and stderr)."""
        while True:
            try:
                self._log.append(self._lines.get_nowait())
            except queue.Empty:
                return "".join(self._log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(timeout=10)


class WebProcess(TokenURLProcess):
    """``murmur --home HOME web --host 127.0.0.1 --port P``, a real process."""

    def __init__(self, home: Path, *args: str, deadline_s: float = WEB_START_DEADLINE_S) -> None:
        self.home = home
        self.port = free_port()
        argv = ["--home", str(home), "web", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(
            [*argv, *args], deadline_s=deadline_s, extra_env={"MURMUR_HOME": str(home)}
        )


# -- what a page must not do --------------------------------------------------------------


@dataclass(slots=True)
class PageGuard:
    """Dialogs, console errors, page errors and foreign requests seen by a context.

    Every dialog is dismissed at once (a page that called ``alert`` would otherwise
    hang). ``allowed`` origins may be requested (the app's own); ``data:`` and
    ``blob:`` URLs never leave the browser. A test that expects some of these calls
    :meth:`expect` with the kind, and :meth:`problems` then leaves that kind out.
    """

    allowed: tuple[str, ...]
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)

    KINDS = ("dialogs", "console_errors", "page_errors", "foreign_requests")

    def watch(self, page: Page) -> None:
        from playwright.async_api import Error as PlaywrightError

        # Nested functions: Playwright tags each handler with an attribute, which a
        # bound method cannot take.
        async def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message!r}")
            with contextlib.suppress(PlaywrightError):  # the page may be closing
                await dialog.dismiss()

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type in ("error", "assert"):
                where = msg.location
                self.console_errors.append(
                    f"{msg.text} ({where.get('url')}:{where.get('lineNumber')})"
                )

        def on_page_error(error: PlaywrightError) -> None:
            self.page_errors.append(str(error))

        def on_request(request: Request) -> None:
            url = request.url
            if url.startswith(("data:", "blob:", "about:")):
                return
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" not in self.allowed:
                self.foreign_requests.append(f"{request.method} {url}")

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("request", on_request)

    def expect(self, *kinds: str) -> None:
        """This test provokes ``kinds`` on purpose: :meth:`problems` ignores them."""
        unknown = set(kinds) - set(self.KINDS)
        assert not unknown, f"unknown guard kinds {unknown}"
        self.expected.update(kinds)

    def problems(self) -> list[str]:
        found: list[str] = []
        for kind in self.KINDS:
            if kind not in self.expected:
                found += [f"{kind}: {item}" for item in getattr(self, kind)]
        return found

    def check(self) -> None:
        """Fail now if the page did anything it must not (also run after every test)."""
        found = self.problems()
        assert not found, "the page misbehaved:\n  " + "\n  ".join(found)


# -- accessibility ------------------------------------------------------------------------

#: axe-core rule tags run: WCAG 2.0-2.2 A and AA, plus axe's best practices.
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice")
SERIOUS = frozenset({"serious", "critical"})


async def axe_violations(page: Page, *, include: str | None = None) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on ``page`` (or in ``include``).

    The script is evaluated through the DevTools protocol, which the page's
    Content-Security-Policy does not govern: a strict CSP stays on for the page's own
    scripts while axe runs. Each violation keeps its id, impact, help and the first
    nodes' targets, enough to read in a failure message.
    """
    if not AXE_JS.exists():
        raise AssertionError(
            f"{AXE_JS} is missing: run `make tests/web/node_modules/.installed` "
            "(npm ci in tests/web)"
        )
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    script = """async ([include, tags]) => {
        const ctx = include === null ? document : {include: [include]};
        const r = await window.axe.run(ctx, {runOnly: {type: 'tag', values: tags},
                                             resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
    }"""
    found: list[dict[str, Any]] = await page.evaluate(script, [include, list(AXE_TAGS)])
    return [v for v in found if v.get("impact") in SERIOUS]


def describe_violations(violations: Sequence[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['nodes'])}" for v in violations
    )
