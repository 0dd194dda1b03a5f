"""The home's identities for any face of the client: list them, rotate a rotatable
one's key, recover it with a recovery key, and send what its outbox saved (spec 0007
#rotatable-keys, spec 0008).

The signing and saving is :mod:`client.keyops`; this module is the part the CLI's
``murmur id rotate|recover`` and ``murmur web``'s identities page share:

- :func:`rotate_identity`: finish a rotation a crash interrupted, re-send (never
  re-sign) a saved rotation no node stored yet, else sign a new one with the next
  key N (the passphrase asked only then, by ``passphrase()``).
- :func:`recover_identity`: the same for a recovery of an identity this home holds,
  with one of its recovery keys (file text or phrase); the new S and N are sealed
  with ``new_passphrase`` (the old one may be what was lost). Replacing the recovery
  keys is the caller's (they must be shown before anything commits to them).
- :func:`new_rotatable`: a new did:murmur, its recovery keys shown (by the face: files,
  phrases, a page) before anything that commits to them is stored.
- :func:`send_outbox`: send the identity's saved, unsent key events (same bytes) to
  the nodes and, once a node stored one, give back bodies nodes lost to a revoked
  delete (spec 0008 #revoked-delete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from client.api import NodeClient
from client.errors import IdentityExistsError
from client.keyops import (
    NewRotatable,
    PreparedRotatable,
    apply_pending,
    parse_recovery_key,
    prepare_rotatable,
    sign_recovery,
    sign_rotation,
    store_rotatable,
)
from client.keystore import Keystore, StoredIdentity
from client.ownchain import OwnChain
from client.publish import Publisher, PublishResult
from client.state import HeadStore
from protocol import kinds
from protocol.errors import BadRequestError
from protocol.events import Event
from protocol.identity import Identity

__all__ = [
    "KeyChange",
    "OutboxSent",
    "new_rotatable",
    "recover_identity",
    "rotatable",
    "rotate_identity",
    "saved_key_event",
    "send_outbox",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyChange:
    """A rotation or recovery signed now, or a saved one to re-send (``resent``)."""

    stored: StoredIdentity
    event: Event
    resent: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxSent:
    """What :func:`send_outbox` did: one result per saved event sent, and the bodies
    given back per node."""

    results: list[PublishResult] = field(default_factory=list)
    restored: dict[str, int] = field(default_factory=dict)

    def stored(self, event: Event) -> bool | None:
        """Whether a node stored ``event``; None when it was not sent (no node)."""
        for r in self.results:
            if r.event.id == event.id:
                return any(o.stored for o in r.outcomes)
        return None


def rotatable(store: Keystore, name: str) -> StoredIdentity:
    """Identity ``name``, which must be a did:murmur (``bad-request`` otherwise)."""
    stored = store.get(name)
    if not stored.rotatable:
        raise BadRequestError(
            f"{stored.name} is a did:key: its key is its name and cannot be rotated; "
            "create a rotatable identity with: murmur id new NAME"
        )
    return stored


def saved_key_event(store: Keystore, stored: StoredIdentity, kind: str) -> Event | None:
    """The latest ``kind`` key event of ``stored``'s outbox that no node stored yet
    (after finishing one a crash interrupted): it is re-sent, never signed again
    (spec 0008 §8.7: one next key signs once)."""
    apply_pending(store, stored.name)
    saved = [e for e in OwnChain(store.home, stored.did).unpublished() if e.kind == kind]
    return saved[-1] if saved else None


def rotate_identity(
    store: Keystore, name: str, *, passphrase: Callable[[], str | None], net: str
) -> KeyChange:
    """Rotate ``name``'s signing key with its next key (see the module doc)."""
    stored = rotatable(store, name)
    saved = saved_key_event(store, stored, kinds.ROTATE)
    if saved is not None:
        return KeyChange(stored=stored, event=saved, resent=True)
    secret = passphrase() if stored.sealed else None
    next_key = store.load_next(stored.name, passphrase=secret)
    event = sign_rotation(store, stored.name, next_key=next_key, passphrase=secret, net=net)
    return KeyChange(stored=stored, event=event, resent=False)


def recover_identity(
    store: Keystore,
    name: str,
    *,
    recovery_key: str | Identity,
    new_passphrase: Callable[[], str | None],
    net: str,
) -> KeyChange:
    """Recover ``name`` (an identity of this home) with a recovery key, keeping its
    recovery list (see the module doc). ``recovery_key`` is the key file's text or the
    phrase (never repeated in an error), or the parsed key."""
    stored = rotatable(store, name)
    saved = saved_key_event(store, stored, kinds.RECOVER)
    if saved is not None:
        return KeyChange(stored=stored, event=saved, resent=True)
    key = (
        recovery_key
        if isinstance(recovery_key, Identity)
        else parse_recovery_key(recovery_key, stored.did)
    )
    secret = new_passphrase() if stored.sealed else None
    event, _ = sign_recovery(store, stored.name, recovery_key=key, passphrase=secret, net=net)
    return KeyChange(stored=stored, event=event, resent=False)


def new_rotatable(
    store: Keystore,
    name: str,
    *,
    passphrase: Callable[[], str | None],
    show: Callable[[PreparedRotatable], Sequence[Path]],
    recovery_keys: int = 1,
    net: str,
    from_did: str | None = None,
) -> tuple[NewRotatable, list[Path]]:
    """Make and store a rotatable identity ``name`` (its genesis naming ``from_did``
    when it moves from a did:key; spec 0008 #move): the name is checked, then the new
    passphrase asked (``passphrase()``, None: unencrypted), the keys prepared and the
    recovery keys shown (``show``: the files it wrote, removed again if storing fails)
    before S, N and the genesis are stored (spec 0007 #rotatable-keys,
    #recovery-shown-first). Sending the genesis is the caller's (:func:`send_outbox`)."""
    if store.exists(Keystore.check_name(name)):
        raise IdentityExistsError(f"an identity named {name!r} already exists")
    secret = passphrase()
    prepared = prepare_rotatable(recovery_keys=recovery_keys, net=net, from_did=from_did)
    # Shown (files written and fsynced) before anything that commits to them is stored:
    # a failure or crash in between leaves no genesis to publish.
    files = list(show(prepared))
    try:
        made = store_rotatable(store, name, prepared, passphrase=secret)
    except BaseException:
        for f in files:  # they belong to a genesis never stored
            f.unlink(missing_ok=True)
        raise
    return made, files


async def send_outbox(
    store: Keystore,
    stored: StoredIdentity,
    nodes: Sequence[NodeClient],
    *,
    net: str,
    node_timeout: float,
) -> OutboxSent:
    """Send ``stored``'s saved, unsent events to ``nodes`` (none: nothing sent, they go
    with the next post), then give back lost bodies if a node stored one."""
    if not nodes:
        return OutboxSent()
    publisher = Publisher(
        None,
        nodes,
        HeadStore(store.home),
        net=net,
        timeout=node_timeout,
        chain=OwnChain(store.home, stored.did),
    )
    results = await publisher.flush()
    restored: dict[str, int] = {}
    if any(o.stored for r in results for o in r.outcomes):
        restored = await publisher.restore_bodies()
    return OutboxSent(results=results, restored=restored)
