"""The key-history vectors of spec 0008: ``specs/vectors/key-histories.json``.

Imported by ``scripts/gen_vectors.py`` (which writes and ``--check``s the file); kept
apart because it is a module of its own subject: whole histories of one ``did:murmur``
author, not single events. Every event is a real signed v2 wire event (fixed seeds,
fixed ``ts``, deterministic Ed25519), and every expected outcome is written here **by
hand** from the rules of spec 0008, never computed by ``protocol/keystate.py``: the
test (tests/protocol/test_key_history_vectors.py) checks the reference against them,
so a disagreement shows up as a failing vector, not as a silently regenerated file.

A case lists its events in one arrival order, with, per event, the verdict of §8.5
steps 1–4 against the key events the case holds (``accepted``, or the rejection code;
``no-effect`` for a v1 event, which is in no key history), and for the accepted set the
canonical path, the dispute if any, and every event's status with ``revoked_by`` and
the ``reason`` a rule gave. ``arrival_orders`` lists 2–3 orders that must all give the
same verdicts and statuses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.encoding import encode
from protocol.events import Event, sign_event, sign_event_v2, sign_genesis
from protocol.identity import Identity, did_murmur_from_genesis_body, next_key_commitment

#: 2026-01-01T00:00:00Z, as in gen_vectors.py: events are stamped from it, never the clock.
T0 = 1_767_225_600_000
NOW = T0 + 3_600_000
SPEC = "0008-key-rotation.md"

#: Key names of spec 0008 §8.1: S signing, N next, R recovery; T… and X are a thief's.
KEY_NAMES = "S0 N0 R0 R1 R2 S1 N1 S2 N2 S3 N3 R3 ST NT ST2 NT2 TR TR0 X".split()


def _key(name: str) -> Identity:
    """A fixed key per name: seed = sha256("murmur key-histories v1:" + name)."""
    return Identity.from_seed(hashlib.sha256(b"murmur key-histories v1:" + name.encode()).digest())


KEYS = {name: _key(name) for name in KEY_NAMES}


def _pub(name: str) -> bytes:
    return KEYS[name].public.raw


def _commit(name: str) -> bytes:
    return next_key_commitment(_pub(name))


GENESIS_BODY: dict[str, Any] = {
    "signing": _pub("S0"),
    "next": _commit("N0"),
    "recovery": [_pub("R0"), _pub("R1"), _pub("R2")],
}
AUTHOR = did_murmur_from_genesis_body(encode(GENESIS_BODY))
#: Someone else, to follow.
OTHER = Identity.from_seed(bytes(31) + b"\x01").did


@dataclass
class History:
    """One author's events by name, signed in creation order (ts = T0 + 1 s each)."""

    events: dict[str, Event] = field(default_factory=dict)
    signers: dict[str, str] = field(default_factory=dict)

    def _ts(self) -> int:
        return T0 + 1000 * len(self.events)

    def _add(self, name: str, signer: str, event: Event) -> str:
        assert name not in self.events, name
        self.events[name] = event
        self.signers[name] = signer
        return name

    def genesis(self, name: str = "G", *, ts: int | None = None) -> str:
        event = sign_genesis(
            KEYS["S0"],
            next_key=_pub("N0"),
            recovery=[_pub("R0"), _pub("R1"), _pub("R2")],
            ts=T0 if ts is None else ts,
        )
        assert event.author == AUTHOR
        return self._add(name, "S0", event)

    def _v2(
        self, name: str, prev: str, kev: str, signer: str, kind: str, body: Mapping[str, Any]
    ) -> str:
        before = self.events[prev]
        event = sign_event_v2(
            KEYS[signer],
            author=AUTHOR,
            kind=kind,
            body=body,
            seq=before.seq + 1,
            prev=before.id,
            kev=self.events[kev].id,
            ts=self._ts(),
        )
        return self._add(name, signer, event)

    def post(
        self,
        name: str,
        prev: str,
        kev: str,
        signer: str,
        kind: str = "post",
        body: Mapping[str, Any] | None = None,
    ) -> str:
        return self._v2(name, prev, kev, signer, kind, body or {"text": name})

    def rotate(self, name: str, prev: str, kev: str, signer: str, s: str, n: str) -> str:
        return self._v2(name, prev, kev, signer, "rotate", {"signing": _pub(s), "next": _commit(n)})

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
        body: dict[str, Any] = {"signing": _pub(s), "next": _commit(n)}
        if recovery is not None:
            body["recovery"] = [_pub(r) for r in recovery]
        return self._v2(name, prev, kev, signer, "recover", body)

    def v1(self, name: str, signer: str, kind: str, body: Mapping[str, Any]) -> str:
        """A v1 event of ``signer``'s did:key (not of AUTHOR): spec 0008 #v1-key-kinds."""
        event = sign_event(KEYS[signer], kind=kind, body=body, seq=1, prev=None, ts=self._ts())
        return self._add(name, signer, event)

    def id(self, name: str) -> str:
        return self.events[name].id.hex()


