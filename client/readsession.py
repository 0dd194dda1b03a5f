"""One home's reads, for any face of the client (the web client today; the CLI's
``client.cli.session.Session`` does the same for a terminal and could be built on it).

A :class:`ReadSession` knows the home (config, keystore, the acting identity), the
node set, the per-node timeout and the network, holds one ``httpx.AsyncClient`` (given
by the caller, so tests inject a transport and a long-running face reuses its
connections) and one :class:`~client.keycache.KeyCache` for every read it opens, and
opens verified reads (:meth:`reader`) and moderation (:meth:`moderation`) the way
every read command does (spec 0007 #no-answer, spec 0006). It never unseals a key: it
only reads. Settings are read again at each read, so a change made by another face
(``murmur nodes add``, ``murmur filters ...``) is seen by the next page. Every read's
report is kept in :attr:`ReadSession.history` (the last few, :mod:`client.readlog`).

The defaults are those of the CLI's session (``$MURMUR_TIMEOUT``, then ``timeout``
in config.toml, then 5 s; ``network`` in config.toml, else ``murmur``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from client.api import DEFAULT_TIMEOUT_S, NodeClient
from client.config import ClientConfig, normalize_node_url
from client.errors import IdentityNotFoundError, KeystoreError, NoNodesError
from client.keycache import KeyCache
from client.keystore import Keystore, StoredIdentity
from client.moderation.apply import Moderated, Moderation, moderate_page
from client.moderation.config import ModerationConfig
from client.moderation.core import ViewContext
from client.ownprofile import OwnProfiles
from client.reader import Reader
from client.readlog import ReadLog, reading
from client.views import View
from protocol.errors import ProtocolError
from protocol.events import DEFAULT_NETWORK, Event

__all__ = ["ReadSession"]

#: Largest per-node timeout a config may ask for, in seconds.
MAX_TIMEOUT_S = 300.0


@dataclass(slots=True)
class ReadSession:
    """Reads of one home over its node set (or ``nodes``, which overrides it)."""

    home: Path
    http: httpx.AsyncClient
    #: The identity to act as (its name); None: the keystore's default.
    as_name: str | None = None
    nodes: Sequence[str] = ()
    keycache: KeyCache | None = field(default=None)
    #: The last reads' reports (what each node withheld, served invalid...), for the
    #: nodes page (spec 0007 #web-nodes); kept in memory only.
    history: ReadLog = field(default_factory=ReadLog)

    def __post_init__(self) -> None:
        if self.keycache is None:
            self.keycache = KeyCache.in_home(self.home)

    # -- settings, read afresh each time ----------------------------------------------

    @property
    def config(self) -> ClientConfig:
        return ClientConfig.load(self.home)

    @property
    def keystore(self) -> Keystore:
        return Keystore(self.home)

    def node_urls(self, config: ClientConfig | None = None) -> list[str]:
        config = config or self.config
        urls = [normalize_node_url(u) for u in self.nodes] or list(config.nodes)
        if not urls:
            raise NoNodesError(
                "no node configured: add one with 'murmur nodes add URL' or pass --node URL"
            )
        return list(dict.fromkeys(urls))

    def timeout(self, config: ClientConfig | None = None) -> float:
        config = config or self.config
        raw = os.environ.get("MURMUR_TIMEOUT") or config.extra.get("timeout")
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise KeystoreError(f"timeout must be a number of seconds, got {raw!r}") from None
        if not 0 < value <= MAX_TIMEOUT_S:
            raise KeystoreError(f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds")
        return value

    def net(self, config: ClientConfig | None = None) -> str:
        config = config or self.config
        return str(config.extra.get("network", DEFAULT_NETWORK))

    # -- who reads --------------------------------------------------------------------

    def stored_identity(self) -> StoredIdentity:
        keystore = self.keystore
        if self.as_name:
            return keystore.get(self.as_name)
        default = keystore.default()
        if default is None:
            raise IdentityNotFoundError(
                f"no identity in {self.home}; create one with: murmur id new NAME"
            )
        return default

    def me(self) -> str | None:
        """The acting identity's did; None when the home has none (reads still work)."""
        try:
            return self.stored_identity().did
        except IdentityNotFoundError:
            return None

    def profiles_with_own(self, profiles: Mapping[str, Event]) -> dict[str, Event]:
        """``profiles`` plus the reader's own latest profile as this home keeps it (spec
        0007 #own-name): the reader's name is the same on every page."""
        merged = dict(profiles)
        me = self.me()
        if me is not None:
            kept = OwnProfiles(self.home)
            if me in merged:
                kept.keep(merged[me])
            else:
                own = kept.get(me)
                if own is not None:
                    merged[me] = own
        return merged

    # -- reads ------------------------------------------------------------------------

    def node_clients(self) -> list[NodeClient]:
        config = self.config
        timeout = self.timeout(config)
        return [NodeClient(u, self.http, timeout=timeout) for u in self.node_urls(config)]

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Reader]:
        """A verified read over the node set; ``no-node-answered`` if no node answered
        (spec 0007 #no-answer), checked when the read ends, in an error too."""
        config = self.config
        timeout = self.timeout(config)
        nodes = [NodeClient(u, self.http, timeout=timeout) for u in self.node_urls(config)]
        reader = Reader(nodes, net=self.net(config), timeout=timeout, keycache=self.keycache)
        try:
            yield reader
        except ProtocolError:
            reader.report.require_answer()
            raise
        finally:
            self.history.record(reader.report, reading.get())
            if self.keycache is not None:
                self.keycache.flush()
        reader.report.require_answer()

    async def moderation(
        self, reader: Reader, *, viewer: str, context: ViewContext, follows: frozenset[str]
    ) -> Moderation:
        """The reader's filters, labels and lists for one view (spec 0006); close it."""
        return await Moderation.open(
            reader,
            viewer=viewer,
            context=context,
            config=ModerationConfig.load(self.home),
            follows=follows,
            home=self.home,
        )

    async def page(
        self,
        reader: Reader,
        build: Callable[[int], Awaitable[View]],
        limit: int,
        *,
        viewer: str,
        context: ViewContext,
        follows: frozenset[str],
    ) -> tuple[View, Moderated]:
        """``limit`` items after moderation: hidden ones do not eat the page (spec 0007
        #limit-after-moderation); ``build(n)`` makes the view of the ``n`` newest."""
        moderation = await self.moderation(reader, viewer=viewer, context=context, follows=follows)
        async with moderation:
            return await moderate_page(build, limit, moderation)

    async def judge(
        self,
        reader: Reader,
        view: View,
        *,
        viewer: str,
        context: ViewContext,
        follows: frozenset[str],
    ) -> Moderated:
        """One view, moderated as it is (a thread: every reply and the root)."""
        moderation = await self.moderation(reader, viewer=viewer, context=context, follows=follows)
        async with moderation:
            return await moderation.judge(view)
