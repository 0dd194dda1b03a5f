"""Key state, validity and fork choice of rotatable identities (spec 0008 §8.4–§8.7).

The scenarios are those of the identity review's section 3 ("most likely
implementation mistakes"): they name the spec anchors they check. Keys are opaque
32-byte values here (keystate never verifies a signature), ids are hashes of labels.
The property tests check what makes the design work at all: the answer is a pure
function of the set of events held, and a node that ingests them in any order ends
up holding the same set.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import (
    BadFieldError,
    BadKevError,
    InvalidDidError,
    ProtocolError,
    UnauthorizedKeyError,
    UnknownKeyEventError,
    error_for_code,
)
from protocol.keystate import (
    GENESIS,
    RECOVER,
    ROTATE,
    KeyEvent,
    KeyState,
    Link,
    Resolution,
    Status,
    check_continuity,
    check_event,
    check_state,
    check_succession,
    entitlement,
    next_commitment,
    resolve,
    successor_state,
)

C, R, D, P = Status.CANONICAL, Status.REVOKED, Status.DISPUTED, Status.PENDING


def key(label: str) -> bytes:
    return hashlib.sha256(b"key:" + label.encode()).digest()


def eid(label: str) -> bytes:
    return hashlib.sha256(b"id:" + label.encode()).digest()


def state(s: str, n: str, *recovery: str) -> KeyState:
    return KeyState(
        signing=key(s), next=next_commitment(key(n)), recovery=tuple(key(r) for r in recovery)
    )


class History:
    """One author's events by name; ``seq`` follows ``prev``, ``id`` hashes the name."""

    def __init__(self) -> None:
        self.events: dict[str, KeyEvent | Link] = {}

    def _place(self, prev: str | None) -> tuple[int, bytes | None]:
        if prev is None:
            return 1, None
        return self.events[prev].seq + 1, eid(prev)

    def genesis(self, name: str = "G", st8: KeyState | None = None, signer: str = "S0") -> str:
        st8 = st8 or state("S0", "N0", "R0", "R1", "R2")
        self.events[name] = KeyEvent(
            id=eid(name), seq=1, prev=None, kev=None, kind=GENESIS, key=key(signer), state=st8
        )
        return name

    def post(self, name: str, prev: str, kev: str, signer: str, kind: str = "post") -> str:
        seq, prev_id = self._place(prev)
        self.events[name] = Link(
            id=eid(name), seq=seq, prev=prev_id, kev=eid(kev), kind=kind, key=key(signer)
        )
        return name

    def key_event(
        self,
        name: str,
        kind: str,
        prev: str,
        kev: str,
        signer: str,
        s: str,
        n: str,
        recovery: tuple[str, ...] | None = None,
    ) -> str:
        seq, prev_id = self._place(prev)
        base = self.events[kev]
        assert isinstance(base, KeyEvent)
        new = successor_state(
            base.state,
            kind=kind,
            signing=key(s),
            next=next_commitment(key(n)),
            recovery=None if recovery is None else tuple(key(r) for r in recovery),
        )
        self.events[name] = KeyEvent(
            id=eid(name),
            seq=seq,
            prev=prev_id,
            kev=eid(kev),
            kind=kind,
            key=key(signer),
            state=new,
        )
        return name

    def rotate(self, name: str, prev: str, kev: str, signer: str, s: str, n: str) -> str:
        return self.key_event(name, ROTATE, prev, kev, signer, s, n)

    def recover(
        self,
        name: str,
        prev: str,
        kev: str,
        signer: str,
        s: str,
        n: str,
        recovery: tuple[str, ...] | None = None,
    ) -> str:
        return self.key_event(name, RECOVER, prev, kev, signer, s, n, recovery)

    def ev(self, name: str) -> KeyEvent | Link:
        return self.events[name]

    def keys(self, names: Iterable[str] | None = None) -> dict[bytes, KeyEvent]:
        chosen = self.events if names is None else {n: self.events[n] for n in names}
        return {e.id: e for e in chosen.values() if isinstance(e, KeyEvent)}

    def resolve(self, names: Iterable[str] | None = None) -> Resolution:
        chosen = list(self.events) if names is None else list(names)
        evs = [self.events[n] for n in chosen]
        return resolve(
            [e for e in evs if isinstance(e, KeyEvent)], [e for e in evs if isinstance(e, Link)]
        )

    def status(self, res: Resolution) -> dict[str, Status]:
        return {n: res.status[eid(n)] for n in self.events if eid(n) in res.status}

    def name(self, id_: bytes) -> str:
        return next(n for n in self.events if eid(n) == id_)


