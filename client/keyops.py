"""Creating, rotating and recovering rotatable identities (spec 0008, 0007 #rotatable-keys).

- :func:`prepare_rotatable` generates S, N and 1–3 recovery keys apart, test-signs
  with each and signs the genesis with S, storing nothing; the caller shows the
  recovery keys (they are never stored) and only then :func:`store_rotatable` stores
  S and N in two sealed files and the genesis in the owner's outbox
  (:mod:`client.ownchain`): a crash in between leaves no genesis committing to a
  recovery key nobody saw. :func:`create_rotatable` does both (for callers that keep
  the keys themselves).
- :func:`sign_rotation` signs a ``rotate`` with N (new S and N fresh), and
  :func:`sign_recovery` a ``recover`` with a recovery key (replacement recovery keys,
  from :func:`fresh_recovery`, shown by the caller *before* it signs), both after the owner's own
  outbox (``prev`` its last event, ``kev`` its latest key event), checked against the
  owner's key state with :mod:`protocol.keystate` before anything is saved.
- Saving is crash-safe and happens once: the signed event and its new keys (sealed)
  go into ``NAME.pending.toml``, created exclusively (two rotations at once: one
  wins), then :func:`apply_pending` records the event in the outbox (unpublished) and
  replaces S's and N's files — destroying N — and removes the pending file. A crash
  anywhere is finished by the next :func:`apply_pending`; a key event no node stored
  is re-sent as the same bytes (:meth:`OwnChain.unpublished`), never re-signed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from client.errors import KeystoreError
from client.files import create_new, read_toml, translate_os_errors
from client.keystore import NEXT_AAD, Keystore, StoredIdentity, key_table
from client.ownchain import OwnChain
from protocol import kinds
from protocol.errors import BadRequestError, ProtocolError, UnauthorizedKeyError
from protocol.events import DEFAULT_NETWORK, Event, decode_unverified, sign_event_v2, sign_genesis
from protocol.identity import Identity, next_key_commitment, verify_with_key
from protocol.keystate import KeyEvent, KeyState, check_event, key_event_of
from protocol.limits import MAX_RECOVERY_KEYS

__all__ = [
    "NewRotatable",
    "PreparedRotatable",
    "RecoveryKey",
    "apply_pending",
    "create_rotatable",
    "fresh_key",
    "fresh_recovery",
    "fresh_recovery_at",
    "own_state",
    "parse_recovery_key",
    "prepare_rotatable",
    "recovery_file_name",
    "recovery_file_text",
    "recovery_key_did",
    "recovery_list",
    "recovery_phrase",
    "sign_recovery",
    "sign_rotation",
    "store_rotatable",
    "write_recovery_files",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryKey:
    """A recovery key to show once: its position (0 = highest priority) and seed."""

    position: int
    count: int
    key: Identity


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRotatable:
    stored: StoredIdentity
    genesis: Event
    recovery: tuple[RecoveryKey, ...]


def fresh_key() -> Identity:
    """A new random key, test-signed (spec 0008 #distinct-keys: before it is committed
    to, a client checks that it can sign)."""
    key = Identity.generate()
    probe = b"murmur key self-test"
    verify_with_key(key.public.raw, key.sign(probe), probe)
    return key


def recovery_phrase(seed: bytes) -> str:
    """A seed as 16 groups of 4 hex digits, to write down."""
    text = seed.hex()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def recovery_file_text(did: str, rk: RecoveryKey) -> str:
    """The exportable file of one recovery key (TOML with a warning in comments)."""
    doc = {
        "did": did,
        "position": rk.position,
        "public": rk.key.public.raw.hex(),
        "seed": rk.key.seed.hex(),
    }
    return (
        f"# Murmur RECOVERY KEY {rk.position + 1} of {rk.count} (priority {rk.position}, "
        "0 = highest) for the identity below.\n"
        "# Keep it OFFLINE (a USB stick in a drawer, a printout), never on the device you\n"
        "# post from: whoever holds it can take this identity back from anyone.\n"
        "# Use: murmur id recover NAME --recovery-key THIS_FILE (on a new machine too:\n"
        "# it reads the did below and asks which of your events was your last).\n"
        + tomli_w.dumps(doc)
    )


def recovery_file_name(did: str, rk: RecoveryKey) -> str:
    """``<did prefix>-recovery-<position>-<key id>.key``: unique per key, so a directory
    reused from ``id new`` for a recovery's new keys never collides (spec 0007
    #rotatable-keys)."""
    key_id = rk.key.public.raw.hex()[:16]
    return f"{did.removeprefix('did:murmur:')[:16]}-recovery-{rk.position}-{key_id}.key"


