"""Custom filters' workers kept between views, and checks sent to them ahead (spec 0006
#worker-reuse; :mod:`client.moderation.reuse`, :meth:`IsolatedFilter.check_ahead`).

A long-running face keeps the pipeline of the reader's settings: the same worker
serves the next view, prepared again and holding none of the last view's items; a
change to ``filters.toml`` or to a custom filter's file builds it again; a view that
finds it lent builds its own. The checks of a view go to a worker in one write, and
its answers are taken with the same budgets and failure rules as calls made one by
one, including a filter that looks up a list while later checks wait in its pipe.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from client.moderation.config import FilterSpec, ModerationConfig
from client.moderation.core import Env, Item, ViewContext
from client.moderation.isolation import IsolatedFilter
from client.moderation.pipeline import Configured, Pipeline
from client.moderation.reuse import Pipelines
from protocol.events import Event
from tests.client.conftest import Author

NOW = 1_750_000_000_000
ME, ALICE = Author.new(), Author.new()
#: A hang guard around whole exchanges with workers (never a measure).
HANG_GUARD_S = 60.0

FILTERS = textwrap.dedent(
    """
    import time
    from client.moderation.core import Action, Decision, SourceKind

    class Lookup:
        '''Hides posts that say "bad"; looks up a list on posts that start with "list:"
        (the reader answers while the next checks wait in the worker's pipe).'''
        name = "lookup"
        def prepare(self, env):
            self.env = env
            self.seen = 0
        async def check(self, item):
            self.seen += 1
            text = item.event.body["text"]
            if text.startswith("list:"):
                found = await self.env.latest_list(item.event.author, "mine")
                return Decision(Action.BADGE, f"list {found is not None} #{self.seen}",
                                "lookup", SourceKind.USER)
            if "bad" in text:
                return Decision(Action.HIDE, f"bad #{self.seen}", "lookup", SourceKind.USER)
            return None

    class Slow:
        '''Takes SLOW_S on every check, quoted posts included.'''
        name = "slow"
        def check(self, item):
            time.sleep(SLOW_S)
            return None
    """
)


@pytest.fixture
def filters(tmp_path: Path) -> Path:
    path = tmp_path / "kept.py"
    path.write_text("SLOW_S = 0.12\n" + FILTERS)
    return path


def item(text: str, **embeds: Item) -> Item:
    return Item(
        event=ALICE.post(text),
        context=ViewContext.TIMELINE,
        viewer=ME.did,
        now_ms=NOW,
        embeds=embeds,
    )


def env(lookup: list[str] | None = None) -> Env:
    async def latest_list(author: str, name: str) -> Event | None:
        if lookup is not None:
            lookup.append(name)
        return None

    return Env(viewer=ME.did, now_ms=NOW, context=ViewContext.TIMELINE, latest_list=latest_list)


async def test_checks_sent_ahead_answer_each_item_in_order_with_lookups_between(
    filters: Path,
) -> None:
    """spec 0006 #worker-reuse: the checks of a view are written to the worker at once;
    a check that looks up a list gets its answer while the later checks wait in the
    pipe (before: the worker took the next check for the lookup's answer and exited),
    and every item gets its own decision."""
    flt = IsolatedFilter(f"{filters}:Lookup", {}, label="lookup", budget_ms=2000)
    lookups: list[str] = []
    texts = ["fine", "list: one", "bad one", "list: two", "fine again", "bad two"]
    items = [item(t) for t in texts]
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await flt.start()
            await flt.prepare_within(env(lookups), 5.0)
            await flt.check_ahead(items, 2.0, max_failures=3)
            got = [await flt.check_within(it, 2.0) for it in items]
    finally:
        await flt.close()
    assert [None if d is None else d.reason for d in got] == [
        None, "list False #2", "bad #3", "list False #4", None, "bad #6",
    ]  # fmt: skip
    assert lookups == ["mine", "mine"] and flt.starts == 1


async def test_an_answer_ahead_counts_against_the_items_budget_as_a_live_call(
    filters: Path,
) -> None:
    """spec 0006 #filter-deadline: an item and its quoted post share one budget. Each
    check takes 0.12 s of a 0.2 s budget: answered ahead or one by one, the item fails
    for its budget (the second check had 0.08 s left), a post alone does not."""
    slow = IsolatedFilter(f"{filters}:Slow", {}, label="slow", budget_ms=200)
    quoted = item("quoted")
    items = [item("alone"), item("quoting", quoted=quoted)]
    verdicts = {}
    for ahead in (True, False):
        pipeline = Pipeline([Configured("slow", slow, budget_ms=200)])
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                await pipeline.start(env())
                if ahead:
                    got = await pipeline.judge_all(items)
                else:
                    got = [await pipeline.judge(it) for it in items]
        finally:
            await pipeline.aclose()
        verdicts[ahead] = [list(v.warnings) for v in got]
    for warnings in verdicts.values():
        assert warnings[0] == []
        assert warnings[1] == ["filter slow skipped: exceeded its 200 ms budget"]


async def test_a_kept_worker_serves_the_next_view_prepared_again(filters: Path) -> None:
    """spec 0006 #worker-reuse: ``start(keep_workers=True)`` keeps a running worker (the
    same process), prepares the filter again (its per-view count starts over) and the
    reader sends the next view's items afresh."""
    flt = IsolatedFilter(f"{filters}:Lookup", {}, label="lookup", budget_ms=2000)
    pipeline = Pipeline([Configured("lookup", flt, budget_ms=2000)])
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await pipeline.start(env(), keep_workers=True)
            first = await pipeline.judge_all([item("bad"), item("bad")])
            pid = flt._proc.pid if flt._proc else None
            await pipeline.start(env(), keep_workers=True)
            assert flt._sent == {}  # the last view's items are forgotten
            second = await pipeline.judge_all([item("bad")])
            assert flt._proc is not None and flt._proc.pid == pid
    finally:
        await pipeline.aclose()
    assert [v.final.reason for v in first if v.final] == ["bad #1", "bad #2"]
    assert [v.final.reason for v in second if v.final] == ["bad #1"]
    assert flt.starts == 1


