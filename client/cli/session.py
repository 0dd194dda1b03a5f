"""What the network commands share: the node set, the identity, an HTTP client, asyncio.

The node set is ``--node URL`` (repeatable) if given, else ``nodes`` of the config;
the identity is ``--as NAME``, else the default one. The per-node timeout is
``$MURMUR_TIMEOUT`` (seconds), else ``timeout`` in config.toml, else 5 s; the network
name is ``network`` in config.toml, else ``murmur``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx

from client.api import DEFAULT_TIMEOUT_S, NodeClient
from client.cli.output import Context, warn
from client.cli.passphrase import ask_passphrase
from client.cli.render import Names
from client.config import ClientConfig, normalize_node_url
from client.errors import IdentityNotFoundError, KeystoreError, NoNodesError
from client.keycache import KeyCache
from client.keyops import apply_pending
from client.keystore import Keystore, StoredIdentity, loose_permissions
from client.moderation.settings import resolve_account
from client.ownchain import OwnChain
from client.ownprofile import OwnProfiles
from client.publish import Publisher
from client.reader import Reader
from client.shortids import EventRef, resolve_event_id, sent_ids
from client.state import HeadStore
from protocol.errors import BadRequestError, ProtocolError
from protocol.events import DEFAULT_NETWORK, Event
from protocol.identity import Identity

__all__ = ["Session", "limit_arg", "node_url_arg", "parse_event_id", "quorum_arg", "run"]

T = TypeVar("T")


MAX_LIMIT = 500


def limit_arg(text: str) -> int:
    """argparse type for ``--limit``: an integer in 1..500."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return value