def names(h: History, ids: Sequence[bytes]) -> list[str]:
    return [h.name(i) for i in ids]


def owner_chain() -> History:
    """G; posts a1, a2 under K0 = G; rotation K1 by N0 after a2; post a3 under K1."""
    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")
    h.post("a2", "a1", "G", "S0")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    return h


# -- errors ---------------------------------------------------------------------------------


def test_error_codes_of_spec_0008() -> None:
    """spec 0008 #errors: stable codes, retryable only for unknown-key-event."""
    assert error_for_code("unauthorized-key") is UnauthorizedKeyError
    assert error_for_code("unknown-key-event") is UnknownKeyEventError
    assert error_for_code("bad-kev") is BadKevError
    assert UnknownKeyEventError.retryable
    assert not UnauthorizedKeyError.retryable and not BadKevError.retryable
    assert UnauthorizedKeyError.status == 403


# -- §8.4 entitlement and new states ----------------------------------------------------------


def test_entitlement_ranks() -> None:
    """spec 0008 #key-events: rotate 1, recover 4/3/2 by position, ordinary 0."""
    s0 = state("S0", "N0", "R0", "R1", "R2")
    assert entitlement(s0, ROTATE, key("N0")) == 1
    assert [entitlement(s0, RECOVER, key(r)) for r in ("R0", "R1", "R2")] == [4, 3, 2]
    assert entitlement(s0, "post", key("S0")) == 0
    assert entitlement(s0, GENESIS, key("S0")) == 0


@pytest.mark.parametrize(
    ("kind", "signer"),
    [
        (ROTATE, "S0"),  # a rotate signed by S: the thief with S only cannot rotate
        (ROTATE, "X"),  # a rotate revealing a key that does not hash to next
        (RECOVER, "S0"),
        (RECOVER, "N0"),
        ("post", "N0"),  # ordinary events are signed by S, never N or R
        ("post", "R0"),
        (GENESIS, "R0"),
    ],
)
def test_unauthorized_key(kind: str, signer: str) -> None:
    """spec 0008 #key-events: anything else is unauthorized-key."""
    with pytest.raises(UnauthorizedKeyError):
        entitlement(state("S0", "N0", "R0", "R1", "R2"), kind, key(signer))


def test_recover_by_a_key_dropped_at_k1_is_unauthorized() -> None:
    """spec 0008 #key-events: a recover is checked against the list *at its kev*."""
    h = owner_chain()
    # K2: R0 recovers after K1 and drops R1 (say it leaked).
    h.recover("K2", "a3", "K1", "R0", "S2", "N2", recovery=("R0", "R3"))
    h.post("a4", "K2", "K2", "S2")
    h.recover("T", "a4", "K2", "R1", "ST", "NT")
    with pytest.raises(UnauthorizedKeyError):
        check_event(h.ev("T"), h.keys())
    # ... while R1 was entitled at K1, where it was still listed.
    h.recover("T1", "a3", "K1", "R1", "ST", "NT")
    assert check_event(h.ev("T1"), h.keys()) == 3
    res = h.resolve()
    assert res.errors[eid("T")] == "unauthorized-key" and res.status[eid("T")] is R
    assert names(h, res.path) == ["G", "K1", "K2"]  # the invalid one weighs nothing


def test_rotate_and_recover_signed_by_the_wrong_key_are_rejected_and_weigh_nothing() -> None:
    """spec 0008 #validity step 4: a rotate signed by S0 or revealing the wrong key."""
    h = owner_chain()
    h.rotate("TS", "a2", "G", "S0", "ST", "NT")
    h.rotate("TW", "a2", "G", "X", "ST", "NT")
    for bad in ("TS", "TW"):
        with pytest.raises(UnauthorizedKeyError):
            check_event(h.ev(bad), h.keys())
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1"] and not res.disputed
    assert res.errors[eid("TS")] == res.errors[eid("TW")] == "unauthorized-key"