async def test_pipelines_are_built_again_when_the_settings_or_a_filter_file_change(
    tmp_path: Path, filters: Path
) -> None:
    """spec 0006 #worker-reuse: the same settings lend the same pipeline; another
    filters.toml, or an edit of a custom filter's file, builds a new one and stops the
    old workers; a view that finds it lent gets None (and builds its own)."""
    config = ModerationConfig(path=tmp_path / "filters.toml")
    config.add(FilterSpec(name="lookup", type=f"{filters}:Lookup"))
    config.add(FilterSpec(name="words", type="mute-words", params={"words": ["x"]}))
    kept = Pipelines()
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            lent = await kept.lend(config)
            assert lent is not None
            assert await kept.lend(config) is None  # lent to another view
            await lent.pipeline.start(env(), keep_workers=True)
            worker = lent.pipeline.filters[0].filter
            assert isinstance(worker, IsolatedFilter) and worker.running
            await lent.release()

            again = await kept.lend(config)
            assert again is not None and again.pipeline is lent.pipeline
            await again.release()

            config.find("words").params["words"] = ["y"]
            changed = await kept.lend(config)
            assert changed is not None and changed.pipeline is not lent.pipeline
            assert worker._proc is None  # the old pipeline's worker was stopped
            await changed.release()

            edit = "SLOW_S = 0.5\n" + FILTERS  # an edit: another size
            await asyncio.to_thread(filters.write_text, edit)
            edited = await kept.lend(config)
            assert edited is not None and edited.pipeline is not changed.pipeline
            await edited.release()
    finally:
        await kept.aclose()