def write_recovery_files(did: str, keys: tuple[RecoveryKey, ...], directory: Path) -> list[Path]:
    """Write each recovery key to a new 0600 file in ``directory`` (made 0700), fsynced;
    on any failure none is left (nothing commits to them yet: a half set is no use)."""
    paths: list[Path] = []
    try:
        with translate_os_errors(f"write the recovery keys into {directory}"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for rk in keys:
                path = directory / recovery_file_name(did, rk)
                create_new(path, recovery_file_text(did, rk).encode("utf-8"))  # fsynced
                paths.append(path)
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise
    return paths


_HEX_PHRASE = re.compile(r"[0-9a-fA-F\s-]+\Z")


def parse_recovery_key(text: str, did: str) -> Identity:
    """A recovery key from its file or its phrase; never repeats the secret in errors."""
    seed_hex: str | None = None
    stripped = text.strip()
    if _HEX_PHRASE.match(stripped):
        seed_hex = re.sub(r"[\s-]", "", stripped)
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise BadRequestError(
                "the recovery key is neither a recovery key file nor a 64-hex-digit phrase"
            ) from None
        if doc.get("did") not in (None, did):
            raise BadRequestError(f"this recovery key file is for {doc.get('did')}, not {did}")
        seed_hex = doc.get("seed") if isinstance(doc.get("seed"), str) else None
    if seed_hex is None or len(seed_hex) != 64:
        raise BadRequestError("a recovery key is 64 hex digits (32 bytes); the value is not shown")
    try:
        return Identity.from_seed(bytes.fromhex(seed_hex))
    except ValueError:
        raise BadRequestError("the recovery key is not hex; the value is not shown") from None


def recovery_key_did(text: str) -> str | None:
    """The did a recovery key file names (None for a phrase or an unreadable file);
    reads nothing else of it, and never shows the secret."""
    if _HEX_PHRASE.match(text.strip()):
        return None
    try:
        did = tomllib.loads(text).get("did")
    except tomllib.TOMLDecodeError:
        return None
    return did if isinstance(did, str) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRotatable:
    """A new did:murmur's keys and signed genesis, not stored anywhere yet."""

    signing: Identity
    next_key: Identity
    genesis: Event
    recovery: tuple[RecoveryKey, ...]

    @property
    def did(self) -> str:
        return self.genesis.author


def prepare_rotatable(
    *, recovery_keys: int = 1, net: str = DEFAULT_NETWORK, from_did: str | None = None
) -> PreparedRotatable:
    """Fresh S, N and recovery keys, and the genesis signed with S; nothing stored.
    ``from_did`` is the did:key this identity moves from (spec 0008 #move)."""
    if not 1 <= recovery_keys <= MAX_RECOVERY_KEYS:
        raise BadRequestError(f"--recovery-keys must be 1 to {MAX_RECOVERY_KEYS}")
    signing, nxt = fresh_key(), fresh_key()
    recovery = [fresh_key() for _ in range(recovery_keys)]
    genesis = sign_genesis(
        signing,
        next_key=nxt.public.raw,
        recovery=[r.public.raw for r in recovery],
        from_did=from_did,
        net=net,
    )
    return PreparedRotatable(
        signing=signing,
        next_key=nxt,
        genesis=genesis,
        recovery=tuple(
            RecoveryKey(position=i, count=recovery_keys, key=r) for i, r in enumerate(recovery)
        ),
    )


def store_rotatable(
    store: Keystore, name: str, prepared: PreparedRotatable, *, passphrase: str | None
) -> NewRotatable:
    """Store S and N (sealed, exclusive) and start the outbox with the genesis. Call it
    only once the recovery keys were shown (spec 0007 #rotatable-keys)."""
    stored = store.create_rotatable(
        name,
        did=prepared.did,
        signing=prepared.signing,
        next_key=prepared.next_key,
        passphrase=passphrase,
    )
    try:
        OwnChain(store.home, prepared.did).create(prepared.genesis)
    except BaseException:
        stored.path.unlink(missing_ok=True)
        store.next_path(name).unlink(missing_ok=True)
        raise
    return NewRotatable(stored=stored, genesis=prepared.genesis, recovery=prepared.recovery)


def create_rotatable(
    store: Keystore,
    name: str,
    *,
    recovery_keys: int = 1,
    passphrase: str | None,
    net: str = DEFAULT_NETWORK,
) -> NewRotatable:
    """A new did:murmur stored at once (the caller keeps the returned recovery keys)."""
    prepared = prepare_rotatable(recovery_keys=recovery_keys, net=net)
    return store_rotatable(store, name, prepared, passphrase=passphrase)


def own_state(chain: OwnChain) -> tuple[Event, KeyEvent, dict[bytes, KeyEvent]]:
    """The latest key event of the owner's outbox, its state, and every key state."""
    states: dict[bytes, KeyEvent] = {}
    latest: Event | None = None
    for ev in chain.key_events():
        try:
            states[ev.id] = key_event_of(ev, states)
        except ProtocolError as exc:
            raise KeystoreError(f"{chain.path}: key event {ev.id_hex}: {exc.message}") from exc
        latest = ev
    if latest is None:
        raise KeystoreError(f"{chain.path} holds no key event")
    return latest, states[latest.id], states


def _sign_key_event(
    store: Keystore,
    name: str,
    *,
    kind: str,
    signer: Identity,
    body_extra: dict[str, Any],
    passphrase: str | None,
    net: str,
) -> Event:
    stored = store.get(name)
    chain = OwnChain(store.home, stored.did)
    # Under the outbox lock, like a post: nothing is signed after the head meanwhile.
    with chain.lock():
        latest, _, states = own_state(chain)
        head = chain.head()
        new_signing, new_next = fresh_key(), fresh_key()
        body = {
            "signing": new_signing.public.raw,
            "next": next_key_commitment(new_next.public.raw),
            **body_extra,
        }
        event = sign_event_v2(
            signer,
            author=stored.did,
            kind=kind,
            body=body,
            seq=head.seq + 1,
            prev=head.id,
            kev=latest.id,
            net=net,
        )
        check_event(key_event_of(event, states), states)  # §8.5 steps 2-4, before saving
        pending = {
            "did": stored.did,
            "wire": event.wire.hex(),
            "signing": new_signing.public.raw.hex(),
            "key": key_table(new_signing.seed, stored.did, passphrase),
            "next": key_table(new_next.seed, stored.did + NEXT_AAD, passphrase),
        }
        path = store.pending_path(name)
        with translate_os_errors(f"write {path}"):
            try:
                create_new(path, tomli_w.dumps(pending).encode("utf-8"))
            except FileExistsError:
                raise KeystoreError(
                    f"a rotation or recovery of {name} is being saved by another process ({path})"
                ) from None
        if chain.head().id != head.id:  # another process applied one meanwhile
            path.unlink(missing_ok=True)
            raise KeystoreError(f"{name} was rotated by another process meanwhile; nothing saved")
        apply_pending(store, name)
    return event


def apply_pending(store: Keystore, name: str) -> Event | None:
    """Finish saving a signed rotation or recovery (idempotent; None if none pending)."""
    path: Path = store.pending_path(name)
    if not path.exists():
        return None
    stored = store.get(name)
    doc = read_toml(path, "a pending key event")
    try:
        event = decode_unverified(bytes.fromhex(str(doc["wire"])), allow_v2=True)
        signing = bytes.fromhex(str(doc["signing"]))
        key, nxt = doc["key"], doc["next"]
    except (KeyError, ValueError, ProtocolError) as exc:
        raise KeystoreError(f"{path} is not a pending key event: {exc}") from exc
    if event.author != stored.did or not isinstance(key, dict) or not isinstance(nxt, dict):
        raise KeystoreError(f"{path} is not a pending key event of {stored.did}")
    OwnChain(store.home, stored.did).record(event, published=False)
    store.replace_keys(name, signing=signing, key=key, next_key=nxt)
    path.unlink(missing_ok=True)
    return event


def sign_rotation(
    store: Keystore, name: str, *, next_key: Identity, passphrase: str | None, net: str
) -> Event:
    """Sign and save a ``rotate`` of ``name`` with its next key N (then destroyed)."""
    chain = OwnChain(store.home, store.get(name).did)
    _, state, _ = own_state(chain)
    if next_key_commitment(next_key.public.raw) != state.state.next:
        raise UnauthorizedKeyError(
            f"the stored next key of {name} is not the one its latest key event commits to"
        )
    return _sign_key_event(
        store,
        name,
        kind=kinds.ROTATE,
        signer=next_key,
        body_extra={},
        passphrase=passphrase,
        net=net,
    )


def _recovery_position(store: Keystore, name: str, recovery_key: Identity) -> KeyState:
    chain = OwnChain(store.home, store.get(name).did)
    _, held, _ = own_state(chain)
    state: KeyState = held.state
    if recovery_key.public.raw not in state.recovery:
        raise UnauthorizedKeyError(
            f"this key is not a recovery key of {name} at its latest key event "
            f"(it has {len(state.recovery)}; a recovery may have replaced it)"
        )
    return state


def fresh_recovery(
    store: Keystore, name: str, *, recovery_key: Identity
) -> tuple[RecoveryKey, ...]:
    """Fresh keys to replace ``recovery_key`` and every one below it (spec 0008
    #recover-prefix), to be shown (written, fsynced) *before* :func:`sign_recovery`
    commits to them: a recovery saved first and shown after could commit to keys
    nobody has if showing them failed."""
    return fresh_recovery_at(_recovery_position(store, name, recovery_key), recovery_key)


def fresh_recovery_at(state: KeyState, recovery_key: Identity) -> tuple[RecoveryKey, ...]:
    """:func:`fresh_recovery` against a given key state (the state at the key event a
    recovery replaces): fresh keys for ``recovery_key``'s position and those below."""
    position, count = state.recovery.index(recovery_key.public.raw), len(state.recovery)
    return tuple(
        RecoveryKey(position=p, count=count, key=fresh_key()) for p in range(position, count)
    )


def recovery_list(
    state: KeyState, recovery_key: Identity, new_recovery: tuple[RecoveryKey, ...] | None
) -> dict[str, Any]:
    """The ``recovery`` part of a ``recover`` body signed by ``recovery_key`` at
    ``state``: none (the list stays) without ``new_recovery``, else the keys above the
    signer's position unchanged and the new ones from it down (spec 0008
    #recover-prefix)."""
    if new_recovery is None:
        return {}
    position = state.recovery.index(recovery_key.public.raw)
    if [r.position for r in new_recovery] != list(range(position, len(state.recovery))):
        raise BadRequestError("the new recovery keys do not replace this key and those below")
    return {"recovery": [*state.recovery[:position], *(r.key.public.raw for r in new_recovery)]}


def sign_recovery(
    store: Keystore,
    name: str,
    *,
    recovery_key: Identity,
    passphrase: str | None,
    net: str,
    replace_recovery: bool = False,
    new_recovery: tuple[RecoveryKey, ...] | None = None,
) -> tuple[Event, tuple[RecoveryKey, ...]]:
    """Sign and save a ``recover`` of ``name`` with one of its recovery keys.

    ``new_recovery`` (from :func:`fresh_recovery`, already shown to the owner) replaces
    the recovery key used and every one below it; the keys above it stay (spec 0008
    #recover-prefix). ``replace_recovery`` without it generates them here (the caller
    must then show them; the CLI never does this). Without either, the list stays.
    Needs no passphrase of the old keys: ``passphrase`` seals the new S and N.
    """
    state = _recovery_position(store, name, recovery_key)
    if new_recovery is None and replace_recovery:
        new_recovery = fresh_recovery_at(state, recovery_key)
    extra = recovery_list(state, recovery_key, new_recovery)
    event = _sign_key_event(
        store,
        name,
        kind=kinds.RECOVER,
        signer=recovery_key,
        body_extra=extra,
        passphrase=passphrase,
        net=net,
    )
    return event, new_recovery or ()