# -- the owner's usual histories ----------------------------------------------------------


def owner() -> History:
    """G (seq 1); posts a1, a2 under G by S0; K1 = rotate by N0 to S1/N1 after a2; a3 by S1."""
    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")
    h.post("a2", "a1", "G", "S0")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    return h


def thief_with_s() -> History:
    """G, a1, a2 by the owner; then a thief who copied S0 forges a post, a reply, a
    follow and a delete of the owner's a2, continuing the chain from a2."""
    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")
    h.post("a2", "a1", "G", "S0")
    a1 = h.events["a1"].id
    h.post("f1", "a2", "G", "S0", body={"text": "forged"})
    h.post(
        "f2", "f1", "G", "S0", body={"text": "forged reply", "reply": {"root": a1, "parent": a1}}
    )
    h.post("f3", "f2", "G", "S0", kind="follow", body={"subject": OTHER})
    h.post("f4", "f3", "G", "S0", kind="delete", body={"target": h.events["a2"].id})
    return h


# -- expectations ---------------------------------------------------------------------------


@dataclass
class Expect:
    """What spec 0008 says of a case, by event name (space-separated lists).

    ``revoked`` maps names to the name of the key event that decided it
    (#revoked-by); ``revoked_rule`` maps names to the rule's code (``bad-kev``) or to
    None (revoked because its kev is a key event a rule revoked), with no ``revoked_by``.
    ``dispute`` is (the branch point's name, or None for the virtual root of the
    geneses; the contenders' names).
    """

    path: str
    canonical: str = ""
    revoked: Mapping[str, str] = field(default_factory=dict)
    revoked_rule: Mapping[str, str | None] = field(default_factory=dict)
    disputed: str = ""
    pending: str = ""
    rejected: Mapping[str, str] = field(default_factory=dict)
    no_effect: str = ""
    dispute: tuple[str | None, str] | None = None


def _statuses(expect: Expect) -> dict[str, tuple[str, str | None, str | None]]:
    out: dict[str, tuple[str, str | None, str | None]] = {}

    def put(names: str, value: tuple[str, str | None, str | None]) -> None:
        for n in names.split():
            assert n not in out, f"{n} has two statuses"
            out[n] = value

    put(expect.canonical, ("canonical", None, None))
    put(expect.disputed, ("disputed", None, None))
    put(expect.pending, ("pending", None, None))
    for names, by in expect.revoked.items():
        put(names, ("revoked", by, None))
    for names, reason in expect.revoked_rule.items():
        put(names, ("revoked", None, reason))
    return out


