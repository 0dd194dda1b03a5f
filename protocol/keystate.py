"""Key state of rotatable identities: entitlement, validity and fork choice (spec 0008).

A ``did:murmur`` author's keys live in the author's own hash chain (spec 0008). Key
events (``genesis``, ``rotate``, ``recover``) each establish a :class:`KeyState`;
every later event names, in its header's ``kev``, the latest key event of its
ancestry, and must be signed by a key that state entitles (§8.4). Key events linked by
``kev`` form a tree; the fork choice (§8.6) picks one path through it, by rank, with no
tie-break; the status of every event (§8.7: canonical, revoked, disputed, pending)
follows from that path and the ``prev`` links.

This module is that logic and nothing else: sans-IO, and independent of how events are
encoded. It works on three small frozen dataclasses a caller builds from decoded
events (:class:`KeyState`, :class:`KeyEvent`, :class:`Link`), never reads a body,
never verifies a signature (that is 0002 §2.8 / 0008 §8.3 and needs no key state).

- :func:`next_commitment`, :func:`entitlement`, :func:`check_state`,
  :func:`check_succession`, :func:`successor_state`: the rules of §8.2/§8.4 on states.
- :func:`check_event`: §8.5 steps 2–4, the rejections that need held key events (for
  ingest). :func:`check_continuity`: §8.5 step 5, which is a *status*, not a rejection.
- :func:`resolve`: §8.6 and §8.7 — a pure function of the *set* of one author's events
  held, linear in their number (one pass to index, one continuity check each, one walk
  back per canonical epoch over the ``prev`` links it endorses).
- :func:`key_event_of`, :func:`link_of`, :func:`input_of`: the one mapping from a
  decoded v2 event (:class:`protocol.events.Event`) to these inputs, as nodes, clients
  and the key-history vectors use it. They read only header fields and, for key
  events, the body's keys; this module still imports nothing of the encoding.

Errors are those of :mod:`protocol.errors`: ``unauthorized-key`` (not retryable),
``unknown-key-event`` (retryable), ``bad-kev``, and ``bad-field`` for the cross-state
rules on new keys (the body's own structure is checked by the kinds module).
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from protocol.errors import (
    BadFieldError,
    BadKevError,
    BodyRequiredError,
    InvalidDidError,
    UnauthorizedKeyError,
    UnknownKeyEventError,
)
from protocol.identity import NEXT_KEY_DOMAIN, next_key_commitment

if TYPE_CHECKING:  # only for annotations: keystate stays independent of the encoding
    from protocol.events import Event

__all__ = [
    # states and the rules on them (spec 0008 §8.2, §8.4)
    "GENESIS",
    "KEY_EVENT_KINDS",
    "NEXT_DOMAIN",
    "RECOVER",
    "ROTATE",
    "KeyState",
    "check_state",
    "check_succession",
    "entitlement",
    "next_commitment",
    "successor_state",
    # events as the key logic sees them, and from decoded events
    "KeyEvent",
    "Link",
    "input_of",
    "key_event_of",
    "link_of",
    # validity against held state (§8.5)
    "check_continuity",
    "check_event",
    "expected_kev",
    # fork choice and statuses (§8.6, §8.7)
    "Resolution",
    "Status",
    "resolve",
]

#: Domain prefix of the next-key commitment, ``H("murmur-next-v1:" ‖ N)`` (§8.2).
#: The next-key commitment's domain: the one of :mod:`protocol.identity`.
NEXT_DOMAIN: Final = NEXT_KEY_DOMAIN

GENESIS: Final = "genesis"
ROTATE: Final = "rotate"
RECOVER: Final = "recover"
#: The kinds that establish a key state (§8.1); every other kind is "ordinary".
KEY_EVENT_KINDS: Final = frozenset({GENESIS, ROTATE, RECOVER})

#: §8.4 ranks. A genesis has no rank in the table; it scores 0 in the fork choice
#: (§8.6), so a duplicate genesis never outranks a rotation under the other one.
_GENESIS_RANK: Final = 0
_ORDINARY_RANK: Final = 0
_ROTATE_RANK: Final = 1
#: ``recover`` by the recovery key at position p (0 = highest priority) ranks 4 − p.
_RECOVER_RANKS: Final = (4, 3, 2)

_KEY_LEN: Final = 32
_ID_LEN: Final = 32


def next_commitment(pubkey: bytes) -> bytes:
    """``H("murmur-next-v1:" ‖ pubkey)``: what a state's ``next`` holds (§8.2); the one
    definition is :func:`protocol.identity.next_key_commitment`."""
    return next_key_commitment(pubkey)


def _check_bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise ValueError(f"{name} must be {length} bytes")


# -- states -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyState:
    """What a key event establishes (§8.1): who may sign what from there on.

    ``next`` is the 32-byte commitment :func:`next_commitment` of the next key, never
    the key itself. ``recovery`` is highest priority first. The constructor checks
    only types and sizes (a caller may build an invalid state to have it judged);
    the distinctness rules are :func:`check_state` (``bad-field``).
    """

    signing: bytes
    next: bytes
    recovery: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_bytes("signing", self.signing, _KEY_LEN)
        _check_bytes("next", self.next, _KEY_LEN)
        if not isinstance(self.recovery, tuple) or not (
            1 <= len(self.recovery) <= len(_RECOVER_RANKS)
        ):
            raise ValueError(f"recovery must be a tuple of 1 to {len(_RECOVER_RANKS)} keys")
        for key in self.recovery:
            _check_bytes("recovery key", key, _KEY_LEN)

    def rank_of(self, kind: str, key: bytes) -> int | None:
        """The §8.4 rank ``key`` would have signing ``kind`` at this state, or None."""
        if kind == ROTATE:
            return _ROTATE_RANK if next_commitment(key) == self.next else None
        if kind == RECOVER:
            for position, candidate in enumerate(self.recovery):
                if candidate == key:
                    return _RECOVER_RANKS[position]
            return None
        if kind == GENESIS:
            return _GENESIS_RANK if key == self.signing else None
        return _ORDINARY_RANK if key == self.signing else None


def entitlement(state: KeyState, kind: str, key: bytes) -> int:
    """The rank of ``key`` signing an event of ``kind`` at ``state`` (§8.4), or raise.

    ``state`` is the state at the event's ``kev`` (for a ``genesis``: the state of its
    own body). Ranks: ``rotate`` 1, ``recover`` by recovery position 0/1/2 → 4/3/2,
    ordinary kinds and ``genesis`` 0. Raises :class:`UnauthorizedKeyError` when
    ``key`` is not the one the state entitles: a ``rotate`` signed by S or by a key
    that does not hash to ``next``; a ``recover`` by a key not in *this* state's list
    (e.g. one a recovery dropped); an ordinary event signed by N or by a recovery key.
    """
    rank = state.rank_of(kind, key)
    if rank is None:
        if kind == ROTATE:
            why = "a rotate must be signed by the key committed as the state's next"
        elif kind == RECOVER:
            why = "a recover must be signed by a recovery key of the state at kev"
        else:
            why = f"a {kind} must be signed by the signing key of the state at kev"
        raise UnauthorizedKeyError(why)
    return rank


def check_state(state: KeyState) -> None:
    """The distinctness rules inside one state (§8.2, §8.4), else ``bad-field``.

    The signing key and every recovery key are distinct, and the next key (known only
    by its commitment) is none of them: a state whose N is also its S would let a thief
    of S rotate.
    """
    keys = (state.signing, *state.recovery)
    if len(set(keys)) != len(keys):
        raise BadFieldError("the signing and recovery keys of a state must be distinct")
    if any(next_commitment(k) == state.next for k in keys):
        raise BadFieldError("the next key must differ from the signing and recovery keys")


def check_succession(replaced: KeyState, new: KeyState, *, kind: str, key: bytes) -> None:
    """The cross-state rules of §8.4 on the state a key event establishes (``bad-field``).

    ``replaced`` is the state at the key event's ``kev``; ``key`` its signer. Checks,
    in order:

    - :func:`check_state` on ``new``;
    - ``key`` is :func:`entitled <entitlement>` (else ``unauthorized-key``);
    - a ``rotate`` keeps the recovery list unchanged (it can never change who may
      recover, R4);
    - a ``recover`` by the key at position *p* keeps positions 0 … p−1 unchanged: it may
      rewrite only its own rank and below, so no subtree can gain a rank its signer
      did not have at the branch point (§8.4 #recover-prefix);
    - no retired key is in force again: the new ``signing`` is neither the signer, nor
      the replaced S, nor a replaced recovery key, nor the replaced N (for a ``rotate``
      that is the revealed key itself: N is destroyed after its one rotation, §8.1); the
      new ``next`` commits to none of those; no new recovery key is the replaced S or N.
    """
    check_state(new)
    entitlement(replaced, kind, key)
    if kind == ROTATE:
        if new.recovery != replaced.recovery:
            raise BadFieldError("a rotate cannot change the recovery keys")
    elif kind == RECOVER:
        position = replaced.recovery.index(key)
        if new.recovery[:position] != replaced.recovery[:position]:
            raise BadFieldError(
                "a recover may not change the recovery keys of higher priority than its own"
            )
    else:
        raise ValueError(f"{kind!r} does not replace a state")
    retired = {key, replaced.signing, *replaced.recovery}
    if new.signing in retired or next_commitment(new.signing) == replaced.next:
        raise BadFieldError("the new signing key must not be a key of the replaced state")
    if new.next == replaced.next or any(next_commitment(k) == new.next for k in retired):
        raise BadFieldError("the new next key must not be a key of the replaced state")
    if any(r == replaced.signing or next_commitment(r) == replaced.next for r in new.recovery):
        raise BadFieldError("a new recovery key must not be the replaced signing or next key")


def successor_state(
    replaced: KeyState,
    *,
    kind: str,
    signing: bytes,
    next: bytes,
    recovery: tuple[bytes, ...] | None = None,
) -> KeyState:
    """The state a ``rotate``/``recover`` body establishes over ``replaced`` (§8.4).

    A ``rotate`` inherits the recovery list (and carries none: ``bad-field``); a
    ``recover`` replaces it when its body has one. Does not run
    :func:`check_succession`.
    """
    if kind == ROTATE:
        if recovery is not None:
            raise BadFieldError("a rotate must not carry recovery keys")
        return KeyState(signing=signing, next=next, recovery=replaced.recovery)
    if kind == RECOVER:
        return KeyState(
            signing=signing,
            next=next,
            recovery=replaced.recovery if recovery is None else recovery,
        )
    raise ValueError(f"{kind!r} does not replace a state")


# -- events -------------------------------------------------------------------------------


def _check_link_fields(
    id: bytes, seq: int, prev: bytes | None, kev: bytes | None, key: bytes
) -> None:
    _check_bytes("id", id, _ID_LEN)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError("seq must be an int >= 1")
    if (prev is None) != (seq == 1):
        raise ValueError("prev is None iff seq is 1")
    if prev is not None:
        _check_bytes("prev", prev, _ID_LEN)
    if kev is not None:
        _check_bytes("kev", kev, _ID_LEN)
    _check_bytes("key", key, _KEY_LEN)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEvent:
    """A held key event (``genesis``, ``rotate``, ``recover``), as the key logic sees it.

    ``key`` is the header's signer; ``state`` what the event establishes (for a
    ``rotate``, with the recovery list of the state at ``kev``: :func:`successor_state`).
    The constructor checks shapes (``ValueError``): ``kev`` is None iff ``genesis``.
    """

    id: bytes
    seq: int
    prev: bytes | None
    kev: bytes | None
    kind: str
    key: bytes
    state: KeyState

    def __post_init__(self) -> None:
        if self.kind not in KEY_EVENT_KINDS:
            raise ValueError(f"{self.kind!r} is not a key event kind")
        if (self.kev is None) != (self.kind == GENESIS):
            raise ValueError("kev is None iff the kind is genesis")
        _check_link_fields(self.id, self.seq, self.prev, self.kev, self.key)
        if not isinstance(self.state, KeyState):
            raise ValueError("state must be a KeyState")


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A held ordinary event: its place in the chain and its signer, no body (§8.10)."""

    id: bytes
    seq: int
    prev: bytes | None
    kev: bytes
    kind: str
    key: bytes

    def __post_init__(self) -> None:
        if self.kind in KEY_EVENT_KINDS:
            raise ValueError("a key event is a KeyEvent, not a Link")
        if self.kev is None:
            raise ValueError("an ordinary event of a did:murmur author has a kev")
        _check_link_fields(self.id, self.seq, self.prev, self.kev, self.key)


