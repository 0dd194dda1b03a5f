"""One filter on one event: what ``murmur filters test`` and the web's "test a filter"
show (spec 0006 §explain).

:func:`trial` reads the event (and what it quotes, reposts or answers, and the
profiles) on the reader's nodes, verified like any read, and runs only the named
filter over it, enabled or not, in the view context asked for. The caller resolves a
short id first (:func:`client.shortids.resolve_event_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client.moderation.apply import build_pipeline, moderate
from client.moderation.builtins import Labelers
from client.moderation.config import ModerationConfig
from client.moderation.core import Decision, ViewContext
from client.moderation.pipeline import Verdict
from client.reader import Reader
from client.views import View, follow_set, profiles_of, resolve
from protocol.errors import NotFoundError
from protocol.events import Event

__all__ = ["Trial", "check_trial", "trial"]


@dataclass(slots=True)
class Trial:
    """The filter's decision on the event, and what the run warned about."""

    filter: str
    type: str
    enabled: bool
    event: Event
    view: View
    verdict: Verdict | None
    warnings: list[str]

    @property
    def decision(self) -> Decision | None:
        return None if self.verdict is None else self.verdict.final


def check_trial(config: ModerationConfig, name: str) -> None:
    """Raise before any read what the trial would (``filter-not-found``, ``filter-load``)."""
    build_pipeline(config, only=name)


async def trial(
    reader: Reader,
    config: ModerationConfig,
    name: str,
    eid: bytes,
    *,
    viewer: str,
    context: ViewContext = ViewContext.TIMELINE,
    home: Path | None = None,
) -> Trial:
    """Filter ``name`` of ``config`` on event ``eid``; ``not-found`` when no node has it."""
    check_trial(config, name)
    spec = next((f for f in config.filters if f.name == name), None)
    event = (await reader.lookup([eid])).get(eid)
    if event is None:
        raise NotFoundError(f"no configured node holds event {eid.hex()}")
    related = await resolve(reader, [event])
    dids = {event.author} | {e.author for e in related.values()}
    view = View(
        items=[event],
        report=reader.report,
        related=related,
        profiles=await profiles_of(reader, dids),
    )
    follows = frozenset(await follow_set(reader, viewer, mark=False)) if viewer else frozenset()
    moderated = await moderate(
        view,
        reader,
        viewer=viewer,
        context=context,
        config=config,
        follows=follows,
        home=home,
        only=name,
    )
    verdict = moderated.verdicts.get(eid)
    warnings = list(moderated.warnings) + ([] if verdict is None else list(verdict.warnings))
    return Trial(
        filter=name,
        type=Labelers.name if spec is None else spec.type,
        enabled=True if spec is None else spec.enabled,
        event=event,
        view=view,
        verdict=verdict,
        warnings=list(dict.fromkeys(warnings)),
    )