@pytest.mark.parametrize(
    ("kind", "signer", "new", "why"),
    [
        # the revealed next key never becomes S: it would hand every thief of S a
        # retired N (spec 0008 #key-events)
        (ROTATE, "N0", state("N0", "N1", "R0", "R1", "R2"), "signing"),
        (ROTATE, "N0", state("S0", "N1", "R0", "R1", "R2"), "signing"),
        (ROTATE, "N0", state("S1", "N0", "R0", "R1", "R2"), "next"),
        (ROTATE, "N0", state("S1", "S0", "R0", "R1", "R2"), "next"),
        (ROTATE, "N0", state("S1", "N1", "R0", "R1"), "recovery"),
        (RECOVER, "R0", state("R1", "N1", "R0"), "signing"),
        (RECOVER, "R0", state("N0", "N1", "R0"), "signing"),
        (RECOVER, "R0", state("S1", "N1", "S0"), "recovery"),
        (RECOVER, "R0", state("S1", "N1", "N0"), "recovery"),
        # R1 may rewrite positions 1 and below, never R0's (#recover-prefix)
        (RECOVER, "R1", state("S1", "N1", "T0", "R1"), "higher priority"),
        (RECOVER, "R2", state("S1", "N1", "R0"), "higher priority"),
        # a state's own keys are distinct, N included
        (RECOVER, "R0", state("S1", "S1", "R0"), "next key"),
        (RECOVER, "R0", state("S1", "N1", "R0", "R0"), "distinct"),
        (RECOVER, "R0", state("S1", "N1", "S1"), "distinct"),
    ],
)
def test_new_state_rules_are_bad_field(kind: str, signer: str, new: KeyState, why: str) -> None:
    """spec 0008 #new-keys, #recover-prefix: every new key differs from the replaced ones."""
    old = state("S0", "N0", "R0", "R1", "R2")
    with pytest.raises(BadFieldError, match=why):
        check_succession(old, new, kind=kind, key=key(signer))


def test_new_state_rules_accept_the_ordinary_cases() -> None:
    """spec 0008 #key-events: fresh keys; a recover keeps, reorders or drops its rank."""
    old = state("S0", "N0", "R0", "R1", "R2")
    check_succession(old, state("S1", "N1", "R0", "R1", "R2"), kind=ROTATE, key=key("N0"))
    check_succession(old, state("S1", "N1", "R0", "R3"), kind=RECOVER, key=key("R0"))
    check_succession(old, state("S1", "N1", "R3"), kind=RECOVER, key=key("R0"))
    check_succession(old, state("S1", "N1", "R0", "R3"), kind=RECOVER, key=key("R1"))
    check_succession(old, state("S1", "N1", "R0", "R1"), kind=RECOVER, key=key("R2"))
    with pytest.raises(BadFieldError):
        successor_state(old, kind=ROTATE, signing=key("S1"), next=key("x"), recovery=(key("R"),))
    with pytest.raises(BadFieldError):
        check_state(state("S0", "R0", "R0"))


def test_genesis_checks() -> None:
    """spec 0008 #validity step 1: signed by its own signing key, a valid state."""
    h = History()
    h.genesis("G", signer="S0")
    assert check_event(h.ev("G"), {}) == 0
    h.genesis("Gr", signer="R0")
    with pytest.raises(InvalidDidError):  # it does not establish its did (step 1)
        check_event(h.ev("Gr"), {})
    h.genesis("Gd", st8=state("S0", "N0", "S0"))
    with pytest.raises(BadFieldError):
        check_event(h.ev("Gd"), {})
    res = h.resolve()
    assert names(h, res.path) == ["G"]
    assert res.errors == {eid("Gr"): "invalid-did", eid("Gd"): "bad-field"}


# -- §8.5 validity against held key events ----------------------------------------------------


