"""A filter that acts when several labels pile up on a post (spec 0006 §6.5, §6.9).

Add it with::

    murmur labelers subscribe did:key:z6Mk... --set spam=ignore --set rude=ignore
    murmur filters add ./examples/filters/labels.py:LabelPileUp --param min_labels=2

``item.labels`` holds every *active* label that the labelers you subscribed to put on
the post or on its author, whatever action you mapped each value to (``ignore``
included). So you can let one label alone do nothing, and hide a post only when two
different values agree that something is off.
"""

from __future__ import annotations

from collections.abc import Sequence

from client.moderation import Action, Decision, Item, SourceKind


def _values(value: str | Sequence[str]) -> frozenset[str]:
    # `--param ignore=a,b` gives the text "a,b"; filters.toml may give a real list.
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(v.strip() for v in items if v.strip())


class LabelPileUp:
    """Hide (or warn) posts carrying ``min_labels`` or more distinct label values."""

    name = "label-pile-up"

    def __init__(
        self,
        min_labels: int | str = 2,
        action: str = "hide",
        ignore: str | Sequence[str] = (),
    ) -> None:
        self.min_labels = int(min_labels)
        if self.min_labels < 1:
            raise ValueError("label-pile-up: min_labels must be >= 1")
        self.action = Action(action)
        if self.action not in (Action.HIDE, Action.WARN, Action.BADGE):
            raise ValueError("label-pile-up: action must be hide, warn or badge")
        self.ignore = _values(ignore)  # values that never count, e.g. "satire"

    def check(self, item: Item) -> Decision | None:
        # The client passes active labels only; checking again costs nothing and keeps
        # the filter right if it is ever handed raw ones (neg, or exp in the past).
        active = [
            lab for lab in item.labels if lab.active(item.now_ms) and lab.val not in self.ignore
        ]
        values = sorted({lab.val for lab in active})
        if len(values) < self.min_labels:
            return None
        labelers = sorted({lab.labeler for lab in active})
        return Decision(
            action=self.action,
            reason=f"labeled {', '.join(values)} by {len(labelers)} labeler(s)",
            source=",".join(labelers),
            # The judgement rests on labelers' words, so say so: like any labeler
            # decision, it gives way to your own allow-rules (spec 0006 §6.3 rule 3).
            source_kind=SourceKind.LABELER,
        )