def _case(
    comment: str,
    anchors: list[str],
    h: History,
    expect: Expect,
    *,
    order: str | None = None,
    orders: list[str] | None = None,
) -> dict[str, Any]:
    names = order.split() if order else list(h.events)
    statuses = _statuses(expect)
    rejected = {n: code for ns, code in expect.rejected.items() for n in ns.split()}
    no_effect = set(expect.no_effect.split())
    assert set(names) == set(statuses) | set(rejected) | no_effect, (
        comment,
        set(names) ^ (set(statuses) | set(rejected) | no_effect),
    )
    events = []
    for n in names:
        event = h.events[n]
        status, by, reason = statuses.get(n, (None, None, None))
        verdict = "no-effect" if n in no_effect else rejected.get(n, "accepted")
        events.append(
            {
                "name": n,
                "kind": event.kind,
                "signer": h.signers[n],
                "id": event.id.hex(),
                "wire": event.wire.hex(),
                "verdict": verdict,
                "status": status,
                "revoked_by": None if by is None else h.id(by),
                "reason": reason,
            }
        )
    if orders is None:
        # The listed order, its reverse, and every key event last (so every ordinary
        # event waits for its kev, unknown-key-event being retryable).
        key_kinds = {"genesis", "rotate", "recover"}
        ordinary = [n for n in names if h.events[n].kind not in key_kinds]
        keyed = [n for n in names if h.events[n].kind in key_kinds]
        arrival = [names, names[::-1], ordinary + keyed[::-1]]
    else:
        arrival = [o.split() for o in orders]
    for o in arrival:
        assert sorted(o) == sorted(names), (comment, o)
    path = expect.path.split()
    dispute: dict[str, Any] | None = None
    if expect.dispute is not None:
        point, contenders = expect.dispute
        assert point == (path[-1] if path else None), comment
        ids = sorted(h.id(c) for c in contenders.split())
        dispute = {
            "point": None if point is None else h.id(point),
            "point_name": point,
            "contenders": ids,
            "contender_names": [next(n for n in names if h.id(n) == i) for i in ids],
        }
    return {
        "comment": comment,
        "spec": [f"{SPEC}#{a}" for a in anchors],
        "author": AUTHOR,
        "net": "murmur",
        "now_ms": NOW,
        "events": events,
        "arrival_orders": arrival,
        "path": [h.id(n) for n in path],
        "path_names": path,
        "dispute": dispute,
    }


# -- the cases --------------------------------------------------------------------------------


