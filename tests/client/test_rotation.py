"""Rotatable identities in the client (spec 0008 #clients, spec 0007 #rotatable-keys).

Keystore layout (S, N apart; recovery keys never stored, shown once), rotation and
recovery signing checked with ``protocol.keystate``, a failed rotation re-sent as the
same bytes (spec 0008 #status, last bullet), reading that hides a thief's events after
the owner's rotation and says why, nodes withholding key events, ``murmur id keys``.
"""

from __future__ import annotations

import asyncio
import io
import json
import stat
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from client.api import NodeClient
from client.cli import main
from client.keyops import create_rotatable, sign_recovery, sign_rotation
from client.keystore import NEXT_AAD, Keystore, PassphraseError, open_seed
from client.ownchain import OwnChain
from client.publish import Publisher
from client.reader import Reader
from client.state import HeadStore
from client.views import author_view, follow_set, thread_view
from protocol.errors import ProtocolError, UnauthorizedKeyError
from protocol.events import Event, decode_event, sign_event_v2
from protocol.identity import Identity, next_key_commitment
from protocol.keystate import KeyEvent, Status, check_event, key_event_of
from tests.client.conftest import Net

Clients = Callable[..., list[NodeClient]]


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MURMUR_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def cli(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def outbox_events(home: Path, did: str) -> list[Event]:
    chain = OwnChain(home, did)
    return [decode_event(e.wire, allow_v2=True) for e in chain.events() if e.wire is not None]


def states_of(events: list[Event]) -> dict[bytes, KeyEvent]:
    states: dict[bytes, KeyEvent] = {}
    for e in events:
        if e.kind in ("genesis", "rotate", "recover"):
            states[e.id] = key_event_of(e, states)
    return states


def seed_in(path: Path) -> str:
    return str(tomllib.loads(path.read_text())["key"]["seed"])


def all_text(home: Path) -> str:
    """Every file of the home as text (binary ones, e.g. the sent-bytes archive, as
    latin-1: a hex seed inside would still show)."""
    return "\n".join(p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file())


# -- keystore layout and id new --rotatable --------------------------------------------


def test_new_rotatable_keeps_s_n_apart_and_recovery_keys_only_in_the_out_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #rotatable-keys, 0008 #clients: S and N in two 0600 files, recovery
    keys never stored in the home, written once as 0600 files where the user says."""
    home, out_dir = tmp_path / "home", tmp_path / "offline"
    code, out, err = cli(
        capsys, home, "id", "new", "alice", "--rotatable", "--no-encrypt",
        "--recovery-keys", "2", "--recovery-out", str(out_dir), "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    did = doc["did"]
    assert did.startswith("did:murmur:") and doc["rotatable"] is True
    assert "OFFLINE" in err
    ids = home / "identities"
    s_file, n_file = ids / "alice.toml", ids / "alice.next.toml"
    for f in (s_file, n_file, *(Path(p) for p in doc["recovery_files"])):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(ids.stat().st_mode) == 0o700
    s_seed, n_seed = seed_in(s_file), seed_in(n_file)
    assert n_seed not in s_file.read_text() and s_seed not in n_file.read_text()
    (genesis,) = outbox_events(home, did)
    body = genesis.body or {}
    assert genesis.kind == "genesis" and genesis.author == did
    assert body["signing"] == Identity.from_seed(bytes.fromhex(s_seed)).public.raw
    assert body["next"] == next_key_commitment(Identity.from_seed(bytes.fromhex(n_seed)).public.raw)
    assert len(doc["recovery_files"]) == 2
    home_text = all_text(home)
    for n, path in enumerate(doc["recovery_files"]):
        rk = tomllib.loads(Path(path).read_text())
        assert rk["did"] == did and rk["position"] == n
        assert bytes.fromhex(rk["public"]) == body["recovery"][n]
        assert Identity.from_seed(bytes.fromhex(rk["seed"])).public.raw == body["recovery"][n]
        assert rk["seed"] not in home_text  # never stored in the client's home
    code, out, _ = cli(capsys, home, "id", "list", "--json")
    assert [i["name"] for i in json.loads(out)] == ["alice"]  # .next/.pending are no identities


def test_recovery_phrase_goes_to_stderr_once_and_never_into_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, tmp_path, "id", "new", "alice", "--rotatable", "--no-encrypt", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    (genesis,) = outbox_events(tmp_path, doc["did"])
    line = next(x for x in err.splitlines() if x.startswith("    "))
    phrase = line.strip()
    seed = bytes.fromhex(phrase.replace(" ", ""))
    assert Identity.from_seed(seed).public.raw == (genesis.body or {})["recovery"][0]
    assert seed.hex() not in out and phrase not in out
    assert seed.hex() not in all_text(tmp_path)
    assert "OFFLINE" in err and doc["recovery_files"] == []


def test_sealed_next_key_cannot_pass_for_the_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MURMUR_PASSPHRASE", "correct horse")
    code, out, err = cli(capsys, tmp_path, "id", "new", "alice", "--rotatable", "--json")
    assert code == 0, err
    did = json.loads(out)["did"]
    ids = tmp_path / "identities"
    s_key = tomllib.loads((ids / "alice.toml").read_text())["key"]
    n_key = tomllib.loads((ids / "alice.next.toml").read_text())["key"]
    assert s_key["format"] == n_key["format"] == "scrypt-aes256gcm"
    open_seed(n_key, did + NEXT_AAD, "correct horse")
    with pytest.raises(PassphraseError):
        open_seed(n_key, did, "correct horse")  # swapped into S's place: refused
    store = Keystore(tmp_path)
    assert store.load("alice", passphrase="correct horse").public.raw.hex() == (
        store.get("alice").signing
    )


# -- rotate and recover ------------------------------------------------------------------


def test_rotate_signs_with_n_then_destroys_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0008 #key-events: a rotate signed by the key N committed as next, new S and
    N fresh, N never stored again; checked with keystate.check_event (rank 1)."""
    code, out, _ = cli(
        capsys, tmp_path, "id", "new", "alice", "--rotatable", "--no-encrypt", "--json"
    )
    did = json.loads(out)["did"]
    store = Keystore(tmp_path)
    old_n = store.load_next("alice")
    old_s = store.load("alice")
    code, out, err = cli(capsys, tmp_path, "id", "rotate", "--json")
    assert code == 0, err
    doc = json.loads(out)
    events = outbox_events(tmp_path, did)
    genesis, rotation = events
    assert rotation.kind == "rotate" and doc["id"] == rotation.id_hex and doc["resent"] is False
    assert rotation.key == old_n.public.raw
    assert rotation.kev == genesis.id and rotation.prev == genesis.id and rotation.seq == 2
    assert check_event(key_event_of(rotation, states_of([genesis])), states_of([genesis])) == 1
    new_s, new_n = store.load("alice"), store.load_next("alice")
    body = rotation.body or {}
    assert body["signing"] == new_s.public.raw != old_s.public.raw
    assert body["next"] == next_key_commitment(new_n.public.raw)
    assert old_n.seed.hex() not in all_text(tmp_path)  # N destroyed
    assert not store.pending_path("alice").exists()


def test_recover_with_a_recovery_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0008 #recover-prefix: a recover by R1 keeps R0, replaces R1 (shown once)."""
    home, offline = tmp_path / "home", tmp_path / "offline"
    code, out, _ = cli(
        capsys, home, "id", "new", "alice", "--rotatable", "--no-encrypt",
        "--recovery-keys", "2", "--recovery-out", str(offline), "--json",
    )  # fmt: skip
    doc = json.loads(out)
    did, r_files = doc["did"], doc["recovery_files"]
    assert cli(capsys, home, "id", "rotate")[0] == 0
    code, out, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", r_files[1],
        "--replace-recovery", "--recovery-out", str(offline / "new"), "--json",
    )  # fmt: skip
    assert code == 0, err
    genesis, rotation, recovery = outbox_events(home, did)
    states = states_of([genesis, rotation])
    assert recovery.kind == "recover" and recovery.kev == rotation.id
    assert check_event(key_event_of(recovery, states), states) == 3  # position 1: rank 3
    body = recovery.body or {}
    old = (genesis.body or {})["recovery"]
    assert body["recovery"][0] == old[0] and body["recovery"][1] != old[1]
    (new_file,) = json.loads(out)["recovery_files"]
    assert (
        bytes.fromhex(tomllib.loads(Path(new_file).read_text())["public"]) == (body["recovery"][1])
    )
    # Unsent, the saved recovery is re-sent, never signed again...
    code, out, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", r_files[1], "--json"
    )
    assert (
        code == 0
        and json.loads(out)["resent"] is True
        and json.loads(out)["id"] == (recovery.id_hex)
    )
    # ...and the replaced R1 is no recovery key any more.
    old_r1 = Identity.from_seed(bytes.fromhex(tomllib.loads(Path(r_files[1]).read_text())["seed"]))
    with pytest.raises(UnauthorizedKeyError, match="not a recovery key"):
        sign_recovery(Keystore(home), "alice", recovery_key=old_r1, passphrase=None, net="murmur")