def test_s0_posts_stay_valid_after_the_rotation_to_s1() -> None:
    """spec 0008 #validity and #status: each event is judged at its own kev."""
    h = owner_chain()
    for n in ("a1", "a2", "K1", "a3"):
        check_event(h.ev(n), h.keys())
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1"]
    assert h.status(res) == {"G": C, "a1": C, "a2": C, "K1": C, "a3": C}
    assert res.head_state == h.keys()[eid("K1")].state


def test_unknown_key_event_is_retryable_then_valid() -> None:
    """spec 0008 #validity step 2: a kev not held is unknown-key-event, retryable."""
    h = owner_chain()
    held = h.keys(["G"])
    with pytest.raises(UnknownKeyEventError) as info:
        check_event(h.ev("a3"), held)
    assert info.value.retryable
    assert check_event(h.ev("a3"), h.keys()) == 0  # the same bytes, once K1 is held
    res = h.resolve(["G", "a1", "a2", "a3"])
    assert res.status[eid("a3")] is P and res.errors[eid("a3")] == "unknown-key-event"


def test_bad_kev_not_a_key_event_or_not_below() -> None:
    """spec 0008 #validity step 3: kev must be a key event of the author, below seq."""
    h = owner_chain()
    h.post("x", "a2", "a1", "S0")  # kev names an ordinary event
    with pytest.raises(BadKevError):
        check_event(h.ev("x"), h.keys(), not_key_events={eid("a1"), eid("a2")})
    h.rotate("K2", "a3", "K1", "N1", "S2", "N2")
    h.events["y"] = Link(
        id=eid("y"), seq=5, prev=eid("a3"), kev=eid("K2"), kind="post", key=key("S2")
    )  # seq 5 is K2's own seq
    with pytest.raises(BadKevError):
        check_event(h.ev("y"), h.keys())
    res = h.resolve()
    assert res.errors[eid("x")] == res.errors[eid("y")] == "bad-kev"
    assert res.status[eid("x")] is res.status[eid("y")] is R


@pytest.mark.parametrize("prev_first", [True, False])
def test_thief_event_under_k0_after_the_owners_k1_post(prev_first: bool) -> None:
    """spec 0008 #kev-continuity: kev=K0 with prev = an owner post after K1 is bad-kev.

    Either order: entitled at its kev (S0 signed under K0, the thief stole S0), so
    check_event accepts it; continuity with the owner's post fails (bad-kev), and
    the event is revoked whether the post came before or after it.
    """
    h = owner_chain()
    h.post("T", "a3", "G", "S0")
    arrival = ["G", "a1", "a2", "K1"] + (["a3", "T"] if prev_first else ["T", "a3"])
    held: list[str] = []
    for n in arrival:
        check_event(h.ev(n), h.keys(held))
        held.append(n)
    with pytest.raises(BadKevError):
        check_continuity(h.ev("T"), h.ev("a3"))
    res = h.resolve(held)
    assert res.status[eid("T")] is R and res.errors[eid("T")] == "bad-kev"
    assert {n: s for n, s in h.status(res).items() if n != "T"} == dict.fromkeys(
        ["G", "a1", "a2", "K1", "a3"], C
    )
    # Without the owner's post (a gap), it is still revoked: K1 names a2 as the last
    # event of K0's epoch, and T, at seq 5, is not it.
    res = h.resolve(["G", "a1", "a2", "K1", "T"])
    assert res.status[eid("T")] is R and res.revoked_by[eid("T")] == eid("K1")


# -- §8.6 fork choice and §8.7 statuses: the theft scenarios ------------------------------------


def thief_with_s() -> History:
    """The thief copies S0 after a2 and forges a post, a reply, a follow and a delete."""
    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")
    h.post("a2", "a1", "G", "S0")
    h.post("f1", "a2", "G", "S0")
    h.post("f2", "f1", "G", "S0", kind="reply")
    h.post("f3", "f2", "G", "S0", kind="follow")
    h.post("f4", "f3", "G", "S0", kind="delete")
    return h