def quorum_arg(text: str) -> int:
    """argparse type for ``--quorum``: a positive number of nodes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of nodes") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def node_url_arg(text: str) -> str:
    """argparse type for ``--node``: a node URL, normalised; anything else is a usage
    error (``notaurl`` is not the node ``http://notaurl``)."""
    try:
        return normalize_node_url(text)
    except BadRequestError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def parse_event_id(text: str) -> bytes:
    """A full 64-hex event id; raises ``BadRequestError`` with a hint otherwise."""
    cleaned = text.strip().lower()
    if len(cleaned) == 64:
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            pass
    raise BadRequestError(f"{text!r} is not an event id (64 hex characters, see --json output)")


@dataclass(slots=True)
class Session:
    """Context for one command: config, keystore, nodes, and (lazily) the identity."""

    ctx: Context
    config: ClientConfig
    keystore: Keystore

    @classmethod
    def open(cls, ctx: Context) -> Session:
        return cls(ctx=ctx, config=ClientConfig.load(ctx.home), keystore=Keystore(ctx.home))

    @property
    def node_urls(self) -> list[str]:
        urls = [normalize_node_url(u) for u in self.ctx.nodes] or list(self.config.nodes)
        if not urls:
            raise NoNodesError(
                "no node configured: add one with 'murmur nodes add URL' or pass --node URL"
            )
        return list(dict.fromkeys(urls))

    @property
    def timeout(self) -> float:
        raw = os.environ.get("MURMUR_TIMEOUT") or self.config.extra.get("timeout")
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise KeystoreError(f"timeout must be a number of seconds, got {raw!r}") from None
        if not 0 < value <= 300:
            raise KeystoreError("timeout must be in (0, 300] seconds")
        return value

    @property
    def quorum(self) -> int:
        """Nodes that must store an event before a post returns (spec 0007 #post-quorum):
        ``--quorum``, else ``quorum`` in config.toml, else 1 (at most the node count)."""
        if self.ctx.quorum is not None:
            return self.ctx.quorum
        raw = self.config.extra.get("quorum", 1)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise KeystoreError(f"quorum in config.toml must be a positive integer, got {raw!r}")
        return raw

    @property
    def net(self) -> str:
        return str(self.config.extra.get("network", DEFAULT_NETWORK))

    def stored_identity(self) -> StoredIdentity:
        if self.ctx.as_name:
            return self.keystore.get(self.ctx.as_name)
        default = self.keystore.default()
        if default is None:
            raise IdentityNotFoundError(
                f"no identity in {self.ctx.home}; create one with: murmur id new NAME"
            )
        return default

    def identity(self) -> Identity:
        """The private identity, unsealed (spec 0007 #keys-at-rest); warns on stderr if
        its key file or directory is open to other users."""
        stored = self.stored_identity()
        for problem in loose_permissions(stored.path):
            warn(self.ctx, f"the key of {stored.name}: {problem}")
        return self.keystore.load(
            stored.name,
            ask=lambda: ask_passphrase(
                f"Passphrase for {stored.name}: ", file=self.ctx.passphrase_file
            ),
        )

    def me(self) -> str | None:
        """The acting identity's did, or None when this home has none (reads work
        without one)."""
        try:
            return self.stored_identity().did
        except IdentityNotFoundError:
            return None

    def names(self, profiles: Mapping[str, Event] | None = None) -> Names:
        """Names for this command: petnames, ``profiles``, and the acting identity's
        own latest profile, kept from the last one read or published (spec 0007
        #own-name), so the reader's own name is the same in every output."""
        merged = dict(profiles or {})
        me = self.me()
        if me is not None:
            kept = OwnProfiles(self.ctx.home)
            if me in merged:
                kept.keep(merged[me])
            else:
                own = kept.get(me)
                if own is not None:
                    merged[me] = own
        return Names(self.config, merged)

    async def event_id(self, reader: Reader, ref: EventRef) -> bytes:
        """The event id ``ref`` names: a full id as it is, a short one resolved on the
        reader's nodes and in this home's own sent events (spec 0007 #short-ids)."""
        if isinstance(ref, bytes):
            return ref
        me = self.me()
        local: set[bytes] = set()
        if me is not None and me.startswith("did:murmur:"):  # only those have an outbox
            local = sent_ids(self.ctx.home, me, ref)
        return await resolve_event_id(reader, ref, local=local)

    def resolve(self, who: str) -> str:
        """A did from a did, a petname (``bob`` or ``@bob``), or the name of a local
        identity (:func:`client.moderation.settings.resolve_account`)."""
        return resolve_account(self.config, self.keystore, who)

    @asynccontextmanager
    async def nodes(self) -> AsyncIterator[list[NodeClient]]:
        urls = self.node_urls
        timeout = self.timeout
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            yield [NodeClient(u, http, timeout=timeout) for u in urls]

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Reader]:
        """A read over the node set; fails with ``no-node-answered`` if no node answered.

        The one check for every read command (spec 0007 #no-answer): it runs when the read
        ends, and also when it ends in an error (a "not found" from nodes that all failed
        is really "no node answered").
        """
        async with self.nodes() as nodes:
            keycache = KeyCache.in_home(self.ctx.home)
            reader = Reader(nodes, net=self.net, timeout=self.timeout, keycache=keycache)
            try:
                yield reader
            except ProtocolError:
                reader.report.require_answer()
                raise
            finally:
                keycache.flush()
            reader.report.require_answer()

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[Publisher]:
        """A publisher for the identity. A rotatable one first finishes saving a
        rotation a crash interrupted, then signs after its own outbox (spec 0008)."""
        stored = self.stored_identity()
        chain = None
        if stored.rotatable:
            apply_pending(self.keystore, stored.name)
            chain = OwnChain(self.ctx.home, stored.did)
        identity = self.identity()
        async with self.nodes() as nodes:
            yield self.make_publisher(identity, nodes, chain)

    @asynccontextmanager
    async def outbox_publisher(self, did: str) -> AsyncIterator[Publisher]:
        """A publisher of ``did``'s own saved chain that signs nothing: it re-sends
        saved events and gives back lost bodies (spec 0008 #revoked-delete), for the
        identity a command names, which need not be ``--as`` or the default one."""
        async with self.nodes() as nodes:
            yield self.make_publisher(None, nodes, OwnChain(self.ctx.home, did))

    def make_publisher(
        self, identity: Identity | None, nodes: list[NodeClient], chain: OwnChain | None
    ) -> Publisher:
        """A publisher over ``nodes`` with this session's home, network, timeout and
        key cache (its reads before signing go through it, spec 0007 #key-status)."""
        return Publisher(
            identity, nodes, HeadStore(self.ctx.home), net=self.net, timeout=self.timeout,
            chain=chain,
            quorum=self.quorum,
            keycache=KeyCache.in_home(self.ctx.home),
        )


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one async command body to completion."""

    async def main() -> T:
        return await fn()

    return asyncio.run(main())
