"""An asynchronous filter that reads an allow-list file (spec 0006 §6.3, §6.4, §6.9).

Add it with::

    murmur filters add ./examples/filters/allowlist.py:AllowList --param path=allow.txt

The file holds one did per line; ``#`` starts a comment. A relative path is taken
from your Murmur home (``~/.murmur``). Listed authors get an ``allow`` decision: your
allow-rule, which overrides labelers and lists (not your own mutes). Everyone else
gets a ``badge`` "not in your allow-list" (``--param others=warn|hide|none``).

It shows the two hooks a filter may be asynchronous in:

- ``prepare(env)`` runs once per view, before any ``check``: the place for I/O. The
  file is read in a worker thread (``asyncio.to_thread``), so the event loop, which
  is fetching other things meanwhile, never blocks on the disk. If the file is
  missing, ``prepare`` raises and the client skips this filter for the view with a
  visible warning; the timeline still shows.
- ``check(item)`` may be ``async`` too. Whatever it awaits counts against the
  filter's per-item budget and is cancelled at the deadline, so it stays a set lookup.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from client.moderation import Action, Decision, Env, Item, SourceKind
from protocol.errors import InvalidDidError
from protocol.identity import public_bytes_from_did


def _flag(value: bool | str) -> bool:
    # `--param include_follows=true` and filters.toml give a boolean; accept "yes" too.
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "yes", "1"):
        return True
    if value.lower() in ("false", "no", "0"):
        return False
    raise ValueError(f"allow-list: not a boolean: {value!r}")


def parse_allow_list(text: str, where: str) -> frozenset[str]:
    """The dids of an allow-list file; a line that is not a did is an error."""
    dids: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        did = line.split("#", 1)[0].strip()
        if not did:
            continue
        try:
            public_bytes_from_did(did)  # strict: the same check as for event authors
        except InvalidDidError as exc:
            raise ValueError(f"{where}:{lineno}: not a did: {did!r}") from exc
        dids.add(did)
    return frozenset(dids)


class AllowList:
    """Allow the authors listed in a file; badge (or warn, hide) everyone else."""

    name = "allow-list"

    def __init__(
        self, path: str, others: str = "badge", include_follows: bool | str = False
    ) -> None:
        self.path = Path(path).expanduser()
        self.others = None if others == "none" else Action(others)
        if self.others is Action.ALLOW:
            raise ValueError("allow-list: others must be badge, warn, hide or none")
        self.include_follows = _flag(include_follows)
        self._allowed: frozenset[str] | None = None  # set by prepare()

    async def prepare(self, env: Env) -> None:
        path = self.path
        if not path.is_absolute() and env.home is not None:
            path = env.home / path
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        except FileNotFoundError:
            # Say which file: this message is what the reader sees in the view warning.
            raise FileNotFoundError(f"allow-list: no file {path}") from None
        self._allowed = parse_allow_list(text, str(path))

    async def check(self, item: Item) -> Decision | None:
        if self._allowed is None:
            raise RuntimeError("allow-list: prepare(env) was not called")
        if item.mine:
            return None
        if item.author in self._allowed or (self.include_follows and item.author in item.follows):
            # source_kind USER is what makes an allow override labelers and lists:
            # an allow with any other source_kind overrides nothing (spec 0006 §6.3).
            return Decision(
                action=Action.ALLOW,
                reason=f"in your allow-list ({self.path.name})",
                source="you",
                source_kind=SourceKind.USER,
            )
        if self.others is None:
            return None
        return Decision(
            action=self.others,
            reason="not in your allow-list",
            source="you",
            source_kind=SourceKind.USER,
        )