# -- from decoded events -------------------------------------------------------------------


def _v2_fields(event: Event) -> tuple[bytes, bytes | None]:
    key, kev = event.key, event.kev
    if key is None:
        # 0008 #v1-key-kinds: a v1 event (did:key author) is in no key history, whatever
        # its kind: handing one to the key logic is the caller's mistake, not a code.
        raise ValueError("a v1 event has no key state (spec 0008 #v1-key-kinds)")
    return key, kev


def link_of(event: Event) -> Link:
    """The :class:`Link` of a decoded v2 ordinary event (its body is not needed)."""
    key, kev = _v2_fields(event)
    if kev is None:  # unreachable for a decoded event: only a genesis has kev nil
        raise ValueError("an ordinary v2 event has a kev")
    return Link(id=event.id, seq=event.seq, prev=event.prev, kev=kev, kind=event.kind, key=key)


def key_event_of(
    event: Event,
    key_events: Mapping[bytes, KeyEvent],
    *,
    not_key_events: Container[bytes] = frozenset(),
) -> KeyEvent:
    """The :class:`KeyEvent` of a decoded v2 ``genesis``, ``rotate`` or ``recover``.

    A genesis's state is its body. A ``rotate`` (and a ``recover`` without
    ``recovery``) inherits the recovery list of the state at its ``kev``
    (:func:`successor_state`, §8.4), so building one needs that key event held: when it
    is not, this raises what :func:`check_event` would for the event, i.e.
    :class:`UnknownKeyEventError` (retryable) or, when ``kev`` is one of
    ``not_key_events``, :class:`BadKevError`. A body-less key event is
    :class:`BodyRequiredError` (0008 #key-event-body; :func:`protocol.decode_event`
    refuses it already). Does not run :func:`check_event`.
    """
    key, kev = _v2_fields(event)
    body = event.body
    if event.kind not in KEY_EVENT_KINDS:
        raise ValueError(f"{event.kind!r} is not a key event kind")
    if body is None:
        raise BodyRequiredError(f"a {event.kind} is never body-less (0008 #key-event-body)")
    recovery = body.get("recovery")
    new_recovery = None if recovery is None else tuple(recovery)
    if event.kind == GENESIS:
        assert new_recovery is not None  # noqa: S101 — required by the genesis schema
        new = KeyState(signing=body["signing"], next=body["next"], recovery=new_recovery)
    else:
        assert kev is not None  # noqa: S101 — HeaderV2: kev is nil iff genesis
        base = key_events.get(kev)
        if base is None:
            if kev in not_key_events:
                raise BadKevError("kev names an event that is not a key event of this author")
            raise UnknownKeyEventError("kev names a key event not held yet")
        new = successor_state(
            base.state,
            kind=event.kind,
            signing=body["signing"],
            next=body["next"],
            recovery=new_recovery,
        )
    return KeyEvent(
        id=event.id, seq=event.seq, prev=event.prev, kev=kev, kind=event.kind, key=key, state=new
    )


