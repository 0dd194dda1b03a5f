"""Feeds the reader chooses (spec 0007 #feeds, spec 0009): local ones run here over the
reader's nodes, subscribed ones are asked of the nodes serving them; either way the
client fetches and verifies every event itself, drops and reports what a page names
that it may not show, and runs the reader's filters after the feed.

- :mod:`client.feeds.config`: ``feeds.toml`` (local and subscribed entries);
- :mod:`client.feeds.source`: :class:`ReaderSource`, a local feed's Source;
- :mod:`client.feeds.run`: a local feed's ``page`` under a deadline;
- :mod:`client.feeds.view`: :func:`feed_view`, a checked, moderated page.
"""

from __future__ import annotations

from client.feeds.config import FeedsConfig, LocalFeed, SubscribedFeed
from client.feeds.run import LOCAL_FEED_DEADLINE_S, run_page
from client.feeds.source import ReaderSource
from client.feeds.view import (
    DROP_REASONS,
    FEED_DEADLINE_S,
    MAX_FILL_PAGES,
    SERVER_DEADLINE_S,
    FeedReport,
    FeedView,
    feed_view,
)

__all__ = [
    # settings
    "FeedsConfig",
    "LocalFeed",
    "SubscribedFeed",
    # reading
    "DROP_REASONS",
    "FEED_DEADLINE_S",
    "LOCAL_FEED_DEADLINE_S",
    "MAX_FILL_PAGES",
    "SERVER_DEADLINE_S",
    "FeedReport",
    "FeedView",
    "ReaderSource",
    "feed_view",
    "run_page",
]
