"""Reader-side moderation: filters, labelers, lists and explanations (spec 0006).

Filters run in the client, after verification, before display. See
:mod:`client.moderation.core` for the model (items, decisions, the filter protocol)
and :mod:`client.moderation.pipeline` for how decisions compose.
"""

from __future__ import annotations

from client.moderation.core import (
    Action,
    Decision,
    Env,
    Filter,
    Item,
    Label,
    SourceKind,
    ViewContext,
)
from client.moderation.pipeline import Configured, Pipeline, Verdict

__all__ = [
    "Action",
    "Configured",
    "Decision",
    "Env",
    "Filter",
    "Item",
    "Label",
    "Pipeline",
    "SourceKind",
    "Verdict",
    "ViewContext",
]