def input_of(
    event: Event,
    key_events: Mapping[bytes, KeyEvent],
    *,
    not_key_events: Container[bytes] = frozenset(),
) -> KeyEvent | Link:
    """:func:`key_event_of` for a key event, :func:`link_of` for any other v2 event."""
    if event.kind in KEY_EVENT_KINDS:
        return key_event_of(event, key_events, not_key_events=not_key_events)
    return link_of(event)


# -- validity against held state (§8.5) -----------------------------------------------------


def check_event(
    event: KeyEvent | Link,
    key_events: Mapping[bytes, KeyEvent],
    *,
    not_key_events: Container[bytes] = frozenset(),
) -> int:
    """§8.5 steps 1–4 for one event against the author's held key events; the rank.

    ``key_events`` maps id → held valid key event of this author. ``not_key_events``
    holds ids the caller knows are *not* key events of this author (its ordinary
    events, other authors' events): a ``kev`` naming one is ``bad-kev`` rather than
    ``unknown-key-event``. Raises, in the order of §8.5:

    - genesis (step 1, the part that needs no encoding): ``seq`` 1 and signed by its
      own ``signing`` (``invalid-did``, as spec 0008 §8.5 step 1 and the decoder say:
      such a genesis does not establish its did), a valid state (``bad-field``); the
      did itself is the decoder's check;
    - :class:`UnknownKeyEventError` (retryable): ``kev`` not held;
    - :class:`BadKevError`: ``kev`` not a key event, or ``seq`` not above its ``seq``;
    - :class:`UnauthorizedKeyError`: §8.4 against the state at ``kev``;
    - :class:`BadFieldError`: :func:`check_succession` for a rotate/recover.

    Every outcome is a function of the event and the key event it names, never of what
    else is held, so no rejection depends on the order of arrival. Continuity with
    ``prev`` (step 5) is deliberately not here: see :func:`check_continuity`.
    """
    if isinstance(event, KeyEvent) and event.kind == GENESIS:
        if event.seq != 1:
            raise InvalidDidError("a genesis is the first event of its identity: seq 1")
        if event.key != event.state.signing:
            raise InvalidDidError("a genesis is signed by the signing key of its own body")
        check_state(event.state)
        return 0
    assert event.kev is not None  # noqa: S101 — constructor invariant of non-genesis events
    base = key_events.get(event.kev)
    if base is None:
        if event.kev in not_key_events:
            raise BadKevError("kev names an event that is not a key event of this author")
        raise UnknownKeyEventError("kev names a key event not held yet")
    if event.seq <= base.seq:
        raise BadKevError("seq must be above the seq of the key event at kev")
    rank = entitlement(base.state, event.kind, event.key)
    if isinstance(event, KeyEvent):
        check_succession(base.state, event.state, kind=event.kind, key=event.key)
    return rank