def test_thief_with_s_only_is_revoked_by_the_owners_rotation() -> None:
    """spec 0008 #status: the rotation's prev names the last good event of the epoch."""
    h = thief_with_s()
    before = h.resolve()
    assert all(s is C for s in h.status(before).values())  # until the owner notices
    h.rotate("TR", "f4", "G", "S0", "ST", "NT")  # the thief cannot rotate
    with pytest.raises(UnauthorizedKeyError):
        check_event(h.ev("TR"), h.keys())
    del h.events["TR"]
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")  # prev: the owner's own outbox
    h.post("a3", "K1", "K1", "S1")
    h.post("f5", "f4", "G", "S0")  # the thief keeps going with the old key
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1"]
    st = h.status(res)
    assert [st[n] for n in ("G", "a1", "a2", "K1", "a3")] == [C] * 5
    for n in ("f1", "f2", "f3", "f4", "f5"):
        assert st[n] is R and res.revoked_by[eid(n)] == eid("K1"), n


def test_thief_with_s_and_n_ties_then_the_owners_recovery_wins() -> None:
    """spec 0008 #fork-choice: equal rotations are a dispute; a recover settles it."""
    h = thief_with_s()
    h.rotate("T1", "f4", "G", "N0", "ST", "NT")
    h.post("t1", "T1", "T1", "ST")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    res = h.resolve()
    assert names(h, res.path) == ["G"] and res.disputed
    assert set(names(h, res.contenders)) == {"K1", "T1"}
    st = h.status(res)
    assert st["a1"] is st["a2"] is C  # endorsed by both contenders
    assert all(st[n] is D for n in ("f1", "f2", "f3", "f4", "T1", "t1", "K1", "a3"))
    # The owner recovers at the head of her branch with R0 (rank 4).
    h.recover("K2", "a3", "K1", "R0", "S2", "N2")
    h.post("a4", "K2", "K2", "S2")
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1", "K2"] and not res.disputed
    st = h.status(res)
    assert all(st[n] is C for n in ("G", "a1", "a2", "K1", "a3", "K2", "a4"))
    for n in ("f1", "f2", "f3", "f4", "T1", "t1"):
        assert st[n] is R and res.revoked_by[eid(n)] == eid("K1"), n


def test_retired_next_key_forking_before_k1_is_a_dispute_until_the_owner_recovers() -> None:
    """spec 0008 #fork-choice: the dead attack scores at most a tie (whole subtrees)."""
    h = owner_chain()
    h.rotate("K2", "a3", "K1", "N1", "S2", "N2")
    h.post("a4", "K2", "K2", "S2")
    # N0 leaks long after it was used; the thief forks before K1.
    h.rotate("T", "a2", "G", "N0", "ST", "NT")
    h.rotate("T2", "T", "T", "NT", "ST2", "NT2")  # rotating on his own branch adds nothing
    h.post("t", "T2", "T2", "ST2")
    res = h.resolve()
    assert names(h, res.path) == ["G"] and set(names(h, res.contenders)) == {"K1", "T"}
    assert h.status(res)["a4"] is D and h.status(res)["a2"] is C
    h.recover("K3", "a4", "K2", "R0", "S3", "N3")
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1", "K2", "K3"]
    st = h.status(res)
    assert all(st[n] is C for n in ("a1", "a2", "K1", "a3", "K2", "a4", "K3"))
    assert all(st[n] is R and res.revoked_by[eid(n)] == eid("K1") for n in ("T", "T2", "t"))


def test_lower_priority_recovery_loses_to_a_higher_one() -> None:
    """spec 0008 #fork-choice, #recover-prefix: a thief with R1 beats rotations, not R0."""
    h = owner_chain()
    # The thief holds R1 and recovers at K1, keeping R0 first as he must, and adds his
    # own key at position 1; then recovers again with it (rank 3, never 4).
    h.recover("T", "a3", "K1", "R1", "ST", "NT", recovery=("R0", "TR"))
    h.recover("T2", "T", "T", "TR", "ST2", "NT2")
    h.post("t", "T2", "T2", "ST2")
    h.rotate("K2", "a3", "K1", "N1", "S2", "N2")  # the owner only rotates: not enough
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1", "T", "T2"]
    assert h.status(res)["K2"] is R and res.revoked_by[eid("K2")] == eid("T")
    h.recover("K3", "K2", "K2", "R0", "S3", "N3", recovery=("R0", "R3"))
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1", "K2", "K3"]
    st = h.status(res)
    assert all(st[n] is R and res.revoked_by[eid(n)] == eid("K2") for n in ("T", "T2", "t"))