def key_history_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    add = cases.append

    h = owner()
    add(
        _case(
            "simple rotation: K1 (rotate signed by N0, the key the genesis committed to) "
            "after a2; the S0 posts a1, a2 stay canonical after it, each judged at its "
            "own kev",
            ["key-events", "validity", "status"],
            h,
            Expect(path="G K1", canonical="G a1 a2 K1 a3"),
        )
    )

    h = owner()
    h.rotate("TW", "a2", "G", "X", "ST", "NT")
    h.post("tw", "TW", "TW", "ST")
    add(
        _case(
            "rotation revealing the wrong key: TW is signed by X, whose hash is not the "
            "genesis's next: unauthorized-key; tw, signed under TW, names a key event "
            "that is never held: unknown-key-event (retryable, so a node keeps waiting), "
            "and the owner's history is untouched",
            ["key-events", "validity"],
            h,
            Expect(
                path="G K1",
                canonical="G a1 a2 K1 a3",
                rejected={"TW": "unauthorized-key", "tw": "unknown-key-event"},
            ),
        )
    )

    h = owner()
    del h.events["K1"], h.events["a3"]
    h.rotate("TS", "a2", "G", "S0", "ST", "NT")
    add(
        _case(
            "rotation signed by S: a thief holding only the signing key S0 cannot rotate "
            "(unauthorized-key), so he cannot lock the owner out",
            ["key-events", "validity"],
            h,
            Expect(path="G", canonical="G a1 a2", rejected={"TS": "unauthorized-key"}),
        )
    )

    h = owner()
    h.rotate("KS", "a3", "K1", "N1", "S1", "N2")
    h.rotate("KR", "a3", "K1", "N1", "R0", "N2")
    h.rotate("KN", "a3", "K1", "N1", "S2", "S1")
    add(
        _case(
            "new keys must be new: rotations at K1 (signed by N1, entitled) whose new "
            "signing key is K1's own S1 (KS) or the recovery key R0 (KR), or whose next "
            "commits to S1 (KN): bad-field at step 4, invisible to a decoder (each body "
            "is consistent with its own header; the rule needs the state at kev)",
            ["new-keys", "distinct-keys", "validity"],
            h,
            Expect(
                path="G K1",
                canonical="G a1 a2 K1 a3",
                rejected={"KS KR KN": "bad-field"},
            ),
        )
    )

    h = owner()
    h.recover("K2", "a3", "K1", "R0", "S2", "N2", recovery=("R0", "R3"))
    h.post("a4", "K2", "K2", "S2")
    add(
        _case(
            "recovery by the top key: the owner lost S1 and N1; R0 recovers at K1 with "
            "new S2/N2 and a recovery list [R0, R3] (R1, R2 dropped); everything stays "
            "canonical",
            ["key-events", "recover-prefix", "fork-choice"],
            h,
            Expect(path="G K1 K2", canonical="G a1 a2 K1 a3 K2 a4"),
        )
    )

    h = owner()
    h.recover("T", "a3", "K1", "R1", "ST", "NT", recovery=("R0", "TR"))
    h.recover("T2", "T", "T", "TR", "ST2", "NT2")
    h.post("t", "T2", "T2", "ST2")
    h.rotate("K2", "a3", "K1", "N1", "S2", "N2")
    h.post("a4", "K2", "K2", "S2")
    add(
        _case(
            "recovery by a lower-priority key beats a rotation: a thief holding R1 "
            "recovers at K1 (rank 3, keeping R0 first as he must, his TR at position 1), "
            "then recovers again with TR (rank 3 again, never 4); the owner only rotates "
            "(rank 1): the thief's branch wins and her K2, a4 are revoked by T",
            ["fork-choice", "recover-prefix", "key-events", "revoked-by"],
            h,
            Expect(
                path="G K1 T T2",
                canonical="G a1 a2 K1 a3 T T2 t",
                revoked={"K2 a4": "T"},
            ),
        )
    )

    h.recover("K3", "a4", "K2", "R0", "S3", "N3", recovery=("R0", "R3"))
    h.post("a5", "K3", "K3", "S3")
    add(
        _case(
            "recovery by a lower-priority key vs a higher one: as above, then the owner "
            "recovers with R0 at the head of her branch (rank 4): her subtree under K1 "
            "scores 4 against the thief's 3, so T, T2 and t are revoked by K2 (the "
            "winning child at K1, where the thief's branch left the path)",
            ["fork-choice", "recover-prefix", "revoked-by", "no-clock"],
            h,
            Expect(
                path="G K1 K2 K3",
                canonical="G a1 a2 K1 a3 K2 a4 K3 a5",
                revoked={"T T2 t": "K2"},
            ),
        )
    )

    h = owner()
    h.recover("K2", "a3", "K1", "R0", "S2", "N2", recovery=("R0", "R3"))
    h.post("a4", "K2", "K2", "S2")
    h.recover("TD", "a4", "K2", "R1", "ST", "NT")
    h.post("td", "TD", "TD", "ST")
    h.recover("T1", "a3", "K1", "R1", "ST2", "NT2")
    add(
        _case(
            "recovery by a key dropped at an earlier recover: K2 (by R0) replaced the list "
            "with [R0, R3]; TD, a recover by the dropped R1 at kev K2, is "
            "unauthorized-key (and td under it unknown-key-event). R1 *was* listed at K1, "
            "so T1, its recover at kev K1, is valid, but scores 3 against K2's 4: revoked "
            "by K2",
            ["key-events", "validity", "fork-choice", "revoked-by"],
            h,
            Expect(
                path="G K1 K2",
                canonical="G a1 a2 K1 a3 K2 a4",
                revoked={"T1": "K2"},
                rejected={"TD": "unauthorized-key", "td": "unknown-key-event"},
            ),
        )
    )

    h = owner()
    h.recover("TP", "a3", "K1", "R1", "ST", "NT", recovery=("TR0",))
    h.recover("TP2", "TP", "TP", "TR0", "ST2", "NT2")
    h.recover("TQ", "a3", "K1", "R1", "ST", "NT", recovery=("R1", "R0"))
    add(
        _case(
            "#recover-prefix violation: a recover by R1 (position 1) must keep R0 at "
            "position 0: TP (list [TR0]) and TQ (list [R1, R0], a swap) are bad-field; "
            "TP2, the recover with TR0 at rank 4 that the rule exists to prevent, names a "
            "key event never held: unknown-key-event",
            ["recover-prefix", "validity"],
            h,
            Expect(
                path="G K1",
                canonical="G a1 a2 K1 a3",
                rejected={"TP TQ": "bad-field", "TP2": "unknown-key-event"},
            ),
        )
    )

    h = thief_with_s()
    h.rotate("TR", "f4", "G", "S0", "ST", "NT")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    h.post("f5", "f4", "G", "S0", body={"text": "forged after K1"})
    h.post("f6", "a3", "K1", "S0", body={"text": "forged at K1"})
    add(
        _case(
            "thief with S only: he forges a post f1, a reply f2, a follow f3 and a delete "
            "f4 of the owner's a2 under kev G, and his rotate TR (signed by S0) is "
            "unauthorized-key. The owner rotates (K1, prev = a2, the last event of her own "
            "outbox): f1-f4 and f5 (S0, kev G, after K1) are revoked by K1; f6, S0 at kev "
            "K1, is unauthorized-key",
            ["status", "revoked-by", "revoked-delete", "key-events", "validity"],
            h,
            Expect(
                path="G K1",
                canonical="G a1 a2 K1 a3",
                revoked={"f1 f2 f3 f4 f5": "K1"},
                rejected={"TR f6": "unauthorized-key"},
            ),
        )
    )

    h = thief_with_s()
    h.rotate("T1", "f4", "G", "N0", "ST", "NT")
    h.post("t1", "T1", "T1", "ST")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    add(
        _case(
            "thief with S and N: after f1-f4 he rotates with N0 (T1), as the owner does "
            "(K1): two rank-1 children of G tie, G is disputed, the path stops at G. a1, "
            "a2, endorsed by both contenders, stay canonical; everything else is "
            "disputed (no tie-break by id, ts or arrival)",
            ["fork-choice", "status"],
            h,
            Expect(
                path="G",
                dispute=("G", "K1 T1"),
                canonical="G a1 a2",
                disputed="f1 f2 f3 f4 T1 t1 K1 a3",
            ),
        )
    )

    h.recover("K2", "a3", "K1", "R0", "S2", "N2")
    h.post("a4", "K2", "K2", "S2")
    add(
        _case(
            "thief with S and N, then the owner's recovery: as above, then R0 recovers at "
            "the head of her branch (K2, rank 4): K1's subtree scores 4 against T1's 1; "
            "the thief's events are revoked by K1, the winner where they left the path",
            ["fork-choice", "status", "revoked-by"],
            h,
            Expect(
                path="G K1 K2",
                canonical="G a1 a2 K1 a3 K2 a4",
                revoked={"f1 f2 f3 f4 T1 t1": "K1"},
            ),
        )
    )

    h = owner()
    h.rotate("K2", "a3", "K1", "N1", "S2", "N2")
    h.post("a4", "K2", "K2", "S2")
    h.rotate("T", "a2", "G", "N0", "ST", "NT")
    h.rotate("T2", "T", "T", "NT", "ST2", "NT2")
    h.post("t", "T2", "T2", "ST2")
    add(
        _case(
            "dead attack: N0, retired at K1, leaks; the thief forks before K1 (T) and "
            "rotates again on his branch (T2: adds nothing, a subtree scores its highest "
            "rank, 1). Both children of G score 1: disputed at G, a1 and a2 (endorsed by "
            "both) canonical",
            ["fork-choice", "status"],
            h,
            Expect(
                path="G",
                dispute=("G", "K1 T"),
                canonical="G a1 a2",
                disputed="K1 a3 K2 a4 T T2 t",
            ),
        )
    )

    h.recover("K3", "a4", "K2", "R0", "S3", "N3")
    add(
        _case(
            "dead attack resolved: as above, then the owner recovers with R0 at her head "
            "(K3 at kev K2): K1's subtree scores 4; T, T2, t are revoked by K1 and her "
            "history stays whole (a key event endorses its whole ancestry)",
            ["fork-choice", "status", "revoked-by"],
            h,
            Expect(
                path="G K1 K2 K3",
                canonical="G a1 a2 K1 a3 K2 a4 K3",
                revoked={"T T2 t": "K1"},
            ),
        )
    )

    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")
    h.post("a2", "a1", "G", "S0")
    h.post("b2", "a1", "G", "S0")
    h.post("b3", "b2", "G", "S0")
    h.rotate("K1", "a2", "G", "N0", "S1", "N1")
    h.post("a3", "K1", "K1", "S1")
    h.post("c3", "K1", "K1", "S1")
    add(
        _case(
            "forks before and after a rotation: before K1, b2 forks beside a2 (both seq "
            "3, both S0) and b3 continues it; K1's prev names a2, so b2 and b3 are "
            "revoked by K1. After K1, a3 and c3 fork at seq 5 in the head epoch: an "
            "ordinary chain fork (0002), both canonical: no key event decides it",
            ["status", "revoked-by", "fork-choice"],
            h,
            Expect(
                path="G K1",
                canonical="G a1 a2 K1 a3 c3",
                revoked={"b2 b3": "K1"},
            ),
        )
    )

    h = owner()
    h.post("x1", "a2", "G", "S0", body={"text": "x1"})
    h.post("x2", "a3", "G", "S0", body={"text": "x2"})
    h.post("x3", "a3", "K1", "S0", body={"text": "x3"})
    add(
        _case(
            "events signed by a revoked key arriving before and after the revocation: S0 "
            "signs x1 (kev G, prev a2, beside K1), x2 (kev G, prev a3: breaks kev "
            "continuity) and x3 (kev K1: S0 is not S at K1). Whether they arrive before K1 "
            "or after: x1 revoked by K1, x2 revoked (bad-kev, no revoked_by), x3 "
            "unauthorized-key (unknown-key-event while K1 is missing, then final)",
            ["status", "kev-continuity", "validity", "revoked-by"],
            h,
            Expect(
                path="G K1",
                canonical="G a1 a2 K1 a3",
                revoked={"x1": "K1"},
                revoked_rule={"x2": "bad-kev"},
                rejected={"x3": "unauthorized-key"},
            ),
            orders=[
                "G a1 a2 x1 x3 K1 a3 x2",
                "G a1 a2 K1 a3 x1 x2 x3",
                "x3 x2 x1 a3 K1 a2 a1 G",
            ],
        )
    )

    h = owner()
    h.recover("K2", "a3", "K1", "R0", "S2", "N2", recovery=("R0", "R3"))
    h.post("a4", "K2", "K2", "S2")
    h.post("x", "a4", "K1", "S1", body={"text": "x"})
    h.rotate("Kx", "a4", "K1", "N1", "ST", "NT")
    h.post("y", "Kx", "Kx", "ST")
    add(
        _case(
            "kev continuity break: x (S1, kev K1) and Kx (rotate by N1 at kev K1, "
            "entitled there) both have prev a4, whose kev is K2: each passes steps 1-4 "
            "and is stored, but is revoked with reason bad-kev and no revoked_by, and Kx "
            "weighs nothing in the fork choice; y, under Kx, is revoked with it (no "
            "reason of its own)",
            ["kev-continuity", "status", "fork-choice"],
            h,
            Expect(
                path="G K1 K2",
                canonical="G a1 a2 K1 a3 K2 a4",
                revoked_rule={"x Kx": "bad-kev", "y": None},
            ),
        )
    )

    h = History()
    h.genesis()
    h.genesis("G'", ts=T0 + 1)
    h.post("a1", "G", "G", "S0")
    h.post("x1", "G'", "G'", "S0")
    add(
        _case(
            "duplicate genesis: G' has G's body (so the same did) under another ts; the "
            "two are siblings under a virtual root and tie (a genesis scores 0): the path "
            "is empty and every event is disputed",
            ["fork-choice", "genesis", "status"],
            h,
            Expect(path="", dispute=(None, "G G'"), disputed="G G' a1 x1"),
        )
    )

    h.rotate("K1", "a1", "G", "N0", "S1", "N1")
    add(
        _case(
            "duplicate genesis decided: as above, then K1 (rank 1) under G: G wins; G' and "
            "x1 are revoked by G, the winning genesis",
            ["fork-choice", "genesis", "revoked-by"],
            h,
            Expect(path="G K1", canonical="G a1 K1", revoked={"G' x1": "G"}),
        )
    )

    h = History()
    h.genesis()
    h.post("a1", "G", "G", "S0")
    h.post("a2", "a1", "G", "S0")
    h.post("a3", "a2", "G", "S0")
    h.rotate("K1", "a3", "G", "N0", "S1", "N1")
    h.post("y", "a2", "G", "S0")
    h.post("z", "a1", "G", "S0")
    h.post("a4", "K1", "K1", "S1")
    h.rotate("K2", "a4", "K1", "N1", "S2", "N2")
    h.post("a5", "K2", "K2", "S2")
    del h.events["a2"], h.events["K2"]
    add(
        _case(
            "gaps: a2 (seq 3) and K2 are not held. K1's prev walk reaches a3 (seq 4) and "
            "stops at the missing a2: y, a fork at seq 4, is revoked by K1; a1 and z "
            "(seq 3, beside the missing a2) are pending, since a2 may or may not lead "
            "back to them. a5 names the missing K2: unknown-key-event",
            ["status", "validity"],
            h,
            Expect(
                path="G K1",
                canonical="G a3 K1 a4",
                revoked={"y": "K1"},
                pending="a1 z",
                rejected={"a5": "unknown-key-event"},
            ),
        )
    )

    h = owner()
    h.post("b", "a3", "a1", "S1", body={"text": "b"})
    h.post("c", "a1", "K1", "S1", body={"text": "c"})
    h.rotate("Kb", "a3", "a3", "N1", "S2", "N2")
    add(
        _case(
            "bad-kev at steps 2-3: b's kev names a1, an ordinary event of the author, and "
            "so does Kb's (a rotate by N1 naming a3): bad-kev once a1 (a3) is held, "
            "unknown-key-event until then; c's seq (3) is not above K1's (4)",
            ["validity", "errors"],
            h,
            Expect(path="G K1", canonical="G a1 a2 K1 a3", rejected={"b c Kb": "bad-kev"}),
        )
    )

    h = owner()
    h.v1("v1g", "S0", "genesis", GENESIS_BODY)
    h.v1("v1r", "N0", "rotate", {"signing": _pub("ST"), "next": _commit("NT")})
    h.v1("v1c", "R0", "recover", {"signing": _pub("ST"), "next": _commit("NT")})
    add(
        _case(
            "v1 events of key kinds have no effect: a v1 genesis by did:key(S0) with G's "
            "very body, a v1 rotate by did:key(N0) and a v1 recover by did:key(R0) are "
            "valid events of those did:keys and in no key history: the did:murmur's "
            "history is unchanged",
            ["v1-key-kinds", "header-v2"],
            h,
            Expect(path="G K1", canonical="G a1 a2 K1 a3", no_effect="v1g v1r v1c"),
        )
    )
    return cases


def keys_json() -> dict[str, dict[str, str]]:
    """Every key of the cases: name → seed and public key (hex)."""
    return {n: {"seed": k.seed.hex(), "public": k.public.raw.hex()} for n, k in KEYS.items()}