def test_a_did_key_cannot_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, tmp_path, "id", "new", "bob", "--did-key", "--no-encrypt")
    code, _, err = cli(capsys, tmp_path, "id", "rotate")
    assert code == 1 and "did:key" in err and "murmur id new NAME" in err


# -- publishing, retry --------------------------------------------------------------------


#: Each test identity's R0, as create_rotatable handed it back (shown once).
_R0: dict[str, Identity] = {}


@pytest.fixture
def alice(tmp_path: Path) -> Iterator[tuple[Keystore, str, Event]]:
    store = Keystore(tmp_path)
    made = create_rotatable(store, "alice", passphrase=None)
    _R0[made.stored.did] = made.recovery[0].key  # shown once to the owner: kept by the test
    yield store, made.stored.did, made.genesis


def publisher(store: Keystore, did: str, nodes: list[NodeClient], signer: bool = True) -> Publisher:
    return Publisher(
        store.load("alice") if signer else None,
        nodes,
        HeadStore(store.home),
        chain=OwnChain(store.home, did),
    )


async def test_posts_are_v2_after_the_own_outbox_and_send_the_genesis_first(
    net: tuple[Net, Clients], alice: tuple[Keystore, str, Event]
) -> None:
    fake, clients = net
    store, did, genesis = alice
    a = fake.node("a")
    result = await publisher(store, did, clients(a)).publish("post", {"text": "hello"})
    post = decode_event(result.event.wire, allow_v2=True)
    assert post.author == did and post.kev == genesis.id and post.prev == genesis.id
    assert a.submitted == [genesis.wire, post.wire]  # the saved genesis went first
    assert OwnChain(store.home, did).unpublished() == []


