"""Key-history vectors of spec 0008: specs/vectors/key-histories.json.

Each case is one did:murmur author's wire events with the outcome spec 0008 gives
them, written by hand in the generator. Here every wire is decoded for real
(``decode_event(..., allow_v2=True)``: signatures checked), mapped to the key logic's
inputs with the public helpers nodes and clients use (``protocol.keystate.input_of``),
and ingested the way a node does (§8.5 steps 1–4 on arrival, ``unknown-key-event``
retried, continuity never a rejection), in every order the case lists; then
``resolve`` must give the recorded path, dispute and statuses. The regeneration check
of test_vectors.py covers this file too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from protocol.errors import (
    BodyRequiredError,
    ProtocolError,
    UnknownKeyEventError,
    error_for_code,
)
from protocol.events import Event, decode_event
from protocol.identity import Identity
from protocol.keystate import (
    KeyEvent,
    Link,
    Resolution,
    check_event,
    input_of,
    key_event_of,
    link_of,
    resolve,
)

from .test_vectors import VECTORS, _anchors, _hex, _ids

DOC = json.loads((VECTORS / "key-histories.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = DOC["cases"]
REJECTION_CODES = {"unauthorized-key", "unknown-key-event", "bad-kev", "bad-field"}


def _decode(case: dict[str, Any]) -> dict[str, Event]:
    return {
        e["name"]: decode_event(
            bytes.fromhex(e["wire"]), net=case["net"], now_ms=case["now_ms"], allow_v2=True
        )
        for e in case["events"]
    }


@dataclass(frozen=True)
class Outcome:
    verdicts: dict[str, str]
    resolution: Resolution


def ingest(author: str, arrivals: Sequence[tuple[str, Event]]) -> Outcome:
    """A node in miniature (spec 0008 #validity, #nodes), fed one event at a time.

    Events of another author (v1 did:keys) enter no key history: ``no-effect``. An
    event whose kev is not held waits (``unknown-key-event`` is retryable) and is tried
    again whenever anything new is held; any other rejection is final. What is still
    waiting at the end keeps ``unknown-key-event``.
    """
    keys: dict[bytes, KeyEvent] = {}
    links: dict[bytes, Link] = {}
    verdicts: dict[str, str] = {}
    waiting: list[tuple[str, Event]] = []
    for name, event in arrivals:
        if event.author != author:
            verdicts[name] = "no-effect"
            continue
        waiting.append((name, event))
        progress = True
        while progress:
            progress = False
            for item in list(waiting):
                wname, wevent = item
                try:
                    ev = input_of(wevent, keys, not_key_events=links)
                    check_event(ev, keys, not_key_events=links)
                except UnknownKeyEventError:
                    continue
                except ProtocolError as exc:
                    waiting.remove(item)
                    verdicts[wname] = exc.code
                    continue
                waiting.remove(item)
                verdicts[wname] = "accepted"
                if isinstance(ev, KeyEvent):
                    keys[ev.id] = ev
                else:
                    links[ev.id] = ev
                progress = True
    for name, _ in waiting:
        verdicts[name] = UnknownKeyEventError.code
    return Outcome(verdicts, resolve(keys.values(), links.values()))


def _expected_statuses(case: dict[str, Any]) -> dict[bytes, tuple[str, bytes | None, str | None]]:
    return {
        bytes.fromhex(e["id"]): (e["status"], _hex(e["revoked_by"]), e["reason"])
        for e in case["events"]
        if e["verdict"] == "accepted"
    }


def _actual_statuses(res: Resolution) -> dict[bytes, tuple[str, bytes | None, str | None]]:
    return {i: (str(st), res.revoked_by.get(i), res.errors.get(i)) for i, st in res.status.items()}


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_key_history(case: dict[str, Any]) -> None:
    """spec 0008 #validity, #fork-choice, #status, #revoked-by (anchors per case)."""
    events = _decode(case)
    for e in case["events"]:
        assert events[e["name"]].id.hex() == e["id"]
        assert e["verdict"] in REJECTION_CODES | {"accepted", "no-effect"}
        if e["verdict"] in REJECTION_CODES:
            assert error_for_code(e["verdict"]) is not None
        assert (e["status"] is None) == (e["verdict"] != "accepted")
        assert e["revoked_by"] is None or e["status"] == "revoked"
        assert e["reason"] is None or e["status"] == "revoked"
    names = [e["name"] for e in case["events"]]
    outcomes = []
    for order in case["arrival_orders"]:
        assert sorted(order) == sorted(names)
        outcomes.append(ingest(case["author"], [(n, events[n]) for n in order]))
    first = outcomes[0]
    for other in outcomes[1:]:
        assert other.verdicts == first.verdicts, "verdicts depend on the arrival order"
        assert other.resolution == first.resolution, "statuses depend on the arrival order"
    assert first.verdicts == {e["name"]: e["verdict"] for e in case["events"]}
    res = first.resolution
    assert [i.hex() for i in res.path] == case["path"]
    dispute = case["dispute"]
    if dispute is None:
        assert not res.disputed
    else:
        assert [i.hex() for i in res.contenders] == dispute["contenders"]
        assert dispute["point"] == (res.path[-1].hex() if res.path else None)
    assert _actual_statuses(res) == _expected_statuses(case)
    by_id = {e["id"]: e["name"] for e in case["events"]}
    assert [by_id[i] for i in case["path"]] == case["path_names"]
    if dispute is not None:
        assert [by_id[i] for i in dispute["contenders"]] == dispute["contender_names"]
        assert dispute["point_name"] == (by_id[dispute["point"]] if dispute["point"] else None)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_key_history_signers_are_the_named_keys(case: dict[str, Any]) -> None:
    """Each event is signed by the key the case names (v2 ``key``; v1: the did:key)."""
    events = _decode(case)
    keys = DOC["keys"]
    for e in case["events"]:
        signer = Identity.from_seed(bytes.fromhex(keys[e["signer"]]["seed"]))
        assert signer.public.raw.hex() == keys[e["signer"]]["public"]
        event = events[e["name"]]
        assert event.kind == e["kind"]
        if event.header.v == 2:
            assert event.author == case["author"] and event.key == signer.public.raw
        else:
            assert event.author == signer.did != case["author"]


def test_v1_events_have_no_key_state() -> None:
    """spec 0008 #v1-key-kinds: the helpers refuse a v1 event, whatever its kind."""
    (case,) = [c for c in CASES if any(e["verdict"] == "no-effect" for e in c["events"])]
    events = _decode(case)
    v1 = [events[e["name"]] for e in case["events"] if e["verdict"] == "no-effect"]
    assert {e.kind for e in v1} == {"genesis", "rotate", "recover"}
    for event in v1:
        with pytest.raises(ValueError, match="v1"):
            input_of(event, {})
        with pytest.raises(ValueError, match="v1"):
            key_event_of(event, {})
        with pytest.raises(ValueError, match="v1"):
            link_of(event)


def test_the_vectors_cover_issue_15_point_8() -> None:
    """Every verdict, every status, a dispute at a key event and at the virtual root,
    a rule's revocation (bad-kev), and a case listing explicit arrival orders."""
    verdicts = {e["verdict"] for c in CASES for e in c["events"]}
    assert verdicts == REJECTION_CODES | {"accepted", "no-effect"}
    statuses = {e["status"] for c in CASES for e in c["events"]} - {None}
    assert statuses == {"canonical", "revoked", "disputed", "pending"}
    points = {c["dispute"]["point"] is None for c in CASES if c["dispute"]}
    assert points == {True, False}
    assert any(e["reason"] == "bad-kev" for c in CASES for e in c["events"])
    assert len(CASES) >= 18


@pytest.mark.parametrize("ref", sorted({ref for c in CASES for ref in c["spec"]}))
def test_key_history_vector_names_an_existing_spec_anchor(ref: str) -> None:
    doc, _, anchor = ref.partition("#")
    assert anchor in _anchors(doc), f"specs/{doc} has no anchor {anchor!r}"


def test_every_key_history_names_its_anchors() -> None:
    assert all(c["spec"] and c["comment"] for c in CASES)


def test_helpers_need_a_body_only_for_key_events() -> None:
    """spec 0008 #key-event-body: a key event's state is its body; a Link needs none."""
    case = CASES[0]
    events = _decode(case)
    genesis, post = events["G"], events["a1"]
    assert genesis.kind == "genesis" and post.kind == "post"
    with pytest.raises(BodyRequiredError):
        key_event_of(genesis.without_body(), {})
    assert link_of(post.without_body()) == link_of(post)
    body = genesis.body
    assert body is not None
    state = key_event_of(genesis, {}).state
    assert (state.signing, state.next, list(state.recovery)) == (
        body["signing"],
        body["next"],
        body["recovery"],
    )
