"""One home's client, for every face (the CLI, ``murmur web``, the devnet demo).

A :class:`Session` knows the home (config, keystore, the acting identity: ``as_name``,
else the keystore's default), the node set (``nodes`` if given, else ``nodes`` of
config.toml), the per-node timeout (``$MURMUR_TIMEOUT``, then ``timeout`` in
config.toml, then 5 s), the publish quorum (``quorum``, then config.toml, then 1; spec
0007 #post-quorum) and the network (``network`` in config.toml, else ``murmur``). It
opens verified reads (:meth:`reader`: spec 0007 #no-answer), moderation (:meth:`page`,
:meth:`judge`; spec 0006) and publishers (:meth:`publisher`; spec 0008 for a
rotatable identity), all through one :class:`~client.keycache.KeyCache` and, when the
face gives one, one shared ``httpx.AsyncClient`` (a long-running face reuses its
connections; tests inject a transport). Every read's report is kept in
:attr:`Session.history` (the last few, :mod:`client.readlog`).

Settings are read once for a session that lives one command (``settings_once``: a
change made to ``config`` is saved with ``config.save()``), or afresh at each use for a
long-running face, so a change made by another face is seen by the next page.

What is a face's own comes in as callables: where a sealed key's passphrase comes
from (``passphrase``: a terminal prompt, a form, a file), and where warnings for the
person go (``warn``: stderr, a log). The library never prompts and never prints.
"""

from __future__ import annotations

import logging
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
from client.keyops import apply_pending
from client.keystore import Keystore, StoredIdentity, loose_permissions
from client.moderation.apply import Moderated, Moderation, moderate_page
from client.moderation.config import ModerationConfig
from client.moderation.core import ViewContext
from client.moderation.reuse import Pipelines
from client.moderation.settings import resolve_account
from client.ownchain import OwnChain
from client.ownprofile import OwnProfiles
from client.publish import Publisher
from client.readcache import ReadCache
from client.reader import Reader
from client.readlog import ReadLog, reading
from client.shortids import EventRef, resolve_event_id, sent_ids
from client.state import HeadStore
from client.views import View
from protocol.errors import ProtocolError
from protocol.events import DEFAULT_NETWORK, Event
from protocol.identity import Identity

__all__ = ["MAX_TIMEOUT_S", "PassphraseSource", "Session"]

log = logging.getLogger("murmur.client.session")

#: Largest per-node timeout a config may ask for, in seconds.
MAX_TIMEOUT_S = 300.0

#: Where the passphrase of a sealed key comes from; None: there is none (the key then
#: fails to unseal with ``passphrase-required``).
PassphraseSource = Callable[[StoredIdentity], "str | None"]


def _log_warning(message: str) -> None:
    log.warning("warning=%r", message)


