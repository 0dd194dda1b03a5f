"""A labeler: follow a node's live stream, apply rules, publish signed labels (spec 0006).

``murmur labeler run`` drives :class:`Labeler`. Anyone can run one; readers choose
which labelers to trust (``murmur labelers subscribe``). Modules: :mod:`.sse` (the
bounded, sans-IO stream parser), :mod:`.rules` (TOML or Python rules), :mod:`.runner`
(the loop, batching, the resumable cursor).
"""

from __future__ import annotations

from client.labeler.rules import Rule, Rules, Subject, subject_key
from client.labeler.runner import BATCH, MAX_REMEMBERED, Labeler, LabelerState, Stats
from client.labeler.sse import SseMessage, SseParser, stream_event

__all__ = [
    # running
    "BATCH",
    "MAX_REMEMBERED",
    "Labeler",
    "LabelerState",
    "Stats",
    # rules
    "Rule",
    "Rules",
    "Subject",
    "subject_key",
    # stream parsing
    "SseMessage",
    "SseParser",
    "stream_event",
]
