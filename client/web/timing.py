"""What a page cost the server, for ``Server-Timing`` (measurements compare it with what
the browser waited; ``murmur bench web`` reads it).

The ``timing`` middleware of :mod:`client.web.app` opens a :class:`PageTiming` for each
request; a handler marks its phases with ``with phase("follows"):``. The header is
``app;dur=MS`` (the whole handler), ``cpu;dur=MS`` (the server process's CPU time
meanwhile: on a busy machine the wall time waits for a core, this does not), then
each phase, then ``nodes;desc="requests=N cached=M"``: the requests the page sent to
nodes and the answers it took from the read cache (:mod:`client.readcache`).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from client.readcache import Tally

__all__ = ["PageTiming", "current", "phase", "record"]


@dataclass(slots=True)
class PageTiming:
    start: float = field(default_factory=time.perf_counter)
    #: This process's CPU time at the start: ``cpu`` is what the page used of it
    #: (with anything else the server did meanwhile), whatever else loads the machine.
    cpu_start: float = field(default_factory=time.process_time)
    phases: dict[str, float] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)

    def header(self) -> str:
        parts = [f"app;dur={(time.perf_counter() - self.start) * 1000:.1f}"]
        parts.append(f"cpu;dur={(time.process_time() - self.cpu_start) * 1000:.1f}")
        parts += [f"{name};dur={ms:.1f}" for name, ms in self.phases.items()]
        parts.append(f'nodes;desc="requests={self.tally.requests} cached={self.tally.cached}"')
        return ", ".join(parts)


current: contextvars.ContextVar[PageTiming | None] = contextvars.ContextVar(
    "murmur_web_timing", default=None
)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as ``name`` of the current page (added up if it runs twice)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        record(name, start)


def record(name: str, since: float) -> None:
    """``name`` of the current page took from ``since`` (``time.perf_counter()``) to now."""
    timing = current.get()
    if timing is not None:
        ms = (time.perf_counter() - since) * 1000
        timing.phases[name] = timing.phases.get(name, 0.0) + ms
