"""A rotatable labeler (spec 0006 #labeler-rotatable, #label-key-status) on a real node:
``murmur labeler run`` as a did:murmur signs its labels as v2 events after its own
outbox, the node accepts them, and a reader subscribed to it applies them; a label a
thief signed with the labeler's stolen key is applied until the labeler rotates, then
never again, while its own labels, before and after the rotation, keep applying.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.keystore import Keystore
from client.ownchain import OwnChain
from protocol.events import sign_event_v2
from tests.e2e.client_fixtures import Cli
from tests.e2e.nodeproc import NodeProcess

RULES = '[[rules]]\nlabel = "spam"\nkeywords = ["buy now"]\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("rotatable-labeler-node") / "data")
    try:
        yield proc
    finally:
        proc.stop()


def _event(node: NodeProcess, eid: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{node.url}/v1/events/{eid}", timeout=10).json()["event"]
    return doc


def _hidden(cli: Cli) -> set[str]:
    return {h["id"] for h in cli.json("timeline")["moderation"]["hidden"]}


def test_a_rotatable_labeler_labels_and_its_stolen_key_stops_counting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], node: NodeProcess
) -> None:
    """spec 0006 #labeler-rotatable, #label-key-status; 0008 #status."""
    cli = Cli(tmp_path / "home", capsys)
    for name in ("amy", "bob", "lab"):  # all rotatable (the default); amy reads
        cli.json("id", "new", name, "--no-encrypt")
    cli.json("nodes", "add", node.url)
    lab = cli.json("id", "show", "lab")["did"]
    assert lab.startswith("did:murmur:")
    p1 = cli.post("bob", "BUY NOW: cheap pills")
    p2 = cli.post("bob", "hello")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    run = ("labeler", "run", "--as", "lab", "--rules", str(rules), "--once")

    code, out, err = cli.run(*run, "--from-start", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["labeler"] == lab and doc["labels"] == 1
    [label] = [
        e for e in OwnChain(cli.home, lab).archived().values() if e.kind == "label"
    ]
    stored = _event(node, label.id_hex)
    assert stored["author"] == lab and stored["status"] == "canonical"
    assert label.body == {"subject": bytes.fromhex(p1), "val": "spam"}

    cli.json("follow", "bob")
    cli.json("labelers", "subscribe", lab, "--set", "spam=hide")
    assert _hidden(cli) == {p1}

    # A thief with the labeler's signing key labels bob's harmless post, after the
    # labeler's last event: the node takes it (that key is still the signing key).
    stolen = Keystore(cli.home).load("lab")
    chain = OwnChain(cli.home, lab)
    head = chain.head()
    forged = sign_event_v2(
        stolen,
        author=lab,
        kind="label",
        body={"subject": bytes.fromhex(p2), "val": "spam"},
        seq=head.seq + 1,
        prev=head.id,
        kev=chain.latest_key_event().id,
    )
    r = httpx.post(
        f"{node.url}/v1/events",
        json={"events": [base64.b64encode(forged.wire).decode()]},
        timeout=10,
    )
    assert r.json()["results"][0]["status"] == "accepted"
    assert _hidden(cli) == {p1, p2}

    # The labeler rotates (from its own outbox: the thief's label is not in it).
    cli.json("id", "rotate", "lab")
    assert _event(node, forged.id_hex)["status"] == "revoked"
    assert _hidden(cli) == {p1}

    # Labels after the rotation are signed with the new key and apply.
    p3 = cli.post("bob", "buy now, last chance")
    again = cli.json(*run)
    assert again["labels"] == 1
    assert _hidden(cli) == {p1, p3}
    newest = max(
        (e for e in OwnChain(cli.home, lab).archived().values() if e.kind == "label"),
        key=lambda e: e.seq,
    )
    assert newest.key != label.key  # the rotated signing key
    assert _event(node, newest.id_hex)["status"] == "canonical"
