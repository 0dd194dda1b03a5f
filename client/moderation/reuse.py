"""The reader's pipeline kept between views, for a long-running face (``murmur web``).

Building the pipeline is cheap for built-ins, but each custom filter runs in a worker
process (spec 0006 #filter-deadline) that takes a Python start-up and the filter's
import to get going: per page, that is most of a page's time. :class:`Pipelines`
keeps one pipeline built from the reader's settings and lends it to one view at a
time; the workers stay up between views and each view prepares every filter again
(spec 0006 #worker-reuse).

The pipeline is built again, its workers stopped, as soon as the settings differ:
the filters and labelers of ``filters.toml`` as loaded for this view (what the
file says, not when it was written), and the size and modification time of each
custom filter's file (an edited filter is loaded afresh). A view that finds the
pipeline lent to another (two pages at once, or a live stream) builds its own for
itself, as the CLI does, rather than wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from client.moderation.apply import SharedPipeline, build_pipeline
from client.moderation.builtins import BUILTINS
from client.moderation.config import ModerationConfig, is_custom
from client.moderation.pipeline import Pipeline

__all__ = ["Pipelines", "settings_key"]

log = logging.getLogger("murmur.client.moderation")


def _file_stamp(type_: str) -> Any:
    """A custom file filter's (path, size, mtime), so an edit is noticed; None when it
    is not a file (an entry point: installed code, a restart picks it up)."""
    path, sep, _ = type_.rpartition(":")
    if not sep or not path.endswith(".py"):
        return None
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]


def settings_key(config: ModerationConfig) -> str:
    """What the pipeline is built from: the filters in order with their parameters,
    the labelers, and each custom filter file's size and modification time."""
    doc = {
        "filters": [f.to_toml() for f in config.filters],
        "exists": config.path.exists(),
        "labelers": [[s.did, s.labels] for s in config.labelers],
        "files": [_file_stamp(f.type) for f in config.filters if is_custom(f.type, BUILTINS)],
    }
    return json.dumps(doc, sort_keys=True, default=str)


class Pipelines:
    """One pipeline of the reader's settings, lent to one view at a time."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._built: tuple[Pipeline, list[str]] | None = None
        self._lent = asyncio.Lock()

    async def lend(self, config: ModerationConfig) -> SharedPipeline | None:
        """The pipeline of ``config`` (built again if the settings changed), lent until
        its ``release``; None while another view has it."""
        if self._lent.locked():
            return None
        await self._lent.acquire()
        try:
            key = settings_key(config)
            if self._built is None or key != self._key:
                if self._built is not None:
                    log.info("moderation settings changed: pipeline built again")
                    await self._built[0].aclose()
                self._built, self._key = build_pipeline(config), key
        except BaseException:
            self._lent.release()
            raise
        pipeline, warnings = self._built

        async def release() -> None:
            self._lent.release()

        return SharedPipeline(pipeline=pipeline, warnings=warnings, release=release)

    async def aclose(self) -> None:
        """Stop the kept pipeline's workers."""
        built, self._built, self._key = self._built, None, None
        if built is not None:
            await built[0].aclose()
