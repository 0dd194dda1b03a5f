"""Moderating a view: build the pipeline from ``filters.toml``, gather what filters
need (labels, lists), run it, and split the view into shown and hidden (spec 0006).

Labels come from the reader's subscribed labelers, read by labeler from every node
(``GET /v1/labels?labeler=``) and verified like every other event; a forged label is
dropped and the node that served it is reported. For each (labeler, subject, value)
the latest label (highest ``seq``, then greatest id: spec 0003 §3.1, §3.9) decides: it
applies unless it is a ``neg`` retraction or its ``exp`` has passed. A subscribed list
is the latest verified ``list`` event of that name by its author (deleted versions do
not count), fetched once per view.

Nothing here raises because of a filter or a node: what went wrong is a warning in
:attr:`Moderated.warnings`, or on the item's :class:`~client.moderation.pipeline.Verdict`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import NodeClient
from client.errors import FilterError, FilterNotFoundError
from client.moderation.builtins import BUILTINS, Labelers, SubscribedList
from client.moderation.config import (
    FilterSpec,
    ModerationConfig,
    check_filter_type,
    instantiate,
    is_custom,
)
from client.moderation.core import Env, Item, Label, ViewContext
from client.moderation.isolation import IsolatedFilter
from client.moderation.pipeline import Configured, Pipeline, Verdict
from client.reader import MAX_FEED_PAGES, MAX_LABELS, PAGE, Reader, latest_by_seq
from client.views import View
from protocol import kinds
from protocol.errors import ProtocolError
from protocol.events import Event

__all__ = [
    "BLOB_KEY_PREFIX",
    "DEFAULT_FILTERS",
    "LABELERS_FILTER",
    "MAX_AGE_AUTHORS",
    "MAX_FILL_ROUNDS",
    "MAX_FILL_WINDOW",
    "Moderated",
    "Moderation",
    "SharedPipeline",
    "active_labels",
    "blob_key",
    "build_filter",
    "build_pipeline",
    "moderate",
    "moderate_page",
    "try_filter",
]

#: The filters of a reader who has no ``filters.toml`` yet.
DEFAULT_FILTERS: list[FilterSpec] = [FilterSpec(name="self-labels", type="self-labels")]
#: Bounds on filling a ``--limit`` page after hidden items (spec 0007
#: #limit-after-moderation): rounds after the first, and the longest window read.
MAX_FILL_ROUNDS = 3
MAX_FILL_WINDOW = 2000
#: Authors whose account age is asked of the nodes in one view (spec 0006 #account-age).
MAX_AGE_AUTHORS = 200
#: Prefix of :func:`active_labels` keys of labels on blobs (an image's hash).
BLOB_KEY_PREFIX = "blob:"
#: The name of the filter built from ``[[labelers]]`` when no ``type = "labelers"``
#: filter is configured (it then runs last).
LABELERS_FILTER = "labelers"


# -- building -------------------------------------------------------------------------


def build_filter(spec: FilterSpec) -> Configured:
    """``spec``'s filter; raises ``FilterError`` subclasses.

    A built-in is built here as ``Class(**params)``. A custom filter (a file or an
    entry point) runs none of its code here: it becomes an
    :class:`~client.moderation.isolation.IsolatedFilter`, loaded and built in its worker
    process when the pipeline starts it (spec 0006 #filter-deadline). Only what can be
    checked without its code (the type exists) raises here; :func:`try_filter` builds it.
    """
    check_filter_type(spec.type, BUILTINS)
    if is_custom(spec.type, BUILTINS):
        isolated = IsolatedFilter(spec.type, spec.params, label=spec.name, budget_ms=spec.budget_ms)
        return Configured(name=spec.name, filter=isolated, budget_ms=spec.budget_ms)
    instance = instantiate(spec, BUILTINS)
    return Configured(name=spec.name, filter=instance, budget_ms=spec.budget_ms)


async def try_filter(spec: FilterSpec) -> None:
    """Build ``spec``'s filter as a view would (a custom one in its worker, within
    its start deadline) and stop it; raises ``filter-not-found`` / ``filter-load``."""
    conf = build_filter(spec)
    if isinstance(conf.filter, IsolatedFilter):
        try:
            await conf.filter.start()
        finally:
            await conf.filter.close()


def _specs(config: ModerationConfig) -> list[FilterSpec]:
    if config.filters or config.path.exists():
        return config.filters
    return DEFAULT_FILTERS


def _build(spec: FilterSpec, config: ModerationConfig) -> Configured:
    """A ``type = "labelers"`` filter without ``subs`` takes the ``[[labelers]]``."""
    if spec.type == Labelers.name and "subs" not in spec.params:
        params = {**spec.params, "subs": list(config.labelers)}
        spec = FilterSpec(
            name=spec.name, type=spec.type, enabled=spec.enabled, params=params,
            budget_ms=spec.budget_ms,
        )  # fmt: skip
    return build_filter(spec)


def _auto_labelers(config: ModerationConfig, specs: list[FilterSpec]) -> str | None:
    """The name for the appended labelers filter, or None if there is none to append."""
    if not config.labelers or any(s.type == Labelers.name for s in specs):
        return None
    taken = {s.name for s in specs}
    name, n = LABELERS_FILTER, 1
    while name in taken:
        n += 1
        name = f"{LABELERS_FILTER}-{n}"
    return name


def build_pipeline(
    config: ModerationConfig, *, only: str | None = None
) -> tuple[Pipeline, list[str]]:
    """The enabled filters in order, then the ``[[labelers]]`` filter, and warnings.

    A filter that cannot be built is left out and its error is a warning. With
    ``only``, just that filter (enabled or not) is built, and an error raises
    (``FilterNotFoundError``, ``FilterLoadError``).
    """
    specs = _specs(config)
    auto = _auto_labelers(config, specs)
    if only is not None:
        spec = next((s for s in specs if s.name == only), None)
        if spec is not None:
            return Pipeline([_build(spec, config)]), []
        if only == auto:
            return Pipeline([Configured(auto, Labelers(subs=config.labelers))]), []
        known = ", ".join([s.name for s in specs] + ([auto] if auto else [])) or "none"
        raise FilterNotFoundError(f"no filter named {only!r} ({known}; see: murmur filters list)")
    built: list[Configured] = []
    warnings: list[str] = []
    for spec in specs:
        if not spec.enabled:
            continue
        try:
            built.append(_build(spec, config))
        except FilterError as exc:
            warnings.append(f"filter {spec.name} left out: {exc.message}")
    if auto is not None:
        try:
            built.append(Configured(auto, Labelers(subs=config.labelers)))
        except FilterError as exc:
            warnings.append(f"filter {auto} left out: {exc.message}")
    return Pipeline(built), warnings


# -- labels and lists -----------------------------------------------------------------


def blob_key(hash_hex: str) -> str:
    """The key of :func:`active_labels` for labels on the image ``hash_hex`` (spec 0003
    #label-blob): apart from labels on an event id of the same 32 bytes."""
    return BLOB_KEY_PREFIX + hash_hex


def active_labels(events: Iterable[Event], *, now_ms: int) -> dict[str, list[Label]]:
    """Subject (event id hex, did, or :func:`blob_key` of an image hash) → the labels
    that apply at ``now_ms``.

    Per (labeler, subject, value) the latest label wins (spec 0003 §3.9); it applies
    unless it has ``neg`` or an ``exp`` at or before ``now_ms``. Header-only events
    (their body was dropped) and other kinds do not count, nor do labels whose
    ``subject_type`` this client does not know (spec 0003 #label-blob). A blob label's
    subject is (``"blob"``, hash): only another blob label supersedes it.
    """
    latest: dict[tuple[str, str, str], Event] = {}
    for e in events:
        if e.kind != kinds.LABEL or e.body is None:
            continue
        subject, val = e.body.get("subject"), e.body.get("val")
        subject_type = kinds.label_subject_type(e.body)
        if subject_type not in (None, kinds.LABEL_SUBJECT_BLOB):
            continue  # a future subject: ignored (spec 0003 #label-blob)
        if isinstance(subject, bytes):
            subject = subject.hex()
            if subject_type is not None:
                subject = blob_key(subject)
        elif subject_type is not None:
            continue  # a blob named by a did: invalid, never verified; be safe anyway
        if not isinstance(subject, str) or not isinstance(val, str):
            continue
        key = (e.author, subject, val)
        held = latest.get(key)
        if held is None or (e.seq, e.id) > (held.seq, held.id):
            latest[key] = e
    out: dict[str, list[Label]] = {}
    for (labeler, subject, val), e in latest.items():
        body = e.body or {}
        exp = body.get("exp")
        blob = subject.startswith(BLOB_KEY_PREFIX)
        label = Label(
            labeler=labeler,
            subject=subject.removeprefix(BLOB_KEY_PREFIX) if blob else subject,
            val=val,
            neg=body.get("neg") is True,
            exp=exp if isinstance(exp, int) and not isinstance(exp, bool) else None,
            ts=e.ts,
            id=e.id_hex,
            subject_type=kinds.LABEL_SUBJECT_BLOB if blob else None,
        )
        if label.active(now_ms):
            out.setdefault(subject, []).append(label)
    return out


async def _fetch_labels(
    reader: Reader, labelers: list[str], now_ms: int, warnings: list[str]
) -> dict[str, list[Label]]:
    before = {n.url: (n.ok, len(n.invalid)) for n in reader.report.nodes}
    truncated = await asyncio.gather(*(reader.fetch_labels(did) for did in labelers))
    for did, urls in zip(labelers, truncated, strict=True):
        for url in urls:
            warnings.append(
                f"labels: {url} holds more than {MAX_LABELS} labels by {did}; "
                f"only the oldest {MAX_LABELS} were read"
            )
    for node in reader.report.nodes:
        was_ok, invalid = before[node.url]
        if was_ok and node.error is not None:
            warnings.append(f"labels: {node.url} failed: {node.error.message}")
        if len(node.invalid) > invalid:
            warnings.append(
                f"labels: {node.url} served {len(node.invalid) - invalid} event(s) that "
                "failed verification; they were ignored"
            )
    wanted = set(labelers)
    deleted = reader.deleted_ids()
    events = (
        e
        for e in reader.events.values()
        if e.kind == kinds.LABEL and e.author in wanted and e.id not in deleted
    )
    return active_labels(events, now_ms=now_ms)


class _Lists:
    """``Env.latest_list`` over a reader: one feed read per list author per view."""

    def __init__(self, reader: Reader, warnings: list[str]) -> None:
        self._reader = reader
        self._warnings = warnings
        self._fetched: dict[str, asyncio.Task[None]] = {}
        self._missing: set[tuple[str, str]] = set()

    async def latest(self, author: str, name: str) -> Event | None:
        task = self._fetched.get(author)
        if task is None:
            task = asyncio.ensure_future(self._fetch(author))
            self._fetched[author] = task
        await asyncio.shield(task)
        deleted = self._reader.deleted_ids()
        best = latest_by_seq(
            e
            for e in self._reader.of_author(author)
            if e.kind == kinds.LIST
            and e.body is not None
            and e.body.get("name") == name
            and e.id not in deleted
        )
        if best is None and (author, name) not in self._missing:
            self._missing.add((author, name))
            self._warnings.append(f"list {author}/{name}: no node served it")
        return best

    async def _fetch(self, author: str) -> None:
        await self._reader.fetch_feed(
            authors=[author],
            kinds_=[kinds.LIST, kinds.DELETE],
            limit=PAGE,
            max_pages=MAX_FEED_PAGES,
        )


# -- account age ------------------------------------------------------------------------

#: (earliest ``first_seen_ms``, earliest ``first_ts``) of an author over the nodes.
Age = tuple[int | None, int | None]


def wants_account_age(pipeline: Pipeline) -> bool:
    """Whether a filter of ``pipeline`` may read the account age: a custom filter (its
    code is not looked at here), or one that says so with ``uses_account_age = True``."""
    return any(
        isinstance(c.filter, IsolatedFilter) or getattr(c.filter, "uses_account_age", False)
        for c in pipeline.filters
    )


class _Ages:
    """Authors' account ages from every node of a read (spec 0004 #author-stats, from
    one ``POST /v1/stats`` per node), each author asked once a view.

    A node that fails or does not serve the figures is left out of the ages (one
    warning); it is not marked failed in the read's report, so the view's reads go on.
    """

    def __init__(self, reader: Reader, warnings: list[str]) -> None:
        self._reader = reader
        self._warnings = warnings
        self.ages: dict[str, Age] = {}
        self._silent: set[str] = set()

    async def fetch(self, authors: Iterable[str]) -> None:
        wanted = [a for a in dict.fromkeys(authors) if a not in self.ages]
        room = MAX_AGE_AUTHORS - len(self.ages)
        if len(wanted) > room:
            self._warn_once("", f"account age: asked for the first {MAX_AGE_AUTHORS} authors only")
            wanted = wanted[: max(0, room)]
        if not wanted:
            return
        nodes = [n for n in self._reader.nodes if self._reader.report.node(n.url).ok]
        answers = await asyncio.gather(*(self._node(n, wanted) for n in nodes))
        for did in wanted:
            seen = [s for a in answers if did in a and (s := a[did][0]) is not None]
            claimed = [t for a in answers if did in a and (t := a[did][1]) is not None]
            self.ages[did] = (min(seen, default=None), min(claimed, default=None))

    async def _node(self, node: NodeClient, dids: list[str]) -> dict[str, Age]:
        """One ``POST /v1/stats`` for all of ``dids`` (spec 0004 #stats-batch; in
        chunks of the node's ``max_feed_authors``); ``GET /v1/followers/{did}?limit=1``
        per did on a node without it."""
        try:
            batch = await asyncio.wait_for(self._batch(node, dids), self._reader.timeout)
        except (ProtocolError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, ProtocolError) else "node-timeout"
            self._warn_once(node.url, f"account age: {node.url} did not say ({code})")
            return {}
        if batch is not None:
            return batch
        return await self._each(node, dids)

    async def _batch(self, node: NodeClient, dids: list[str]) -> dict[str, Age] | None:
        size = max(1, await node.max_authors())
        out: dict[str, Age] = {}
        for i in range(0, len(dids), size):
            found = await node.stats_batch(dids[i : i + size])
            if found is None:
                return None
            for did, figures in found.items():
                out[did] = (figures.get("first_seen_ms"), figures.get("first_ts"))
        return out

    async def _each(self, node: NodeClient, dids: list[str]) -> dict[str, Age]:
        async def one(did: str) -> tuple[str, Age] | None:
            try:
                _, figures, _ = await asyncio.wait_for(
                    node.followers(did, limit=1), self._reader.timeout
                )
            except (ProtocolError, TimeoutError) as exc:
                code = exc.code if isinstance(exc, ProtocolError) else "node-timeout"
                self._warn_once(node.url, f"account age: {node.url} did not say ({code})")
                return None
            return did, (figures.get("first_seen_ms"), figures.get("first_ts"))

        found = await asyncio.gather(*(one(d) for d in dids))
        return dict(f for f in found if f is not None)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._silent:
            self._silent.add(key)
            self._warnings.append(message)


# -- items ----------------------------------------------------------------------------


def _refs(e: Event) -> list[tuple[str, bytes]]:
    """(role, id) of the events ``e`` carries: its quote, repost target, reply parent."""
    body = e.body or {}
    out: list[tuple[str, bytes]] = []
    if e.kind == kinds.REPOST and isinstance(body.get("target"), bytes):
        out.append(("reposted", body["target"]))
    if e.kind == kinds.POST:
        if isinstance(body.get("quote"), bytes):
            out.append(("quoted", body["quote"]))
        reply = body.get("reply")
        if isinstance(reply, dict) and isinstance(reply.get("parent"), bytes):
            out.append(("parent", reply["parent"]))
    return out


def _image_hashes(e: Event) -> list[str]:
    """The hex hashes of the images a post embeds, in order (spec 0003 #embed)."""
    return [image.hash.hex() for image in e.images]


@dataclass(slots=True)
class _Items:
    """Builds one :class:`Item` per event, sharing embedded items.

    Embedded items carry their own embeds as far as the view holds them (in a thread,
    the chain of parents up to the root); the pipeline itself looks one level deep.
    """

    pool: dict[bytes, Event]
    profiles: dict[str, Event]
    labels: dict[str, list[Label]]
    viewer: str
    context: ViewContext
    follows: frozenset[str]
    now_ms: int
    ages: dict[str, Age] = field(default_factory=dict)
    memo: dict[bytes, Item] = field(default_factory=dict)

    def item(self, event: Event) -> Item:
        stack, visiting = [event], set()
        while stack:  # iterative post-order: reply chains can be long
            e = stack[-1]
            if e.id in self.memo:
                stack.pop()
                continue
            todo = [t for _, t in _refs(e) if t in self.pool and t not in self.memo]
            if todo and e.id not in visiting:
                visiting.add(e.id)
                stack.extend(self.pool[t] for t in todo)
                continue
            self.memo[e.id] = self._make(e)
            stack.pop()
        return self.memo[event.id]

    def _make(self, e: Event) -> Item:
        profile = self.profiles.get(e.author)
        first_seen, first_ts = self.ages.get(e.author, (None, None))
        return Item(
            event=e,
            context=self.context,
            viewer=self.viewer,
            follows=self.follows,
            profile=None if profile is None else profile.body,
            labels=(
                *self.labels.get(e.id_hex, ()),
                *self.labels.get(e.author, ()),
                *(
                    label
                    for digest in dict.fromkeys(_image_hashes(e))
                    for label in self.labels.get(blob_key(digest), ())
                ),
            ),
            embeds={role: self.memo[t] for role, t in _refs(e) if t in self.memo},
            now_ms=self.now_ms,
            author_first_seen_ms=first_seen,
            author_first_ts=first_ts,
        )


# -- the result -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharedPipeline:
    """A pipeline lent to one view: built from the reader's settings, with the warnings
    of building it, and how to give it back."""

    pipeline: Pipeline
    warnings: list[str]
    release: Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Moderated:
    """A view after moderation.

    ``verdicts`` has every judged event by id: the view's items and, in a thread, its
    root (``view.root``), which is judged too but is in neither ``shown`` nor ``hidden``.
    """

    shown: list[tuple[Event, Verdict]]
    hidden: list[tuple[Event, Verdict]]
    verdicts: dict[bytes, Verdict]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Hidden items, shown items that carry a decision or a warning, and warnings."""

        def entry(e: Event, v: Verdict) -> dict[str, Any]:
            return {"id": e.id_hex, "author": e.author, "kind": e.kind, **v.to_json()}

        return {
            "hidden": [entry(e, v) for e, v in self.hidden],
            "shown": [entry(e, v) for e, v in self.shown if v.final is not None or v.warnings],
            "warnings": list(self.warnings),
        }


class Moderation:
    """One view's moderation over a reader: the pipeline, labels and lists are made
    once (:meth:`open`), then :meth:`judge` runs the filters over a view, and again
    over a longer one (``--limit`` fills its page after hidden items, spec 0007
    #limit-after-moderation): each event is judged once, and a filter's failures add
    up over the whole view (spec 0006 #failure-summary). Close it with :meth:`aclose`
    (or ``async with``)."""

    def __init__(
        self,
        pipeline: Pipeline,
        warnings: list[str],
        labels: dict[str, list[Label]],
        *,
        viewer: str,
        context: ViewContext,
        follows: frozenset[str],
        now_ms: int,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: Gives a shared pipeline back at the end of the view (its workers kept).
        self._release = release
        self._warnings = warnings
        self._labels = labels
        self._viewer = viewer
        self._context = context
        self._follows = follows
        self._now = now_ms
        self.verdicts: dict[bytes, Verdict] = {}
        #: Account ages, fetched only when a filter may read them (spec 0006 #account-age).
        self.ages: _Ages | None = None

    @classmethod
    async def open(
        cls,
        reader: Reader,
        *,
        viewer: str,
        context: ViewContext,
        config: ModerationConfig,
        follows: frozenset[str] = frozenset(),
        home: Path | None = None,
        now_ms: int | None = None,
        only: str | None = None,
        shared: SharedPipeline | None = None,
    ) -> Moderation:
        """Build the pipeline (raises only what ``build_pipeline(only=...)`` raises),
        fetch labels and lists, start and prepare the filters.

        ``shared``: the pipeline built from ``config`` before, lent to this view by
        :class:`~client.moderation.reuse.Pipelines` (its custom filters' workers kept
        running, prepared again; spec 0006 #worker-reuse), given back by :meth:`aclose`.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        release = None
        if shared is not None:
            pipeline, warnings, release = shared.pipeline, list(shared.warnings), shared.release
        else:
            pipeline, warnings = build_pipeline(config, only=only)
        labels: dict[str, list[Label]] = {}
        if config.labelers:
            labels = await _fetch_labels(reader, [s.did for s in config.labelers], now, warnings)
        lists = _Lists(reader, warnings)
        wanted_lists = {
            (c.filter.did, c.filter.list_name)
            for c in pipeline.filters
            if isinstance(c.filter, SubscribedList)
        }
        # Fetched here, outside the filters' prepare budgets; prepare then hits the cache.
        await asyncio.gather(*(lists.latest(did, name) for did, name in sorted(wanted_lists)))
        env = Env(
            viewer=viewer,
            now_ms=now,
            context=context,
            follows=follows,
            home=home,
            latest_list=lists.latest,
        )
        try:
            await pipeline.start(env, keep_workers=release is not None)
        except BaseException:
            await (pipeline.aclose() if release is None else release())
            raise
        moderation = cls(
            pipeline, warnings, labels, viewer=viewer, context=context, follows=follows,
            now_ms=now, release=release,
        )  # fmt: skip
        if wants_account_age(pipeline):
            moderation.ages = _Ages(reader, warnings)
        return moderation

    async def __aenter__(self) -> Moderation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the custom filters' workers (a shared pipeline: give it back)."""
        if self._release is not None:
            release, self._release = self._release, None
            await release()
            return
        await self.pipeline.aclose()

    async def judge(self, view: View) -> Moderated:
        """``view`` split into shown and hidden; events judged before are not judged again."""
        events = list(view.items)
        if view.root is not None and all(e.id != view.root.id for e in events):
            events.append(view.root)
        pool = {**view.related, **{e.id: e for e in events}}
        if self.ages is not None:
            await self.ages.fetch(e.author for e in pool.values())
        builder = _Items(
            pool=pool,
            profiles=view.profiles,
            labels=self._labels,
            viewer=self._viewer,
            context=self._context,
            follows=self._follows,
            now_ms=self._now,
            ages={} if self.ages is None else self.ages.ages,
        )
        fresh = list({e.id: e for e in events if e.id not in self.verdicts}.values())
        results = await self.pipeline.judge_all([builder.item(e) for e in fresh])
        self.verdicts.update((e.id, v) for e, v in zip(fresh, results, strict=True))
        verdicts = {e.id: self.verdicts[e.id] for e in events}
        shown = [(e, verdicts[e.id]) for e in view.items if not verdicts[e.id].hidden]
        hidden = [(e, verdicts[e.id]) for e in view.items if verdicts[e.id].hidden]
        warnings = [*self._warnings, *self.pipeline.warnings]
        return Moderated(shown=shown, hidden=hidden, verdicts=verdicts, warnings=warnings)


async def moderate(
    view: View,
    reader: Reader,
    *,
    viewer: str,
    context: ViewContext,
    config: ModerationConfig,
    follows: frozenset[str] = frozenset(),
    home: Path | None = None,
    now_ms: int | None = None,
    only: str | None = None,
) -> Moderated:
    """Run the reader's filters (or just ``only``) over ``view``'s items.

    Raises only what ``build_pipeline(only=...)`` raises; everything else that goes
    wrong (a filter that cannot be built, prepared or run, a node that fails or
    forges labels, a list nobody serves) is a warning.
    """
    moderation = await Moderation.open(
        reader, viewer=viewer, context=context, config=config, follows=follows, home=home,
        now_ms=now_ms, only=only,
    )  # fmt: skip
    async with moderation:
        return await moderation.judge(view)


async def moderate_page(
    build: Callable[[int], Awaitable[View]],
    limit: int,
    moderation: Moderation,
    *,
    max_rounds: int = MAX_FILL_ROUNDS,
    window: int | None = None,
) -> tuple[View, Moderated]:
    """A view of ``limit`` *shown* items: hidden ones do not eat the page (spec 0007
    #limit-after-moderation).

    ``build(n)`` makes the view of the ``n`` newest items (on one reader, so a
    longer window reuses what was read); while fewer than ``limit`` items are shown
    and the view says there is more (``View.more``), the window grows (at least
    doubling, at most :data:`MAX_FILL_WINDOW`) for at most ``max_rounds`` more rounds.
    The result is cut after the ``limit``-th shown item: its ``hidden`` are the items
    hidden before that point. ``window``: where the first round starts (at least
    ``limit``), e.g. what the last page of the same list needed.
    """
    window = min(MAX_FILL_WINDOW, max(limit, window or limit))
    view = await build(window)
    mod = await moderation.judge(view)
    for _ in range(max_rounds):
        missing = limit - len(mod.shown)
        if missing <= 0 or not view.more or window >= MAX_FILL_WINDOW:
            break
        # Enough for the missing items at the hide rate seen so far, at least double.
        rate = len(view.items) / max(1, len(mod.shown))
        window = min(MAX_FILL_WINDOW, max(2 * window, len(view.items) + int(missing * rate) + 1))
        view = await build(window)
        mod = await moderation.judge(view)
    return _cut(view, mod, limit)


def _cut(view: View, mod: Moderated, limit: int) -> tuple[View, Moderated]:
    """``view`` and ``mod`` up to the ``limit``-th shown item."""
    items: list[Event] = []
    shown = 0
    for e in view.items:
        if shown >= limit:
            break
        items.append(e)
        if not mod.verdicts[e.id].hidden:
            shown += 1
    kept = {e.id for e in items}
    view.items = items
    return view, Moderated(
        shown=[(e, v) for e, v in mod.shown if e.id in kept],
        hidden=[(e, v) for e, v in mod.hidden if e.id in kept],
        verdicts=mod.verdicts,
        warnings=mod.warnings,
    )