def test_a_recover_cannot_promote_its_own_keys_above_its_rank() -> None:
    """spec 0008 #recover-prefix: without it, R1's subtree would score 4 and tie R0."""
    h = owner_chain()
    # Built by hand: successor_state would accept the body, check_succession refuses it.
    k1 = h.ev("K1")
    assert isinstance(k1, KeyEvent)
    h.events["T"] = KeyEvent(
        id=eid("T"),
        seq=5,
        prev=eid("a3"),
        kev=eid("K1"),
        kind=RECOVER,
        key=key("R1"),
        state=state("ST", "NT", "TR0"),
    )
    with pytest.raises(BadFieldError):
        check_event(h.ev("T"), h.keys())
    h.events["T2"] = KeyEvent(
        id=eid("T2"),
        seq=6,
        prev=eid("T"),
        kev=eid("T"),
        kind=RECOVER,
        key=key("TR0"),
        state=state("ST2", "NT2", "TR0"),
    )
    h.recover("K2", "a3", "K1", "R0", "S2", "N2")
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1", "K2"] and not res.disputed
    assert res.errors[eid("T")] == "bad-field" and h.status(res)["T2"] is R


def test_duplicate_geneses_are_siblings_under_a_virtual_root() -> None:
    """spec 0008 #fork-choice: two geneses of one did tie until a key event decides."""
    h = History()
    h.genesis("G")
    h.genesis("G'")  # same body, another header (a re-signed genesis, or a thief of S1)
    h.post("a1", "G", "G", "S0")
    h.post("x1", "G'", "G'", "S0")
    res = h.resolve()
    assert res.path == () and set(names(h, res.contenders)) == {"G", "G'"}
    assert set(h.status(res).values()) == {D} and res.head_state is None
    h.rotate("K1", "a1", "G", "N0", "S1", "N1")
    res = h.resolve()
    assert names(h, res.path) == ["G", "K1"]
    assert h.status(res)["x1"] is R and res.revoked_by[eid("x1")] == eid("G")


def test_gaps_make_pending_and_filling_them_decides() -> None:
    """spec 0008 #status: pending when gaps prevent deciding ancestry."""
    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")  # seq 2
    h.post("a2", "a1", "G", "S0")  # seq 3
    h.post("a3", "a2", "G", "S0")  # seq 4
    h.rotate("K1", "a3", "G", "N0", "S1", "N1")  # seq 5
    h.post("y", "a2", "G", "S0")  # seq 4, a fork beside a3
    h.post("z", "a1", "G", "S0")  # seq 3, a fork beside a2
    res = h.resolve(["G", "a1", "a3", "K1", "y", "z"])  # a2 missing
    st = h.status(res)
    assert st["a3"] is C and st["y"] is R  # seq 4 is known: a3 is the endorsed one
    assert st["a1"] is P and st["z"] is P  # below the gap: cannot tell yet
    res = h.resolve()
    st = h.status(res)
    assert st["a1"] is st["a2"] is C and st["z"] is R


def test_disputed_end_epoch_is_canonical_only_where_every_contender_agrees() -> None:
    """spec 0008 #status: at a disputed point, the common prefix stays canonical."""
    h = thief_with_s()
    h.rotate("T1", "f2", "G", "N0", "ST", "NT")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("late", "f4", "G", "S0")  # endorsed by neither
    res = h.resolve()
    st = h.status(res)
    assert st["a2"] is C and st["f1"] is D and st["f4"] is D and st["late"] is D


# -- order independence ---------------------------------------------------------------------