@dataclass(slots=True)
class Session:
    """One home's reads and publishing over its node set (or ``nodes``)."""

    home: Path
    #: The identity to act as (its name); None: the keystore's default.
    as_name: str | None = None
    nodes: Sequence[str] = ()
    #: Nodes that must store an event before a post returns; None: config.toml, else 1.
    quorum_nodes: int | None = None
    #: The face's HTTP client, shared by every read; None: each read opens its own.
    http: httpx.AsyncClient | None = None
    keycache: KeyCache | None = None
    passphrase: PassphraseSource | None = None
    warn: Callable[[str], None] = _log_warning
    #: Read config.toml and the keystore once (one command), not at each use.
    settings_once: bool = False
    #: The last reads' reports (what each node withheld, served invalid...), for the
    #: web's nodes page (spec 0007 #web-nodes); kept in memory only.
    history: ReadLog = field(default_factory=ReadLog)
    #: A long-running face's kept reads (spec 0007 #web-read-cache): each
    #: :meth:`reader` validates them first; None: every read asks the nodes.
    cache: ReadCache | None = None
    #: A long-running face's moderation pipeline, kept between views while the
    #: settings are unchanged (spec 0006 #worker-reuse); None: built for each view.
    pipelines: Pipelines | None = None
    _config: ClientConfig | None = field(default=None, init=False, repr=False)
    #: The window the last :meth:`page` of each view context read (a hint).
    _windows: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.keycache is None:
            self.keycache = KeyCache.in_home(self.home)

    # -- settings ---------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        if not self.settings_once:
            return ClientConfig.load(self.home)
        if self._config is None:
            self._config = ClientConfig.load(self.home)
        return self._config

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

    def quorum(self, config: ClientConfig | None = None) -> int:
        """Nodes that must store an event before a post returns (spec 0007
        #post-quorum): ``quorum_nodes``, else ``quorum`` in config.toml, else 1."""
        if self.quorum_nodes is not None:
            return self.quorum_nodes
        raw = (config or self.config).extra.get("quorum", 1)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise KeystoreError(f"quorum in config.toml must be a positive integer, got {raw!r}")
        return raw

    def net(self, config: ClientConfig | None = None) -> str:
        config = config or self.config
        return str(config.extra.get("network", DEFAULT_NETWORK))

    # -- who acts ---------------------------------------------------------------------

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

    def identity(self, passphrase: PassphraseSource | None = None) -> Identity:
        """The acting identity's private key, unsealed (spec 0007 #keys-at-rest) with
        the passphrase of ``passphrase`` (else the session's source), asked only for a
        sealed key; warns if its key file or directory is open to other users. Scrypt:
        a long-running face calls this off its event loop."""
        stored = self.stored_identity()
        for problem in loose_permissions(stored.path):
            self.warn(f"the key of {stored.name}: {problem}")
        source = passphrase or self.passphrase
        return self.keystore.load(
            stored.name, ask=None if source is None else (lambda: source(stored))
        )

    def resolve(self, who: str) -> str:
        """A did from a did, a petname (``bob`` or ``@bob``), or the name of a local
        identity (:func:`client.moderation.settings.resolve_account`)."""
        return resolve_account(self.config, self.keystore, who)

    def profiles_with_own(self, profiles: Mapping[str, Event] | None = None) -> dict[str, Event]:
        """``profiles`` plus the acting identity's own latest profile as this home keeps
        it, from the last one read or published (spec 0007 #own-name): the reader's own
        name is the same in every output."""
        merged = dict(profiles or {})
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

    async def event_id(self, reader: Reader, ref: EventRef) -> bytes:
        """The event id ``ref`` names: a full id as it is, a short one resolved on the
        reader's nodes and in this home's own sent events (spec 0007 #short-ids)."""
        if isinstance(ref, bytes):
            return ref
        me = self.me()
        local: set[bytes] = set()
        if me is not None and me.startswith("did:murmur:"):  # only those have an outbox
            local = sent_ids(self.home, me, ref)
        return await resolve_event_id(reader, ref, local=local)

    # -- nodes and reads --------------------------------------------------------------

    def node_clients(
        self, http: httpx.AsyncClient | None = None, *, cached: bool = False
    ) -> list[NodeClient]:
        """Clients of the node set over ``http`` (else the session's shared client);
        ``cached``: with the session's kept answers (the caller validates them)."""
        client = http or self.http
        if client is None:
            raise RuntimeError("node_clients() needs an HTTP client: use nodes()")
        config = self.config
        timeout = self.timeout(config)
        cache = self.cache if cached else None
        return [
            NodeClient(u, client, timeout=timeout, answers=cache.node(u) if cache else None)
            for u in self.node_urls(config)
        ]

    @asynccontextmanager
    async def nodes_open(self, *, cached: bool = False) -> AsyncIterator[list[NodeClient]]:
        """The node set over the shared client, or over one opened for this block;
        ``cached``: with the session's kept answers, validated first (one
        ``/v1/info`` a node, spec 0007 #web-read-cache)."""
        if self.http is not None:
            nodes = self.node_clients(cached=cached)
            if cached and self.cache is not None:
                await self.cache.validate(nodes)
            yield nodes
            return
        config = self.config
        urls, timeout = self.node_urls(config), self.timeout(config)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            yield [NodeClient(u, http, timeout=timeout) for u in urls]

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Reader]:
        """A verified read over the node set; ``no-node-answered`` if no node answered
        (spec 0007 #no-answer), checked when the read ends, and also when it ends in an
        error (a "not found" from nodes that all failed is really "no node answered")."""
        config = self.config
        async with self.nodes_open(cached=True) as nodes:
            reader = Reader(
                nodes,
                net=self.net(config),
                timeout=self.timeout(config),
                keycache=self.keycache,
                verified=None if self.cache is None else self.cache.verified,
            )
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
        self,
        reader: Reader,
        *,
        viewer: str,
        context: ViewContext,
        follows: frozenset[str],
        keep: bool = True,
    ) -> Moderation:
        """The reader's filters, labels and lists for one view (spec 0006); close it.
        With :attr:`pipelines`, the pipeline kept from the last view when the settings
        are unchanged and no other view has it (spec 0006 #worker-reuse); ``keep=False``
        (a view held open for long, a live stream): one built for it."""
        config = ModerationConfig.load(self.home)
        shared = None
        if keep and self.pipelines is not None:
            shared = await self.pipelines.lend(config)
        return await Moderation.open(
            reader,
            viewer=viewer,
            context=context,
            config=config,
            follows=follows,
            home=self.home,
            shared=shared,
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
        # A long-running face starts where the last page of the same kind ended up (a
        # page whose filters hide a tenth of the items needs a wider window each time):
        # one round instead of two.
        windows: list[int] = []

        async def counted(n: int) -> View:
            windows.append(n)
            return await build(n)

        async with moderation:
            out = await moderate_page(
                counted, limit, moderation, window=self._windows.get(context.value)
            )
        if not self.settings_once:
            self._windows[context.value] = windows[-1]
        return out

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

    # -- publishing -------------------------------------------------------------------

    @asynccontextmanager
    async def publisher(self, identity: Identity | None = None) -> AsyncIterator[Publisher]:
        """A publisher for the acting identity (``identity`` if the face unsealed it
        already, else :meth:`identity`). A rotatable one first finishes saving a
        rotation a crash interrupted, then signs after its own outbox (spec 0008)."""
        stored = self.stored_identity()
        chain = None
        if stored.rotatable:
            apply_pending(self.keystore, stored.name)
            chain = OwnChain(self.home, stored.did)
        if identity is None:
            identity = self.identity()
        async with self.nodes_open() as nodes:
            try:
                yield self.make_publisher(identity, nodes, chain)
            finally:
                if self.keycache is not None:
                    self.keycache.flush()

    @asynccontextmanager
    async def outbox_publisher(self, did: str) -> AsyncIterator[Publisher]:
        """A publisher of ``did``'s own saved chain that signs nothing: it re-sends
        saved events and gives back lost bodies (spec 0008 #revoked-delete), for an
        identity that need not be the acting one."""
        async with self.nodes_open() as nodes:
            yield self.make_publisher(None, nodes, OwnChain(self.home, did))

    def make_publisher(
        self, identity: Identity | None, nodes: list[NodeClient], chain: OwnChain | None
    ) -> Publisher:
        """A publisher over ``nodes`` with this session's home, network, timeout, quorum
        and key cache (its reads before signing go through it, spec 0007 #key-status)."""
        config = self.config
        return Publisher(
            identity,
            nodes,
            HeadStore(self.home),
            net=self.net(config),
            timeout=self.timeout(config),
            chain=chain,
            quorum=self.quorum(config),
            keycache=self.keycache,
        )