async def test_a_rotation_no_node_stored_is_resent_as_the_same_bytes(
    net: tuple[Net, Clients],
    alice: tuple[Keystore, str, Event],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """spec 0008 #status (last bullet): never re-signed after a failed publish."""
    fake, clients = net
    store, did, _ = alice
    a = fake.node("a")
    await publisher(store, did, clients(a)).publish("post", {"text": "hello"})
    rotation = sign_rotation(
        store, "alice", next_key=store.load_next("alice"), passphrase=None, net="murmur"
    )
    a.down = True
    (failed,) = await publisher(store, did, clients(a), signer=False).flush()
    assert not failed.stored_anywhere
    # `murmur id rotate` again: the saved rotation, not a new one (no nodes configured).
    code, out, err = await asyncio.to_thread(cli, capsys, store.home, "id", "rotate", "--json")
    assert code == 0, err
    assert json.loads(out)["resent"] is True and json.loads(out)["id"] == rotation.id_hex
    a.down = False
    (sent,) = await publisher(store, did, clients(a), signer=False).flush()
    assert sent.stored_anywhere and a.submitted[-1] == rotation.wire
    assert [w for w in a.submitted if w == rotation.wire] == [rotation.wire]
    assert OwnChain(store.home, did).unpublished() == []


# -- reading: a thief's events after the owner's rotation ----------------------------------


def forge(
    thief: Identity, did: str, kev: bytes, after: Event, kind: str, body: dict[str, Any]
) -> Event:
    return sign_event_v2(
        thief, author=did, kind=kind, body=body, seq=after.seq + 1, prev=after.id, kev=kev
    )


async def test_reading_hides_a_thiefs_events_once_the_owner_rotated(
    net: tuple[Net, Clients], alice: tuple[Keystore, str, Event]
) -> None:
    """spec 0008 #status, #clients: events signed with the stolen S on another branch
    are revoked by the owner's rotation, never shown as hers (author and thread views,
    follow set), and listed with revoked_by in the read report."""
    fake, clients = net
    store, did, genesis = alice
    a, b = fake.node("a"), fake.node("b")
    mine = (await publisher(store, did, clients(a, b)).publish("post", {"text": "mine"})).event
    thief = store.load("alice")  # the thief copies S
    friend = Identity.generate().did
    t1 = forge(thief, did, genesis.id, mine, "post", {"text": "forged"})
    t2 = forge(
        thief, did, genesis.id, t1, "post",
        {"text": "forged reply", "reply": {"root": mine.id, "parent": mine.id}},
    )  # fmt: skip
    t3 = forge(thief, did, genesis.id, t2, "follow", {"subject": friend})
    b.add(t1, t2, t3)
    forged = {t1.id, t2.id, t3.id}

    before = await author_view(Reader(clients(a, b)), did, limit=20)
    assert t1.id in {e.id for e in before.items}  # before the rotation: indistinguishable

    rotation = sign_rotation(
        store, "alice", next_key=store.load_next("alice"), passphrase=None, net="murmur"
    )
    (sent,) = await publisher(store, did, clients(a), signer=False).flush()
    assert sent.stored_anywhere and rotation.prev == mine.id
    after = (await publisher(store, did, clients(a, b)).publish("post", {"text": "new"})).event

    reader = Reader(clients(a, b))
    view = await author_view(reader, did, limit=20)
    assert {e.id for e in view.items} == {mine.id, after.id}
    excluded = view.report.excluded
    assert forged <= set(excluded)
    for eid in forged:
        assert excluded[eid].status is Status.REVOKED
        assert excluded[eid].revoked_by == rotation.id
        assert "rotation" in excluded[eid].why()
    doc = view.report.to_json()
    assert {x["id"] for x in doc["excluded"]} >= {i.hex() for i in forged}
    assert all(x["revoked_by"] == rotation.id_hex for x in doc["excluded"])
    assert not view.report.forks  # the thief's branch is no fork of hers

    thread = await thread_view(Reader(clients(a, b)), mine.id)
    assert t2.id not in {e.id for e in thread.items}
    follows = await follow_set(Reader(clients(a, b)), did)
    assert friend not in follows


async def test_a_node_whose_keys_lack_a_key_event_is_reported_withholding_it(
    net: tuple[Net, Clients], alice: tuple[Keystore, str, Event]
) -> None:
    fake, clients = net
    store, did, _ = alice
    a, b = fake.node("a"), fake.node("b")
    await publisher(store, did, clients(a, b)).publish("post", {"text": "mine"})
    rotation = sign_rotation(
        store, "alice", next_key=store.load_next("alice"), passphrase=None, net="murmur"
    )
    await publisher(store, did, clients(a, b), signer=False).flush()
    b.keys_hidden.add(rotation.id)
    reader = Reader(clients(a, b))
    await author_view(reader, did, limit=20)
    assert rotation.id in {e.id for e in reader.report.node(b.url).withheld}
    assert rotation.id not in {e.id for e in reader.report.node(a.url).withheld}


async def test_a_recovery_outranks_a_thief_who_rotated_with_the_stolen_next_key(
    net: tuple[Net, Clients], alice: tuple[Keystore, str, Event], tmp_path: Path
) -> None:
    """spec 0008 #fork-choice: R0's recover (rank 4) beats the thief's rotate (rank 1)."""
    fake, clients = net
    store, did, genesis = alice
    a = fake.node("a")
    mine = (await publisher(store, did, clients(a)).publish("post", {"text": "mine"})).event
    thief_n = store.load_next("alice")
    s_new = Identity.generate()
    n_new = Identity.generate()
    thief_rotation = sign_event_v2(
        thief_n, author=did, kind="rotate",
        body={"signing": s_new.public.raw, "next": next_key_commitment(n_new.public.raw)},
        seq=mine.seq + 1, prev=mine.id, kev=genesis.id,
    )  # fmt: skip
    t_post = sign_event_v2(
        s_new, author=did, kind="post", body={"text": "I am alice now"},
        seq=thief_rotation.seq + 1, prev=thief_rotation.id, kev=thief_rotation.id,
    )  # fmt: skip
    a.add(thief_rotation, t_post)
    reader = Reader(clients(a))
    assert t_post.id in {e.id for e in (await author_view(reader, did, limit=9)).items}
    # The owner recovers with R0, which only she holds (offline).
    recover, _ = sign_recovery(store, "alice", recovery_key=_R0[did], passphrase=None, net="murmur")
    await publisher(store, did, clients(a), signer=False).flush()
    view = await author_view(Reader(clients(a)), did, limit=9)
    assert {e.id for e in view.items} == {mine.id}
    assert view.report.excluded[t_post.id].revoked_by == recover.id


# -- the CLI over fake nodes: id keys, author --explain ------------------------------------


@pytest.fixture
def cli_net(monkeypatch: pytest.MonkeyPatch) -> Net:
    """The CLI's HTTP client reaches the fake nodes (http://NAME.test)."""
    fake = Net()
    real = httpx.AsyncClient

    def client(**_: Any) -> httpx.AsyncClient:
        return real(transport=httpx.MockTransport(fake._handle))

    monkeypatch.setattr("client.session.httpx", SimpleNamespace(AsyncClient=client))
    return fake


def stolen_and_rotated(home: Path, fake: Net) -> tuple[str, Event, Event, Event]:
    """alice posts to a and b, a thief posts with her S to b, she rotates on a."""
    a, b = fake.node("a"), fake.node("b")
    store = Keystore(home)
    made = create_rotatable(store, "alice", passphrase=None)
    did = made.stored.did

    async def go() -> tuple[Event, Event, Event]:
        async with fake.client() as http:
            nodes = [NodeClient(n.url, http) for n in (a, b)]
            mine = (await publisher(store, did, nodes).publish("post", {"text": "mine"})).event
            forged = forge(store.load("alice"), did, made.genesis.id, mine, "post", {"text": "x"})
            b.add(forged)
            rotation = sign_rotation(
                store, "alice", next_key=store.load_next("alice"), passphrase=None, net="murmur"
            )
            await publisher(store, did, nodes[:1], signer=False).flush()
            return mine, forged, rotation

    return did, *asyncio.run(go())


def test_id_keys_json_shows_the_verified_history_and_withholding(
    tmp_path: Path, cli_net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0008 #clients: `murmur id keys DID --json`, from every node, resolved."""
    did, _, _, rotation = stolen_and_rotated(tmp_path, cli_net)
    nodes = ["--node", "http://a.test", "--node", "http://b.test"]
    code, out, err = cli(capsys, tmp_path, *nodes, "id", "keys", did, "--json")
    assert code == 0, err
    doc = json.loads(out)
    genesis_doc, rotation_doc = doc["key_events"]
    assert doc["did"] == did and doc["disputed"] is False
    assert doc["path"] == [genesis_doc["id"], rotation.id_hex]
    assert rotation_doc["kind"] == "rotate" and rotation_doc["status"] == "canonical"
    assert rotation_doc["signing"] == (rotation.body or {})["signing"].hex()
    assert doc["withheld"] == {"http://b.test": [rotation.id_hex]}  # b never got it
    code, out, err = cli(capsys, tmp_path, *nodes, "id", "keys", did)
    assert code == 0 and "rotate" in out and "withheld 1 key event" in out


def test_author_explain_lists_the_thiefs_post_as_revoked(
    tmp_path: Path, cli_net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    did, mine, forged, rotation = stolen_and_rotated(tmp_path, cli_net)
    nodes = ["--node", "http://a.test", "--node", "http://b.test"]
    code, out, err = cli(capsys, tmp_path, *nodes, "author", did, "--explain", "--no-filters")
    assert code == 0, err
    assert "mine" in out and "\n    x\n" not in out
    line = next(x for x in out.splitlines() if forged.id_hex in x)
    assert "revoked by the author's rotation " + rotation.id_hex[:12] in line
    code, out, _ = cli(capsys, tmp_path, *nodes, "author", did, "--json", "--no-filters")
    doc = json.loads(out)
    assert [p["id"] for p in doc["posts"]] == [mine.id_hex]
    assert doc["excluded"] == [
        {
            "author": did,
            "id": forged.id_hex,
            "seq": forged.seq,
            "kind": "post",
            "status": "revoked",
            "revoked_by": rotation.id_hex,
            "reason": None,
        }
    ]


def test_key_commands_publish_the_named_identity_not_the_default(
    tmp_path: Path, cli_net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #own-chain: ``id new bob``, ``id rotate bob`` and ``id recover bob``
    send bob's key event at once, while alice is the default identity (they flushed the
    default's outbox instead and said "no node configured")."""
    node = cli_net.node("a")
    at_a = ["--node", "http://a.test"]
    out_dir = ["--recovery-out", str(tmp_path / "rk")]
    made = {}
    for name in ("alice", "bob"):
        code, out, err = cli(
            capsys, tmp_path, *at_a, "id", "new", name, "--no-encrypt", *out_dir, "--json"
        )
        assert code == 0, err
        made[name] = json.loads(out)
    assert made["bob"]["default"] is False
    assert [p["id"] for p in made["bob"]["published"]] == [made["bob"]["genesis"]]
    bob = Keystore(tmp_path).get("bob")
    code, out, err = cli(capsys, tmp_path, *at_a, "id", "rotate", "bob", "--json")
    assert code == 0, err
    rotated = json.loads(out)
    assert [p["id"] for p in rotated["published"]] == [rotated["id"]]
    assert "no node configured" not in err
    (key_file,) = (tmp_path / "rk").glob(bob.did.removeprefix("did:murmur:")[:16] + "*")
    code, out, err = cli(
        capsys, tmp_path, *at_a, "id", "recover", "bob", "--recovery-key", str(key_file),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    recovered = json.loads(out)
    assert [p["id"] for p in recovered["published"]] == [recovered["id"]]
    sent = {decode_event(w, allow_v2=True).id_hex for w in node.submitted}
    assert {made["bob"]["genesis"], rotated["id"], recovered["id"]} <= sent
    assert not OwnChain(tmp_path, bob.did).unpublished()


# -- recovery keys shown before anything commits to them (D1) ---------------------------


def test_new_shows_the_recovery_keys_before_it_stores_the_identity_or_genesis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #recovery-shown-first: the recovery key files are written (and fsynced)
    before S, N or the genesis are stored, so a crash in between never leaves a genesis
    to publish that commits to a recovery key nobody saw."""
    import client.keyops as keyops

    home, offline = tmp_path / "home", tmp_path / "offline"
    seen: list[tuple[bool, bool]] = []
    real = keyops.create_new

    def spy(path: Path, data: bytes, mode: int = 0o600) -> None:
        outbox = home / "state" / "outbox"
        if path.suffix == ".key":  # a recovery key file
            seen.append(((home / "identities" / "alice.toml").exists(), any(outbox.glob("*.json"))))
        real(path, data, mode)

    monkeypatch.setattr(keyops, "create_new", spy)
    code, out, err = cli(
        capsys, home, "id", "new", "alice", "--no-encrypt", "--recovery-keys", "2",
        "--recovery-out", str(offline), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert seen == [(False, False), (False, False)]  # both keys out before anything stored
    doc = json.loads(out)
    (genesis,) = outbox_events(home, doc["did"])
    publics = {
        bytes.fromhex(tomllib.loads(Path(f).read_text())["public"]) for f in doc["recovery_files"]
    }
    assert publics == set((genesis.body or {})["recovery"])


def test_recover_replacing_keys_into_the_id_new_directory_keeps_the_new_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #rotatable-keys, #recovery-shown-first, 0008 #recover-prefix:
    ``id recover --replace-recovery --recovery-out DIR`` with the directory ``id new``
    wrote into (a name clash with the old key's file lost the new keys after the
    recovery committed to them)."""
    home, offline = tmp_path / "home", tmp_path / "offline"
    code, out, _ = cli(
        capsys, home, "id", "new", "alice", "--no-encrypt", "--recovery-keys", "2",
        "--recovery-out", str(offline), "--json",
    )  # fmt: skip
    doc = json.loads(out)
    did, r_files = doc["did"], doc["recovery_files"]
    code, out, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", r_files[1],
        "--replace-recovery", "--recovery-out", str(offline), "--json",
    )  # fmt: skip
    assert code == 0, err
    (new_file,) = json.loads(out)["recovery_files"]
    assert new_file not in r_files and Path(r_files[1]).exists()  # the old file untouched
    recovery = outbox_events(home, did)[-1]
    assert recovery.kind == "recover"
    new_key = tomllib.loads(Path(new_file).read_text())
    assert bytes.fromhex(new_key["public"]) == (recovery.body or {})["recovery"][1]
    assert stat.S_IMODE(Path(new_file).stat().st_mode) == 0o600


def test_a_recovery_whose_new_keys_cannot_be_written_signs_and_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #recovery-shown-first: the new recovery keys are written before the
    recovery is signed: if they cannot
    be, no recovery is saved (one that commits to keys nobody has would be worse than
    none), the keys stay as they were, and the new keys are seen before the save."""
    import client.keyops as keyops

    home, offline = tmp_path / "home", tmp_path / "offline"
    code, out, _ = cli(
        capsys, home, "id", "new", "alice", "--no-encrypt", "--recovery-out", str(offline),
        "--json",
    )  # fmt: skip
    doc = json.loads(out)
    did, (r_file,) = doc["did"], doc["recovery_files"]
    store = Keystore(home)
    signing_before = store.get("alice").signing
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code, _, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", r_file,
        "--replace-recovery", "--recovery-out", str(blocker),
    )  # fmt: skip
    assert code != 0 and "recovery keys" in err
    assert [e.kind for e in outbox_events(home, did)] == ["genesis"]
    assert store.get("alice").signing == signing_before
    assert not store.pending_path("alice").exists()

    seen: list[list[str]] = []
    real = keyops.create_new

    def spy(path: Path, data: bytes, mode: int = 0o600) -> None:
        if path.suffix == ".key":  # a recovery key file
            seen.append([e.kind for e in outbox_events(home, did)])
        real(path, data, mode)

    monkeypatch.setattr(keyops, "create_new", spy)
    code, _, err = cli(
        capsys, home, "id", "recover", "alice", "--recovery-key", r_file,
        "--replace-recovery", "--recovery-out", str(offline / "new"),
    )  # fmt: skip
    assert code == 0, err
    assert seen == [["genesis"]]  # written while nothing committed to it yet
    assert [e.kind for e in outbox_events(home, did)] == ["genesis", "recover"]


def test_recover_needs_no_old_passphrase_and_seals_with_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0007 #rotatable-keys: a forgotten passphrase does not block a recovery: it
    needs only the recovery key and the outbox, and seals the new S and N with a new
    passphrase."""
    home, offline = tmp_path / "home", tmp_path / "offline"
    monkeypatch.setenv("MURMUR_PASSPHRASE", "forgotten later")
    code, out, err = cli(
        capsys, home, "id", "new", "alice", "--recovery-out", str(offline), "--json"
    )
    assert code == 0, err
    (r_file,) = json.loads(out)["recovery_files"]
    monkeypatch.setenv("MURMUR_PASSPHRASE", "a new one")
    code, out, err = cli(capsys, home, "id", "recover", "alice", "--recovery-key", r_file, "--json")
    assert code == 0, err
    store = Keystore(home)
    recovery = outbox_events(home, store.get("alice").did)[-1]
    new_s = store.load("alice", passphrase="a new one")
    assert (recovery.body or {})["signing"] == new_s.public.raw
    new_n = store.load_next("alice", passphrase="a new one")
    assert (recovery.body or {})["next"] == next_key_commitment(new_n.public.raw)
    with pytest.raises(PassphraseError):
        store.load("alice", passphrase="forgotten later")


# -- ordinary events recorded before they are sent (D4) ----------------------------------


async def test_a_lost_acknowledgement_does_not_fork_the_own_chain(
    net: tuple[Net, Clients], alice: tuple[Keystore, str, Event]
) -> None:
    """spec 0007 #own-chain: a post is recorded (bytes, unpublished) before it is sent;
    when the node stored it but its answer was lost, the next post follows it and
    re-sends it first (the same bytes), and a rotation endorses it, never revokes it.
    A post every node refused leaves the chain (none holds it)."""
    fake, clients = net
    store, did, genesis = alice
    a = fake.node("a")
    a.accept_v2 = False
    with pytest.raises(ProtocolError):
        await publisher(store, did, clients(a)).publish("post", {"text": "refused"})
    assert OwnChain(store.home, did).head().id == genesis.id  # refused by all: forgotten
    a.accept_v2 = True
    a.lose_acks = True
    with pytest.raises(ProtocolError):
        await publisher(store, did, clients(a)).publish("post", {"text": "ack lost"})
    (lost,) = [decode_event(w, allow_v2=True) for w in a.wires.values() if w != genesis.wire]
    chain = OwnChain(store.home, did)
    assert chain.head().id == lost.id and [e.id for e in chain.unpublished()] == [
        genesis.id,
        lost.id,
    ]
    a.lose_acks = False
    second = (await publisher(store, did, clients(a)).publish("post", {"text": "next"})).event
    assert second.prev == lost.id and second.seq == lost.seq + 1
    assert a.submitted[-2:] == [lost.wire, second.wire]  # the same bytes, first
    assert chain.unpublished() == []
    rotation = sign_rotation(
        store, "alice", next_key=store.load_next("alice"), passphrase=None, net="murmur"
    )
    assert rotation.prev == second.id


async def test_concurrent_posts_of_one_home_never_sign_one_seq_twice(
    net: tuple[Net, Clients], alice: tuple[Keystore, str, Event]
) -> None:
    """spec 0007 #own-chain: signing and recording happen together (under the outbox's
    lock), so two posts at once take consecutive seqs; before, both signed after the
    same head while the first was being sent."""
    fake, clients = net
    store, did, _ = alice
    a = fake.node("a")
    a.delay = 0.01  # both requests are in flight together (an interleaving, not a wait)
    one, two = await asyncio.gather(
        publisher(store, did, clients(a)).publish("post", {"text": "one"}),
        publisher(store, did, clients(a)).publish("post", {"text": "two"}),
    )
    assert sorted([one.event.seq, two.event.seq]) == [2, 3]
    events = OwnChain(store.home, did).events()
    assert [e.seq for e in events] == [1, 2, 3] and not any(not e.published for e in events)


# -- bodies a revoked delete took, given back from the owner's copies (D2) ---------------


def test_rotation_gives_nodes_back_bodies_they_lost_to_a_revoked_delete(
    tmp_path: Path, cli_net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    """spec 0008 #revoked-delete, 0007 #sent-archive, 0004 #body-fill: the home keeps the
    bytes of every event it sends (0600 files); after ``id rotate`` the nodes that hold
    an own event without its body (a thief's delete counted, then the rotation revoked
    it) get the full copy back; a node down then gets it after the next post. An event
    the owner deleted herself is never given back."""
    a, b = cli_net.node("a"), cli_net.node("b")
    both = ["--node", "http://a.test", "--node", "http://b.test"]
    code, out, err = cli(
        capsys, tmp_path, *both, "id", "new", "alice", "--no-encrypt",
        "--recovery-out", str(tmp_path / "rk"), "--json",
    )  # fmt: skip
    assert code == 0, err
    did = json.loads(out)["did"]
    ids = {}
    for text in ("keep me", "I take this back"):
        code, out, err = cli(capsys, tmp_path, *both, "post", text, "--json")
        assert code == 0, err
        ids[text] = bytes.fromhex(json.loads(out)["id"])
    kept, retracted = ids["keep me"], ids["I take this back"]
    code, _, err = cli(capsys, tmp_path, *both, "delete", retracted.hex())
    assert code == 0, err
    full = {i: a.wires[i] for i in (kept, retracted)}
    chain = OwnChain(tmp_path, did)
    assert stat.S_IMODE(chain.archive_dir.stat().st_mode) == 0o700
    for f in chain.archive_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    # Both nodes hold both posts without their bodies: "keep me" because a thief's
    # delete counted until the rotation below, "I take this back" by her own delete.
    for node in (a, b):
        for i in (kept, retracted):
            node.serve(decode_event(full[i], allow_v2=True).without_body().wire)
    b.down = True
    code, out, err = cli(capsys, tmp_path, *both, "id", "rotate", "--json")
    assert code == 0, err
    assert json.loads(out)["restored"] == {"http://a.test": 1, "http://b.test": 0}
    assert a.wires[kept] == full[kept]  # given back
    assert decode_event(a.wires[retracted], allow_v2=True).body_bytes is None  # hers: gone
    assert decode_event(b.wires[kept], allow_v2=True).body_bytes is None
    assert chain.restore_passes() > 0  # b did not answer: look again after a post
    b.down = False
    code, _, err = cli(capsys, tmp_path, *both, "post", "new key, same me")
    assert code == 0, err
    assert b.wires[kept] == full[kept]
    assert decode_event(b.wires[retracted], allow_v2=True).body_bytes is None
    assert chain.restore_passes() == 0  # every node whole: no more checks