def ingest(events: Sequence[KeyEvent | Link]) -> tuple[frozenset[bytes], Resolution]:
    """A node, in miniature: §8.5 rejections, retry on unknown-key-event, then resolve.

    Continuity is not a rejection (spec 0008 #kev-continuity), so the held set depends
    only on the set offered, never on the order.
    """
    held_keys: dict[bytes, KeyEvent] = {}
    held_links: dict[bytes, Link] = {}
    waiting: list[KeyEvent | Link] = []
    for ev in events:
        waiting.append(ev)
        progress = True
        while progress:
            progress = False
            for w in list(waiting):
                try:
                    check_event(w, held_keys, not_key_events=held_links)
                except UnknownKeyEventError:
                    continue
                except ProtocolError:
                    waiting.remove(w)
                    continue
                waiting.remove(w)
                if isinstance(w, KeyEvent):
                    held_keys[w.id] = w
                    progress = True
                else:
                    held_links[w.id] = w
    return frozenset(held_keys) | frozenset(held_links), resolve(
        held_keys.values(), held_links.values()
    )


def theft_set() -> History:
    """The review's theft set: forged post, reply, follow, profile, delete; rotation."""
    h = thief_with_s()
    h.post("f5", "f4", "G", "S0", kind="profile")
    h.rotate("T1", "f5", "G", "N0", "ST", "NT")  # the thief also has N0 ...
    h.post("t1", "T1", "T1", "ST", kind="unfollow")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    h.recover("K2", "a3", "K1", "R0", "S2", "N2", recovery=("R0", "R3"))  # ... so she recovers
    h.post("a4", "K2", "K2", "S2")
    h.post("x", "a4", "K1", "S1")  # continuity breaker, stored whatever the order
    return h


def test_theft_set_in_forward_reverse_and_200_random_orders() -> None:
    """spec 0008 #fork-choice, #status: the same answer whatever the order of arrival."""
    h = theft_set()
    events = list(h.events.values())
    held, expected = ingest(events)
    assert held == {e.id for e in events}
    assert names(h, expected.path) == ["G", "K1", "K2"]
    st = h.status(expected)
    assert all(st[n] is R for n in ("f1", "f2", "f3", "f4", "f5", "T1", "t1", "x"))
    assert all(st[n] is C for n in ("G", "a1", "a2", "K1", "a3", "K2", "a4"))
    rng = random.Random(15)
    orders = [events[::-1]] + [rng.sample(events, len(events)) for _ in range(200)]
    for order in orders:
        assert ingest(order) == (held, expected)


# -- properties ---------------------------------------------------------------------------------

POOL = [key(f"p{i}") for i in range(7)]


