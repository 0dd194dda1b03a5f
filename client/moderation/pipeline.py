"""The moderation pipeline: run the configured filters on each item, compose (spec 0006).

Composition rules, in order:

1. every enabled filter, in configured order, checks the item and each item it embeds
   (quoted, reposted, replied-to parent); a decision on an embedded item applies to
   the item that carries it, marked ``via``;
2. an ``allow`` decision (the reader's explicit allow-rule) overrides every decision
   whose source is a labeler or a list; the reader's own rules and the author's
   self-labels still apply;
3. the reader's own posts are never hidden: a ``hide`` on them becomes a ``badge``;
4. the most severe remaining decision wins (``hide`` > ``warn`` > ``badge``); on a
   tie, the earlier filter's.

A filter that raises, returns something other than a decision, or exceeds its time
budget is skipped for that item, and the item carries a warning saying so; after
:data:`MAX_FAILURES` such failures in one run the filter is skipped for the rest of
it. However often a filter fails, the view gets one warning for it
(:attr:`Pipeline.warnings`: which filter, on how many items, the first error; spec
0006 #failure-summary), and the log one line, not a line per item. A custom filter
(:class:`~client.moderation.isolation.IsolatedFilter`) runs in a worker process that
is killed at its deadline (spec 0006 #filter-deadline), so nothing it does can stall
the view; it is started (in parallel with the others) before any ``prepare``, and a
filter that cannot be started is left out with a view-level warning. In-process
filters (the built-ins, or objects given directly): a sync call cannot be interrupted
portably, so on the main thread of a Unix process it is interrupted at the deadline
by a one-shot ``SIGALRM`` timer, elsewhere its budget is checked after it returns;
async calls are cancelled at the deadline. An allow-rule overrides
labeler and list decisions on the item itself, not on what it quotes or reposts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from client.errors import FilterError
from client.moderation.core import Action, Decision, Env, Filter, Item, SourceKind
from client.moderation.isolation import IsolatedFailure, IsolatedFilter

__all__ = [
    "DEFAULT_BUDGET_MS",
    "MAX_FAILURES",
    "PREPARE_BUDGETS",
    "Configured",
    "Pipeline",
    "Verdict",
]

log = logging.getLogger("murmur.client.moderation")

#: Time one filter may spend on one item (including its embedded items).
DEFAULT_BUDGET_MS = 200.0
#: Failures (exceptions, timeouts, bad return values) before a filter is skipped for
#: the rest of a run.
MAX_FAILURES = 3
#: A ``prepare`` may take this many times the filter's per-item budget.
PREPARE_BUDGETS = 10

_OVERRIDABLE = (SourceKind.LABELER, SourceKind.LIST)


@dataclass(frozen=True, slots=True)
class Configured:
    """A filter under its configured name, with its time budget."""

    name: str
    filter: Filter
    budget_ms: float = DEFAULT_BUDGET_MS


@dataclass(slots=True)
class Verdict:
    """The outcome for one item: every decision, the winner, and what went wrong."""

    item: Item
    decisions: list[Decision] = field(default_factory=list)
    overridden: list[Decision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    final: Decision | None = None

    @property
    def action(self) -> Action | None:
        return None if self.final is None else self.final.action

    @property
    def hidden(self) -> bool:
        return self.action is Action.HIDE

    def to_json(self) -> dict[str, Any]:
        return {
            "action": None if self.final is None else self.final.action.value,
            "final": None if self.final is None else self.final.to_json(),
            "decisions": [d.to_json() for d in self.decisions],
            "overridden": [d.to_json() for d in self.overridden],
            "warnings": list(self.warnings),
        }


class Pipeline:
    """Filters in order; :meth:`run` judges a list of items."""

    def __init__(
        self,
        filters: Sequence[Configured],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.filters = list(filters)
        self._clock = clock
        #: Per filter: items it failed on, and the first failure (spec 0006 #failure-summary).
        self._failures: dict[str, tuple[int, str]] = {}
        #: Per filter skipped after MAX_FAILURES: items it was then not run on.
        self._skipped: dict[str, int] = {}
        self._disabled: set[str] = set()
        #: Filters that could not be started or prepared, with why.
        self._notes: list[str] = []

    @property
    def warnings(self) -> list[str]:
        """View-level warnings of the current (or last) run: filters that could not be
        started or prepared, then one line per filter that failed on any item."""
        out = list(self._notes)
        for name, (count, first) in self._failures.items():
            if name in self._skipped:
                rest = self._skipped[name]
                more = f", not run on {rest} more" if rest else ""
                out.append(
                    f"filter {name} skipped for the rest of this view: failed on {count} "
                    f"item(s){more} (first: {first})"[:400]
                )
            else:
                out.append(
                    f"filter {name} skipped on {count} item(s): it failed (first: {first})"[:400]
                )
        return out

    async def run(self, items: Sequence[Item], env: Env | None = None) -> list[Verdict]:
        """One verdict per item, in order. Never raises because of a filter.

        With ``env``, each filter's optional ``prepare(env)`` runs first (within its
        budget); a filter whose ``prepare`` fails is skipped for the whole view and
        the failure is in :attr:`warnings`.
        """
        if env is None and items:
            first = items[0]
            env = Env(viewer=first.viewer, now_ms=first.now_ms, context=first.context)
        try:
            await self.start(env)
            return await self.judge_all(items)
        finally:
            await self.aclose()

    async def start(self, env: Env | None, *, keep_workers: bool = False) -> None:
        """Begin a run (one view): forget the last one's failures, start isolated
        filters, run each ``prepare(env)``. Then :meth:`judge_all`, as often as the
        view needs (its failures add up), and :meth:`aclose`.

        ``keep_workers``: a worker still running from the last view is kept (a
        long-running face, spec 0006 #worker-reuse); the filter is prepared again."""
        self._failures = {}
        self._skipped = {}
        self._disabled = set()
        self._notes = []
        with _alarm_handler():
            await self._start_isolated(keep=keep_workers)
            if env is not None:
                for conf in self.filters:
                    if conf.name not in self._disabled:
                        await self._prepare(conf, env)

    async def judge_all(self, items: Sequence[Item]) -> list[Verdict]:
        """One verdict per item, in order, within the run :meth:`start` began.

        Each custom filter's worker is first sent the checks of every item and embed
        at once (spec 0006 #worker-reuse), its workers in parallel; the per-item walk
        then takes those replies with the same budgets and failure rules."""
        targets = [t for item in items for t in (item, *item.embeds.values())]
        isolated = [
            c.filter
            for c in self.filters
            if isinstance(c.filter, IsolatedFilter) and c.name not in self._disabled
        ]
        budgets = {
            id(c.filter): c.budget_ms / 1000
            for c in self.filters
            if isinstance(c.filter, IsolatedFilter)
        }
        if targets and isolated:
            await asyncio.gather(
                *(
                    f.check_ahead(targets, budgets[id(f)], max_failures=MAX_FAILURES)
                    for f in isolated
                )
            )
        with _alarm_handler():
            return [await self.judge(item) for item in items]

    async def aclose(self) -> None:
        """Stop the worker processes of isolated filters (:meth:`run` does it at its end)."""
        for conf in self.filters:
            if isinstance(conf.filter, IsolatedFilter):
                await conf.filter.close()

    async def _start_isolated(self, *, keep: bool = False) -> None:
        """Start every isolated filter's worker (``keep``: not one still running),
        concurrently; one that cannot be loaded or built is left out of the run with a
        view-level warning."""
        isolated = [
            c
            for c in self.filters
            if isinstance(c.filter, IsolatedFilter) and not (keep and c.filter.running)
        ]
        starts = [c.filter.start() for c in isolated if isinstance(c.filter, IsolatedFilter)]
        results = await asyncio.gather(*starts, return_exceptions=True)
        for conf, result in zip(isolated, results, strict=True):
            if isinstance(result, FilterError):
                self._disabled.add(conf.name)
                message = f"filter {conf.name} left out: {result.message}"[:400]
                self._notes.append(message)
                log.info("%s", message)
            elif isinstance(result, BaseException):
                raise result

    async def _prepare(self, conf: Configured, env: Env) -> None:
        seconds = conf.budget_ms * PREPARE_BUDGETS / 1000
        try:
            if isinstance(conf.filter, IsolatedFilter):
                await conf.filter.prepare_within(env, seconds)
                return
            prepare = getattr(conf.filter, "prepare", None)
            if not callable(prepare):
                return
            with _interrupt_after(seconds):
                result = prepare(env)
            if inspect.isawaitable(result):
                async with asyncio.timeout(seconds):
                    await result
        except (Exception, SystemExit, _Interrupted) as exc:  # someone else's code
            self._disabled.add(conf.name)
            if isinstance(exc, TimeoutError | _Interrupted):
                what = "timed out"
            elif isinstance(exc, IsolatedFailure):
                what = str(exc)
            else:
                what = f"raised {exc!r}"
            message = f"filter {conf.name} skipped: preparing it {what}"[:300]
            self._notes.append(message)
            log.info("%s", message)

    async def judge(self, item: Item) -> Verdict:
        verdict = Verdict(item)
        found: list[Decision] = []
        for conf in self.filters:
            if conf.name in self._disabled:
                if conf.name in self._skipped:
                    self._skipped[conf.name] += 1
                continue  # the view-level warning says why
            found.extend(await self._check_all(conf, item, verdict))
        allowed = any(
            d.action is Action.ALLOW and d.source_kind is SourceKind.USER and d.via is None
            for d in found
        )
        for d in found:
            if d.action is Action.ALLOW:
                verdict.decisions.append(d)
            elif allowed and d.source_kind in _OVERRIDABLE and d.via is None:
                # Allowing an author does not allow what they quote or repost.
                verdict.overridden.append(d)
            elif item.mine and d.action is Action.HIDE:
                verdict.overridden.append(d)
                verdict.decisions.append(
                    replace(d, action=Action.BADGE, reason=f"{d.reason} (your own post)")
                )
            else:
                verdict.decisions.append(d)
        best: Decision | None = None
        for d in verdict.decisions:
            if d.action is not Action.ALLOW and (
                best is None or d.action.severity > best.action.severity
            ):
                best = d
        verdict.final = best
        return verdict

    async def _check_all(self, conf: Configured, item: Item, verdict: Verdict) -> list[Decision]:
        """``conf`` on the item and its embeds, within one budget."""
        out: list[Decision] = []
        if isinstance(conf.filter, IsolatedFilter):
            try:  # a worker killed at an earlier deadline is replaced outside this budget
                await conf.filter.ensure_running()
            except (FilterError, IsolatedFailure) as exc:
                self._fail(conf, verdict, exc.message if isinstance(exc, FilterError) else str(exc))
                return []
        start = self._clock()
        # Time a worker spent on checks answered ahead (IsolatedFilter.check_ahead).
        replayed = 0.0
        targets: list[tuple[str | None, Item]] = [(None, item), *item.embeds.items()]
        for via, target in targets:
            remaining = conf.budget_ms - (self._clock() - start + replayed) * 1000
            if remaining <= 0:
                self._fail(conf, verdict, f"exceeded its {conf.budget_ms:g} ms budget")
                return []
            try:
                decision = await self._check_one(conf, target, remaining)
            except _Failure as exc:
                self._fail(conf, verdict, str(exc))
                return []
            finally:
                if isinstance(conf.filter, IsolatedFilter):
                    replayed += conf.filter.replayed_s
            if decision is None:
                continue
            if via is not None and decision.action is Action.ALLOW:
                continue  # allowing a quoted post does not allow the post quoting it
            out.append(replace(decision, filter=conf.name, via=via))
        if (self._clock() - start + replayed) * 1000 > conf.budget_ms:
            self._fail(conf, verdict, f"exceeded its {conf.budget_ms:g} ms budget")
            return []
        return out

    async def _check_one(self, conf: Configured, item: Item, budget_ms: float) -> Decision | None:
        if isinstance(conf.filter, IsolatedFilter):
            try:
                return await conf.filter.check_within(item, budget_ms / 1000)
            except TimeoutError:
                raise _Failure(f"exceeded its {conf.budget_ms:g} ms budget") from None
            except IsolatedFailure as exc:
                raise _Failure(str(exc)) from None
        try:
            with _interrupt_after(budget_ms / 1000):
                result = conf.filter.check(item)
            if inspect.isawaitable(result):
                async with asyncio.timeout(budget_ms / 1000):
                    result = await result
        except (TimeoutError, _Interrupted):
            raise _Failure(f"exceeded its {conf.budget_ms:g} ms budget") from None
        except (Exception, SystemExit) as exc:  # a filter is someone else's code
            log.debug("filter failed name=%s", conf.name, exc_info=True)
            raise _Failure(f"raised {type(exc).__name__}: {exc}"[:300]) from None
        if result is not None and not isinstance(result, Decision):
            raise _Failure(f"returned {type(result).__name__}, not a Decision or None")
        return result

    def _fail(self, conf: Configured, verdict: Verdict, what: str) -> None:
        """Note a failure on the item (its verdict says so) and in the view's tally;
        only the first of a run is logged above debug (spec 0006 #failure-summary)."""
        failures, first = self._failures.get(conf.name, (0, what))
        failures += 1
        self._failures[conf.name] = (failures, first)
        message = f"filter {conf.name} skipped: {what}"
        verdict.warnings.append(message)
        log.debug("%s event=%s", message, verdict.item.event.id_hex[:12])
        if failures == 1:
            log.info("filter failed name=%s first=%r", conf.name, what[:200])
        if failures >= MAX_FAILURES:
            self._disabled.add(conf.name)
            self._skipped[conf.name] = 0


class _Failure(Exception):
    pass


class _Interrupted(BaseException):
    """Raised inside a sync filter that overran its budget (a BaseException, so that a
    filter's own ``except Exception`` cannot swallow it)."""


class _Alarm:
    """The state the ``SIGALRM`` handler reads.

    Arming and disarming a timer around every check costs two system calls per filter
    per item, more than a typical filter itself. So the timer is armed only when none
    is pending or the pending one would fire after the new deadline (a check after a
    ``prepare``, whose deadline is 10 budgets away, or after a filter with a larger
    budget), and each check just sets ``deadline``: when the timer fires, the handler
    interrupts the running check if its deadline has passed, re-arms for the rest if
    it has not, and does nothing between checks (``deadline`` is None).
    """

    installed = False
    #: A timer is pending.
    pending = False
    #: ``time.monotonic()`` at which the pending timer fires.
    fires_at = 0.0
    #: ``time.monotonic()`` by which the running check must end; None between checks.
    deadline: float | None = None


def _on_alarm(signum: int, frame: object) -> None:
    _Alarm.pending = False
    deadline = _Alarm.deadline
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left > 0:
        _Alarm.pending = True
        _Alarm.fires_at = deadline
        signal.setitimer(signal.ITIMER_REAL, left)
        return
    _Alarm.deadline = None
    raise _Interrupted


@contextlib.contextmanager
def _alarm_handler() -> Iterator[None]:
    """Install the ``SIGALRM`` handler for one run (main thread of a Unix process only)
    and restore the previous one afterwards."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _Alarm.installed = True
    try:
        yield
    finally:
        _Alarm.installed = False
        _Alarm.pending = False
        _Alarm.deadline = None
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _interrupt_after(seconds: float) -> Iterator[None]:
    """Interrupt the code in the block after ``seconds`` (a sync filter stuck in a loop
    or a blocking call) with a one-shot ``SIGALRM`` timer, when :func:`_alarm_handler`
    is active; otherwise the block runs uninterrupted."""
    if not _Alarm.installed or seconds <= 0:
        yield
        return
    _Alarm.deadline = deadline = time.monotonic() + seconds
    if not _Alarm.pending or _Alarm.fires_at > deadline:
        _Alarm.pending = True
        _Alarm.fires_at = deadline
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _Alarm.deadline = None