def expected_kev(prev: KeyEvent | Link) -> bytes:
    """The ``kev`` an event whose ``prev`` is ``prev`` must carry (§8.5 #kev-continuity)."""
    if isinstance(prev, KeyEvent):
        return prev.id
    return prev.kev


def check_continuity(event: KeyEvent | Link, prev: KeyEvent | Link) -> None:
    """Raise :class:`BadKevError` if ``event`` breaks kev continuity with ``prev``.

    §8.5 step 5: ``event.kev`` must be ``prev``'s id if ``prev`` is a key event, else
    ``prev.kev``. A break is a *status* (the event is revoked, :func:`resolve`), never a
    reason to refuse the event: a node stores it whichever of the two came first, so
    the set held — and everything computed from it — is the same in every order. Use
    this to refuse to *sign* such an event, or to explain a status.
    """
    if event.prev != prev.id:
        raise ValueError("prev is not the event's prev")
    if event.kev != expected_kev(prev):
        raise BadKevError("kev breaks continuity with the event at prev")


# -- fork choice and statuses (§8.6, §8.7) --------------------------------------------------


class Status(enum.StrEnum):
    """The status of an event (§8.7); the value is what nodes serve as ``status``."""

    CANONICAL = "canonical"
    REVOKED = "revoked"
    DISPUTED = "disputed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """The fork choice and the status of every held event of one author.

    - ``path``: the canonical key events K₀ … Kₙ, genesis first (§8.6); empty when
      the geneses tie (or none is valid).
    - ``contenders``: when the path ends at a disputed branch point, the children that
      tie for the highest score, sorted; empty otherwise. The point is ``path[-1]``, or
      the virtual root of the geneses when ``path`` is empty.
    - ``status``: every id given to :func:`resolve` → :class:`Status`.
    - ``revoked_by``: for revoked events that a key event decided, its id (§8.7): the
      winner at the branch point where the event's key branch left the path, or, for
      an event of epoch i not endorsed, Kᵢ₊₁. Revoked events a rule decided (below)
      have no entry.
    - ``errors``: id → the code of the §8.5 rule an event breaks given the held set:
      ``unknown-key-event`` (status pending), ``bad-kev`` (a kev that is no key event,
      a seq not above it, or a continuity break), ``unauthorized-key``, ``bad-field``
      (all revoked). Events under an invalid key event are revoked without an entry.
    """

    path: tuple[bytes, ...]
    contenders: tuple[bytes, ...]
    status: Mapping[bytes, Status]
    revoked_by: Mapping[bytes, bytes]
    errors: Mapping[bytes, str]
    head_state: KeyState | None = field(default=None)

    @property
    def disputed(self) -> bool:
        """True when the canonical path stops at a tie (§8.6)."""
        return bool(self.contenders)


@dataclass(slots=True)
class _Walk:
    """The ``prev`` ancestry of one key event back into its epoch (§8.7)."""

    ancestors: set[bytes]
    #: True when the walk reached the epoch's key event, or left the epoch by seq.
    complete: bool
    #: When incomplete: the seq of the last event walked; held events of the epoch
    #: below it may be ancestors of the missing one (pending).
    stop_seq: int


def _walk(start: KeyEvent, epoch: KeyEvent, chain: Mapping[bytes, KeyEvent | Link]) -> _Walk:
    """Follow ``prev`` from ``start`` while it stays above ``epoch``'s seq.

    Costs one step per event of the epoch that ``start`` endorses, so the walks of a
    whole path cost at most the length of the canonical chain.
    """
    ancestors: set[bytes] = set()
    current: KeyEvent | Link = start
    while True:
        prev = current.prev
        if prev is None or prev == epoch.id:
            return _Walk(ancestors, True, 0)
        held = chain.get(prev)
        if held is None:
            return _Walk(ancestors, False, current.seq)
        if held.seq >= current.seq or held.seq <= epoch.seq:
            # Out of the epoch (every event of it has seq > the key event's, §8.5 step
            # 3), or numbering only the author's keys could have made that inconsistent.
            return _Walk(ancestors, True, 0)
        ancestors.add(prev)
        current = held


def _index(
    key_events: Iterable[KeyEvent], links: Iterable[Link]
) -> tuple[dict[bytes, KeyEvent], dict[bytes, KeyEvent | Link]]:
    keys: dict[bytes, KeyEvent] = {}
    chain: dict[bytes, KeyEvent | Link] = {}
    for ke in key_events:
        seen = chain.get(ke.id)
        if seen is not None and seen != ke:
            raise ValueError("two different events with one id")
        keys[ke.id] = ke
        chain[ke.id] = ke
    for link in links:
        seen = chain.get(link.id)
        if seen is not None and seen != link:
            raise ValueError("two different events with one id")
        chain[link.id] = link
    return keys, chain


def resolve(key_events: Iterable[KeyEvent], links: Iterable[Link]) -> Resolution:
    """Fork choice (§8.6) and status (§8.7) of one author's held events.

    A pure function of the *set* of events: duplicates count once, the order of the
    iterables never matters (ties are disputes, never broken by id, ``ts`` or arrival).
    ``key_events`` and ``links`` are one author's; ids must be unique across both
    (``ValueError`` for two different events with one id). Events need not have passed
    :func:`check_event`: one that breaks a rule against the held set is reported in
    ``errors`` and kept out of the fork choice, so a set a node accumulated in any
    order gives the same answer.

    Complexity: O(E + K·d) for E events and K key events of tree depth d, with one
    dict lookup and one comparison per ordinary event; no hashing except one
    commitment per ``rotate``.
    """
    keys, chain = _index(key_events, links)
    status: dict[bytes, Status] = {}
    revoked_by: dict[bytes, bytes] = {}
    errors: dict[bytes, str] = {}

    def broken(event: KeyEvent | Link) -> bool:
        # §8.5 step 5, against whatever is held at prev.
        if event.prev is None:
            return False
        held = chain.get(event.prev)
        return held is not None and event.kev != expected_kev(held)

    # 1. The valid key-event tree, from the geneses down (§8.6). A key event is in the
    #    tree iff its kev is in the tree and it passes §8.5 against it.
    children: dict[bytes, list[bytes]] = {}
    for ke in keys.values():
        if ke.kev is not None:
            children.setdefault(ke.kev, []).append(ke.id)
    rank: dict[bytes, int] = {}
    roots: list[bytes] = []  # the valid geneses: children of the virtual root
    invalid: set[bytes] = set()  # key events in error, and every key event under them
    stack: list[bytes] = []
    for ke in keys.values():
        if ke.kind != GENESIS:
            continue
        stack.append(ke.id)
        try:
            rank[ke.id] = check_event(ke, keys)
        except (BadFieldError, InvalidDidError, UnauthorizedKeyError) as exc:
            errors[ke.id] = exc.code
            invalid.add(ke.id)
            continue
        roots.append(ke.id)
    order: list[bytes] = []  # parents before children
    while stack:
        parent = stack.pop()
        order.append(parent)
        for child_id in children.get(parent, ()):
            stack.append(child_id)
            if parent in invalid:
                invalid.add(child_id)
                continue
            try:
                rank[child_id] = check_event(keys[child_id], keys)
                if broken(keys[child_id]):
                    raise BadKevError("kev continuity")
            except (BadKevError, BadFieldError, UnauthorizedKeyError) as exc:
                errors[child_id] = exc.code
                invalid.add(child_id)
    valid = {k for k in rank if k not in invalid}

    # 2. Subtree scores: the highest rank in each subtree, itself included.
    score: dict[bytes, int] = {}
    for node in reversed(order):
        if node not in valid:
            continue
        highest = rank[node]
        for child_id in children.get(node, ()):
            if child_id in valid:
                highest = max(highest, score[child_id])
        score[node] = highest

    # 3. The canonical path: the single best-scoring child at each step; a tie stops it.
    def winners(candidates: list[bytes]) -> tuple[list[bytes], bool]:
        if not candidates:
            return [], False
        top = max(score[c] for c in candidates)
        best = sorted(c for c in candidates if score[c] == top)
        return best, len(best) > 1

    path: list[bytes] = []
    contenders: tuple[bytes, ...] = ()
    level = sorted(roots)
    while True:
        best, tie = winners(level)
        if tie:
            contenders = tuple(best)
            break
        if not best:
            break
        path.append(best[0])
        level = [c for c in children.get(best[0], ()) if c in valid]

    # 4. The fate of every valid key event off the path: the subtree of a loser at a
    #    decided point is revoked by the winner there; under the disputed point,
    #    disputed.
    fate: dict[bytes, tuple[Status, bytes | None]] = {k: (Status.CANONICAL, None) for k in path}
    parents_on_path: list[tuple[bytes | None, bytes | None]] = [(None, path[0] if path else None)]
    parents_on_path += [(k, path[i + 1] if i + 1 < len(path) else None) for i, k in enumerate(path)]
    for point, winner in parents_on_path:
        siblings = roots if point is None else children.get(point, ())
        for top in siblings:
            if top not in valid or top == winner:
                continue
            verdict: tuple[Status, bytes | None] = (
                (Status.REVOKED, winner) if winner is not None else (Status.DISPUTED, None)
            )
            subtree = [top]
            while subtree:
                sub = subtree.pop()
                fate[sub] = verdict
                subtree.extend(c for c in children.get(sub, ()) if c in valid)

    # 5. Key events outside the tree. Invalid ones and their subtrees are revoked
    #    (no key event decided it: ``errors`` says why). The others were never reached
    #    from a genesis: some kev up their ancestry is not held (pending: it may still
    #    come, ``unknown-key-event``), or is held but not as a key event (revoked,
    #    ``bad-kev``); a loop of kevs, which only fabricated ids can make, is pending.
    outside: dict[bytes, Status] = {}

    def outside_status(ke: KeyEvent) -> Status:
        trail: list[bytes] = []
        current: KeyEvent | None = ke
        verdict = Status.PENDING
        while current is not None and current.id not in outside:
            if current.id in trail:
                break
            trail.append(current.id)
            assert current.kev is not None  # noqa: S101 — geneses are in the tree or invalid
            above = keys.get(current.kev)
            if above is None:
                if current.kev in chain:
                    errors[current.id] = BadKevError.code
                    verdict = Status.REVOKED
                else:
                    errors[current.id] = UnknownKeyEventError.code
                break
            current = above
        else:
            if current is not None:
                verdict = outside[current.id]
        for k in trail:
            outside[k] = verdict
        return verdict

    for ke in keys.values():
        if ke.id in invalid:
            status[ke.id] = Status.REVOKED
        elif ke.id not in fate:
            status[ke.id] = outside_status(ke)
    for k, (st, by) in fate.items():
        status[k] = st
        if by is not None:
            revoked_by[k] = by

    # 6. Epochs: which events of Kᵢ's epoch Kᵢ₊₁ endorses (§8.7), or, at a disputed
    #    end, which every contender endorses.
    walks: dict[bytes, list[tuple[bytes, _Walk]]] = {}
    for i, k in enumerate(path[:-1]):
        nxt = path[i + 1]
        walks[k] = [(nxt, _walk(keys[nxt], keys[k], chain))]
    if path and contenders:
        end = keys[path[-1]]
        walks[path[-1]] = [(c, _walk(keys[c], end, chain)) for c in contenders]

    # 7. Every ordinary event: its own §8.5 checks, then its kev's fate and epoch.
    for link in chain.values():
        if isinstance(link, KeyEvent):
            continue
        base = keys.get(link.kev)
        if base is None:
            if link.kev in chain:
                errors[link.id] = BadKevError.code
                status[link.id] = Status.REVOKED
            else:
                errors[link.id] = UnknownKeyEventError.code
                status[link.id] = Status.PENDING
            continue
        if link.seq <= base.seq or broken(link):
            errors[link.id] = BadKevError.code
            status[link.id] = Status.REVOKED
            continue
        if link.key != base.state.signing:
            errors[link.id] = UnauthorizedKeyError.code
            status[link.id] = Status.REVOKED
            continue
        if base.id not in fate or base.id in invalid:
            status[link.id] = status[base.id]
            continue
        st, by = fate[base.id]
        if st is not Status.CANONICAL:
            status[link.id] = st
            if by is not None:
                revoked_by[link.id] = by
            continue
        epoch_walks = walks.get(base.id)
        if epoch_walks is None:  # the head's epoch: canonical "as usual" (0002 §2.9)
            status[link.id] = Status.CANONICAL
            continue
        included = excluded = 0
        for _, walk in epoch_walks:
            if link.id in walk.ancestors:
                included += 1
            elif walk.complete or link.seq >= walk.stop_seq:
                excluded += 1
        if included == len(epoch_walks):
            status[link.id] = Status.CANONICAL
        elif not excluded:
            status[link.id] = Status.PENDING  # a gap hides whether it is endorsed
        elif contenders and base.id == path[-1]:
            status[link.id] = Status.DISPUTED  # not endorsed by every contender
        else:
            status[link.id] = Status.REVOKED  # Kᵢ₊₁'s prev names another last event
            revoked_by[link.id] = epoch_walks[0][0]

    return Resolution(
        path=tuple(path),
        contenders=contenders,
        status=MappingProxyType(status),
        revoked_by=MappingProxyType(revoked_by),
        errors=MappingProxyType(errors),
        head_state=keys[path[-1]].state if path else None,
    )