@st.composite
def states(draw: st.DrawFn) -> KeyState:
    # Drawn from a small pool, so that keys collide (invalid states).
    n_rec = draw(st.integers(1, 3))
    picks = draw(st.lists(st.sampled_from(POOL), min_size=2 + n_rec, max_size=2 + n_rec))
    return KeyState(signing=picks[0], next=next_commitment(picks[1]), recovery=tuple(picks[2:]))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[KeyEvent], list[Link]]:
    """Random key trees and chains: mostly entitled, some not, with dropped events (gaps).

    Honest steps use fresh keys and the entitled signer, so long valid paths, ties and
    recoveries are common; the rest draw signers, kevs and states at random.
    """
    counter = iter(range(10**6))
    preimage: dict[bytes, bytes] = {}

    def fresh() -> bytes:
        k = key(f"f{next(counter)}")
        preimage[next_commitment(k)] = k
        return k

    def fresh_state(recovery: tuple[bytes, ...] | None = None) -> KeyState:
        if recovery is None:
            recovery = tuple(fresh() for _ in range(draw(st.integers(1, 3))))
        return KeyState(signing=fresh(), next=next_commitment(fresh()), recovery=recovery)

    every: list[KeyEvent | Link] = []
    keys_: list[KeyEvent] = []
    geneses = [fresh_state()]
    if draw(st.integers(0, 3)) == 0:
        geneses.append(geneses[0] if draw(st.booleans()) else draw(states()))
    for st8 in geneses:
        ke = KeyEvent(
            id=eid(f"h{next(counter)}"),
            seq=1,
            prev=None,
            kev=None,
            kind=GENESIS,
            key=st8.signing if draw(st.integers(0, 5)) else POOL[0],
            state=st8,
        )
        every.append(ke)
        keys_.append(ke)
    for _ in range(draw(st.integers(0, 30))):
        prev = draw(st.sampled_from(every))
        honest = draw(st.integers(0, 5)) > 0
        if honest or not keys_:
            kev_id = prev.id if isinstance(prev, KeyEvent) else prev.kev
        else:
            kev_id = draw(st.sampled_from([k.id for k in keys_] + [eid("unknown")]))
        base = next((k for k in keys_ if k.id == kev_id), None)
        kind = draw(st.sampled_from(["post", "post", "post", ROTATE, ROTATE, RECOVER]))
        id_ = eid(f"h{next(counter)}")
        seq = prev.seq + 1
        assert kev_id is not None
        if kind == "post":
            signer = base.state.signing if honest and base else draw(st.sampled_from(POOL))
            every.append(Link(id=id_, seq=seq, prev=prev.id, kev=kev_id, kind="post", key=signer))
            continue
        if honest and base is not None and (kind == RECOVER or base.state.next in preimage):
            if kind == ROTATE:
                signer = preimage[base.state.next]
                new = fresh_state(base.state.recovery)
            else:
                p = draw(st.integers(0, len(base.state.recovery) - 1))
                signer = base.state.recovery[p]
                kept = base.state.recovery[: p + draw(st.integers(0, 1))]
                new = fresh_state(
                    kept
                    + tuple(
                        fresh()
                        for _ in range(draw(st.integers(1 if not kept else 0, 3 - len(kept))))
                    )
                    if draw(st.booleans())
                    else base.state.recovery
                )
        else:
            signer = draw(st.sampled_from(POOL))
            new = draw(states())
        ke = KeyEvent(id=id_, seq=seq, prev=prev.id, kev=kev_id, kind=kind, key=signer, state=new)
        every.append(ke)
        keys_.append(ke)
    kept_events = [e for e in every if draw(st.integers(0, 12)) > 0]
    return (
        [e for e in kept_events if isinstance(e, KeyEvent)],
        [e for e in kept_events if isinstance(e, Link)],
    )


def check_invariants(res: Resolution, key_events: list[KeyEvent], links: list[Link]) -> None:
    ids = {e.id for e in key_events} | {e.id for e in links}
    assert set(res.status) == ids
    by_id = {k.id: k for k in key_events}
    for i, k in enumerate(res.path):
        assert res.status[k] is C
        assert by_id[k].kev == (res.path[i - 1] if i else None)
    assert len(res.contenders) != 1
    for c in res.contenders:
        assert by_id[c].kev == (res.path[-1] if res.path else None)
    for id_, by in res.revoked_by.items():
        assert res.status[id_] is R and (by in res.path or by_id[by].kind == GENESIS)
    for link in links:
        if res.status[link.id] is C:
            assert link.kev in res.path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False))
def test_resolution_is_a_function_of_the_set(
    history: tuple[list[KeyEvent], list[Link]], rng: random.Random
) -> None:
    """spec 0008 #fork-choice: never crashes; any order and duplicates give one answer."""
    key_events, links = history
    res = resolve(key_events, links)
    check_invariants(res, key_events, links)
    shuffled_keys = rng.sample(key_events, len(key_events)) + key_events[:1]
    shuffled_links = rng.sample(links, len(links)) + links[:2]
    assert resolve(shuffled_keys, shuffled_links) == res


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.randoms(use_true_random=False))
def test_ingest_in_any_order_holds_the_same_set(
    history: tuple[list[KeyEvent], list[Link]], rng: random.Random
) -> None:
    """spec 0008 #validity: every rejection depends on the event and its kev only."""
    key_events, links = history
    events: list[KeyEvent | Link] = [*key_events, *links]
    first = ingest(events)
    assert ingest(rng.sample(events, len(events))) == first
    assert ingest(events[::-1]) == first
    check_invariants(
        first[1],
        [k for k in key_events if k.id in first[0]],
        [link for link in links if link.id in first[0]],
    )
